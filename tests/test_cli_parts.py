"""The command line's parts, in process: command lookup, argument split, power, status text."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from carbontrack import Intensity, Location, Reading, Report
from carbontrack.cli._devices import _power
from carbontrack.cli._run import StatusLine, check_command, split_command
from carbontrack.model import DeviceEnergy, Method


def test_split_command_takes_everything_after_the_first_double_dash() -> None:
    assert split_command(["run", "-q", "--", "python", "--", "-v"]) == (
        ["run", "-q"],
        ["python", "--", "-v"],
    )
    assert split_command(["run", "-q", "python"]) == (["run", "-q", "python"], None)


def test_check_command_finds_executables_in_path(tmp_path: Path) -> None:
    tool = tmp_path / "tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    assert check_command("tool", path=str(tmp_path)) is None
    tool.chmod(0o644)
    code, message = check_command("tool", path=str(tmp_path)) or (0, "")
    assert code == 126
    assert str(tool) in message
    assert check_command("absent", path=str(tmp_path)) == (
        127,
        "absent: command not found (not in PATH)",
    )
    assert check_command("") == (127, "command not found: '' (an empty command name)")


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        (Reading("d", joules=100.0), Reading("d", joules=150.0), (100.0, None)),
        # A wrap inside the window: 990 -> 1000 (wrap) -> 40 is 50 J.
        (
            Reading("d", joules=990.0, wrap_j=1000.0),
            Reading("d", joules=40.0, wrap_j=1000.0),
            (100.0, None),
        ),
        (Reading("d", watts=10.0), Reading("d", watts=30.0), (20.0, None)),
        (Reading("d", watts=10.0), None, (None, "the backend returned no reading for this device")),
        (
            Reading("d", watts=10.0),
            Reading("d", error="/x/energy_uj: EIO"),
            (None, "/x/energy_uj: EIO"),
        ),
    ],
)
def test_power_over_the_window(
    first: Reading, second: Reading | None, expected: tuple[float | None, str | None]
) -> None:
    assert _power(first, second, 0.5) == expected


def test_power_of_a_counter_reset_says_so() -> None:
    power, error = _power(Reading("d", joules=500.0), Reading("d", joules=3.0), 0.5)
    assert power is None
    assert error is not None
    assert "reset" in error


def report(energy_j: float, duration_s: float, method: Method = "counter") -> Report:
    device = DeviceEnergy(
        id="p0",
        kind="cpu",
        name="p0",
        backend="fake",
        method=method,
        energy_j=energy_j,
    )
    return Report(
        run_id="r",
        started_at=0.0,
        duration_s=duration_s,
        energy_j=energy_j,
        pue=1.0,
        facility_energy_j=energy_j,
        co2eq_g=energy_j / 3.6e6 * 400,
        intensity=Intensity(g_per_kwh=400.0, source="test"),
        location=Location(country="DK"),
        devices=(device,),
    )


def test_status_line_power_is_the_energy_between_refreshes() -> None:
    snapshots = iter([report(100.0, 1.0), report(400.0, 2.0)])
    stream = io.StringIO()
    line = StatusLine(lambda: next(snapshots), stream, size=lambda: (200, 24))
    line.update()
    line.update()
    first, second = stream.getvalue().split("\x1b[24;1H")[1:]
    assert first.startswith("carbontrack: 1.0 s | 100.0 W | ")
    assert second.startswith("carbontrack: 2.0 s | 300.0 W | ")
    assert second.endswith("\x1b[K\x1b8")


def test_status_line_says_when_the_figures_are_estimates() -> None:
    assert StatusLine.render(report(10.0, 1.0, "model"), 10.0).endswith(" | (estimated)")
    assert "estimated" not in StatusLine.render(report(10.0, 1.0), 10.0)


def test_status_line_fits_the_terminal() -> None:
    stream = io.StringIO()
    StatusLine(lambda: report(1.0, 1.0), stream, size=lambda: (30, 24)).update()
    drawn = stream.getvalue().split("\x1b[24;1H")[1]
    assert len(drawn) == 29 + len("\x1b[K\x1b8")


@pytest.mark.parametrize("size", [(0, 0), (80, 2), (10, 24)])
def test_status_line_is_not_drawn_on_a_tiny_or_unknown_terminal(size: tuple[int, int]) -> None:
    stream = io.StringIO()
    StatusLine(lambda: report(1.0, 1.0), stream, size=lambda: size).update()
    assert stream.getvalue() == ""


def test_status_line_gives_the_row_back_when_the_terminal_shrinks() -> None:
    sizes = iter([(80, 24), (80, 2)])
    stream = io.StringIO()
    line = StatusLine(lambda: report(1.0, 1.0), stream, size=lambda: next(sizes))
    line.update()
    assert "\x1b[1;23r" in stream.getvalue()
    line.update()
    assert stream.getvalue().endswith("\x1b7\x1b[r\x1b[24;1H\x1b[2K\x1b8")
