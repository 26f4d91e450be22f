"""The values a plain run never builds: epochs, predictions, jobs, commands, samples, failures.

They are part of ``carbontrack.model`` (``from carbontrack.model import Prediction`` and
``carbontrack.Prediction`` work as for any other value) but live here so that a run loads them
only when it first uses one: generating an attrs class costs about half a millisecond in every
process, and ``with track(): pass`` needs none of these (docs/performance.md, "Start-up").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import attrs

from carbontrack._model_base import DeviceEnergy, Location

# No __all__: these are carbontrack.model's names (model._LATER lists them).


@attrs.frozen(kw_only=True)
class JobInfo:
    """This process's place in a multi-process job.

    ``rank`` is the global rank (0 .. ``world_size`` - 1); ``local_rank`` the rank among the
    job's processes on this node (``None`` when the launcher does not say); ``node`` the node's
    name (hostname, or ``$CARBONTRACK_NODE_NAME``); ``node_rank`` the node's index when the
    launcher gives one (torchrun's ``GROUP_RANK``, Slurm's ``SLURM_NODEID``); ``nodes`` the
    job's node names when the launcher lists them (Slurm). ``source`` names the launcher
    (``torchrun``, ``slurm``, ``openmpi``, ``mpich``, ``pmix``, ``tf_config``) or ``options``.
    """

    job_id: str
    rank: int
    world_size: int
    local_rank: int | None = None
    local_world_size: int | None = None
    node: str = ""
    node_rank: int | None = None
    nodes: tuple[str, ...] = ()
    source: str = "options"

    @property
    def is_rank_zero(self) -> bool:
        """True on the job's global rank 0: the process that writes the job's report."""
        return self.rank == 0

    @property
    def is_node_leader(self) -> bool:
        """True on the process that reads this node's node-wide hardware (local rank 0)."""
        return self.local_rank == 0

    @property
    def distributed(self) -> bool:
        """True for a job of more than one process."""
        return self.world_size > 1


@attrs.frozen
class PluginFailure:
    """A plugin raised while carbontrack called it; recorded instead of reaching user code."""

    plugin: str
    hook: str
    error: str
    count: int = 1


@attrs.frozen
class Prediction:
    """The predicted footprint of all ``epochs`` after ``after_epoch`` epochs were measured.

    ``*_low``/``*_high`` bound a prediction interval at ``level`` (``None`` with one epoch).
    ``g_per_kwh`` is the intensity the remaining epochs are predicted at (energy-weighted over
    the intensity forecast when ``forecast_used``). ``best_start_ts`` is the start time in the
    forecast horizon that minimises the CO2eq of the whole run, and ``best_start_saving_g``
    what that saves against starting the whole run now (both ``None`` without a forecast).
    ``trend`` says how a linear trend in epoch energy was handled (3 or more epochs in the
    mean): ``"modelled"`` (the trend is clear: the remaining epochs follow the fitted line) or
    ``"allowed for"`` (no clear trend: the mean, with an interval wide enough for a trend the
    epochs cannot rule out); ``trend_j_per_epoch`` is the fitted slope.
    """

    after_epoch: int
    epochs: int
    duration_s: float
    energy_j: float
    co2eq_g: float
    g_per_kwh: float
    duration_s_low: float | None = None
    duration_s_high: float | None = None
    energy_j_low: float | None = None
    energy_j_high: float | None = None
    co2eq_g_low: float | None = None
    co2eq_g_high: float | None = None
    level: float | None = None
    epochs_in_mean: int = 1
    intensity_source: str = ""
    forecast_used: bool = False
    best_start_ts: float | None = None
    best_start_saving_g: float | None = None
    trend: str | None = None
    trend_j_per_epoch: float | None = None


@attrs.frozen
class EpochRecord:
    """One epoch: when it ran, how long, and what the devices drew (IT energy, before PUE)."""

    index: int
    started_at: float
    duration_s: float
    energy_j: float
    co2eq_g: float
    energy_by_component_j: Mapping[str, float] = attrs.field(factory=dict)


@attrs.frozen
class Command:
    """The command ``carbontrack run`` measured: its command line and how it ended.

    ``argv`` has secrets masked (``carbontrack._redact``). ``exit_code`` is what carbontrack
    exited with: the command's own code, 128+N when signal N killed it (``signal`` names it);
    ``None`` while it runs, so a checkpoint left by a killed carbontrack says the end is unknown.
    """

    argv: tuple[str, ...]
    exit_code: int | None = None
    signal: str | None = None


@attrs.frozen
class RankEnergy:
    """One process's own figures in a job's ledger (what it measured itself).

    ``leader`` is true for the process that read its node's node-wide hardware; ``final`` is
    false when the figures come from a checkpoint (the process was killed, or had not stopped
    when rank 0 wrote the job's report).
    """

    rank: int
    node: str
    local_rank: int | None = None
    pid: int = 0
    leader: bool = False
    started_at: float = 0.0
    duration_s: float = 0.0
    energy_j: float = 0.0
    co2eq_g: float = 0.0
    pue: float = 1.0
    g_per_kwh: float = 0.0
    location: Location | None = None
    devices: tuple[DeviceEnergy, ...] = ()
    epochs: tuple[EpochRecord, ...] = ()
    final: bool = True


@attrs.frozen
class NodeEnergy:
    """One node's share of a job: the energy its processes measured, and where it ran.

    ``leader_rank`` is the rank that read the node-wide hardware, ``None`` when no such
    figures arrived (then the node's CPU, DRAM and other node-wide energy is missing).
    """

    node: str
    energy_j: float
    co2eq_g: float
    ranks: tuple[int, ...]
    leader_rank: int | None
    devices: tuple[str, ...] = ()
    g_per_kwh: float = 0.0
    location: Location | None = None


@attrs.frozen
class JobReport:
    """A run's place in a multi-process job, and on rank 0 the job's ledger.

    ``scope`` is ``"job"`` on rank 0 (the report's totals cover every node: ``nodes`` breaks
    them down, ``ranks`` lists what each process measured) and ``"rank"`` on the other ranks
    (their totals are their own: the GPUs they own, plus the node-wide hardware on a node
    leader). ``measured_by`` says, on a process that read no node-wide hardware, which process
    did. ``missing`` names, in words, what the job's figures lack (``partial``).
    """

    job_id: str
    rank: int
    world_size: int
    node: str
    local_rank: int | None = None
    source: str = ""
    scope: Literal["job", "rank"] = "rank"
    measured_by: str = ""
    ranks: tuple[RankEnergy, ...] = ()
    nodes: tuple[NodeEnergy, ...] = ()
    missing_ranks: tuple[int, ...] = ()
    missing_nodes: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    partial: bool = False
    transport: str = ""


@attrs.frozen
class Sample:
    """A light view of a running measurement after one background read (see the
    ``carbontrack_sample`` hook): every device's energy so far, and the run's totals.

    ``at`` is the sampler's monotonic clock (seconds; only differences mean anything) and
    ``duration_s`` the time since the run started. ``co2eq_g`` uses the intensity known for the
    whole window; the checkpoint and final reports weight it over time where a provider gives a
    time series, so it can differ slightly from theirs.
    """

    run_id: str
    at: float
    duration_s: float
    devices: tuple[DeviceEnergy, ...]
    energy_j: float
    co2eq_g: float
    g_per_kwh: float


# They are carbontrack.model's values: reprs, pickles and type hints name that module (whose
# namespace resolves every name their annotations use, with this one's: model._hint_namespace).
for _cls in [v for v in list(globals().values()) if isinstance(v, type) and attrs.has(v)]:
    if _cls.__module__ == __name__:
        _cls.__module__ = "carbontrack.model"
del _cls
