"""The command line as a daily tool (issue 20): each test drives the installed console script,
through a pseudo-terminal where what the user sees on screen matters."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from carbontrack.testing.distribution import write_plugin_distribution
from cli_helpers import (
    CARBONTRACK,
    TIMEOUT,
    carbontrack,
    cli_env,
    default_signals,
    py,
    read_terminal,
    run_in_terminal,
    screen_lines,
    start_on_terminal,
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
    report = json.loads(done.stdout)  # docs/command-line.md: `--json - -- make test`
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
        preexec_fn=default_signals,
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
        preexec_fn=default_signals,
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
        preexec_fn=default_signals,
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
    # carbontrack in the foreground of a terminal of its own, as started by an interactive shell.
    launcher = [sys.executable, "-c", TAKE_TERMINAL, *CARBONTRACK]
    child = py("import time; print('ready', flush=True); time.sleep(1.5); print('done')")
    proc, master = start_on_terminal([*launcher, "run", "-q", "--no-log", "--", *child], env)
    out = read_terminal(master, proc, until=(b"ready",))
    os.write(master, b"\x1a")  # Ctrl-Z: the terminal stops the command's group
    deadline = time.monotonic() + 10
    while _state(proc.pid) != "T" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _state(proc.pid) == "T"  # carbontrack stopped too: the shell would see the job stop
    os.kill(proc.pid, signal.SIGCONT)  # `fg` (the terminal is still carbontrack's group's)
    out += read_terminal(master, proc)
    os.close(master)
    assert proc.wait(timeout=TIMEOUT) == 0
    assert b"done" in out


# -- 10. one plugin that cannot be imported spoils no listing -----------------------------------


@pytest.fixture
def broken_env(tmp_path: Path) -> dict[str, str]:
    env = cli_env(tmp_path)  # the working fakecpu distribution
    write_plugin_distribution(
        tmp_path / "site",
        name="brokenhw",
        distribution="carbontrack-brokenhw",
        source="raise ImportError('libvendor.so.2: cannot open shared object file')\n",
    )
    return env


@pytest.mark.parametrize("command", ["plugins", "devices"])
def test_a_broken_plugin_is_listed_with_its_error_and_the_rest_still_listed(
    broken_env: dict[str, str], command: str
) -> None:
    done = carbontrack(command, env=broken_env)
    assert done.returncode == 0, done.stderr
    assert "fakecpu" in done.stdout  # the working plugin is listed as usual
    assert "brokenhw: " in done.stdout
    assert "BROKEN" in done.stdout
    assert "libvendor.so.2" in done.stdout
    assert "CARBONTRACK_DISABLE_PLUGINS=brokenhw" in done.stdout  # the fix
    assert "plugin 'brokenhw' cannot be loaded" in done.stderr
    strict = carbontrack(command, "--strict", env=broken_env)
    assert strict.returncode == 1
    assert "brokenhw" in strict.stdout


def test_plugins_json_marks_the_broken_plugin(broken_env: dict[str, str]) -> None:
    done = carbontrack("plugins", "--json", env=broken_env)
    assert done.returncode == 0
    rows = {r["name"]: r for r in json.loads(done.stdout)["plugins"]}
    assert rows["fakecpu"]["error"] is None
    assert rows["fakecpu"]["hooks"]
    assert "libvendor.so.2" in rows["brokenhw"]["error"]
    assert rows["brokenhw"]["distribution"] == "carbontrack-brokenhw"


def test_devices_json_marks_the_broken_plugin(broken_env: dict[str, str]) -> None:
    done = carbontrack("devices", "--json", "--window", "0.1", env=broken_env)
    assert done.returncode == 0
    backends = {b["name"]: b for b in json.loads(done.stdout)["backends"]}
    assert backends["fakecpu"]["devices"]
    assert "libvendor.so.2" in backends["brokenhw"]["error"]


# -- 12. devices --json: a device used only with other components is not "used" -----------------


def test_ram_model_is_not_used_with_the_default_components(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    env["CARBONTRACK_DISABLE_PLUGINS"] = ",".join(
        n for n in env["CARBONTRACK_DISABLE_PLUGINS"].split(",") if n != "estimate"
    )
    done = carbontrack("devices", "--json", "--window", "0.1", env=env)
    assert done.returncode == 0, done.stderr
    devices = [d for b in json.loads(done.stdout)["backends"] for d in b["devices"]]
    (ram,) = [d for d in devices if d["kind"] == "ram"]
    assert ram["used"] is False
    assert "--components including ram" in ram["note"]


# -- 4. track()'s options from the command line, the environment and the config file ------------


def estimate_env(tmp_path: Path) -> dict[str, str]:
    """Only the built-in CPU estimate (no fake counter): what a VM without RAPL gets."""
    env = cli_env(tmp_path, plugin=False)
    blocked = {ep for ep in env["CARBONTRACK_DISABLE_PLUGINS"].split(",") if ep} - {"estimate"}
    env["CARBONTRACK_DISABLE_PLUGINS"] = ",".join(sorted(blocked | {"rapl", "nvml"}))
    env.pop("CARBONTRACK_DISABLE_PLUGIN_AUTOLOAD", None)
    return env


def cpu_estimate_detail(stdout: str) -> str:
    (device,) = [d for d in json.loads(stdout)["devices"] if d["id"] == "cpu-model"]
    return str(device["detail"])


def test_cpu_tdp_from_the_option_the_environment_and_the_config_file(tmp_path: Path) -> None:
    env = estimate_env(tmp_path)
    args = ["run", "--no-log", "--json", "-", "--", "true"]
    done = carbontrack(*args[:1], "--cpu-tdp-w", "65", *args[1:], env=env)
    assert done.returncode == 0, done.stderr
    assert "TDP 65 W" in cpu_estimate_detail(done.stdout)

    done = carbontrack(*args, env={**env, "CARBONTRACK_CPU_TDP_W": "77"})
    assert done.returncode == 0, done.stderr
    assert "TDP 77 W" in cpu_estimate_detail(done.stdout)
    # Not silent: the summary says where the value came from.
    assert "cpu_tdp_w (CARBONTRACK_CPU_TDP_W)" in " ".join(done.stderr.split())

    config = tmp_path / "config.toml"
    config.write_text("cpu_tdp_w = 88\npue = 1.2\n", encoding="utf-8")
    done = carbontrack(*args, env={**env, "CARBONTRACK_CONFIG": str(config)})
    assert done.returncode == 0, done.stderr
    assert "TDP 88 W" in cpu_estimate_detail(done.stdout)
    assert json.loads(done.stdout)["pue"] == 1.2
    # The option beats the environment, which beats the config file.
    done = carbontrack(
        *args[:1],
        "--cpu-tdp-w",
        "65",
        *args[1:],
        env={**env, "CARBONTRACK_CPU_TDP_W": "77", "CARBONTRACK_CONFIG": str(config)},
    )
    assert "TDP 65 W" in cpu_estimate_detail(done.stdout)


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("option", "--cpu-tdp-w 0.0 is not valid"),
        ("env", "CARBONTRACK_CPU_TDP_W=0.0 is not valid"),
        ("env-text", "CARBONTRACK_CPU_TDP_W='sixty' is not valid: expected a number"),
        ("config", "cpu_tdp_w in "),
    ],
)
def test_a_bad_cpu_tdp_is_refused_the_same_way_everywhere_before_the_command_runs(
    tmp_path: Path, where: str, expected: str
) -> None:
    env = estimate_env(tmp_path)
    marker = tmp_path / "ran"
    args = ["run", "--", "touch", str(marker)]
    if where == "option":
        args = ["run", "--cpu-tdp-w", "0", "--", "touch", str(marker)]
    elif where == "env":
        env["CARBONTRACK_CPU_TDP_W"] = "0"
    elif where == "env-text":
        env["CARBONTRACK_CPU_TDP_W"] = "sixty"
    else:
        config = tmp_path / "config.toml"
        config.write_text("cpu_tdp_w = 0\n", encoding="utf-8")
        env["CARBONTRACK_CONFIG"] = str(config)
    done = carbontrack(*args, env=env)
    assert done.returncode == 2
    assert expected in done.stderr
    assert "expected a finite number > 0" in done.stderr or where == "env-text"
    assert not marker.exists()


def test_run_help_lists_every_option_that_makes_sense_for_a_command(env: dict[str, str]) -> None:
    from carbontrack.settings import FROM_ENVIRONMENT

    text = carbontrack("run", "--help", env=env).stdout
    flags = {
        "interval_s": "--interval",
        "checkpoint_s": "--checkpoint",
        "components": "--components",
        "intensity_g_per_kwh": "--intensity",
        "pue": "--pue",
        "gpu_ids": "--gpu-ids",
        "devices_by_pid": "--devices-by-pid",
        "attribution": "--attribution",
        "cpu_tdp_w": "--cpu-tdp-w",
        "rapl_psys": "--rapl-psys",
        "log_dir": "--log-dir",
        "write_log": "--no-log",
        "log_file_prefix": "--log-file-prefix",
        "geolocate": "--geolocate",
    }
    assert set(flags) == set(FROM_ENVIRONMENT)
    for flag in flags.values():
        assert flag in text
    # The command-line guide's list of run's options (moved there from the README) is what
    # --help has.
    guide = Path(__file__).resolve().parent.parent / "docs" / "command-line.md"
    readme = guide.read_text(encoding="utf-8")
    start = readme.index("Options mirror `track()`")
    paragraph = readme[start : readme.index("\n\n", start)]
    listed = set(re.findall(r"`(--[a-z][a-z-]*)", paragraph))
    assert set(flags.values()) <= listed
    assert [f for f in sorted(listed) if f not in text] == []


# -- 13. the summary fits the terminal, and the long estimate text is shown once -----------------


def test_summary_is_wrapped_to_the_terminal_and_the_estimate_explained_once(
    tmp_path: Path,
) -> None:
    env = estimate_env(tmp_path)
    args = ["run", "--no-status", "--no-log", "--", "true"]
    code, out = run_in_terminal(args, env, columns=80, rows=40)
    assert code == 0
    lines = [line for line in screen_lines(out, columns=80, rows=40) if line]
    # No row filled to the last column: every long line was broken at a space by carbontrack,
    # not cut mid-word by the terminal.
    assert all(len(line) < 80 for line in lines), "\n".join(lines)
    first = "\n".join(lines)
    assert "ESTIMATE CPU estimate" in first
    assert "P = TDP x" in first  # the explanation, the first time on this machine

    code, out = run_in_terminal(args, env, columns=80, rows=40)
    second = "\n".join(screen_lines(out, columns=80, rows=40))
    assert "ESTIMATE CPU estimate" in second  # still labelled an estimate
    assert "P = TDP x" not in second  # but the long text is not repeated
    assert "carbontrack devices" in second  # where to read it

    code, out = run_in_terminal(["run", "-v", *args[1:]], env, columns=80, rows=40)
    assert "P = TDP x" in "\n".join(screen_lines(out, columns=80, rows=40))  # -v: in full


def test_summary_is_not_wrapped_into_a_pipe(tmp_path: Path) -> None:
    env = estimate_env(tmp_path)
    done = carbontrack("run", "--no-log", "--", "true", env=env)
    estimate = next(line for line in done.stderr.splitlines() if "ESTIMATE CPU" in line)
    assert "P = TDP x" in estimate  # one line per item, whole, for logs and grep


# -- 7 and 8. the budget warning's advice; predictions from modelled energy say so ---------------


def _modelled_run(capsys: pytest.CaptureFixture[str], **options: object) -> str:
    from carbontrack import track
    from carbontrack.testing import FakeDevice, FakeHardware

    hw = FakeHardware([FakeDevice("cpu-model", kind="cpu", method="model", watts=30.0)])
    with track(plugins=[hw], epochs=3, write_log=False, interval_s=0.01, **options) as run:  # type: ignore[arg-type]
        for _ in range(2):
            with run.epoch():
                time.sleep(0.02)
    return capsys.readouterr().err


def test_the_budget_warning_does_not_advise_the_mode_already_in_use(
    capsys: pytest.CaptureFixture[str],
) -> None:
    err = _modelled_run(capsys, budget_co2eq_g=1e-12)  # on_budget="warn", the default
    assert "exceeds the budget" in err
    assert "on_budget='warn'" not in err
    assert "on_budget='raise'" in err  # what would change something


def test_a_prediction_from_modelled_energy_is_labelled_an_estimate(
    capsys: pytest.CaptureFixture[str],
) -> None:
    err = _modelled_run(capsys)
    assert "carbontrack: predicted (ESTIMATED: from modelled energy, not a measurement)" in err
    assert "mean of 1 epoch)" in err
    assert "the 2 epochs drew (ESTIMATED)" in err
    assert "epochs measured drew" not in err


MINI_SHELL = """
import fcntl, os, signal, subprocess, sys, termios, time
fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # a session whose terminal is the pty, as a shell has
signal.signal(signal.SIGTTOU, signal.SIG_IGN)
job = subprocess.Popen(sys.argv[1:], process_group=0)  # `carbontrack run ... &`: a background job
def state():
    return open(f"/proc/{job.pid}/stat").read().rsplit(")", 1)[1].split()[0]
deadline = time.monotonic() + 20
while state() != "T" and time.monotonic() < deadline:  # stopped by terminal input, as a job is
    time.sleep(0.05)
print("job stopped" if state() == "T" else "job not stopped", flush=True)
os.tcsetpgrp(0, job.pid)  # `fg`: the terminal to the job, then continue it
os.killpg(job.pid, signal.SIGCONT)
sys.exit(job.wait(timeout=20))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_background_command_that_reads_the_terminal_stops_and_fg_resumes_it(
    env: dict[str, str],
) -> None:
    child = py("import sys; line = sys.stdin.readline(); print('got ' + line.strip())")
    proc, master = start_on_terminal(
        [sys.executable, "-c", MINI_SHELL, *CARBONTRACK, "run", "-q", "--no-log", "--", *child],
        env,
    )
    out = read_terminal(master, proc, until=(b"job stopped", b"job not"))
    assert b"job stopped" in out, out
    os.write(master, b"hello\n")
    out += read_terminal(master, proc)
    os.close(master)
    assert proc.wait(timeout=TIMEOUT) == 0, out
    assert b"got hello" in out


# -- 11. carbontrack report: units, run ids, the words --------------------------------------------


def test_report_of_a_short_run_and_a_carbontracker_log_reads_well(
    env: dict[str, str], tmp_path: Path
) -> None:
    from test_report_cmd import CT_NAME, write_carbontracker_logs

    logs = Path(env["CARBONTRACK_HOME"]) / "logs"
    assert carbontrack("run", "-q", "--", "true", env=env).returncode == 0
    write_carbontracker_logs(logs / "ct")
    done = carbontrack("report", env=env)
    assert done.returncode == 0, done.stderr
    assert "0.000000" not in done.stdout  # a short run's energy in Wh with 3 figures
    assert " Wh " in done.stdout
    run_id = CT_NAME.removesuffix("_carbontracker")
    assert run_id in done.stdout  # the whole id, never cut
    assert "total (2 runs)" in done.stdout
    assert " true" in done.stdout  # the command column tells the runs apart
    only = carbontrack("report", str(logs / "ct"), env=env)
    assert "total (1 run)" in only.stdout


SCRIPT_WITHOUT_JOB_CONTROL = """
import fcntl, os, signal, subprocess, sys, termios
fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # the terminal's foreground group is this one
got = []
signal.signal(signal.SIGINT, lambda signum, frame: got.append(signum))
code = subprocess.call(sys.argv[1:])  # carbontrack in this group, as a script's command is
print(f"script got SIGINT: {bool(got)}", flush=True)
sys.exit(code)
"""


@pytest.mark.skipif(not hasattr(signal, "sigtimedwait"), reason="needs sigtimedwait")
def test_ctrl_c_in_a_script_reaches_the_script_and_the_command_once(env: dict[str, str]) -> None:
    argv = [sys.executable, "-c", SCRIPT_WITHOUT_JOB_CONTROL, *CARBONTRACK, "run", "-q"]
    argv += ["--no-log", "--", *py(RECORD_SIGNALS)]
    proc, master = start_on_terminal(argv, env, reset_signals=False)
    out = read_terminal(master, proc, until=(b"ready",))
    os.write(master, b"\x03")  # Ctrl-C
    out += read_terminal(master, proc)
    os.close(master)
    assert proc.wait(timeout=TIMEOUT) == 7, out
    assert b"seen=2:0\r\n" in out  # once, from the terminal (si_pid 0), not forwarded again
    assert b"script got SIGINT: True" in out  # the script can still stop on Ctrl-C
