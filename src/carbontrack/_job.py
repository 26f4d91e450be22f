"""Which job this process belongs to: rank, node and job id, from the launcher's environment.

``detect_job()`` reads what torchrun, Slurm's srun, the MPI launchers and TensorFlow's
``TF_CONFIG`` set; explicit options win. Nothing here imports torch or talks to another process.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from carbontrack.errors import InvalidOption

if TYPE_CHECKING:
    from carbontrack.model import JobInfo

__all__ = [
    "LAUNCHERS",
    "NODE_NAME_ENV",
    "TF_CONFIG_ENV",
    "JobInfo",
    "detect_job",
    "expand_hostlist",
    "node_name",
]

#: Overrides the node's name (the hostname by default). For containers whose hostname is the
#: container's id rather than the machine's, and the test seam that lets one machine play two
#: nodes (each "node" also gets its own ``$CARBONTRACK_POWERCAP_ROOT``).
NODE_NAME_ENV = "CARBONTRACK_NODE_NAME"

#: Launchers recognised, in the order they are tried: a launcher started inside another's
#: allocation (torchrun or mpirun under Slurm) sets its own, more specific variables, which win.
#: ``TF_CONFIG`` (TensorFlow's multi-worker cluster spec, set by Kubeflow's TFJob, Vertex AI or
#: a job script) describes the training tasks themselves, so it wins over Slurm's allocation;
#: the per-process variables of torchrun or MPI, which a pod's TF_CONFIG may be inherited by,
#: win over it.
LAUNCHERS = ("torchrun", "openmpi", "pmix", "mpich", "tf_config", "slurm")

#: The environment variable TensorFlow's multi-worker strategies read the cluster from.
TF_CONFIG_ENV = "TF_CONFIG"


def node_name(env: Mapping[str, str] | None = None) -> str:
    """This node's name: ``$CARBONTRACK_NODE_NAME`` if set, else the hostname."""
    import socket  # here: a single process never needs it (see tests/test_lean.py)

    env = os.environ if env is None else env
    return env.get(NODE_NAME_ENV, "").strip() or socket.gethostname()


def _int(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return None
    try:
        return int(raw.strip())
    except ValueError:
        raise InvalidOption(
            f"${name}={raw!r} is not valid: expected an integer (set by the launcher). Unset it, "
            "or pass distributed=False (or rank= and world_size=) to track()"
        ) from None


def _first_int(env: Mapping[str, str], *names: str) -> int | None:
    for name in names:
        value = _int(env, name)
        if value is not None:
            return value
    return None


# Each reader returns (source, job id, rank, world size, local rank, local world size,
# node rank, node names) or None when its launcher's variables are absent.
_Found = tuple[str, str, int, int, int | None, int | None, int | None, tuple[str, ...]]


def _torchrun(env: Mapping[str, str]) -> _Found | None:
    # torchrun sets RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, GROUP_RANK (the node's
    # index), TORCHELASTIC_RUN_ID and TORCHELASTIC_RESTART_COUNT in every worker
    # (https://docs.pytorch.org/docs/stable/elastic/run.html, "Environment Variables"; Lightning's
    # TorchElasticEnvironment detects it by RANK, GROUP_RANK, LOCAL_RANK, LOCAL_WORLD_SIZE).
    # torch.distributed's env:// init (and launchers that mimic it) sets RANK and WORLD_SIZE.
    rank = _int(env, "RANK")
    world = _int(env, "WORLD_SIZE")
    if rank is None or world is None:
        return None
    run_id = env.get("TORCHELASTIC_RUN_ID", "").strip()
    restart = env.get("TORCHELASTIC_RESTART_COUNT", "").strip()
    if run_id and run_id != "none":
        # A restarted job is a new set of processes: its ledger must not mix with the last one.
        job_id = f"torchrun-{run_id}" + (f"-r{restart}" if restart and restart != "0" else "")
    else:
        master = env.get("MASTER_ADDR", "").strip()
        port = env.get("MASTER_PORT", "").strip()
        job_id = f"torch-{master}-{port}" if master and port else ""
    return (
        "torchrun",
        job_id,
        rank,
        world,
        _int(env, "LOCAL_RANK"),
        _int(env, "LOCAL_WORLD_SIZE"),
        _first_int(env, "GROUP_RANK", "NODE_RANK"),
        (),
    )


def _openmpi(env: Mapping[str, str]) -> _Found | None:
    # Open MPI defines OMPI_COMM_WORLD_{RANK,SIZE,LOCAL_RANK,LOCAL_SIZE} in every process
    # (https://docs.open-mpi.org/en/v5.0.x/tuning-apps/environment-var.html). Its
    # OMPI_COMM_WORLD_NODE_RANK counts across all jobs on the node, so it is not used.
    rank = _int(env, "OMPI_COMM_WORLD_RANK")
    world = _int(env, "OMPI_COMM_WORLD_SIZE")
    if rank is None or world is None:
        return None
    job = env.get("OMPI_MCA_orte_ess_jobid", "").strip() or env.get("PMIX_NAMESPACE", "").strip()
    return (
        "openmpi",
        f"ompi-{job}" if job else "",
        rank,
        world,
        _int(env, "OMPI_COMM_WORLD_LOCAL_RANK"),
        _int(env, "OMPI_COMM_WORLD_LOCAL_SIZE"),
        None,
        (),
    )


def _pmix(env: Mapping[str, str]) -> _Found | None:
    # PMIx launchers (prterun, srun --mpi=pmix) export PMIX_RANK and PMIX_NAMESPACE (the job's
    # namespace, https://openpmix.github.io/support/faq/rm-provided-information); the size is
    # not in the environment, so PMI_SIZE or Slurm's task count supplies it when present.
    rank = _int(env, "PMIX_RANK")
    if rank is None:
        return None
    world = _first_int(env, "PMI_SIZE", "SLURM_STEP_NUM_TASKS", "SLURM_NTASKS")
    if world is None:
        return None
    namespace = env.get("PMIX_NAMESPACE", "").strip()
    return (
        "pmix",
        f"pmix-{namespace}" if namespace else "",
        rank,
        world,
        _first_int(env, "MPI_LOCALRANKID", "SLURM_LOCALID"),
        _first_int(env, "MPI_LOCALNRANKS"),
        None,
        (),
    )


def _mpich(env: Mapping[str, str]) -> _Found | None:
    # MPICH's and Intel MPI's Hydra (mpiexec.hydra) set PMI_RANK and PMI_SIZE, and the local
    # rank as MPI_LOCALRANKID with MPI_LOCALNRANKS (https://rmeli.github.io/TIL/hpc/mpi; the
    # local variables as read by ProPainter's core/dist.py on Hugging Face).
    rank = _int(env, "PMI_RANK")
    world = _int(env, "PMI_SIZE")
    if rank is None or world is None:
        return None
    return (
        "mpich",
        "",
        rank,
        world,
        _int(env, "MPI_LOCALRANKID"),
        _int(env, "MPI_LOCALNRANKS"),
        None,
        (),
    )


def _slurm(env: Mapping[str, str]) -> _Found | None:
    # srun sets, in each task, SLURM_JOB_ID, SLURM_STEP_ID, SLURM_PROCID (global rank),
    # SLURM_LOCALID (rank on the node), SLURM_NODEID (the node's index in the step),
    # SLURM_STEP_NUM_TASKS / SLURM_NTASKS and SLURM_STEP_NODELIST (srun(1), "OUTPUT
    # ENVIRONMENT VARIABLES", https://slurm.schedmd.com/srun.html; a real task's environment in
    # https://gist.github.com/jerinphilip/212b3814264c3b8da512afc2cfda4bcb). A batch script
    # itself is one process and has no step id: it is not treated as a multi-process job.
    step = env.get("SLURM_STEP_ID", env.get("SLURM_STEPID", "")).strip()
    job = env.get("SLURM_JOB_ID", env.get("SLURM_JOBID", "")).strip()
    rank = _int(env, "SLURM_PROCID")
    if not step or not job or rank is None:
        return None
    world = _first_int(env, "SLURM_STEP_NUM_TASKS", "SLURM_NTASKS", "SLURM_NPROCS")
    if world is None:
        return None
    nodelist = env.get("SLURM_STEP_NODELIST", env.get("SLURM_JOB_NODELIST", "")).strip()
    try:
        nodes = expand_hostlist(nodelist) if nodelist else ()
    except ValueError:
        nodes = ()  # an unusual list only costs the names of unseen nodes
    return (
        "slurm",
        f"slurm-{job}.{step}",
        rank,
        world,
        _int(env, "SLURM_LOCALID"),
        None,
        _int(env, "SLURM_NODEID"),
        nodes,
    )


class _NotAJob(Exception):
    """TF_CONFIG does not place this process in a training job: why, for the report."""


def _tf_config(env: Mapping[str, str]) -> _Found | None:
    # TF_CONFIG is JSON: {"cluster": {"chief": ["host:port"], "worker": ["host:port", ...],
    # "ps": [...], "evaluator": [...]}, "task": {"type": "worker", "index": 0}}
    # (https://www.tensorflow.org/api_docs/python/tf/distribute/cluster_resolver/
    # TFConfigClusterResolver; the multi-worker Keras tutorial sets it per worker). Ranks follow
    # TensorFlow's own numbering (tensorflow/python/distribute/multi_worker_util.py,
    # worker_count and id_in_cluster): the chief (at most one) is 0, worker i is i + the number
    # of chiefs, and the job is the chief and worker tasks. "ps" tasks (parameter servers) and
    # the "evaluator" (its own cluster, TensorFlow says) run no training epochs of the job:
    # they are measured alone. A TF_CONFIG that cannot be read never stops training: it is a
    # warning in the report (see detect_job's ``problems``) and the process is measured alone.
    raw = env.get(TF_CONFIG_ENV, "").strip()
    if not raw:
        return None
    import json  # here: only a process with TF_CONFIG pays for it

    try:
        config = json.loads(raw)
    except ValueError as exc:
        raise _NotAJob(f"is not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise _NotAJob(f"is JSON {type(config).__name__}, not an object")
    cluster = config.get("cluster")
    task = config.get("task")
    if not cluster and not task:
        return None  # {} or no cluster: TensorFlow runs locally, one process
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise _NotAJob('needs both "cluster" and "task" objects')
    for name, addresses in cluster.items():
        if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
            raise _NotAJob(f'has cluster "{name}": {addresses!r}, expected a list of "host:port"')
    kind, index = task.get("type"), task.get("index", 0)
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise _NotAJob(f'has task "index": {index!r}, expected an integer >= 0')
    if kind in ("ps", "evaluator"):
        raise _NotAJob(
            f'makes this process task "{kind}" {index}, not one of the chief and worker tasks '
            "that train"
        )
    if kind not in ("chief", "worker"):
        raise _NotAJob(
            f'has task "type": {kind!r}, expected "chief", "worker", "ps" or "evaluator"'
        )
    chiefs = cluster.get("chief", [])
    workers = cluster.get("worker", [])
    tasks = chiefs if kind == "chief" else workers
    if len(chiefs) > 1:
        raise _NotAJob(f"lists {len(chiefs)} chief tasks; TensorFlow allows at most one")
    if index >= len(tasks):
        raise _NotAJob(
            f'makes this process {kind} {index}, but the cluster lists {len(tasks)} "{kind}" tasks'
        )
    # The collective leader's address (chief, else worker 0) is the same in every task of the
    # job and differs from any job running beside it: the job's id, as for torch's MASTER_ADDR.
    host, _, port = (chiefs or workers)[0].rpartition(":")
    return (
        "tf_config",
        f"tf-{host}-{port}" if host and port else "",
        index + len(chiefs) if kind == "worker" else 0,
        len(chiefs) + len(workers),
        # Addresses name hosts in ways that need not match (an IP here, a name there): which
        # tasks share a node is left to the node's lock file, as for MPI without a local rank.
        None,
        None,
        None,
        (),
    )


_READERS = {
    "torchrun": _torchrun,
    "openmpi": _openmpi,
    "pmix": _pmix,
    "mpich": _mpich,
    "tf_config": _tf_config,
    "slurm": _slurm,
}


def _check(job: JobInfo, origin: str) -> None:
    def bad(what: str, value: object, expected: str) -> InvalidOption:
        return InvalidOption(
            f"{what}={value!r} ({origin}) is not valid: expected {expected}. Fix the launcher's "
            "variables or the options, or pass distributed=False to measure this process alone"
        )

    if job.world_size < 1:
        raise bad("world_size", job.world_size, "an integer >= 1")
    if not 0 <= job.rank < job.world_size:
        raise bad("rank", job.rank, f"0 <= rank < world_size={job.world_size}")
    if job.local_rank is not None and not 0 <= job.local_rank < job.world_size:
        raise bad("local_rank", job.local_rank, f"0 <= local_rank < world_size={job.world_size}")
    if job.local_rank is not None and job.local_rank > job.rank:
        raise bad("local_rank", job.local_rank, f"at most rank={job.rank}")
    if job.local_world_size is not None and not 1 <= job.local_world_size <= job.world_size:
        raise bad("local_world_size", job.local_world_size, f"1 .. world_size={job.world_size}")


def detect_job(
    env: Mapping[str, str] | None = None,
    *,
    distributed: bool | None = None,
    job_id: str | None = None,
    rank: int | None = None,
    local_rank: int | None = None,
    world_size: int | None = None,
    node: str | None = None,
    problems: list[str] | None = None,
) -> JobInfo | None:
    """This process's job, or ``None`` for a single process outside any launcher.

    Reads torchrun/torch.distributed, Open MPI, PMIx, MPICH/Intel MPI, TensorFlow's
    ``TF_CONFIG`` and Slurm (srun) variables from ``env`` (default ``os.environ``), in the order
    of ``LAUNCHERS``; the keyword arguments (``track()``'s options of the same names) win over
    them. ``distributed=False`` always returns ``None``; ``distributed=True`` raises
    ``InvalidOption`` when no job can be found. A job of one process is returned too
    (``world_size == 1``): callers treat it like a single process.

    Raises ``InvalidOption`` for contradictions (``rank=5`` with ``world_size=2``), naming the
    value, where it came from and the fix. A ``TF_CONFIG`` that is not a usable cluster spec
    (bad JSON, an index past its task list) or that makes this process a ``ps`` or
    ``evaluator`` task is not an error: detection goes on as if it were unset, and a sentence
    saying so is appended to ``problems`` (the tracker puts it in the report's warnings).
    """
    if distributed is False:
        return None
    env = os.environ if env is None else env
    found: _Found | None = None
    for reader in _READERS.values():
        try:
            found = reader(env)
        except _NotAJob as why:
            if problems is not None:
                problems.append(
                    f"${TF_CONFIG_ENV} {why}: this process is not counted as a rank of a "
                    "TensorFlow job (measured alone, unless another launcher's variables "
                    "place it); fix TF_CONFIG, or pass rank=, world_size= and job_id="
                )
            found = None
        if found is not None:
            break
    explicit = {
        k: v
        for k, v in (("rank", rank), ("world_size", world_size), ("local_rank", local_rank))
        if v is not None
    }
    if found is None and not explicit and job_id is None:
        if distributed:
            raise InvalidOption(
                "distributed=True but no launcher was found (no torchrun, Slurm srun, MPI or "
                "TF_CONFIG variables): pass rank= and world_size= (and job_id=), or start the "
                "script with its launcher"
            )
        return None
    if found is None:
        if rank is None or world_size is None:
            raise InvalidOption(
                f"{', '.join(f'{k}={v!r}' for k, v in explicit.items()) or f'job_id={job_id!r}'}"
                " without a launcher: pass both rank= and world_size= (and job_id= shared by "
                "every process of the job)"
            )
        found = ("options", "", rank, world_size, local_rank, None, None, ())
    source, env_job, env_rank, env_world, env_local, local_world, node_rank, nodes = found
    # The value class loads with the first job found (carbontrack._model_later).
    from carbontrack.model import JobInfo

    info = JobInfo(
        job_id=job_id if job_id is not None else env_job,
        rank=rank if rank is not None else env_rank,
        world_size=world_size if world_size is not None else env_world,
        local_rank=local_rank if local_rank is not None else env_local,
        local_world_size=local_world,
        node=node if node else node_name(env),
        node_rank=node_rank,
        nodes=nodes,
        source=source if not explicit else f"{source}+options" if source != "options" else source,
    )
    if not info.job_id:
        # MPI launchers outside a scheduler may give no id; inside Slurm, the step is the job.
        slurm = _slurm(env)
        if slurm is not None:
            info = attrs.evolve(info, job_id=slurm[1], nodes=info.nodes or slurm[7])
    origin = "from options" if explicit else f"from the {source} environment"
    _check(info, origin)
    return info


_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


def expand_hostlist(text: str) -> tuple[str, ...]:
    """Expand a Slurm host list such as ``gpu[01-03,07],login1`` into node names.

    Raises ``ValueError`` for a malformed list.
    """
    names: list[str] = []
    i = 0
    while i < len(text):
        # One item: text up to a comma outside brackets.
        depth = 0
        j = i
        while j < len(text) and (text[j] != "," or depth):
            depth += {"[": 1, "]": -1}.get(text[j], 0)
            if depth < 0:
                raise ValueError(f"unbalanced ']' in host list {text!r}")
            j += 1
        if depth:
            raise ValueError(f"unbalanced '[' in host list {text!r}")
        names.extend(_expand_item(text[i:j], text))
        i = j + 1
    return tuple(n for n in names if n)


def _expand_item(item: str, whole: str) -> list[str]:
    start = item.find("[")
    if start < 0:
        return [item]
    end = item.index("]", start)
    prefix, body, rest = item[:start], item[start + 1 : end], item[end + 1 :]
    out: list[str] = []
    for part in body.split(","):
        m = _RANGE.match(part.strip())
        if m is None:
            raise ValueError(f"bad range {part!r} in host list {whole!r}")
        lo, hi = m.group(1), m.group(2) or m.group(1)
        width = len(lo)  # "01-03" keeps its zero padding
        for n in range(int(lo), int(hi) + 1):
            out.extend(f"{prefix}{n:0{width}d}{tail}" for tail in _expand_item(rest, whole))
    return out


def __getattr__(name: str) -> Any:
    # JobInfo lived here; it is carbontrack.model's now (loaded on first use).
    if name == "JobInfo":
        from carbontrack.model import JobInfo

        return JobInfo
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
