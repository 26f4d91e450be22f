"""The environments that job launchers give each process, for tests of job detection.

Each function returns the variables one process of a job sees (merge them into a copy of
``os.environ`` for a subprocess): ``torchrun_env`` as torchrun sets them, ``srun_env`` as Slurm's
srun sets them in a task, ``mpirun_env`` as Open MPI's mpirun does, ``hydra_env`` as MPICH's
and Intel MPI's mpiexec.hydra do, and ``tf_config_env`` as TensorFlow's ``TF_CONFIG`` for one
task of a multi-worker job (as Kubeflow's TFJob or a job script sets it). Only the variables
carbontrack reads, and those that a launcher sets beside them, are included; sources are cited
in ``carbontrack._job``.
"""

from __future__ import annotations

__all__ = ["hydra_env", "mpirun_env", "srun_env", "tf_config_env", "torchrun_env"]


def _block(rank: int, per_node: int) -> tuple[int, int]:
    # Launchers place ranks on nodes in blocks by default (torchrun always; srun's default
    # "block" distribution; mpirun's --map-by slot): ranks 0..n-1 on the first node, and so on.
    return rank // per_node, rank % per_node


def torchrun_env(
    rank: int,
    *,
    nproc_per_node: int,
    nnodes: int = 1,
    run_id: str = "fake-run",
    master_addr: str = "127.0.0.1",
    master_port: int = 29500,
    restart_count: int = 0,
) -> dict[str, str]:
    """What a torchrun worker of global ``rank`` sees (``--nnodes``, ``--nproc-per-node``)."""
    node, local = _block(rank, nproc_per_node)
    world = nnodes * nproc_per_node
    return {
        "RANK": str(rank),
        "LOCAL_RANK": str(local),
        "WORLD_SIZE": str(world),
        "LOCAL_WORLD_SIZE": str(nproc_per_node),
        "GROUP_RANK": str(node),
        "GROUP_WORLD_SIZE": str(nnodes),
        "ROLE_RANK": str(rank),
        "ROLE_WORLD_SIZE": str(world),
        "ROLE_NAME": "default",
        "MASTER_ADDR": master_addr,
        "MASTER_PORT": str(master_port),
        "TORCHELASTIC_RUN_ID": run_id,
        "TORCHELASTIC_RESTART_COUNT": str(restart_count),
        "TORCHELASTIC_MAX_RESTARTS": "0",
    }


def srun_env(
    rank: int,
    *,
    ntasks_per_node: int,
    nodes: tuple[str, ...] = ("node1", "node2"),
    job_id: int = 4242,
    step_id: int = 0,
) -> dict[str, str]:
    """What task ``rank`` of ``srun --ntasks-per-node=N`` over ``nodes`` sees (block layout)."""
    node, local = _block(rank, ntasks_per_node)
    ntasks = ntasks_per_node * len(nodes)
    nodelist = ",".join(nodes)
    return {
        "SLURM_JOB_ID": str(job_id),
        "SLURM_JOBID": str(job_id),
        "SLURM_STEP_ID": str(step_id),
        "SLURM_STEPID": str(step_id),
        "SLURM_PROCID": str(rank),
        "SLURM_LOCALID": str(local),
        "SLURM_NODEID": str(node),
        "SLURM_NTASKS": str(ntasks),
        "SLURM_NPROCS": str(ntasks),
        "SLURM_STEP_NUM_TASKS": str(ntasks),
        "SLURM_STEP_NUM_NODES": str(len(nodes)),
        "SLURM_NNODES": str(len(nodes)),
        "SLURM_JOB_NUM_NODES": str(len(nodes)),
        "SLURM_STEP_NODELIST": nodelist,
        "SLURM_JOB_NODELIST": nodelist,
        "SLURM_NODELIST": nodelist,
        "SLURM_TASKS_PER_NODE": f"{ntasks_per_node}(x{len(nodes)})",
        "SLURM_STEP_TASKS_PER_NODE": f"{ntasks_per_node}(x{len(nodes)})",
        "SLURMD_NODENAME": nodes[node],
    }


def mpirun_env(
    rank: int, *, local_size: int, size: int, jobid: str = "1234567890"
) -> dict[str, str]:
    """What Open MPI's mpirun gives rank ``rank`` of ``size`` (``local_size`` per node)."""
    _, local = _block(rank, local_size)
    return {
        "OMPI_COMM_WORLD_RANK": str(rank),
        "OMPI_COMM_WORLD_SIZE": str(size),
        "OMPI_COMM_WORLD_LOCAL_RANK": str(local),
        "OMPI_COMM_WORLD_LOCAL_SIZE": str(local_size),
        "OMPI_COMM_WORLD_NODE_RANK": str(local),
        "OMPI_UNIVERSE_SIZE": str(size),
        "OMPI_MCA_orte_ess_jobid": jobid,
    }


def hydra_env(rank: int, *, local_size: int, size: int) -> dict[str, str]:
    """What MPICH's or Intel MPI's mpiexec.hydra gives rank ``rank`` of ``size``."""
    _, local = _block(rank, local_size)
    return {
        "PMI_RANK": str(rank),
        "PMI_SIZE": str(size),
        "MPI_LOCALRANKID": str(local),
        "MPI_LOCALNRANKS": str(local_size),
    }


def tf_config_env(
    task_type: str,
    index: int,
    *,
    chief: int = 1,
    workers: int = 2,
    ps: int = 0,
    evaluator: int = 0,
    host: str = "localhost",
    first_port: int = 12345,
) -> dict[str, str]:
    """``TF_CONFIG`` of task ``task_type`` ``index`` in a cluster of that many tasks of each type.

    Each task gets its own ``host:port`` (ports counted up from ``first_port``), as in
    TensorFlow's multi-worker examples.
    """
    import json

    ports = iter(range(first_port, first_port + chief + workers + ps + evaluator))
    cluster = {
        name: [f"{host}:{next(ports)}" for _ in range(count)]
        for name, count in (
            ("chief", chief),
            ("worker", workers),
            ("ps", ps),
            ("evaluator", evaluator),
        )
        if count
    }
    return {
        "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})
    }
