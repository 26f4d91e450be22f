"""The command line as a daily tool (issue 20): each test drives the installed console script,
through a pseudo-terminal where what the user sees on screen matters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_helpers import carbontrack, cli_env, py, run_in_terminal, screen_lines


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
