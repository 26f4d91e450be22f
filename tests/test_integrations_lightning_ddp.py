"""The Lightning callback in a real DDP job: two CPU processes (gloo) that Lightning launches.

The node's CPU is a fake powercap tree advancing in real time (as in test_job_processes.py):
local rank 0 reads it once for the node, rank 0's report is the job's, and only rank 0 logs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from carbontrack.model import Report
from carbontrack.testing.powercap import FakePowercap

pytest.importorskip("lightning.pytorch")

WORKER = Path(__file__).with_name("lightning_ddp_worker.py")


def test_a_ddp_job_is_measured_once_per_node_and_logged_by_rank_zero(tmp_path: Path) -> None:
    out, logs = tmp_path / "out", tmp_path / "logs"
    tree = FakePowercap(tmp_path / "hw", clock=time.monotonic)
    tree.add_package(0, 100.0)
    env = {
        **os.environ,
        "CARBONTRACK_POWERCAP_ROOT": str(tree.root),
        "CARBONTRACK_NODE_NAME": "node-a",
        "CARBONTRACK_DISABLE_PLUGINS": "nvml,powermetrics,estimate",
        "OMP_NUM_THREADS": "1",
        "MASTER_PORT": str(29_500 + os.getpid() % 400),
    }
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "TORCHELASTIC_RUN_ID", "SLURM_PROCID"):
        env.pop(name, None)
    with tree.live():
        # A session of its own: on a timeout the rank Lightning started is ended with its
        # launcher, not left waiting for a store that is gone (it outlived a timed-out run).
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), str(out), str(logs)],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            _, stderr = proc.communicate(timeout=240)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, stderr[-3000:]
    results = {
        int(p.stem.removeprefix("rank")): json.loads(p.read_text()) for p in out.glob("rank*.json")
    }
    assert sorted(results) == [0, 1]
    zero = Report.from_dict(results[0]["report"])
    one = Report.from_dict(results[1]["report"])
    assert zero.job is not None
    assert zero.job.scope == "job"
    assert not zero.job.partial, zero.job.missing
    assert len(zero.epochs) == 3
    assert zero.predictions
    assert zero.energy_j > 0
    assert one.job is not None
    assert one.job.scope == "rank"
    assert one.energy_j == 0  # the node's CPU is read by local rank 0 only
    assert "carbontrack/energy_kwh" in results[0]["logged"]
    assert results[1]["logged"] == []
