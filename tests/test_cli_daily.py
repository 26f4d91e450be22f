"""The command line as a daily tool (issue 20): each test drives the installed console script,
through a pseudo-terminal where what the user sees on screen matters."""

from __future__ import annotations

import csv
import io
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli_helpers import (
    CARBONTRACK,
    TIMEOUT,
    carbontrack,
    cli_env,
    py,
    run_in_terminal,
    screen_lines,
)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return cli_env(tmp_path)


# -- 1. -vv ------------------------------------------------------------------------------------


def test_vv_runs_the_command_with_debug_logging(env: dict[str, str]) -> None:
    done = carbontrack("run", "-vv", "--no-log", "--", *py("print('ran')"), env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ran\n"
    assert "verbose=" not in done.stderr
    assert "gCO2eq" in done.stderr  # the summary


def test_v_runs_the_command(env: dict[str, str]) -> None:
    done = carbontrack("run", "-v", "--no-log", "--", *py("print('ran')"), env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ran\n"


# -- 2. --json - with the command's own stdout ---------------------------------------------------


def test_json_on_stdout_is_only_the_report_and_the_command_prints_on_stderr(
    env: dict[str, str],
) -> None:
    child = py("print('building...'); print('3 tests passed')")
    done = carbontrack("run", "-q", "--json", "-", "--", *child, env=env)
    assert done.returncode == 0
    report = json.loads(done.stdout)  # the README's `... --json - -- make test > report.json`
    assert report["final"] is True
    assert "building...\n3 tests passed\n" in done.stderr


def test_json_to_a_file_leaves_the_command_stdout_alone(
    env: dict[str, str], tmp_path: Path
) -> None:
    done = carbontrack(
        "run", "-q", "--json", str(tmp_path / "r.json"), "--", *py("print('out')"), env=env
    )
    assert done.returncode == 0
    assert done.stdout == "out\n"
    assert json.loads((tmp_path / "r.json").read_text())["final"] is True


def test_help_says_where_the_command_stdout_goes_with_json_dash(env: dict[str, str]) -> None:
    text = " ".join(carbontrack("run", "--help", env=env).stdout.split())
    assert "stdout then goes to stderr" in text


# -- 3. the live status line and the command's output --------------------------------------------

PROGRESS = """
import sys, time
for i in range(1, 9):
    print(f"child line {i}", flush=True)
    time.sleep(0.3)
sys.stdout.write("no newline at the end")
"""


def test_status_line_never_runs_into_the_command_output(env: dict[str, str]) -> None:
    code, out = run_in_terminal(["run", "--interval", "0.2", "--", *py(PROGRESS)], env, rows=6)
    assert code == 0
    # The status line was drawn, on the bottom row, while the command printed.
    assert b"\x1b[6;1Hcarbontrack: " in out
    lines = screen_lines(out, rows=6)
    text = "\n".join(lines)
    for i in range(1, 9):
        assert f"child line {i}" in lines, text  # each line intact, on a row of its own
    # Nothing of the live line is left on screen or in the scrollback: only the summary.
    assert not [line for line in lines if " W | " in line], text
    assert "gCO2eq" in text  # the summary came after the output


def test_status_line_is_not_drawn_on_a_dumb_terminal(env: dict[str, str]) -> None:
    code, out = run_in_terminal(
        ["run", "--interval", "0.2", "--", "sleep", "1.2"], env, rows=6, term="dumb"
    )
    assert code == 0
    assert b"\x1b[" not in out


def test_status_line_is_not_drawn_on_a_tiny_terminal(env: dict[str, str]) -> None:
    code, out = run_in_terminal(["run", "--interval", "0.2", "--", "sleep", "1.2"], env, rows=2)
    assert code == 0
    assert b" W | " not in out


# -- 5. a signal sent to the whole process group reaches the command once ----------------------

RECORD_SIGNALS = """
import signal, sys, time
# Each delivery with its sender (si_pid). Two copies that arrive before the first is taken
# merge into one in the kernel, so the count alone could hide a double delivery; the sender
# cannot: a copy sent to the whole group comes from the test, a forwarded one from carbontrack.
wanted = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT}
signal.pthread_sigmask(signal.SIG_BLOCK, wanted)
print("ready", flush=True)
seen = []
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    info = signal.sigtimedwait(wanted, max(deadline - time.monotonic(), 0.01))
    if info is not None:
        seen.append(f"{info.si_signo}:{info.si_pid}")
        deadline = min(deadline, time.monotonic() + 0.7)  # would a second copy arrive?
print("seen=" + ",".join(seen), flush=True)
sys.exit(7)
"""


@pytest.mark.skipif(not hasattr(signal, "sigtimedwait"), reason="needs sigtimedwait")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_the_process_group_reaches_the_command_once(
    env: dict[str, str], sig: signal.Signals
) -> None:
    # carbontrack leads a process group, as a job started by a shell or a supervisor does.
    proc = subprocess.Popen(
        [*CARBONTRACK, "run", "--no-log", "--", *py(RECORD_SIGNALS)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    os.killpg(proc.pid, sig)  # kill -SIG -- -PGID
    out, err = proc.communicate(timeout=TIMEOUT)
    # Once, from carbontrack: the group's copy did not reach the command as well.
    assert out == f"seen={int(sig)}:{proc.pid}\n", err
    assert proc.returncode == 7


@pytest.mark.skipif(not hasattr(signal, "sigtimedwait"), reason="needs sigtimedwait")
def test_a_signal_to_carbontrack_alone_reaches_the_command_and_its_children(
    env: dict[str, str],
) -> None:
    # `sh -c` starts Python as its child: both are in the command's group, which gets it.
    child = ["sh", "-c", f"{sys.executable} -c '{RECORD_SIGNALS}'; exit $?"]
    proc = subprocess.Popen(
        [*CARBONTRACK, "run", "--no-log", "--", *child],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=TIMEOUT)
    assert out == f"seen={int(signal.SIGTERM)}:{proc.pid}\n", err


# -- 6. exit status and command line: summary, run log, --json, report ---------------------------


def test_exit_status_and_redacted_command_line_are_recorded_everywhere(
    env: dict[str, str], tmp_path: Path
) -> None:
    child = py("import sys; sys.exit(3)")
    secret_args = ["--hf-token=hf_abcdefghijkl", "--api-key", "s3cr3t", "DB_PASSWORD=pw"]
    done = carbontrack(
        "run", "--json", str(tmp_path / "r.json"), "--", *child, *secret_args, env=env
    )
    assert done.returncode == 3
    report = json.loads((tmp_path / "r.json").read_text())
    command = report["command"]
    assert command["exit_code"] == 3
    assert command["signal"] is None
    assert command["argv"][:3] == child[:3]
    assert command["argv"][3:] == ["--hf-token=***", "--api-key", "***", "DB_PASSWORD=***"]
    # The summary says how the command ended.
    assert "command exited 3 (failed): " in done.stderr
    logs = list((Path(env["CARBONTRACK_HOME"]) / "logs").glob("*.jsonl"))
    text = logs[0].read_text()
    for secret in ("hf_abcdefghijkl", "s3cr3t", "=pw"):
        assert secret not in text
        assert secret not in done.stderr
    assert json.loads(text.splitlines()[-1])["report"]["command"] == command
    shown = carbontrack("report", env=env)
    assert shown.returncode == 0
    row = next(line for line in shown.stdout.splitlines() if report["run_id"] in line)
    assert " exit 3 " in row
    assert row.rstrip().endswith("...")  # the command, cut to its column
    assert " python -c " in row or " python3 -c " in row  # without the interpreter's directory
    (run,) = json.loads(carbontrack("report", "--json", env=env).stdout)["runs"]
    assert run["exit_code"] == 3
    assert run["status"] == "exit 3"
    assert run["command"].endswith("'--hf-token=***' --api-key '***' 'DB_PASSWORD=***'")


def test_a_command_killed_by_a_signal_is_recorded_as_such(env: dict[str, str]) -> None:
    done = carbontrack(
        "run", "--json", "-", "--", *py("import os; os.kill(os.getpid(), 9)"), env=env
    )
    assert done.returncode == 137
    command = json.loads(done.stdout)["command"]
    assert command["exit_code"] == 137
    assert command["signal"] == "SIGKILL"
    assert "command killed by SIGKILL (exit 137)" in done.stderr
    shown = carbontrack("report", "--format", "csv", env=env)
    (row,) = csv.DictReader(io.StringIO(shown.stdout))
    assert row["status"] == "SIGKILL"
    assert row["exit_code"] == "137"


# -- 14. carbontrack SIGKILLed: the command dies with it, and the log has a measurement ----------


def _gone_or_zombie(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in {"Z", "X"}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_killed_carbontrack_takes_the_command_with_it_and_leaves_a_checkpoint(
    env: dict[str, str],
) -> None:
    child = py("import os, time; print(os.getpid(), flush=True); time.sleep(60)")
    proc = subprocess.Popen(
        [*CARBONTRACK, "run", "--", *child],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    pid = int(proc.stdout.readline())
    logs = Path(env["CARBONTRACK_HOME"]) / "logs"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and '"checkpoint"' not in "".join(
        p.read_text() for p in logs.glob("*.jsonl")
    ):
        time.sleep(0.2)
    started = time.monotonic()
    proc.kill()  # SIGKILL: no handler, no report
    proc.wait(timeout=TIMEOUT)
    while not _gone_or_zombie(pid) and time.monotonic() < started + 5:
        time.sleep(0.05)
    assert _gone_or_zombie(pid), "the command outlived carbontrack"
    # The first checkpoint came within seconds (the interval is 60 s): the run is not lost.
    shown = carbontrack("report", "--json", env=env)
    (run,) = json.loads(shown.stdout)["runs"]
    assert run["complete"] is False
    assert run["duration_s"] >= 4.0
    assert run["status"] == "killed?"
    assert "time.sleep(60)" in run["command"]


TAKE_TERMINAL = (
    "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_z_stops_the_command_and_carbontrack_and_fg_continues_both(
    env: dict[str, str],
) -> None:
    import pty

    master, slave = pty.openpty()
    # carbontrack in the foreground of a terminal of its own, as started by an interactive shell.
    launcher = [sys.executable, "-c", TAKE_TERMINAL, *CARBONTRACK]
    child = py("import time; print('ready', flush=True); time.sleep(1.5); print('done')")
    proc = subprocess.Popen(
        [*launcher, "run", "-q", "--no-log", "--", *child],
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    out = b""
    deadline = time.monotonic() + TIMEOUT
    while b"ready" not in out and time.monotonic() < deadline:
        if select.select([master], [], [], 0.1)[0]:
            out += os.read(master, 1024)
    os.write(master, b"\x1a")  # Ctrl-Z: the terminal stops the command's group
    deadline = time.monotonic() + 10
    while _state(proc.pid) != "T" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _state(proc.pid) == "T"  # carbontrack stopped too: the shell would see the job stop
    os.kill(proc.pid, signal.SIGCONT)  # `fg` (the terminal is still carbontrack's group's)
    while proc.poll() is None and time.monotonic() < deadline + TIMEOUT:
        if select.select([master], [], [], 0.1)[0]:
            try:
                out += os.read(master, 1024)
            except OSError:
                break
    os.close(master)
    assert proc.wait(timeout=TIMEOUT) == 0
    assert b"done" in out
