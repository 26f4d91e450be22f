"""Issue 21: `carbontrack run` with an installed plugin that hangs. Before the plugin host had
budgets, a hang in discovery meant the command never started (and SIGTERM did not end
carbontrack), and a hang in close meant carbontrack never exited and lost the exit code."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from cli_helpers import CARBONTRACK, carbontrack, cli_env

HANGING = """
from carbontrack.testing.faults import FaultyPlugin

plugin = FaultyPlugin(faults={{"{hook}": "hang"}}, name="fakecpu")
"""


def _env(tmp_path: Path, hook: str) -> dict[str, str]:
    return cli_env(tmp_path, plugin_source=HANGING.format(hook=hook))


@pytest.mark.parametrize("hook", ["discover", "read", "close", "run_started", "report_ready"])
def test_the_command_runs_and_its_exit_code_stands_whatever_hook_hangs(
    tmp_path: Path, hook: str
) -> None:
    started = time.monotonic()
    done = carbontrack(
        "run", "--", "sh", "-c", "echo the command ran; exit 3", env=_env(tmp_path, hook)
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 3, done.stderr
    assert "the command ran" in done.stdout
    assert elapsed < 10.0
    assert "fakecpu" in done.stderr  # the warning names the plugin


def test_sigterm_ends_carbontrack_while_discovery_hangs(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [*CARBONTRACK, "run", "--", "sleep", "30"],
        env=_env(tmp_path, "discover"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)  # carbontrack is waiting for the hung discovery now
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=15)
        after_signal = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    # The command was told (it ends by the signal) and carbontrack ended with it.
    assert code == 128 + signal.SIGTERM
    assert after_signal < 8.0


@pytest.mark.parametrize("hook", ["discover", "read"])
def test_devices_lists_a_plugin_returning_garbage_with_its_failure(
    tmp_path: Path, hook: str
) -> None:
    # Before: `for item in 42` raised TypeError out of `carbontrack devices`.
    source = (
        "from carbontrack.testing.faults import FaultyPlugin\n"
        f"plugin = FaultyPlugin(faults={{'{hook}': 'garbage'}}, name='fakecpu')\n"
    )
    done = carbontrack("devices", "--window", "0.1", env=cli_env(tmp_path, plugin_source=source))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "fakecpu" in done.stdout
