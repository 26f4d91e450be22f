"""The CSV writer: one row per run and per epoch, appended safely by threads and processes."""

from __future__ import annotations

import csv
import logging
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from carbontrack import hookimpl, track
from carbontrack.model import J_PER_KWH, Intensity, Location, Report
from carbontrack.settings import Settings
from carbontrack.testing import FakeDevice, FakeHardware
from carbontrack.writers.csv import EPOCH_COLUMNS, RUN_COLUMNS

QUIET: dict[str, Any] = {"verbose": 0, "interval_s": 0.01}


def _hw() -> FakeHardware:
    return FakeHardware(
        [
            FakeDevice("package-0", kind="cpu", watts=60.0),
            FakeDevice("dram-0", kind="dram", watts=10.0),
            FakeDevice("gpu0", kind="gpu", method="power", watts=200.0),
        ]
    )


def _read(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """The header and the rows; fails when a row has another number of cells than the header."""
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    for row in body:
        assert len(row) == len(header), f"malformed row in {path.name}: {row!r}"
    return header, [dict(zip(header, row, strict=True)) for row in body]


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _run(tmp_path: Path, epochs: int = 0, **options: Any) -> Report:
    with track(plugins=[_hw()], log_dir=tmp_path, epochs=epochs or None, **QUIET, **options) as run:
        for _ in range(epochs):
            with run.epoch():
                time.sleep(0.01)
        time.sleep(0.01)
    report: Report = run.report
    return report


def test_a_run_appends_one_row_with_the_report_figures(tmp_path: Path) -> None:
    with track(plugins=[_hw()], log_dir=tmp_path, epochs=2, location="DK", **QUIET) as run:
        for _ in range(2):
            with run.epoch():
                time.sleep(0.01)
    report = run.report

    header, rows = _read(tmp_path / "carbontrack-runs.csv")
    assert tuple(header) == RUN_COLUMNS
    (row,) = rows
    assert row["run_id"] == report.run_id
    assert row["started_at"] == _iso(report.started_at)
    assert row["started_at"].endswith("Z")
    # Floats are written in full, so the file reads back to the report's exact figures.
    assert float(row["duration_s"]) == report.duration_s
    assert float(row["energy_j"]) == report.energy_j
    assert float(row["energy_kwh"]) == report.energy_j / J_PER_KWH
    assert float(row["facility_energy_kwh"]) == report.facility_energy_j / J_PER_KWH
    assert float(row["co2eq_g"]) == report.co2eq_g
    assert float(row["pue"]) == report.pue
    assert float(row["g_per_kwh"]) == report.intensity.g_per_kwh
    assert row["intensity_source"] == report.intensity.source
    assert row["intensity_basis"] == report.intensity.basis
    assert row["location"] == "DK"
    assert row["methods"] == "counter+power"
    assert row["estimated"] == "false"
    assert row["partial"] == "false"
    assert row["epochs"] == "2"


def test_component_columns_sum_their_devices_and_stay_empty_when_absent(tmp_path: Path) -> None:
    report = _run(tmp_path)
    _, (row,) = _read(tmp_path / "carbontrack-runs.csv")
    by_component = {c.component: c.energy_j for c in report.components}
    # DRAM is counted with the CPU packages, as in the report.
    assert float(row["cpu_energy_j"]) == by_component["cpu"]
    assert float(row["gpu_energy_j"]) == by_component["gpu"]
    assert row["ane_energy_j"] == row["ram_energy_j"] == row["other_energy_j"] == ""
    assert float(row["cpu_energy_j"]) + float(row["gpu_energy_j"]) == pytest.approx(
        float(row["energy_j"])
    )


def test_an_estimated_run_says_so(tmp_path: Path) -> None:
    hw = FakeHardware([FakeDevice("cpu-model", kind="cpu", method="model", watts=40.0)])
    with track(plugins=[hw], log_dir=tmp_path, **QUIET):
        time.sleep(0.02)
    _, (row,) = _read(tmp_path / "carbontrack-runs.csv")
    assert row["methods"] == "model"
    assert row["estimated"] == "true"


def test_an_unknown_component_goes_to_other_energy(tmp_path: Path) -> None:
    hw = FakeHardware(
        [
            FakeDevice("package-0", kind="cpu", watts=50.0),
            FakeDevice("fpga0", kind="fpga", method="power", watts=25.0),
        ]
    )
    with track(plugins=[hw], log_dir=tmp_path, **QUIET) as run:
        time.sleep(0.02)
    _, (row,) = _read(tmp_path / "carbontrack-runs.csv")
    fpga = next(c for c in run.report.components if c.component == "fpga")
    assert float(row["other_energy_j"]) == fpga.energy_j


def test_each_epoch_appends_a_row_with_the_prediction_made_after_it(tmp_path: Path) -> None:
    with track(plugins=[_hw()], log_dir=tmp_path, epochs=3, **QUIET) as run:
        for _ in range(3):
            with run.epoch():
                time.sleep(0.01)
    report = run.report
    (prediction,) = report.predictions  # after epoch 1 (epochs_before_pred=1)

    header, rows = _read(tmp_path / "carbontrack-epochs.csv")
    assert tuple(header) == EPOCH_COLUMNS
    assert [r["epoch"] for r in rows] == [str(e.index) for e in report.epochs]
    for row, epoch in zip(rows, report.epochs, strict=True):
        assert row["run_id"] == report.run_id
        assert row["started_at"] == _iso(epoch.started_at)
        assert float(row["duration_s"]) == epoch.duration_s
        assert float(row["energy_j"]) == epoch.energy_j
        assert float(row["co2eq_g"]) == epoch.co2eq_g
        assert float(row["gpu_energy_j"]) == epoch.energy_by_component_j["gpu"]
    first, *later = rows
    assert int(first["predicted_epochs"]) == prediction.epochs == 3
    assert float(first["predicted_energy_j"]) == prediction.energy_j
    assert float(first["predicted_co2eq_g"]) == prediction.co2eq_g
    assert float(first["predicted_duration_s"]) == prediction.duration_s
    assert float(first["predicted_g_per_kwh"]) == prediction.g_per_kwh
    # One epoch in the mean: a point estimate, no interval.
    assert first["predicted_level"] == first["predicted_co2eq_g_low"] == ""
    for row in later:
        assert all(row[c] == "" for c in EPOCH_COLUMNS if c.startswith("predicted_"))


def test_prediction_interval_columns_are_filled_from_two_epochs(tmp_path: Path) -> None:
    with track(plugins=[_hw()], log_dir=tmp_path, epochs=4, epochs_before_pred=2, **QUIET) as run:
        for _ in range(4):
            with run.epoch():
                time.sleep(0.01)
    (prediction,) = run.report.predictions
    _, rows = _read(tmp_path / "carbontrack-epochs.csv")
    row = rows[1]
    assert prediction.level is not None
    assert float(row["predicted_level"]) == prediction.level
    assert float(row["predicted_co2eq_g_low"]) == prediction.co2eq_g_low
    assert float(row["predicted_co2eq_g_high"]) == prediction.co2eq_g_high


def test_runs_append_under_one_header(tmp_path: Path) -> None:
    first = _run(tmp_path, epochs=1)
    second = _run(tmp_path, epochs=2)
    _, runs = _read(tmp_path / "carbontrack-runs.csv")
    _, epochs = _read(tmp_path / "carbontrack-epochs.csv")
    ids = [first.run_id, second.run_id]
    assert [r["run_id"] for r in runs] == ids
    assert [r["run_id"] for r in epochs] == [ids[0], ids[1], ids[1]]
    text = (tmp_path / "carbontrack-runs.csv").read_text(encoding="utf-8")
    assert text.count("run_id,started_at") == 1


def test_the_file_prefix_names_the_files(tmp_path: Path) -> None:
    _run(tmp_path, epochs=1, log_file_prefix="exp1_")
    assert sorted(p.name for p in tmp_path.glob("*.csv")) == [
        "exp1_carbontrack-epochs.csv",
        "exp1_carbontrack-runs.csv",
    ]


def test_write_log_false_writes_nothing(tmp_path: Path) -> None:
    _run(tmp_path, epochs=2, write_log=False)
    assert list(tmp_path.iterdir()) == []


def test_the_csv_plugin_can_be_blocked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARBONTRACK_DISABLE_PLUGINS", "rapl,nvml,powermetrics,estimate,csv")
    _run(tmp_path, epochs=1)
    assert list(tmp_path.glob("*.csv")) == []
    assert len(list(tmp_path.glob("*.jsonl"))) == 1


class _OddIntensity:
    """An intensity provider whose source needs CSV quoting (commas, quotes, a line break)."""

    SOURCE = 'Grid "live", zone A,\nrevised'

    @hookimpl
    def carbontrack_carbon_intensity(
        self, location: Location, start: float, end: float, settings: Settings
    ) -> Intensity:
        return Intensity(g_per_kwh=123.5, source=self.SOURCE, basis="direct")


def test_text_with_commas_quotes_and_newlines_is_quoted(tmp_path: Path) -> None:
    with track(plugins=[_hw(), _OddIntensity()], log_dir=tmp_path, **QUIET):
        time.sleep(0.01)
    _, (row,) = _read(tmp_path / "carbontrack-runs.csv")
    assert row["intensity_source"] == _OddIntensity.SOURCE
    assert row["intensity_basis"] == "direct"
    assert float(row["g_per_kwh"]) == 123.5


def test_concurrent_runs_in_threads_write_well_formed_files(tmp_path: Path) -> None:
    threads_n, epochs = 8, 3
    ids: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(threads_n)

    def body() -> None:
        start.wait()
        with track(plugins=[_hw()], log_dir=tmp_path, epochs=epochs, **QUIET) as run:
            for _ in range(epochs):
                with run.epoch():
                    time.sleep(0.005)
        with lock:
            ids.append(run.report.run_id)

    threads = [threading.Thread(target=body) for _ in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    _, runs = _read(tmp_path / "carbontrack-runs.csv")
    _, epoch_rows = _read(tmp_path / "carbontrack-epochs.csv")
    assert sorted(r["run_id"] for r in runs) == sorted(ids)
    assert len(set(ids)) == threads_n
    for run_id in ids:
        mine = [r["epoch"] for r in epoch_rows if r["run_id"] == run_id]
        assert mine == [str(i) for i in range(1, epochs + 1)]


_PROCESS_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from carbontrack import track
    from carbontrack.testing import FakeDevice, FakeHardware

    log_dir, gate, runs = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    hw = FakeHardware([FakeDevice("package-0", kind="cpu", watts=60.0)])
    (gate / f"ready-{os.getpid()}").touch()
    while not (gate / "go").exists():  # line the processes up so their first writes collide
        time.sleep(0.001)
    for _ in range(runs):
        with track(plugins=[hw], log_dir=log_dir, epochs=2, verbose=0, interval_s=0.05) as run:
            for _ in range(2):
                with run.epoch():
                    pass
    """
)


def test_concurrent_processes_write_one_header_and_whole_rows(tmp_path: Path) -> None:
    procs_n, runs_each = 4, 3
    logs, gate = tmp_path / "logs", tmp_path / "gate"
    gate.mkdir()
    # The children inherit the test's isolated environment (no real backends, no autoload).
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _PROCESS_SCRIPT, str(logs), str(gate), str(runs_each)]
        )
        for _ in range(procs_n)
    ]
    deadline = time.monotonic() + 60
    while len(list(gate.glob("ready-*"))) < procs_n and time.monotonic() < deadline:
        time.sleep(0.01)
    (gate / "go").touch()
    for p in procs:
        assert p.wait(timeout=60) == 0

    header, runs = _read(logs / "carbontrack-runs.csv")
    _, epoch_rows = _read(logs / "carbontrack-epochs.csv")
    assert tuple(header) == RUN_COLUMNS
    assert len(runs) == procs_n * runs_each
    assert len({r["run_id"] for r in runs}) == procs_n * runs_each
    assert len(epoch_rows) == procs_n * runs_each * 2
    # Every row is whole: its figures parse, and no header was written twice.
    assert all(float(r["energy_j"]) >= 0 for r in runs)
    assert all(r["run_id"] != "run_id" for r in runs + epoch_rows)
    assert not list(logs.glob(".*.tmp"))  # header staging files are cleaned up


def test_a_file_with_other_columns_is_left_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = tmp_path / "carbontrack-runs.csv"
    old.write_bytes(b"run_id,energy\r\nabc,1.0\r\n")
    with caplog.at_level(logging.WARNING, logger="carbontrack.writers.csv"):
        report = _run(tmp_path)
    assert old.read_bytes() == b"run_id,energy\r\nabc,1.0\r\n"
    header, (row,) = _read(tmp_path / "carbontrack-runs.2.csv")
    assert tuple(header) == RUN_COLUMNS
    assert row["run_id"] == report.run_id
    assert "other columns" in caplog.text
    assert "carbontrack-runs.2.csv" in caplog.text
