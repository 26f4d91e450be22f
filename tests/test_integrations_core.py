"""The framework-neutral part of the callbacks: ranks, jobs and the figures, without a framework."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from carbontrack import InvalidOption
from carbontrack.integrations._core import CO2EQ_G, ENERGY_KWH, Place, TrainingRun, place_from_env
from carbontrack.model import Report
from carbontrack.testing import FakeDevice, FakeHardware
from carbontrack.testing.launchers import torchrun_env

LAUNCHER_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture(autouse=True)
def _no_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*LAUNCHER_VARIABLES, "TORCHELASTIC_RUN_ID", "SLURM_PROCID", "SLURM_JOB_ID"):
        monkeypatch.delenv(name, raising=False)


def _options(log_dir: Path) -> dict[str, Any]:
    return {"verbose": 0, "interval_s": 0.01, "log_dir": log_dir, "job_wait_s": 5.0}


def _train(run: TrainingRun, place: Place, epochs: int = 2) -> dict[str, float]:
    run.start(epochs=epochs, place=place, limit=f"max_epochs={epochs}")
    figures: dict[str, float] = {}
    for _ in range(epochs):
        run.epoch_start()
        time.sleep(0.05)
        figures = run.epoch_end()
    run.finish()
    return figures


def test_the_ranks_of_a_job_run_one_ledger_with_the_frameworks_ranks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Lightning's own DDP launcher: ranks from the trainer, only the rendezvous address in the
    # environment, which gives the job its id. Ranks are threads here, on one node.
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29533")
    cpu = FakeHardware([FakeDevice("package-0", kind="cpu", watts=80.0)])
    other = FakeHardware([FakeDevice("package-0", kind="cpu", watts=80.0)])
    runs = {
        0: TrainingRun("Lightning", _options(tmp_path), plugins=[cpu], autoload=False),
        1: TrainingRun("Lightning", _options(tmp_path), plugins=[other], autoload=False),
    }
    figures: dict[int, dict[str, float]] = {}

    def rank(r: int) -> None:
        figures[r] = _train(runs[r], Place(rank=r, local_rank=r, world_size=2))

    threads = [threading.Thread(target=rank, args=(r,)) for r in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    zero, one = runs[0].report, runs[1].report
    assert isinstance(zero, Report)
    assert isinstance(one, Report)
    assert zero.job is not None
    assert zero.job.scope == "job"
    assert zero.job.job_id == "torch-127.0.0.1-29533"
    assert not zero.job.partial, zero.job.missing
    assert one.job is not None
    assert one.job.scope == "rank"
    assert other.reads == 0  # the node's CPU is read once, by local rank 0
    assert zero.energy_j == pytest.approx(cpu.true_energy_j, rel=0.05)
    assert figures[0][ENERGY_KWH] > 0
    assert figures[1] == {}  # only global rank 0 logs


def test_without_a_shared_id_each_node_leader_measures_alone_and_says_so(tmp_path: Path) -> None:
    hw = FakeHardware([FakeDevice("package-0", kind="cpu", watts=80.0)])
    follower = TrainingRun("Transformers", _options(tmp_path), plugins=[hw], autoload=False)
    assert _train(follower, Place(rank=1, local_rank=1, world_size=2)) == {}
    assert follower.report is None
    assert hw.reads == 0

    leader = TrainingRun("Transformers", _options(tmp_path), plugins=[hw], autoload=False)
    figures = _train(leader, Place(rank=0, local_rank=0, world_size=2))
    assert leader.report is not None
    assert leader.report.job is None
    assert any("no id shared by all of them" in w for w in leader.report.warnings)
    assert figures[CO2EQ_G] > 0


def test_a_job_id_given_by_the_user_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29534")
    hw = FakeHardware([FakeDevice("package-0", kind="cpu", watts=80.0)])
    run = TrainingRun(
        "Keras",
        {**_options(tmp_path), "job_id": "mine", "job_wait_s": 0.2},
        plugins=[hw],
        autoload=False,
    )
    _train(run, Place(rank=0, local_rank=0, world_size=2))
    assert run.report is not None
    assert run.report.job is not None
    assert run.report.job.job_id == "mine"
    assert run.report.job.partial  # rank 1 never came: a bounded wait, then a partial mark


def test_the_launchers_place_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert place_from_env() == Place()
    for name, value in torchrun_env(3, nproc_per_node=2, nnodes=2).items():
        monkeypatch.setenv(name, value)
    assert place_from_env() == Place(rank=3, local_rank=1, world_size=4)


def test_a_contradictory_rank_fails_before_training(tmp_path: Path) -> None:
    run = TrainingRun("Lightning", {**_options(tmp_path), "world_size": 2}, autoload=False)
    with pytest.raises(InvalidOption, match="rank"):
        run.start(epochs=2, place=Place(rank=5, local_rank=0, world_size=2))
