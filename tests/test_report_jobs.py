"""``carbontrack report`` over a multi-process job's per-rank run logs: one job, one row."""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path

import pytest

from carbontrack import Tracker, make_settings
from carbontrack.cli._report import configure_parser, run
from carbontrack.model import J_PER_KWH
from carbontrack.testing import FakeClock, FakeDevice, FakeHardware


def report(*argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    out, err = io.StringIO(), io.StringIO()
    code = run(parser.parse_args(list(argv)), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def _job(log_dir: Path, job_id: str = "j") -> float:
    """A 2-node x 2-rank job on a fake clock: node A's package draws 100 W, node B's 40 W,
    for 10 s. Returns the job's true energy (J)."""
    clock = FakeClock()
    trackers = []
    for rank in range(4):
        node = "A" if rank < 2 else "B"
        hw = FakeHardware(
            [FakeDevice("package-0", watts=100.0 if node == "A" else 40.0)], clock=clock
        )
        settings = make_settings(
            rank=rank,
            world_size=4,
            local_rank=rank % 2,
            job_id=job_id,
            node_name=node,
            log_dir=log_dir,
            verbose=0,
            pue=1.5,
            location="DK",
            epochs=2,
            job_wait_s=0.5,
        )
        trackers.append(Tracker(settings, plugins=[hw], autoload=False, clock=clock).start())
    for _ in range(2):
        for t in trackers:
            t.epoch_start()
        clock.advance(5.0)
        for t in trackers:
            t.epoch_end()
    for t in reversed(trackers):  # rank 0 last: the others' final figures are in by then
        t.stop()
    return 100.0 * 10 + 40.0 * 10


def test_a_jobs_rank_logs_are_one_run_and_the_total_counts_it_once(tmp_path: Path) -> None:
    truth = _job(tmp_path)
    code, out, err = report(str(tmp_path), "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["total"]["runs"] == 1
    assert data["total"]["energy_kwh"] == pytest.approx(truth / J_PER_KWH, rel=1e-6)
    assert data["total"]["facility_energy_kwh"] == pytest.approx(1.5 * truth / J_PER_KWH)
    (row,) = data["runs"]
    assert row["job_id"] == "j"
    assert row["ranks"] == 4
    assert row["complete"] is True
    assert row["epochs"] == 2


def test_by_node_and_by_rank_break_a_job_down(tmp_path: Path) -> None:
    _job(tmp_path)
    _, out, _ = report(str(tmp_path), "--json", "--by", "node")
    nodes = {r["node"]: r["energy_kwh"] * J_PER_KWH for r in json.loads(out)["runs"]}
    assert nodes == {"A": pytest.approx(1000.0), "B": pytest.approx(400.0)}
    _, out, _ = report(str(tmp_path), "--json", "--by", "rank")
    data = json.loads(out)
    ranks = {r["rank"]: r["energy_kwh"] * J_PER_KWH for r in data["runs"]}
    assert ranks == {0: pytest.approx(1000.0), 1: 0.0, 2: pytest.approx(400.0), 3: 0.0}
    assert data["total"]["energy_kwh"] * J_PER_KWH == pytest.approx(1400.0)


def test_csv_and_table_totals_count_the_job_once(tmp_path: Path) -> None:
    _job(tmp_path)
    _, out, _ = report(str(tmp_path), "--format", "csv", "--by", "rank")
    rows = list(csv.DictReader(io.StringIO(out)))
    # The CSV has no total row (a spreadsheet would sum it with the runs): its rows sum to it.
    assert len(rows) == 4
    assert sum(float(r["energy_kwh"]) for r in rows) * J_PER_KWH == pytest.approx(1400.0)
    _, out, _ = report(str(tmp_path), "--json", "--by", "rank")
    assert json.loads(out)["total"]["energy_kwh"] * J_PER_KWH == pytest.approx(1400.0)
    _, text, _ = report(str(tmp_path))
    assert "total (1 run)" in text
    assert "job j: 4 of 4 ranks on 2 node(s)" in text


def test_two_jobs_and_a_single_run_are_three_runs(tmp_path: Path) -> None:
    _job(tmp_path / "a", job_id="first")
    _job(tmp_path / "b", job_id="second")
    clock = FakeClock()
    hw = FakeHardware([FakeDevice("pkg", watts=10.0)], clock=clock)
    t = Tracker(
        make_settings(log_dir=tmp_path / "c", verbose=0, pue=1.5, location="DK"),
        plugins=[hw],
        autoload=False,
        clock=clock,
    ).start()
    clock.advance(10.0)
    t.stop()
    _, out, _ = report(str(tmp_path), "--json")
    data = json.loads(out)
    assert data["total"]["runs"] == 3
    assert data["total"]["energy_kwh"] * J_PER_KWH == pytest.approx(2 * 1400.0 + 100.0)
