"""Job detection from TensorFlow's TF_CONFIG (multi-worker Keras), with fake environments."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from carbontrack import detect_job, track
from carbontrack._job import LAUNCHERS
from carbontrack.testing import FakeDevice, FakeHardware
from carbontrack.testing.launchers import srun_env, tf_config_env, torchrun_env


def _config(cluster: object, task: object) -> dict[str, str]:
    return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": task})}


def test_chief_and_workers_are_ranked_as_tensorflow_numbers_them() -> None:
    # multi_worker_util.id_in_cluster: the chief is 0, worker i is i + 1 (one chief).
    ranks = []
    ids = set()
    for kind, index in (("chief", 0), ("worker", 0), ("worker", 1)):
        job = detect_job(tf_config_env(kind, index, chief=1, workers=2))
        assert job is not None
        assert job.source == "tf_config"
        assert job.world_size == 3
        assert job.local_rank is None  # the node's lock file picks its leader
        ranks.append(job.rank)
        ids.add(job.job_id)
    assert ranks == [0, 1, 2]
    assert len(ids) == 1
    assert ids.pop().startswith("tf-localhost-")


def test_without_a_chief_worker_0_is_rank_0() -> None:
    job = detect_job(tf_config_env("worker", 0, chief=0, workers=3))
    assert job is not None
    assert (job.rank, job.world_size) == (0, 3)
    assert job.is_rank_zero
    last = detect_job(tf_config_env("worker", 2, chief=0, workers=3))
    assert last is not None
    assert last.rank == 2


def test_parameter_servers_and_evaluators_are_not_counted_in_the_world() -> None:
    worker = detect_job(tf_config_env("worker", 1, chief=1, workers=2, ps=2, evaluator=1))
    assert worker is not None
    assert (worker.rank, worker.world_size) == (2, 3)
    for kind in ("ps", "evaluator"):
        problems: list[str] = []
        env = tf_config_env(kind, 0, chief=1, workers=2, ps=2, evaluator=1)
        assert detect_job(env, problems=problems) is None
        (problem,) = problems
        assert f'task "{kind}" 0' in problem
        assert "not counted as a rank" in problem


def test_two_jobs_side_by_side_have_different_ids() -> None:
    one = detect_job(tf_config_env("chief", 0, first_port=2000))
    two = detect_job(tf_config_env("chief", 0, first_port=3000))
    assert one is not None
    assert two is not None
    assert one.job_id != two.job_id


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("{not json", "is not valid JSON"),
        ('["a list"]', "not an object"),
        (json.dumps({"cluster": {"worker": ["h:1"]}}), '"cluster" and "task"'),
        (json.dumps({"cluster": {"worker": "h:1"}, "task": {"type": "worker"}}), "list of"),
        (
            json.dumps({"cluster": {"worker": ["h:1"]}, "task": {"type": "worker", "index": "0"}}),
            "'0', expected an integer",
        ),
        (
            json.dumps({"cluster": {"worker": ["h:1"]}, "task": {"type": "worker", "index": 1}}),
            'worker 1, but the cluster lists 1 "worker"',
        ),
        (
            json.dumps({"cluster": {"chief": ["h:1", "h:2"]}, "task": {"type": "chief"}}),
            "2 chief tasks",
        ),
        (json.dumps({"cluster": {"master": ["h:1"]}, "task": {"type": "master"}}), "'master'"),
    ],
)
def test_an_unusable_tf_config_is_a_problem_not_a_crash(raw: str, says: str) -> None:
    problems: list[str] = []
    assert detect_job({"TF_CONFIG": raw}, problems=problems) is None
    (problem,) = problems
    assert problem.startswith("$TF_CONFIG ")
    assert says in problem
    assert "fix TF_CONFIG" in problem


def test_an_empty_tf_config_means_one_local_process() -> None:
    problems: list[str] = []
    assert detect_job({"TF_CONFIG": "{}"}, problems=problems) is None
    assert detect_job({"TF_CONFIG": " "}, problems=problems) is None
    assert problems == []
    single = detect_job(tf_config_env("chief", 0, chief=1, workers=0))
    assert single is not None
    assert not single.distributed  # a single-replica job (Vertex AI sets a lone chief)


def test_precedence_torchrun_wins_over_tf_config_which_wins_over_slurm() -> None:
    assert LAUNCHERS.index("torchrun") < LAUNCHERS.index("tf_config") < LAUNCHERS.index("slurm")
    tf = tf_config_env("worker", 1, chief=1, workers=2)
    under_torchrun = detect_job({**tf, **torchrun_env(3, nproc_per_node=4)})
    assert under_torchrun is not None
    assert (under_torchrun.source, under_torchrun.rank) == ("torchrun", 3)
    under_slurm = detect_job({**srun_env(0, ntasks_per_node=1), **tf})
    assert under_slurm is not None
    assert (under_slurm.source, under_slurm.rank, under_slurm.world_size) == ("tf_config", 2, 3)
    # A broken TF_CONFIG under Slurm leaves Slurm's ranks.
    problems: list[str] = []
    broken = detect_job({**srun_env(1, ntasks_per_node=1), "TF_CONFIG": "{"}, problems=problems)
    assert broken is not None
    assert (broken.source, broken.rank) == ("slurm", 1)
    assert len(problems) == 1


def test_explicit_options_win_over_tf_config() -> None:
    job = detect_job(tf_config_env("worker", 1), rank=0, job_id="mine")
    assert job is not None
    assert (job.rank, job.world_size, job.job_id) == (0, 3, "mine")


def test_a_run_with_a_broken_tf_config_measures_alone_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["h:1"]}, "task": ')
    hardware = FakeHardware([FakeDevice("package-0", watts=30.0)])
    with track(plugins=[hardware], verbose=0, log_dir=tmp_path) as run:
        pass
    report = run.report
    assert report is not None
    assert report.job is None  # a single process
    assert report.energy_j >= 0
    (warning,) = [w for w in report.warnings if "TF_CONFIG" in w]
    assert "is not valid JSON" in warning
