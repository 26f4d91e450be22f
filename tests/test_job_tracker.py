"""Job mode of the tracker: one reader per device, and rank 0's ledger (simulated ranks).

Ranks here are threads of one process with explicit job options (or launcher variables set
while each starts); each "node" has its own fake hardware. Real torchrun and real separate
processes are in test_job_processes.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from carbontrack import InvalidOption, Report, Tracker, track
from carbontrack.testing import FakeDevice, FakeHardware
from carbontrack.testing.launchers import hydra_env, torchrun_env

OPTIONS: dict[str, Any] = {"verbose": 0, "pue": 1.0, "location": "DK", "autoload": False}


def _node(cpu_w: float, gpus: int = 0, gpu_w: float = 50.0) -> FakeHardware:
    devices = [FakeDevice("package-0", kind="cpu", watts=cpu_w)]
    devices += [FakeDevice(f"GPU-{i}", kind="gpu", watts=gpu_w) for i in range(gpus)]
    return FakeHardware(devices, name="fakehw")


def _run_ranks(
    ranks: dict[int, Callable[[], Report]],
) -> dict[int, Report]:
    out: dict[int, Report] = {}
    errors: list[BaseException] = []

    def go(rank: int, fn: Callable[[], Report]) -> None:
        try:
            out[rank] = fn()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(r, fn)) for r, fn in ranks.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    if errors:
        raise errors[0]
    return out


def _rank(
    rank: int, world: int, local: int, node: str, hw: FakeHardware, log_dir: Path, **extra: Any
) -> Callable[[], Report]:
    def run() -> Report:
        with track(
            plugins=[hw],
            rank=rank,
            world_size=world,
            local_rank=local,
            job_id=f"job-{log_dir.name}",
            node_name=node,
            log_dir=log_dir,
            epochs=2,
            **OPTIONS,
            **extra,
        ) as tracker:
            for _ in range(2):
                with tracker.epoch():
                    time.sleep(0.15)
        return tracker.report

    return run


def test_a_single_process_outside_a_launcher_has_no_job(tmp_path: Path) -> None:
    with track(plugins=[_node(10.0)], log_dir=tmp_path, **OPTIONS) as run:
        time.sleep(0.05)
    assert run.report.job is None
    assert run.report.energy_j > 0


def test_only_the_node_leader_reads_node_wide_hardware(tmp_path: Path) -> None:
    a, b = _node(100.0), _node(100.0)
    reports = _run_ranks(
        {
            0: _rank(0, 2, 0, "n1", a, tmp_path),
            1: _rank(1, 2, 1, "n1", b, tmp_path),
        }
    )
    assert [d.id for d in reports[1].devices] == []
    assert reports[1].energy_j == 0
    assert "node leader" in reports[1].job.measured_by  # type: ignore[union-attr]
    assert b.reads == 0  # rank 1 never read the node's CPU
    assert reports[0].job is not None
    assert reports[0].job.measured_by == ""


def test_rank_zero_reports_the_sum_of_all_nodes_with_a_breakdown(tmp_path: Path) -> None:
    hw = {0: _node(100.0), 1: _node(100.0), 2: _node(40.0), 3: _node(40.0)}
    reports = _run_ranks(
        {
            r: _rank(r, 4, r % 2, "A" if r < 2 else "B", hw[r], tmp_path, interval_s=0.05)
            for r in range(4)
        }
    )
    job = reports[0].job
    assert job is not None
    assert job.scope == "job"
    assert not job.partial, job.missing
    by_node = {n.node: n for n in job.nodes}
    assert set(by_node) == {"A", "B"}
    assert by_node["A"].energy_j == pytest.approx(hw[0].true_energy_j, rel=0.03)
    assert by_node["B"].energy_j == pytest.approx(hw[2].true_energy_j, rel=0.03)
    truth = hw[0].true_energy_j + hw[2].true_energy_j
    assert reports[0].energy_j == pytest.approx(truth, rel=0.03)
    assert hw[1].reads == 0
    assert hw[3].reads == 0
    # The job's epochs and prediction cover both nodes too.
    assert sum(e.energy_j for e in reports[0].epochs) == pytest.approx(
        reports[0].energy_j, rel=0.2
    )
    # Rank 0 predicts the job's footprint (both nodes), not its own share.
    prediction = reports[0].predictions[0]
    assert prediction.after_epoch == 1
    assert prediction.energy_j == pytest.approx(2 * reports[0].epochs[0].energy_j, rel=0.1)
    own_first_epoch = reports[0].job.ranks[0].epochs[0].energy_j
    assert prediction.energy_j > 1.2 * 2 * own_first_epoch
    assert not reports[2].predictions  # the other ranks leave predicting to rank 0
    # Other ranks' reports stay their own.
    assert reports[2].energy_j == pytest.approx(hw[2].true_energy_j, rel=0.03)
    assert reports[2].job is not None
    assert reports[2].job.scope == "rank"


def test_each_gpu_is_read_by_the_rank_that_owns_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # torchrun, one node, 2 ranks, 3 GPUs visible to both: rank r reads cuda:r, the leader
    # also reads the GPU no rank owns; both processes see the same (shared) hardware.
    hw = _node(60.0, gpus=3)
    trackers = []
    for rank in (0, 1):
        for k, v in torchrun_env(rank, nproc_per_node=2, run_id="gpus").items():
            monkeypatch.setenv(k, v)
        t = track(plugins=[hw], log_dir=tmp_path, **OPTIONS).new_tracker()
        trackers.append(t.start())
    time.sleep(0.1)
    reports = _run_ranks({1: trackers[1].stop, 0: trackers[0].stop})
    assert sorted(d.id for d in reports[0].job.ranks[0].devices) == [  # type: ignore[union-attr]
        "GPU-0",
        "GPU-2",
        "package-0",
    ]
    assert [d.id for d in reports[1].devices] == ["GPU-1"]
    ids = [d.id for d in reports[0].devices]
    assert sorted(ids) == ["GPU-0", "GPU-1", "GPU-2", "package-0"]


def test_a_gpu_visible_to_two_ranks_counts_once(tmp_path: Path) -> None:
    # Two ranks each see one GPU with the same id (both bound to it): the ledger keeps one.
    shared = FakeDevice("GPU-shared", kind="gpu", watts=80.0)
    hw0 = FakeHardware([FakeDevice("package-0", watts=10.0), shared], name="fakehw")
    hw1 = FakeHardware([FakeDevice("GPU-shared", kind="gpu", watts=80.0)], name="fakehw")
    reports = _run_ranks(
        {0: _rank(0, 2, 0, "n", hw0, tmp_path), 1: _rank(1, 2, 1, "n", hw1, tmp_path)}
    )
    r0 = reports[0]
    assert [d.id for d in r0.devices].count("GPU-shared") == 1
    assert r0.energy_j == pytest.approx(hw0.true_energy_j, rel=0.03)
    assert any("counted once" in w for w in r0.warnings)


def test_when_only_rank_zero_tracks_it_finishes_within_the_wait(tmp_path: Path) -> None:
    started = time.monotonic()
    with track(
        plugins=[_node(50.0)],
        rank=0,
        world_size=2,
        local_rank=0,
        job_id="alone",
        log_dir=tmp_path,
        job_wait_s=0.5,
        **OPTIONS,
    ) as run:
        time.sleep(0.05)
        stopping = time.monotonic()
    took = time.monotonic() - stopping
    assert took < 0.5 + 1.5, f"stop() took {took:.2f} s"
    assert time.monotonic() - started < 5
    job = run.report.job
    assert job is not None
    assert job.partial
    assert run.report.partial
    assert job.missing_ranks == (1,)
    assert any("rank(s) 1 of 2 sent nothing" in m for m in job.missing)


class _HangingStore:
    """A torch.distributed store whose server no longer answers: every call blocks."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def _hang(self, *args: object) -> None:
        self.release.wait(30)
        raise ConnectionError("store went away")

    set = get = add = check = _hang


def test_an_unreachable_store_costs_a_bounded_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _HangingStore()
    monkeypatch.setattr(Tracker, "_store_finder", staticmethod(lambda: store))
    try:
        with track(
            plugins=[_node(50.0)],
            rank=0,
            world_size=2,
            local_rank=0,
            job_id="hang",
            log_dir=tmp_path,
            job_wait_s=0.3,
            epochs=2,
            **OPTIONS,
        ) as run:
            for _ in range(2):
                boundary = time.monotonic()
                with run.epoch():
                    time.sleep(0.02)
                assert time.monotonic() - boundary < 0.5  # epochs never wait for the store
            stopping = time.monotonic()
        assert time.monotonic() - stopping < 0.3 * 2 + 1.5
    finally:
        store.release.set()
    job = run.report.job
    assert job is not None
    assert job.partial
    assert any("store failed" in m for m in job.missing)


def test_rank_beyond_world_size_is_refused_before_anything_runs() -> None:
    with pytest.raises(InvalidOption, match=r"rank=5 .* world_size=2"):
        track(rank=5, world_size=2, job_id="j")


def test_a_job_without_an_id_is_refused_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in hydra_env(1, local_size=2, size=2).items():
        monkeypatch.setenv(k, v)
    tracker = track(plugins=[_node(1.0)], **OPTIONS).new_tracker()
    with pytest.raises(InvalidOption, match="job_id="):
        tracker.start()


def test_distributed_false_measures_this_process_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for k, v in torchrun_env(1, nproc_per_node=2).items():
        monkeypatch.setenv(k, v)
    with track(plugins=[_node(10.0)], distributed=False, log_dir=tmp_path, **OPTIONS) as run:
        time.sleep(0.02)
    assert run.report.job is None
    assert [d.id for d in run.report.devices] == ["package-0"]
