"""Job detection from launcher environments (carbontrack.detect_job)."""

from __future__ import annotations

import socket

import pytest

import carbontrack
from carbontrack import InvalidOption, detect_job
from carbontrack._job import expand_hostlist
from carbontrack.testing.launchers import hydra_env, mpirun_env, srun_env, torchrun_env


def test_no_launcher_is_a_single_process() -> None:
    assert detect_job({}) is None


def test_torchrun_worker_is_detected_with_rank_node_and_run_id() -> None:
    env = torchrun_env(5, nproc_per_node=4, nnodes=2, run_id="abc")
    job = detect_job(env)
    assert job is not None
    assert (job.rank, job.local_rank, job.world_size, job.local_world_size) == (5, 1, 8, 4)
    assert job.node_rank == 1
    assert job.job_id == "torchrun-abc"
    assert job.source == "torchrun"
    assert job.node == socket.gethostname()
    assert not job.is_rank_zero
    assert not job.is_node_leader
    assert job.distributed


def test_a_restarted_torchrun_job_is_a_new_ledger() -> None:
    first = detect_job(torchrun_env(0, nproc_per_node=2, run_id="x"))
    again = detect_job(torchrun_env(0, nproc_per_node=2, run_id="x", restart_count=1))
    assert first is not None
    assert again is not None
    assert first.job_id != again.job_id


def test_srun_task_is_detected_with_job_step_and_node_list() -> None:
    env = srun_env(3, ntasks_per_node=2, nodes=("gpu01", "gpu02"), job_id=77, step_id=1)
    job = detect_job(env)
    assert job is not None
    assert (job.rank, job.local_rank, job.world_size, job.node_rank) == (3, 1, 4, 1)
    assert job.job_id == "slurm-77.1"
    assert job.nodes == ("gpu01", "gpu02")


def test_a_slurm_batch_script_without_a_step_is_one_process() -> None:
    env = srun_env(0, ntasks_per_node=4, nodes=("a",))
    del env["SLURM_STEP_ID"], env["SLURM_STEPID"]
    assert detect_job(env) is None


def test_torchrun_inside_slurm_uses_torchruns_ranks() -> None:
    env = {**srun_env(1, ntasks_per_node=1), **torchrun_env(6, nproc_per_node=4, nnodes=2)}
    job = detect_job(env)
    assert job is not None
    assert job.source == "torchrun"
    assert job.rank == 6


def test_open_mpi_rank_is_detected() -> None:
    job = detect_job(mpirun_env(2, local_size=2, size=4, jobid="99"))
    assert job is not None
    assert (job.rank, job.local_rank, job.world_size, job.job_id) == (2, 0, 4, "ompi-99")
    assert job.is_node_leader


def test_mpich_hydra_rank_has_no_job_id_outside_slurm() -> None:
    job = detect_job(hydra_env(1, local_size=2, size=2))
    assert job is not None
    assert (job.rank, job.local_rank, job.job_id) == (1, 1, "")


def test_mpich_inside_slurm_takes_the_step_as_job_id() -> None:
    env = {**srun_env(0, ntasks_per_node=1, job_id=5), **hydra_env(1, local_size=2, size=2)}
    job = detect_job(env)
    assert job is not None
    assert job.source == "mpich"
    assert job.job_id == "slurm-5.0"


def test_pmix_rank_with_slurm_task_count() -> None:
    env = {"PMIX_RANK": "3", "PMIX_NAMESPACE": "slurm.pmix.12.0", "SLURM_NTASKS": "4"}
    job = detect_job(env)
    assert job is not None
    assert (job.rank, job.world_size) == (3, 4)
    assert job.job_id == "pmix-slurm.pmix.12.0"


def test_explicit_options_win_over_the_environment() -> None:
    env = torchrun_env(1, nproc_per_node=2)
    job = detect_job(env, rank=0, local_rank=0, job_id="mine", node="n7")
    assert job is not None
    assert (job.rank, job.job_id, job.node) == (0, "mine", "n7")


def test_distributed_false_switches_detection_off() -> None:
    assert detect_job(torchrun_env(1, nproc_per_node=2), distributed=False) is None


def test_distributed_true_without_a_launcher_says_what_to_pass() -> None:
    with pytest.raises(InvalidOption, match=r"rank= and world_size="):
        detect_job({}, distributed=True)


def test_explicit_rank_without_world_size_is_an_error() -> None:
    with pytest.raises(InvalidOption, match=r"both rank= and world_size="):
        detect_job({}, rank=1)


def test_rank_beyond_world_size_names_both_values() -> None:
    with pytest.raises(InvalidOption, match=r"rank=5 .*0 <= rank < world_size=2"):
        detect_job({}, rank=5, world_size=2, job_id="j")


def test_contradictory_launcher_variables_name_the_source() -> None:
    env = torchrun_env(0, nproc_per_node=2) | {"RANK": "7"}
    with pytest.raises(InvalidOption, match=r"rank=7 \(from the torchrun environment\)"):
        detect_job(env)


def test_garbled_launcher_variable_names_the_variable() -> None:
    env = torchrun_env(0, nproc_per_node=2) | {"LOCAL_RANK": "zero"}
    with pytest.raises(InvalidOption, match=r"\$LOCAL_RANK='zero'"):
        detect_job(env)


def test_node_name_override_for_containers_and_tests() -> None:
    env = torchrun_env(0, nproc_per_node=2) | {"CARBONTRACK_NODE_NAME": "node-b"}
    job = detect_job(env)
    assert job is not None
    assert job.node == "node-b"


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("gpu01", ("gpu01",)),
        ("gpu[01-03]", ("gpu01", "gpu02", "gpu03")),
        ("a[1,3-4],login", ("a1", "a3", "a4", "login")),
        ("r[1-2]n[7-8]", ("r1n7", "r1n8", "r2n7", "r2n8")),
    ],
)
def test_slurm_host_lists_expand(text: str, names: tuple[str, ...]) -> None:
    assert expand_hostlist(text) == names


def test_malformed_host_list_raises() -> None:
    with pytest.raises(ValueError, match="host list"):
        expand_hostlist("gpu[01-")


def test_detection_is_exported_lazily_and_light() -> None:
    assert carbontrack.detect_job is detect_job
    assert carbontrack.JobInfo.__name__ == "JobInfo"
