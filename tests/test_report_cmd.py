"""``carbontrack report``: aggregating our run logs and carbontracker's, and surviving bad input."""

from __future__ import annotations

import argparse
import io
import json
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carbontrack import Tracker, make_settings
from carbontrack.cli._report import (
    CARBONTRACKER_PUE,
    configure_parser,
    parse_carbontracker_log,
    parse_run_log,
    run,
)
from carbontrack.model import J_PER_KWH
from carbontrack.testing import FakeClock, FakeDevice, FakeHardware

CT_STANDARD = """\
2024-01-01 10:00:00 - carbontracker version 2.4.7
2024-01-01 10:00:00 - Only predicted and actual consumptions are multiplied by a PUE coefficient \
of 1.58 (Daniel Bizo, 2023, Uptime Institute Global Data Center Survey).
2024-01-01 10:00:00 - The following components were found: CPU with device(s) Xeon X.
2024-01-01 10:00:00 - Monitoring thread started.
2024-01-01 10:00:02 - Epoch 1:
2024-01-01 10:00:02 - Duration: 0:00:02.00
2024-01-01 10:00:02 - Average power usage (W) for cpu: 100.0
2024-01-01 10:00:04 - Epoch 2:
2024-01-01 10:00:04 - Duration: 0:00:02.00
2024-01-01 10:00:04 - Average power usage (W) for cpu: 50.0
"""

# The real format (reference §2.10): the block's first physical line ends in a space.
CT_OUTPUT = "\n".join(
    [
        "2024-01-01 10:00:00 - CarbonTracker: The following components were found: CPU with "
        "device(s) Xeon X.",
        "2024-01-01 10:00:02 - CarbonTracker: ",
        "Predicted consumption for 2 epoch(s):",
        "\tTime:\t0:00:04",
        "\tEnergy:\t0.000175555556 kWh",
        "\tCO2eq:\t0.078122222222 g",
        "\tThis is equivalent to:",
        "\t0.000731481481 km travelled by car",
        "2024-01-01 10:00:04 - CarbonTracker: Average carbon intensity during training was "
        "445.00 gCO2eq/kWh. ",
        "2024-01-01 10:00:04 - CarbonTracker: ",
        "Actual consumption for 2 epoch(s):",
        "\tTime:\t0:00:04",
        "\tEnergy:\t0.000131666667 kWh",
        "\tCO2eq:\t0.058591666667 g",
        "\tThis is equivalent to:",
        "\t0.000548611111 km travelled by car",
        "2024-01-01 10:00:04 - CarbonTracker: Finished monitoring.",
        "",
    ]
)

CT_NAME = "123.456_2024-01-01T100000Z_carbontracker"


def write_carbontracker_logs(directory: Path, output: str = CT_OUTPUT) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{CT_NAME}.log").write_text(CT_STANDARD, encoding="utf-8")
    out = directory / f"{CT_NAME}_output.log"
    out.write_text(output, encoding="utf-8")
    return out


def fake_run(log_dir: Path, epochs: int = 3, watts: float = 100.0) -> float:
    """Run a fake ``epochs``-epoch run logging to ``log_dir``; return its facility energy (J)."""
    clock = FakeClock()
    hw = FakeHardware([FakeDevice("pkg", watts=watts)], clock=clock)
    settings_ = make_settings(epochs=epochs, log_dir=log_dir, verbose=0, pue=1.5, location="DK")
    tracker = Tracker(settings_, plugins=[hw], autoload=False, clock=clock).start()
    for _ in range(epochs):
        tracker.epoch_start()
        clock.advance(10.0)
        tracker.epoch_end()
    return tracker.stop().facility_energy_j


def report(*argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    out, err = io.StringIO(), io.StringIO()
    code = run(parser.parse_args(list(argv)), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_aggregates_our_logs_and_carbontracker_logs_in_one_directory(tmp_path: Path) -> None:
    ours = fake_run(tmp_path / "logs", epochs=3, watts=100.0)
    write_carbontracker_logs(tmp_path / "logs" / "old")
    code, out, err = report(str(tmp_path / "logs"), "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["total"]["runs"] == 2
    by_tool = {r["tool"]: r for r in data["runs"]}
    assert by_tool["carbontrack"]["facility_energy_kwh"] == pytest.approx(ours / J_PER_KWH)
    assert by_tool["carbontrack"]["facility_energy_kwh"] == pytest.approx(1.5 * 3000 / J_PER_KWH)
    assert by_tool["carbontracker"]["facility_energy_kwh"] == pytest.approx(0.000131666667)
    assert data["total"]["facility_energy_kwh"] == pytest.approx(ours / J_PER_KWH + 0.000131666667)
    assert data["total"]["co2eq_g"] == pytest.approx(
        by_tool["carbontrack"]["co2eq_g"] + 0.058591666667
    )


def test_carbontracker_actual_epoch_count_is_read_not_assumed_one(tmp_path: Path) -> None:
    summary = parse_carbontracker_log(write_carbontracker_logs(tmp_path), [])
    assert summary is not None
    assert summary.epochs == 2
    assert summary.duration_s == 4.0
    assert summary.energy_kwh == pytest.approx(0.000131666667 / CARBONTRACKER_PUE)
    assert summary.complete


def test_killed_carbontracker_run_is_summed_from_its_standard_log(tmp_path: Path) -> None:
    killed = CT_OUTPUT.split("2024-01-01 10:00:04 - CarbonTracker: Average", maxsplit=1)[0]
    summary = parse_carbontracker_log(write_carbontracker_logs(tmp_path, killed), [])
    assert summary is not None
    assert not summary.complete
    assert summary.co2eq_g is None
    assert summary.energy_kwh == pytest.approx((100.0 * 2 + 50.0 * 2) / J_PER_KWH)
    assert "killed" in summary.note


def test_killed_run_uses_the_last_checkpoint_and_says_so(tmp_path: Path) -> None:
    fake_run(tmp_path, epochs=2)
    (log,) = tmp_path.glob("*.jsonl")
    lines = log.read_text(encoding="utf-8").splitlines()
    final = json.loads(lines[-1])
    assert final["type"] == "report"
    checkpoint = {"type": "checkpoint", "report": dict(final["report"], energy_j=1.0)}
    log.write_text("\n".join([*lines[:-1], json.dumps(checkpoint)]) + "\n", encoding="utf-8")
    summary = parse_run_log(log, [])
    assert summary is not None
    assert not summary.complete
    assert summary.energy_kwh == pytest.approx(1.0 / J_PER_KWH)
    assert "checkpoint" in summary.note


def test_killed_run_adds_the_epochs_logged_after_its_last_checkpoint(tmp_path: Path) -> None:
    # Checkpoints come every checkpoint_s (60 s by default), epoch lines at every epoch: a run
    # killed between two checkpoints has lost nothing that its later epoch lines still say.
    fake_run(tmp_path, epochs=3)
    (log,) = tmp_path.glob("*.jsonl")
    lines = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert [line["type"] for line in lines] == ["header", "epoch", "epoch", "epoch", "report"]
    final = lines[-1]["report"]
    first = final["epochs"][0]
    checkpoint = dict(
        final,
        final=False,
        epochs=[first],
        duration_s=first["duration_s"],
        energy_j=first["energy_j"],
        facility_energy_j=first["energy_j"] * 1.5,
        co2eq_g=first["co2eq_g"],
    )
    killed = [lines[0], lines[1], {"type": "checkpoint", "report": checkpoint}, *lines[2:4]]
    log.write_text("\n".join(json.dumps(line) for line in killed) + "\n", encoding="utf-8")
    summary = parse_run_log(log, [])
    assert summary is not None
    assert not summary.complete
    assert summary.epochs == 3
    assert summary.energy_kwh == pytest.approx(3 * 1000.0 / J_PER_KWH)
    assert summary.facility_energy_kwh == pytest.approx(3 * 1500.0 / J_PER_KWH)
    assert summary.duration_s == pytest.approx(30.0)
    assert summary.co2eq_g == pytest.approx(sum(e["co2eq_g"] for e in final["epochs"]))
    assert "2 epoch line(s) after it" in summary.note


def test_corrupt_line_is_skipped_with_a_warning_naming_file_and_line(tmp_path: Path) -> None:
    fake_run(tmp_path, epochs=2)
    (log,) = tmp_path.glob("*.jsonl")
    lines = log.read_text(encoding="utf-8").splitlines()
    lines.insert(1, '{"type": "epoch", "epoch": {trunc')
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, out, err = report(str(tmp_path))
    assert code == 0
    assert f"{log}:2: not JSON" in err
    assert "total (1 run)" in out


def test_directory_without_logs_says_so_and_exits_non_zero(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello", encoding="utf-8")
    code, out, err = report(str(tmp_path))
    assert code == 1
    assert out == ""
    assert f"no runs in {tmp_path}" in err


def test_csv_has_one_row_per_run_and_no_total(tmp_path: Path) -> None:
    fake_run(tmp_path, epochs=2)
    write_carbontracker_logs(tmp_path)
    code, out, _ = report(str(tmp_path), "--format", "csv")
    assert code == 0
    rows = out.strip().splitlines()
    assert rows[0].startswith("path,tool,run_id")
    assert len(rows) == 3  # the header and the two runs: a total row would be summed with them
    assert all(",TOTAL," not in row for row in rows)


_line = st.one_of(
    st.text(alphabet=string.printable, max_size=80),
    st.sampled_from(
        [
            "{",
            '{"type": "report", "report": 5}',
            '{"type": "report", "report": {"energy_j": "x"}}',
            '{"type": "checkpoint", "report": {"energy_j": NaN}}',
            '{"type": "epoch", "epoch": {"duration_s": -1e400}}',
            "[1, 2]",
            '"type"',
            "\tEnergy:\tnan kWh",
            "Actual consumption for 9 epoch(s):",
            "\tTime:\t25:61:99",
        ]
    ),
)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(junk=st.lists(st.tuples(st.integers(min_value=0, max_value=40), _line), max_size=6))
def test_corrupt_input_never_breaks_the_report(tmp_path: Path, junk: list[tuple[int, str]]) -> None:
    directory = tmp_path / "h"
    ours = directory / "carbontrack-x.jsonl"
    output = write_carbontracker_logs(directory)
    good = json.dumps(
        {
            "type": "report",
            "report": {
                "run_id": "r",
                "energy_j": 3600.0,
                "facility_energy_j": 3600.0,
                "co2eq_g": 1.0,
                "duration_s": 2.0,
            },
        }
    )
    lines = [good]
    ct_lines = CT_OUTPUT.splitlines()
    for position, text in junk:
        lines.insert(position % (len(lines) + 1), text)
        ct_lines.insert(position % (len(ct_lines) + 1), text)
    ours.write_text("\n".join(lines) + "\n", encoding="utf-8")
    output.write_text("\n".join(ct_lines) + "\n", encoding="utf-8")
    warnings: list[str] = []
    summary = parse_run_log(ours, warnings)
    ct_summary = parse_carbontracker_log(output, warnings)
    for w in warnings:
        assert w.startswith((f"{ours}:", f"{output}:")), w
    # Only lines that could be read as a report count; the good line is always there.
    assert summary is not None
    assert ct_summary is None or ct_summary.facility_energy_kwh >= 0
    code, out, _ = report(str(directory), "--json")
    assert code == 0
    assert json.loads(out)["total"]["runs"] >= 1


def test_without_a_path_it_reads_the_default_log_directory(tmp_path: Path) -> None:
    # conftest points CARBONTRACK_HOME at tmp_path / "carbontrack-home"; logs go to <home>/logs.
    fake_run(tmp_path / "carbontrack-home" / "logs", epochs=2)
    code, out, err = report("--json")
    assert code == 0, err
    assert json.loads(out)["total"]["runs"] == 1


def test_each_run_shows_its_first_prediction_beside_the_actual(tmp_path: Path) -> None:
    fake_run(tmp_path, epochs=3)
    write_carbontracker_logs(tmp_path)
    code, out, _ = report(str(tmp_path), "--json")
    assert code == 0
    by_tool = {r["tool"]: r for r in json.loads(out)["runs"]}
    (log,) = tmp_path.glob("*.jsonl")
    final = json.loads(log.read_text(encoding="utf-8").splitlines()[-1])["report"]
    assert by_tool["carbontrack"]["predicted_co2eq_g"] == final["predictions"][0]["co2eq_g"]
    assert by_tool["carbontracker"]["predicted_co2eq_g"] == pytest.approx(0.078122222222)


def test_csv_gives_start_times_in_iso_8601_utc(tmp_path: Path) -> None:
    from carbontrack.cli._report import RunSummary, format_csv

    run = RunSummary(
        path="x.jsonl",
        tool="carbontrack",
        run_id="r1",
        started_at=0.0,
        duration_s=1.0,
        energy_kwh=0.5,
        facility_energy_kwh=0.5,
        co2eq_g=10.0,
        epochs=1,
    )
    text = format_csv(
        [run],
        {
            "duration_s": 1.0,
            "energy_kwh": 0.5,
            "facility_energy_kwh": 0.5,
            "co2eq_g": 10.0,
            "runs": 1,
        },
    )
    assert "1970-01-01T00:00:00Z" in text.splitlines()[1]


def test_corrupt_line_warning_gives_the_column(tmp_path: Path) -> None:
    from carbontrack.writers.runlog import read_run_log

    log = tmp_path / "bad.jsonl"
    log.write_text('{"type": "header"}\n{"type": "ep\x01och"}\n', encoding="utf-8")
    lines, problems = read_run_log(log)
    assert len(lines) == 1
    (problem,) = problems
    assert problem == f"{log}:2: not JSON (Invalid control character at column 13); line skipped"
