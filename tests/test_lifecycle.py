"""Whole-process lifecycle: interpreter exit and SIGKILL never lose the run log."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from carbontrack.writers.runlog import read_run_log

SCRIPT = """
import sys, time
from carbontrack import track
from carbontrack.testing import FakeDevice, FakeHardware

hw = FakeHardware([FakeDevice("pkg", watts=40.0)])
run = track(plugins=[hw], log_dir=sys.argv[1], verbose=0, interval_s=0.01, checkpoint_s=0.05,
            epochs=100).__enter__()
run.epoch_start()
run.epoch_end()
print("started", flush=True)
if sys.argv[2] == "hang":
    time.sleep(60)
# "exit": leave without stopping the run
"""


def _start(tmp_path: Path, mode: str) -> subprocess.Popen[str]:
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "logs"), mode],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_run_left_open_at_interpreter_exit_still_gets_its_report(tmp_path: Path) -> None:
    proc = _start(tmp_path, "exit")
    assert proc.wait(timeout=30) == 0
    (log,) = (tmp_path / "logs").glob("*.jsonl")
    lines, problems = read_run_log(log)
    assert not problems
    assert lines[-1]["type"] == "report"
    assert lines[-1]["report"]["final"] is True


def test_killed_process_keeps_everything_up_to_the_last_checkpoint(tmp_path: Path) -> None:
    proc = _start(tmp_path, "hang")
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "started"
    deadline = time.monotonic() + 20
    log_dir = tmp_path / "logs"
    while time.monotonic() < deadline:
        logs = list(log_dir.glob("*.jsonl"))
        if logs and '"checkpoint"' in logs[0].read_text():
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    (log,) = log_dir.glob("*.jsonl")
    lines, problems = read_run_log(log)
    assert not problems  # every line on disk is complete
    types = [line["type"] for line in lines]
    assert types[0] == "header"
    assert "epoch" in types
    checkpoint = next(line for line in reversed(lines) if line["type"] == "checkpoint")
    assert checkpoint["report"]["final"] is False
    assert checkpoint["report"]["energy_j"] > 0
    assert len(checkpoint["report"]["epochs"]) == 1
