"""`carbontrack report` never crashes on a bad line or file (issue 21, item 5): each test
reproduces a crash or a flood of the old code."""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import random
import re
from pathlib import Path

import pytest

from carbontrack import Tracker, make_settings
from carbontrack.cli._report import configure_parser, run
from carbontrack.testing import FakeClock, FakeDevice, FakeHardware


def _good_run(log_dir: Path) -> None:
    clock = FakeClock()
    hw = FakeHardware([FakeDevice("pkg", watts=100.0)], clock=clock)
    settings = make_settings(epochs=2, log_dir=log_dir, verbose=0, location="DK")
    tracker = Tracker(settings, plugins=[hw], autoload=False, clock=clock).start()
    for _ in range(2):
        tracker.epoch_start()
        clock.advance(10.0)
        tracker.epoch_end()
    tracker.stop()


def _report(*argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    out, err = io.StringIO(), io.StringIO()
    code = run(parser.parse_args(list(argv)), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def _report_line(**fields: object) -> str:
    report = {
        "run_id": "bad",
        "started_at": 1_760_000_000.0,
        "duration_s": 10.0,
        "energy_j": 1000.0,
        "facility_energy_j": 1500.0,
        "co2eq_g": 0.1,
        **fields,
    }
    # allow_nan: a NaN in a log is what a buggy writer (or an attacker) leaves.
    return json.dumps({"type": "report", "report": report}, allow_nan=True)


@pytest.mark.parametrize(
    "line",
    [
        # RecursionError in json.loads: old code crashed with a traceback, nothing shown.
        "[" * 100_000 + "]" * 100_000,
        '{"type": "report", "report": ' + "[" * 100_000 + "]" * 100_000 + "}",
        _report_line(started_at=float("nan")),  # old: ValueError in localtime
        _report_line(started_at=1e20),  # old: OverflowError / OSError in localtime
        _report_line(duration_s=1.5e308),  # old: OverflowError rounding inf in the total
        _report_line(energy_j=1.5e308, facility_energy_j=1.5e308),  # sums to inf
        _report_line(co2eq_g=-5.0),
    ],
    ids=[
        "deep-array",
        "deep-report",
        "nan-start",
        "1e20-start",
        "huge-duration",
        "huge-energy",
        "negative-co2",
    ],
)
@pytest.mark.parametrize("fmt", ["text", "json", "csv"])
def test_a_hostile_line_never_stops_the_report(tmp_path: Path, line: str, fmt: str) -> None:
    _good_run(tmp_path)
    (tmp_path / "carbontrack-bad.jsonl").write_text(line + "\n", encoding="utf-8")
    code, out, err = _report(str(tmp_path), "--format", fmt)
    assert code == 0, err
    assert "Traceback" not in err
    if fmt == "json":
        data = json.loads(out)
        runs = data["runs"]
        assert all(
            isinstance(v, float | int) and math.isfinite(v)
            for r in runs
            for v in (r["duration_s"], r["energy_kwh"])
        )
        assert data["total"]["energy_kwh"] < 1e9
    # The good run is shown whatever happened to the bad one.
    assert out.count("\n") >= 2


def test_a_bad_start_time_shows_as_unknown_but_the_run_counts(tmp_path: Path) -> None:
    (tmp_path / "carbontrack-a.jsonl").write_text(_report_line(started_at=1e20) + "\n")
    code, out, _ = _report(str(tmp_path), "--format", "json")
    assert code == 0
    [row] = json.loads(out)["runs"]
    assert row["started_at"] is None
    assert row["energy_kwh"] > 0


def test_binary_garbage_is_one_warning_with_a_count(tmp_path: Path) -> None:
    # Old code: 100 MB of garbage printed 811,807 warning lines. 4 MB here (the benchmark
    # reads 100 MB); the warning count must not grow with the file.
    _good_run(tmp_path)
    rng = random.Random(21)
    (tmp_path / "carbontrack-garbage.jsonl").write_bytes(rng.randbytes(4 * 2**20))
    code, out, err = _report(str(tmp_path))
    assert code == 0
    warnings = [w for w in err.splitlines() if "garbage" in w]
    assert len(warnings) == 1, err[:2000]
    found = re.search(r"([\d,]+) corrupt lines skipped", warnings[0])
    assert found is not None, warnings[0]
    count = int(found.group(1).replace(",", ""))
    assert count > 10_000
    assert "corrupt lines skipped" in warnings[0]
    assert "total" in out


def test_a_few_bad_lines_are_still_named_one_by_one(tmp_path: Path) -> None:
    _good_run(tmp_path)
    [log] = tmp_path.glob("*.jsonl")
    with log.open("a") as f:
        f.write("not json\n{broken\n")
    _, _, err = _report(str(tmp_path))
    assert f"{log}:" in err
    assert err.count("line skipped") == 2


def test_an_unreadable_file_is_skipped_and_the_rest_shown(tmp_path: Path) -> None:
    _good_run(tmp_path)
    bad = tmp_path / "carbontrack-dir.jsonl"
    bad.mkdir()  # a directory named like a log
    code, out, _ = _report(str(tmp_path))
    assert code == 0
    assert "total" in out


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_durations_that_sum_to_infinity_never_break_the_total(tmp_path: Path, fmt: str) -> None:
    # Issue 21: duration_s=1.5e308 crashed the report: two such runs sum to inf, which the text
    # total cannot round and JSON cannot hold.
    _good_run(tmp_path)
    for name in ("a", "b"):
        (tmp_path / f"carbontrack-{name}.jsonl").write_text(_report_line(duration_s=1.5e308) + "\n")
    code, out, err = _report(str(tmp_path), "--format", fmt)
    assert code == 0, err
    assert "duration_s" in err  # each bad line is named
    if fmt == "json":
        assert math.isfinite(json.loads(out)["total"]["duration_s"])


def test_a_report_written_to_a_file_is_private_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _good_run(tmp_path / "logs")
    old = os.umask(0o022)
    try:
        target = tmp_path / "report.csv"
        code, _, err = _report(str(tmp_path / "logs"), "--format", "csv", "-o", str(target))
        assert code == 0, err
        assert target.stat().st_mode & 0o777 == 0o600
        monkeypatch.setenv("CARBONTRACK_FILE_MODE", "shared")
        code, _, err = _report(str(tmp_path / "logs"), "--format", "csv", "-o", str(target))
        assert code == 0, err
        assert target.stat().st_mode & 0o777 == 0o660
    finally:
        os.umask(old)
