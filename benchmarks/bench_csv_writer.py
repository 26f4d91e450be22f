"""What the CSV writer costs on the caller's thread at each epoch boundary, and how fast several
processes can append to one file.

Run: ``python benchmarks/bench_csv_writer.py``. Prints the median time per epoch row written
by one thread (open, one append-mode write, close), and rows per second with 4 processes
appending to the same file at once (and checks the file is well formed afterwards).
"""

from __future__ import annotations

import csv
import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path

from carbontrack.model import EpochRecord, Location, Prediction, RunInfo
from carbontrack.settings import Settings, make_settings
from carbontrack.writers.csv import EPOCH_COLUMNS, CsvWriter, epochs_csv_path

ROWS = 2000
PROCESSES = 4


def _inputs(log_dir: Path) -> tuple[CsvWriter, RunInfo, EpochRecord, Prediction, Settings]:
    settings = make_settings(log_dir=log_dir, epochs=100)
    run = RunInfo(
        run_id="bench",
        started_at=time.time(),
        devices=(),
        unavailable=(),
        location=Location(country="DK", region="DK-DK1", source="bench"),
        pid=0,
        epochs=100,
        components=("cpu", "gpu"),
    )
    epoch = EpochRecord(
        index=1,
        started_at=time.time(),
        duration_s=12.5,
        energy_j=5123.25,
        co2eq_g=0.412,
        energy_by_component_j={"cpu": 1123.25, "gpu": 4000.0},
    )
    prediction = Prediction(
        after_epoch=1, epochs=100, duration_s=1250.0, energy_j=512325.0, co2eq_g=41.2, g_per_kwh=290
    )
    return CsvWriter(), run, epoch, prediction, settings


def _write_rows(log_dir: str, rows: int) -> None:
    writer, run, epoch, prediction, settings = _inputs(Path(log_dir))
    for i in range(rows):
        writer.carbontrack_epoch_ended(run, epoch, prediction if i % 10 == 0 else None, settings)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        writer, run, epoch, prediction, settings = _inputs(Path(tmp))
        times = []
        for i in range(ROWS):
            t0 = time.perf_counter()
            writer.carbontrack_epoch_ended(
                run, epoch, prediction if i % 10 == 0 else None, settings
            )
            times.append(time.perf_counter() - t0)
        median_us = statistics.median(times) * 1e6
        p99_us = sorted(times)[int(ROWS * 0.99)] * 1e6
        print(
            f"one thread: {ROWS} epoch rows, median {median_us:.1f} µs per row "
            f"(p99 {p99_us:.1f} µs)"
        )

    with tempfile.TemporaryDirectory() as tmp:
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=_write_rows, args=(tmp, ROWS)) for _ in range(PROCESSES)]
        t0 = time.perf_counter()
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        elapsed = time.perf_counter() - t0
        path = epochs_csv_path(make_settings(log_dir=tmp))
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        whole = all(len(r) == len(EPOCH_COLUMNS) for r in rows)
        headers = sum(r[0] == "run_id" for r in rows)
        print(
            f"{PROCESSES} processes x {ROWS} rows into one file: {len(rows) - 1} rows in "
            f"{elapsed:.2f} s including interpreter start "
            f"({(len(rows) - 1) / elapsed:,.0f} rows/s); "
            f"headers: {headers}, every row whole: {whole}"
        )


if __name__ == "__main__":
    main()
