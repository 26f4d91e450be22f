"""The ``carbontrack`` console script, driven for real in subprocesses.

Hardware comes from a fake plugin *distribution* put on ``PYTHONPATH`` (found through its entry
point, exactly like a pip-installed plugin), serving one CPU counter at 25 W.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
from pathlib import Path
from typing import Any

import pytest

from carbontrack import Report, __version__
from cli_helpers import (
    CARBONTRACK,
    TIMEOUT,
    WATTS,
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


def run_logs(env: dict[str, str]) -> list[Path]:
    return sorted((Path(env["CARBONTRACK_HOME"]) / "logs").glob("*.jsonl"))


def final_report_in_log(path: Path) -> dict[str, Any]:
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    reports = [line["report"] for line in lines if line["type"] == "report"]
    assert len(reports) == 1, f"expected one final report line in {path}"
    report: dict[str, Any] = reports[0]
    return report


# -- the program itself ------------------------------------------------------------------------


def test_version_names_the_installed_version(env: dict[str, str]) -> None:
    done = carbontrack("--version", env=env)
    assert done.returncode == 0
    assert done.stdout.strip() == f"carbontrack {__version__}"


def test_python_dash_m_runs_the_same_program(env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "carbontrack", "--version"],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert (done.returncode, done.stdout.strip()) == (0, f"carbontrack {__version__}")


def test_no_command_prints_help_and_exits_2(env: dict[str, str]) -> None:
    done = carbontrack(env=env)
    assert done.returncode == 2
    assert "no command given" in done.stderr
    assert "carbontrack run -- python train.py" in done.stderr


@pytest.mark.parametrize("command", ["run", "devices", "plugins", "report", "intensity"])
def test_every_command_has_help_with_examples(env: dict[str, str], command: str) -> None:
    top = carbontrack("--help", env=env)
    assert top.returncode == 0
    assert f"    {command}" in top.stdout
    done = carbontrack(command, "--help", env=env)
    assert done.returncode == 0
    assert "examples:" in done.stdout
    assert f"carbontrack {command}" in done.stdout.split("examples:")[1]


@pytest.mark.parametrize(
    "args",
    [
        ["--version"],
        ["plugins"],
        ["plugins", "--json"],
        ["intensity", "--location", "DK"],
        ["devices", "--json"],
    ],
)
def test_a_closed_stdout_ends_quietly_like_a_shell_tool(
    env: dict[str, str], args: list[str]
) -> None:
    # `carbontrack plugins | head -1`: the reader has gone before carbontrack writes.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [*CARBONTRACK, *args],
            env=env,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    finally:
        os.close(write_end)
    assert done.stderr == ""
    assert done.returncode == 128 + signal.SIGPIPE


# -- run: exit codes ---------------------------------------------------------------------------


@pytest.mark.parametrize("code", [0, 1, 3, 255])
def test_run_exits_with_the_child_exit_code(env: dict[str, str], code: int) -> None:
    done = carbontrack("run", "--", *py(f"raise SystemExit({code})"), env=env)
    assert done.returncode == code
    assert "gCO2eq" in done.stderr  # the summary


def test_run_leaves_the_child_stdio_alone(env: dict[str, str]) -> None:
    child = py(
        """
        import sys
        data = sys.stdin.read()
        sys.stdout.write("out:" + data.upper())
        sys.stderr.write("err-line\\n")
        """
    )
    done = carbontrack("run", "-q", "--", *child, env=env, input="hello")
    assert done.returncode == 0
    assert done.stdout == "out:HELLO"
    assert done.stderr == "err-line\n"


def test_run_killed_child_exits_128_plus_signal(env: dict[str, str]) -> None:
    done = carbontrack("run", "--", "sh", "-c", "kill -KILL $$", env=env)
    assert done.returncode == 128 + signal.SIGKILL
    assert len(run_logs(env)) == 1


def test_unknown_command_exits_127_with_one_line(env: dict[str, str]) -> None:
    done = carbontrack("run", "--", "carbontrack-no-such-command-xyz", "--flag", env=env)
    assert done.returncode == 127
    assert done.stderr.splitlines() == [
        "carbontrack: carbontrack-no-such-command-xyz: command not found (not in PATH)"
    ]
    assert run_logs(env) == []


def test_missing_path_exits_127(env: dict[str, str], tmp_path: Path) -> None:
    done = carbontrack("run", "--", str(tmp_path / "nope.sh"), env=env)
    assert done.returncode == 127
    assert "no such file" in done.stderr
    assert "Traceback" not in done.stderr


def test_non_executable_file_exits_126(env: dict[str, str], tmp_path: Path) -> None:
    script = tmp_path / "train.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    done = carbontrack("run", "--", str(script), env=env)
    assert done.returncode == 126
    assert done.stderr.splitlines() == [
        f"carbontrack: {script}: permission denied (not executable; chmod +x {script})"
    ]


def test_non_executable_file_in_path_exits_126(env: dict[str, str], tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "mytool").write_text("#!/bin/sh\n")
    env["PATH"] = f"{bindir}{os.pathsep}{env['PATH']}"
    done = carbontrack("run", "--", "mytool", env=env)
    assert done.returncode == 126
    assert "mytool: permission denied" in done.stderr


def test_directory_exits_126(env: dict[str, str], tmp_path: Path) -> None:
    done = carbontrack("run", "--", str(tmp_path), env=env)
    assert done.returncode == 126
    assert "is a directory" in done.stderr


def test_script_without_interpreter_line_exits_126(env: dict[str, str], tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(b"\x00\x01\x02 not a program")
    blob.chmod(0o755)
    done = carbontrack("run", "--", str(blob), env=env)
    assert done.returncode == 126
    assert "cannot execute" in done.stderr
    assert "Traceback" not in done.stderr


def test_run_without_a_command_says_what_is_missing(env: dict[str, str]) -> None:
    for args in (["run"], ["run", "--"], ["run", "-q", "--"]):
        done = carbontrack(*args, env=env)
        assert done.returncode == 2
        assert done.stderr.splitlines()[0].startswith("usage: carbontrack run")
        assert "no command to run" in done.stderr


def test_unknown_option_exits_2_with_usage(env: dict[str, str]) -> None:
    done = carbontrack("run", "--frobnicate", "--", "true", env=env)
    assert done.returncode == 2
    assert done.stderr.startswith("usage: carbontrack run [options] -- CMD [ARGS...]")
    assert "unrecognized arguments: --frobnicate" in done.stderr


@pytest.mark.parametrize(
    ("option", "value", "words"),
    [
        ("--pue", "0.5", "--pue 0.5 is not valid: expected a finite number >= 1"),
        ("--interval", "0", "--interval 0.0 is not valid"),
        ("--interval", "soon", "invalid float value: 'soon'"),
        ("--components", "cpu,tpu", "Unknown: 'tpu'"),
        ("--attribution", "mine", "invalid choice: 'mine'"),
        ("--pue", "nasa", "--pue preset 'nasa' is not known"),
        ("--gpu-ids", "", "--gpu-ids '' is empty: expected GPU indices or UUIDs"),
    ],
)
def test_invalid_value_exits_2_naming_the_option(
    env: dict[str, str], option: str, value: str, words: str
) -> None:
    done = carbontrack("run", option, value, "--", "true", env=env)
    assert done.returncode == 2
    assert done.stderr.startswith("usage: carbontrack run")
    assert words in done.stderr
    # In the words of the command line, not of track()'s keyword arguments.
    assert "pue=" not in done.stderr
    assert "None" not in done.stderr


def test_json_into_a_directory_exits_2_before_the_command_runs(
    env: dict[str, str], tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    done = carbontrack("run", "--json", str(tmp_path), "--", "touch", str(marker), env=env)
    assert done.returncode == 2
    assert f"--json {tmp_path} is a directory" in done.stderr
    assert not marker.exists()


# -- run: what belongs to the child --------------------------------------------------------------


def test_options_after_double_dash_belong_to_the_child(env: dict[str, str]) -> None:
    child = py("import sys, json; print(json.dumps(sys.argv[1:]))")
    args = ["--json", "--pue", "x", "-q", "--", "--help", "-v"]
    done = carbontrack("run", "-q", "--", *child, *args, env=env)
    assert done.returncode == 0
    assert json.loads(done.stdout) == args
    assert done.stderr == ""


def test_a_command_before_double_dash_keeps_its_own_options(env: dict[str, str]) -> None:
    child = py("import sys, json; print(json.dumps(sys.argv[1:]))")
    done = carbontrack("run", "-q", *child, "-v", "--", "--json", env=env)
    assert done.returncode == 0
    assert json.loads(done.stdout) == ["-v", "--", "--json"]


def test_child_pid_is_the_tracked_pid(env: dict[str, str]) -> None:
    child = py("import os; print(os.getpid())")
    done = carbontrack("run", "-q", "--", *child, env=env)
    header = json.loads(run_logs(env)[0].read_text().splitlines()[0])
    assert header["type"] == "header"
    assert header["run"]["pid"] == int(done.stdout)


# -- run: signals ----------------------------------------------------------------------------------

COUNT_SIGNALS = """
import signal, sys, time
seen = []
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT, signal.SIGHUP):
    signal.signal(s, lambda signum, frame: seen.append(signal.Signals(signum).name))
print("ready", flush=True)
deadline = time.monotonic() + 20
while not seen and time.monotonic() < deadline:
    time.sleep(0.01)
time.sleep(0.5)  # would a second copy of the signal arrive?
print("seen=" + ",".join(seen), flush=True)
sys.exit(7)
"""


def start_and_wait_ready(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [*CARBONTRACK, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # no controlling terminal: signals come only from the test
        preexec_fn=default_signals,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    return proc


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGQUIT, signal.SIGHUP])
def test_signal_is_forwarded_once_and_the_child_decides(
    env: dict[str, str], sig: signal.Signals
) -> None:
    proc = start_and_wait_ready(["run", "--", *py(COUNT_SIGNALS)], env)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=TIMEOUT)
    assert out == f"seen={sig.name}\n"
    assert proc.returncode == 7
    assert "gCO2eq" in err  # the summary
    assert final_report_in_log(run_logs(env)[0])["final"] is True


def test_child_killed_by_forwarded_sigterm_exits_143_with_report(
    env: dict[str, str], tmp_path: Path
) -> None:
    child = py('import time; print("ready", flush=True); time.sleep(20)')
    proc = start_and_wait_ready(["run", "--json", str(tmp_path / "r.json"), "--", *child], env)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 128 + signal.SIGTERM
    assert json.loads((tmp_path / "r.json").read_text())["final"] is True
    assert final_report_in_log(run_logs(env)[0])["duration_s"] > 0


# -- run: the report ---------------------------------------------------------------------------

REQUIRED_KEYS = {
    "run_id",
    "started_at",
    "duration_s",
    "energy_j",
    "pue",
    "facility_energy_j",
    "co2eq_g",
    "intensity",
    "location",
    "devices",
    "components",
    "unavailable",
    "failures",
    "warnings",
    "partial",
    "final",
    "carbontrack_version",
    "schema",
}


def check_report_schema(data: dict[str, Any]) -> Report:
    assert data.keys() >= REQUIRED_KEYS, f"missing: {REQUIRED_KEYS - data.keys()}"
    report = Report.from_dict(data)
    assert report.to_dict() == data
    assert json.loads(json.dumps(data)) == data
    return report


def test_json_on_stdout_is_a_valid_report(env: dict[str, str]) -> None:
    child = py("import time; time.sleep(0.6)")
    done = carbontrack(
        "run", "-q", "--pue", "1.5", "--location", "DK", "--json", "--", *child, env=env
    )
    assert done.returncode == 0
    report = check_report_schema(json.loads(done.stdout))
    assert report.final
    assert report.carbontrack_version == __version__
    assert report.location.country == "DK"
    assert [(d.backend, d.method) for d in report.devices] == [("fakecpu", "counter")]
    assert report.duration_s >= 0.6
    # The fake draws 25 W for the whole measured window.
    assert report.energy_j == pytest.approx(WATTS * report.duration_s, rel=0.05)
    assert report.facility_energy_j == pytest.approx(1.5 * report.energy_j)
    # The same report went to the run log.
    assert final_report_in_log(run_logs(env)[0]) == report.to_dict()


def test_pue_takes_a_preset_name_and_rejects_an_unknown_one(env: dict[str, str]) -> None:
    done = carbontrack("run", "-q", "--pue", "none", "--json", "--", *py("pass"), env=env)
    assert done.returncode == 0
    assert json.loads(done.stdout)["pue"] == 1.0
    bad = carbontrack("run", "--pue", "bogus", "--", *py("pass"), env=env)
    assert bad.returncode == 2
    assert "pue preset 'bogus' is not known" in bad.stderr


def test_unknown_location_exits_2_before_the_command_runs(
    env: dict[str, str], tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    done = carbontrack(
        "run", "--location", "DNKX", "--", *py(f"open({str(marker)!r}, 'w')"), env=env
    )
    assert done.returncode == 2
    assert "is not a known location" in done.stderr
    assert not marker.exists()


def test_json_to_a_file_keeps_stdout_for_the_child(env: dict[str, str], tmp_path: Path) -> None:
    target = tmp_path / "out" / "report.json"
    done = carbontrack("run", "--json", str(target), "--", *py("print('child')"), env=env)
    assert done.returncode == 0
    assert done.stdout == "child\n"
    check_report_schema(json.loads(target.read_text()))


def test_report_is_written_when_the_child_fails(env: dict[str, str]) -> None:
    done = carbontrack("run", "--", *py("raise SystemExit('failed on purpose')"), env=env)
    assert done.returncode == 1
    assert "failed on purpose" in done.stderr
    assert "gCO2eq" in done.stderr  # the summary
    assert final_report_in_log(run_logs(env)[0])["final"] is True


def test_log_dir_and_no_log(env: dict[str, str], tmp_path: Path) -> None:
    carbontrack("run", "-q", "--log-dir", str(tmp_path / "runs"), "--", "true", env=env)
    assert len(list((tmp_path / "runs").glob("*.jsonl"))) == 1
    carbontrack("run", "-q", "--no-log", "--", "true", env=env)
    assert run_logs(env) == []


def test_quiet_prints_nothing_of_its_own(env: dict[str, str]) -> None:
    done = carbontrack("run", "-q", "--", "true", env=env)
    assert (done.returncode, done.stderr) == (0, "")


BROKEN_READ = """
from carbontrack.testing import FakeDevice, FakeHardware
plugin = FakeHardware([FakeDevice("package-0")], name="fakecpu", read_error_at=range(2, 10**6))
"""

BROKEN_DISCOVERY = """
from carbontrack.testing import FakeHardware
plugin = FakeHardware([], name="fakecpu", discover_error=RuntimeError("no bus"))
"""


@pytest.mark.parametrize("source", [BROKEN_READ, BROKEN_DISCOVERY])
def test_measuring_errors_never_change_the_exit_code(tmp_path: Path, source: str) -> None:
    env = cli_env(tmp_path, plugin_source=source)
    done = carbontrack("run", "--json", "--", *py("raise SystemExit(3)"), env=env)
    assert done.returncode == 3
    report = check_report_schema(json.loads(done.stdout))
    assert [f.plugin for f in report.failures] == ["fakecpu"]
    assert "Traceback" not in done.stderr


def test_an_unusable_log_dir_never_changes_the_exit_code(
    env: dict[str, str], tmp_path: Path
) -> None:
    # A directory that cannot be made at run time (a path that is a file is refused before the
    # command: see the next test); /proc takes no new entries, even from root.
    unusable = "/proc/carbontrack-no-such-dir/logs"
    done = carbontrack("run", "--log-dir", unusable, "--json", "--", "false", env=env)
    assert done.returncode == 1
    report = check_report_schema(json.loads(done.stdout))
    assert {f.plugin for f in report.failures} == {"runlog"}
    assert "Traceback" not in done.stderr


def test_a_log_dir_that_is_a_file_stops_before_the_command(
    env: dict[str, str], tmp_path: Path
) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    marker = tmp_path / "ran"
    done = carbontrack("run", "--log-dir", str(not_a_dir), "--", "touch", str(marker), env=env)
    assert done.returncode == 2
    assert "log_dir" in done.stderr or "--log-dir" in done.stderr
    assert "existing file" in done.stderr
    assert not marker.exists()


def test_a_plugin_that_cannot_load_stops_before_the_command(tmp_path: Path) -> None:
    env = cli_env(tmp_path, plugin_source="raise ImportError('vendor library missing')\n")
    marker = tmp_path / "ran"
    done = carbontrack("run", "--", "touch", str(marker), env=env)
    assert done.returncode == 125
    assert "plugin 'fakecpu' from carbontrack-fakecpu failed to load" in done.stderr
    assert "CARBONTRACK_DISABLE_PLUGINS=fakecpu" in done.stderr
    assert "the command was not run" in done.stderr
    assert not marker.exists()


# -- run: the live status line -----------------------------------------------------------------


def run_with_terminal_stderr(args: list[str], env: dict[str, str]) -> tuple[int, bytes, bytes]:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    proc = subprocess.Popen(
        [*CARBONTRACK, *args],
        env={**env, "TERM": "xterm"},
        stdout=subprocess.PIPE,
        stderr=slave,
    )
    os.close(slave)
    try:
        err = read_terminal(master, proc)
    finally:
        os.close(master)
    assert proc.stdout is not None
    out = proc.stdout.read()
    proc.stdout.close()
    return proc.wait(timeout=TIMEOUT), out, err


def test_status_line_on_a_terminal(env: dict[str, str]) -> None:
    code, out, err = run_with_terminal_stderr(["run", "--", "sleep", "2.4"], env)
    assert code == 0
    assert out == b""
    text = err.decode()
    # Each refresh draws on the bottom row (24) and puts the cursor back.
    frames = [f.partition("\x1b[K")[0] for f in text.split("\x1b[24;1H")[1:]]
    frames = [f for f in frames if " | " in f]
    assert len(frames) >= 2, text
    elapsed, power, energy, co2 = frames[-1].split(" | ")
    assert elapsed.startswith("carbontrack: ")
    assert elapsed.endswith(" s")
    assert float(power.removesuffix(" W")) == pytest.approx(WATTS, rel=0.05)
    assert energy.endswith(" Wh")
    assert co2.endswith(" gCO2eq")
    # The row is given back and erased before the summary.
    assert "\x1b7\x1b[r\x1b[24;1H\x1b[2K\x1b8carbontrack: " in text


LATE_FAILURE = """
from carbontrack.testing import FakeDevice, FakeHardware
plugin = FakeHardware([FakeDevice("package-0", watts=25.0)], name="fakecpu",
                      read_error_at=range(12, 10**6))
"""


def test_a_warning_goes_above_the_status_line(tmp_path: Path) -> None:
    env = cli_env(tmp_path, plugin_source=LATE_FAILURE)
    # Reads every 0.2 s: the plugin starts failing after about 2 s, when the line is up.
    code, out = run_in_terminal(["run", "--interval", "0.2", "--", "sleep", "3"], env, rows=12)
    assert code == 0
    text = out.decode()
    warning = "carbontrack: plugin 'fakecpu' failed in carbontrack_read_energy"
    assert warning in text
    assert "\x1b[12;1Hcarbontrack: " in text[: text.index(warning)]  # the status line was up
    assert "\x1b[12;1Hcarbontrack: " in text[text.index(warning) :]  # and stayed up below it
    lines = screen_lines(out, rows=12)
    assert [line for line in lines if line.startswith(warning)], lines  # on a row of its own
    assert not [line for line in lines if " W | " in line]


@pytest.mark.parametrize("option", ["-q", "--no-status"])
def test_no_status_line_when_asked(env: dict[str, str], option: str) -> None:
    code, _out, err = run_with_terminal_stderr(["run", option, "--", "sleep", "1.3"], env)
    assert code == 0
    assert b" | " not in err
    assert b"\x1b[K" not in err


def test_no_status_line_without_a_terminal(env: dict[str, str]) -> None:
    done = carbontrack("run", "--", "sleep", "1.3", env=env)
    assert done.returncode == 0
    assert "\r" not in done.stderr
    assert " | " not in done.stderr
    assert done.stderr.startswith("carbontrack: ")
    assert "gCO2eq" in done.stderr


TAKE_TERMINAL = (
    "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def test_ctrl_c_on_the_terminal_reaches_the_child_once(env: dict[str, str]) -> None:
    # A new session whose controlling terminal is the pty, then carbontrack in its foreground.
    launcher = [sys.executable, "-c", TAKE_TERMINAL, *CARBONTRACK]
    proc, master = start_on_terminal([*launcher, "run", "-q", "--", *py(COUNT_SIGNALS)], env)
    out = read_terminal(master, proc, until=(b"ready",))
    os.write(master, b"\x03")  # Ctrl-C: the terminal signals carbontrack and the child
    out += read_terminal(master, proc)
    os.close(master)
    assert proc.wait(timeout=TIMEOUT) == 7
    assert b"seen=SIGINT\r\n" in out


# -- plugins -------------------------------------------------------------------------------------


def test_plugins_lists_distributions_versions_and_hooks(env: dict[str, str]) -> None:
    done = carbontrack("plugins", env=env)
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    i = lines.index("fakecpu: carbontrack-fakecpu 1.2.3")
    assert lines[i + 1] == "  hooks: close_devices, discover_devices, read_energy"
    assert f"console: built-in (carbontrack {__version__})" in lines
    assert "rapl: blocked by CARBONTRACK_DISABLE_PLUGINS" in lines


def test_plugins_json(env: dict[str, str]) -> None:
    done = carbontrack("plugins", "--json", env=env)
    plugins = {p["name"]: p for p in json.loads(done.stdout)["plugins"]}
    assert plugins["fakecpu"] == {
        "name": "fakecpu",
        "distribution": "carbontrack-fakecpu",
        "version": "1.2.3",
        "hooks": [
            "carbontrack_close_devices",
            "carbontrack_discover_devices",
            "carbontrack_read_energy",
        ],
        "builtin": False,
        "blocked": False,
        "error": None,
    }
    assert plugins["nvml"]["blocked"] is True


# -- report and intensity (their own modules, wired here) ---------------------------------------


def test_report_reads_the_log_that_run_wrote(env: dict[str, str]) -> None:
    done = carbontrack("run", "-q", "--json", "--", "sleep", "0.3", env=env)
    measured = json.loads(done.stdout)
    report = carbontrack("report", "--json", env=env)
    assert report.returncode == 0, report.stderr
    [summary] = json.loads(report.stdout)["runs"]
    assert summary["run_id"] == measured["run_id"]
    assert summary["energy_kwh"] * 3.6e6 == pytest.approx(measured["energy_j"])


def test_report_without_logs_exits_1(env: dict[str, str]) -> None:
    done = carbontrack("report", env=env)
    assert done.returncode == 1
    assert "no runs in" in done.stderr


def test_intensity_for_a_location(env: dict[str, str]) -> None:
    done = carbontrack("intensity", "--location", "DK", "--json", env=env)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["location"]["country"] == "DK"
    assert data["intensity"]["g_per_kwh"] > 0
    assert data["intensity"]["source"]


def test_intensity_with_an_unknown_location_exits_2(env: dict[str, str]) -> None:
    done = carbontrack("intensity", "--location", "Atlantis", env=env)
    assert done.returncode == 2
    assert "usage: carbontrack intensity" in done.stderr
    assert "--location 'Atlantis' is not a known location" in done.stderr


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--provider", "carbonintensity"], "--provider: 'carbonintensity' is not a keyless"),
        (["--location", ""], "--location ''"),
    ],
)
def test_intensity_rejects_what_it_would_silently_ignore(
    env: dict[str, str], args: list[str], named: str
) -> None:
    done = carbontrack("intensity", *args, env=env)
    assert done.returncode == 2
    assert "usage: carbontrack intensity" in done.stderr
    assert named in done.stderr
    assert done.stdout == ""


def test_process_attribution_follows_the_command(tmp_path: Path) -> None:
    # The estimate backend with attribution="process" counts the tracked process tree's CPU
    # time: the command's, not carbontrack's own, so a busy command draws and an idle one not.
    env = cli_env(tmp_path, plugin=False)
    env["CARBONTRACK_DISABLE_PLUGINS"] = "rapl,nvml,powermetrics"
    busy = py(
        """
        import time
        end = time.process_time() + 1.0
        while time.process_time() < end:
            pass
        """
    )
    energy = {}
    for name, cmd in (("busy", busy), ("idle", ["sleep", "1"])):
        done = carbontrack("run", "-q", "--attribution", "process", "--json", "--", *cmd, env=env)
        assert done.returncode == 0, done.stderr
        report = check_report_schema(json.loads(done.stdout))
        assert report.methods == ("model",)
        energy[name] = report.energy_j
    assert energy["busy"] > 0
    assert energy["idle"] < energy["busy"] / 10
