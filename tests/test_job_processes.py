"""Jobs of real processes: real ``torchrun`` (gloo on CPU) and separate processes driven by
Slurm's and torchrun's environment variables, each "node" with its own fake powercap tree.

The node's true energy is its package's watts times the time its leader measured: the fake
tree (``FakePowercap.live``) advances its counters in real time, as the kernel does. Two nodes
on one machine are told apart by ``$CARBONTRACK_NODE_NAME`` and ``$CARBONTRACK_POWERCAP_ROOT``:
the test seam documented in docs/clusters.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from carbontrack.model import Report
from carbontrack.testing.launchers import srun_env, torchrun_env
from carbontrack.testing.powercap import FakePowercap

pytest.importorskip("torch")

WORKER = Path(__file__).with_name("job_worker.py")


@contextlib.contextmanager
def _node(base: Path, watts: float) -> Iterator[FakePowercap]:
    tree = FakePowercap(base, clock=time.monotonic)
    tree.add_package(0, watts)
    with tree.live():
        yield tree


def _env(node: str, tree: FakePowercap, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "CARBONTRACK_POWERCAP_ROOT": str(tree.root),
            "CARBONTRACK_NODE_NAME": node,
            # Only the fake RAPL tree: no estimate beside it, no real GPU library.
            "CARBONTRACK_DISABLE_PLUGINS": "nvml,powermetrics,estimate",
            "OMP_NUM_THREADS": "1",
        }
    )
    env.update(extra or {})
    return env


def _results(out: Path) -> dict[int, dict[str, Any]]:
    results = {}
    for path in out.glob("rank*.json"):
        data = json.loads(path.read_text())
        data["report"] = Report.from_dict(data["report"])
        results[int(path.stem.removeprefix("rank"))] = data
    return results


def _leader_duration(report: Report, node: str) -> float:
    assert report.job is not None
    return next(r.duration_s for r in report.job.ranks if r.node == node and r.leader)


def _truth(report: Report, *nodes: tuple[float, str, FakePowercap]) -> Any:
    """The nodes' ``watts`` times their leaders' measured durations, as an approximate value.

    3 % for the reading processes' own jitter, plus what each fake can add: an edge read sees
    the counter as of its last sync, at most ``tree.max_staleness_s`` old (CI saw 4 % too much
    when a starved sync thread left a counter 16 ms stale at the start of a 0.4 s run).
    """
    truth = sum(watts * _leader_duration(report, node) for watts, node, _ in nodes)
    stale_j = sum(watts * tree.max_staleness_s for watts, _, tree in nodes)
    return pytest.approx(truth, rel=0, abs=0.03 * truth + stale_j)


def _torchrun(args: list[str], env: dict[str, str], *, timeout: float = 120) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]


def _cli_total_kwh(log_dir: Path) -> float:
    done = subprocess.run(
        [sys.executable, "-m", "carbontrack", "report", str(log_dir), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return float(json.loads(done.stdout)["total"]["energy_kwh"])


def test_torchrun_one_node_four_ranks_counts_the_node_once(tmp_path: Path) -> None:
    logs, out = tmp_path / "logs", tmp_path / "out"
    with _node(tmp_path / "hw", 100.0) as tree:
        _torchrun(
            ["--standalone", "--nproc_per_node", "4", str(WORKER), "--torch"]
            + ["--out", str(out), "--log-dir", str(logs), "--epochs", "3", "--epoch-s", "0.4"],
            _env("node-a", tree),
        )
    results = _results(out)
    assert sorted(results) == [0, 1, 2, 3]
    job = results[0]["report"]
    assert job.job is not None
    assert job.job.scope == "job"
    assert not job.job.partial, job.job.missing
    truth = _truth(job, (100.0, "node-a", tree))
    assert job.energy_j == truth
    assert "store" in job.job.transport
    for rank in (1, 2, 3):
        other = results[rank]["report"]
        assert other.energy_j == 0  # read nothing node-wide, says who did
        assert "node leader" in other.job.measured_by
    assert _cli_total_kwh(logs) * 3.6e6 == truth


def test_torchrun_two_nodes_sum_both_with_a_breakdown(tmp_path: Path) -> None:
    logs, out = tmp_path / "logs", tmp_path / "out"
    port = str(29_000 + os.getpid() % 1000)
    with _node(tmp_path / "hw-a", 100.0) as a, _node(tmp_path / "hw-b", 40.0) as b:
        procs = []
        for node_rank, (name, tree) in enumerate((("node-a", a), ("node-b", b))):
            cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2"]
            cmd += ["--node_rank", str(node_rank), "--nproc_per_node", "2"]
            cmd += ["--master_addr", "127.0.0.1", "--master_port", port, str(WORKER), "--torch"]
            cmd += ["--out", str(out), "--log-dir", str(logs), "--epochs", "3"]
            env = _env(name, tree)
            procs.append(subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True))
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err[-3000:]
    report = _results(out)[0]["report"]
    assert report.job is not None
    assert not report.job.partial, report.job.missing
    nodes = {n.node: n for n in report.job.nodes}
    assert set(nodes) == {"node-a", "node-b"}
    node_a, node_b = (100.0, "node-a", a), (40.0, "node-b", b)
    assert nodes["node-a"].energy_j == _truth(report, node_a)
    assert nodes["node-b"].energy_j == _truth(report, node_b)
    assert report.energy_j == _truth(report, node_a, node_b)
    assert _cli_total_kwh(logs) * 3.6e6 == _truth(report, node_a, node_b)


def test_torchrun_job_where_only_rank_zero_tracks_finishes(tmp_path: Path) -> None:
    logs, out = tmp_path / "logs", tmp_path / "out"
    with _node(tmp_path / "hw", 50.0) as tree:
        _torchrun(
            ["--standalone", "--nproc_per_node", "2", str(WORKER), "--torch"]
            + ["--out", str(out), "--log-dir", str(logs), "--epochs", "2"]
            + ["--track-ranks", "0", "--wait-s", "1.0"],
            _env("node-a", tree),
        )
    result = _results(out)[0]
    report = result["report"]
    assert report.job is not None
    assert report.job.partial
    assert report.job.missing_ranks == (1,)
    assert result["stop_s"] < 1.0 + 2.0  # the wait, plus a loaded machine's slack


def _plain_ranks(
    tmp_path: Path,
    envs: list[dict[str, str]],
    extra_args: list[str],
    log_dirs: list[Path] | None = None,
) -> dict[int, dict[str, Any]]:
    out = tmp_path / "out"
    procs = []
    for rank, env in enumerate(envs):
        log_dir = log_dirs[rank] if log_dirs else tmp_path / "logs"
        cmd = [sys.executable, str(WORKER), "--out", str(out), "--log-dir", str(log_dir)]
        procs.append(subprocess.Popen([*cmd, *extra_args], env=env, stderr=subprocess.PIPE))
    for p in procs:
        p.communicate(timeout=120)
    return _results(out)


def test_rank_killed_mid_run_leaves_rank_zero_partial(tmp_path: Path) -> None:
    port = str(30_000 + os.getpid() % 1000)
    with _node(tmp_path / "hw", 60.0) as tree:
        envs = [
            _env(
                "node-a",
                tree,
                torchrun_env(r, nproc_per_node=2, run_id="kill", master_port=int(port)),
            )
            for r in (0, 1)
        ]
        results = _plain_ranks(
            tmp_path,
            envs,
            ["--torch", "--no-collectives", "--die-rank", "1", "--wait-s", "1.0"]
            + ["--checkpoint-s", "0.2", "--epochs", "3"],
        )
    assert sorted(results) == [0]  # rank 1 died before writing anything
    report = results[0]["report"]
    assert report.job is not None
    assert report.job.partial
    assert report.partial
    assert any("rank(s) 1" in m for m in report.job.missing)


def _slurm_envs(trees: dict[str, FakePowercap]) -> list[dict[str, str]]:
    names = tuple(trees)
    return [
        _env(
            names[r // 2],
            trees[names[r // 2]],
            srun_env(r, ntasks_per_node=2, nodes=names, job_id=777),
        )
        for r in range(4)
    ]


def test_slurm_job_two_nodes_two_tasks_through_the_shared_log_dir(tmp_path: Path) -> None:
    with _node(tmp_path / "hw1", 90.0) as n1, _node(tmp_path / "hw2", 30.0) as n2:
        results = _plain_ranks(tmp_path, _slurm_envs({"node1": n1, "node2": n2}), ["--epochs", "3"])
    assert sorted(results) == [0, 1, 2, 3]
    report = results[0]["report"]
    assert report.job is not None
    assert report.job.transport == "log_dir"
    assert not report.job.partial, report.job.missing
    truth = _truth(report, (90.0, "node1", n1), (30.0, "node2", n2))
    assert report.energy_j == truth
    assert {n.node: n.ranks for n in report.job.nodes} == {"node1": (0, 1), "node2": (2, 3)}
    assert _cli_total_kwh(tmp_path / "logs") * 3.6e6 == truth


def test_a_log_dir_not_shared_between_nodes_names_the_unseen_node(tmp_path: Path) -> None:
    with _node(tmp_path / "hw1", 90.0) as n1, _node(tmp_path / "hw2", 30.0) as n2:
        dirs = [tmp_path / "logs1"] * 2 + [tmp_path / "logs2"] * 2  # node-local directories
        results = _plain_ranks(
            tmp_path,
            _slurm_envs({"node1": n1, "node2": n2}),
            # Long enough for rank 1 on a loaded machine; ranks 2 and 3 never arrive.
            ["--epochs", "1", "--wait-s", "4"],
            log_dirs=dirs,
        )
    report = results[0]["report"]
    assert report.job is not None
    assert report.job.partial
    assert report.job.missing_nodes == ("node2",), report.job.missing
    assert report.job.missing_ranks == (2, 3), report.job.missing
    assert any("node2" in m and "shared" in m for m in report.job.missing)
    # Node 1 only: node 2's 30 W would add a third.
    assert report.energy_j == _truth(report, (90.0, "node1", n1))


def test_report_reads_a_job_whose_rank_zero_was_killed_and_marks_it_partial(
    tmp_path: Path,
) -> None:
    with _node(tmp_path / "hw1", 90.0) as n1, _node(tmp_path / "hw2", 30.0) as n2:
        results = _plain_ranks(
            tmp_path,
            _slurm_envs({"node1": n1, "node2": n2}),
            ["--epochs", "3", "--die-rank", "0", "--checkpoint-s", "0.1"],
        )
    assert 0 not in results
    done = subprocess.run(
        [sys.executable, "-m", "carbontrack", "report", str(tmp_path / "logs"), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    data = json.loads(done.stdout)
    (row,) = data["runs"]
    assert row["complete"] is False
    assert "rank 0 wrote no final report" in row["note"]
    node2 = results[2]["report"]
    assert node2.job is not None
    # Node 2's leader finished; node 1's leader (rank 0) counts up to its last checkpoint.
    assert data["total"]["energy_kwh"] * 3.6e6 > node2.energy_j


def test_carbontrack_run_per_srun_task_measures_each_node_once(tmp_path: Path) -> None:
    logs, out = tmp_path / "logs", tmp_path / "out"
    out.mkdir()
    with _node(tmp_path / "hw1", 80.0) as n1, _node(tmp_path / "hw2", 20.0) as n2:
        procs = []
        for rank, env in enumerate(_slurm_envs({"node1": n1, "node2": n2})):
            cmd = [sys.executable, "-m", "carbontrack", "run", "-q", "--log-dir", str(logs)]
            cmd += ["--location", "DK", "--pue", "none", "--json", str(out / f"rank{rank}.json")]
            cmd += ["--job-wait", "15"]
            cmd += ["--", sys.executable, "-c", "import time; time.sleep(1.5)"]
            procs.append(subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True))
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
    reports = {
        r: Report.from_dict(json.loads((out / f"rank{r}.json").read_text())) for r in range(4)
    }
    job = reports[0]
    assert job.job is not None
    assert not job.job.partial, job.job.missing
    truth = _truth(job, (80.0, "node1", n1), (20.0, "node2", n2))
    assert job.energy_j == truth
    assert reports[1].energy_j == 0
    assert reports[3].energy_j == 0
    assert _cli_total_kwh(logs) * 3.6e6 == truth


def test_carbontrack_run_refuses_a_contradictory_launcher_environment(tmp_path: Path) -> None:
    env = dict(os.environ)
    env.update(srun_env(0, ntasks_per_node=2, nodes=("n1",)))
    env["SLURM_PROCID"] = "9"
    done = subprocess.run(
        [sys.executable, "-m", "carbontrack", "run", "--location", "DK", "--", "true"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "rank=9" in done.stderr
    assert "world_size=2" in done.stderr
