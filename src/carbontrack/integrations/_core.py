"""What the framework callbacks share: one carbontrack run driven by a training loop's hooks.

A framework says when training starts and ends and when each training epoch begins and ends;
``TrainingRun`` turns that into one ``Tracker`` run and hands back the figures to log. It knows
no framework, so it imports none.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from carbontrack._safe import safe
from carbontrack.errors import InvalidOption
from carbontrack.model import J_PER_KWH, EpochRecord, Report
from carbontrack.settings import Settings, make_settings

if TYPE_CHECKING:
    from carbontrack._tracker import Tracker

__all__ = [
    "CO2EQ_G",
    "ENERGY_KWH",
    "METRICS",
    "POWER_W",
    "PREDICTED_CO2EQ_G",
    "PREDICTED_ENERGY_KWH",
    "CallbackMixin",
    "Place",
    "TrainingRun",
    "place_from_env",
]

logger = logging.getLogger(__name__)

#: Device (IT) energy of the run so far, in kWh.
ENERGY_KWH = "carbontrack/energy_kwh"
#: CO2-equivalent of the run so far (facility energy, PUE included), in grams.
CO2EQ_G = "carbontrack/co2eq_g"
#: Mean device power over the epoch just ended (over the time since the last figures when
#: training is driven by steps), in watts.
POWER_W = "carbontrack/power_w"
#: The prediction of the whole run's CO2eq, in grams, made after this epoch.
PREDICTED_CO2EQ_G = "carbontrack/predicted_co2eq_g"
#: The prediction of the whole run's device energy, in kWh, made after this epoch.
PREDICTED_ENERGY_KWH = "carbontrack/predicted_energy_kwh"
METRICS = (ENERGY_KWH, CO2EQ_G, POWER_W, PREDICTED_CO2EQ_G, PREDICTED_ENERGY_KWH)


@attrs.frozen
class Place:
    """Where this process sits in a training job, as the framework (or the launcher) says.

    ``rank`` is the global rank, ``local_rank`` the rank on this node (``None``: not known),
    ``world_size`` the number of processes. Global rank 0 alone logs the figures and prints.
    """

    rank: int = 0
    local_rank: int | None = 0
    world_size: int = 1

    @property
    def logs(self) -> bool:
        """Whether this process puts figures in the framework's logs and prints."""
        return self.rank == 0


def place_from_env(env: Mapping[str, str] | None = None) -> Place:
    """This process's place from the launcher's environment (torchrun, Slurm, MPI, TF_CONFIG).

    A process started by no launcher, or in an environment that contradicts itself (the
    tracker reports that when it starts), is rank 0 of a job of one.
    """
    from carbontrack._job import detect_job

    try:
        job = detect_job(env)
    except InvalidOption:
        return Place()
    if job is None:
        return Place()
    return Place(rank=job.rank, local_rank=job.local_rank, world_size=job.world_size)


def _rendezvous_id(env: Mapping[str, str]) -> str:
    # torch.distributed's env:// rendezvous address is the same in every process of a job and
    # different from any job running beside it: the id the job module derives from it too.
    master = env.get("MASTER_ADDR", "").strip()
    port = env.get("MASTER_PORT", "").strip()
    return f"torch-{master}-{port}" if master and port else ""


class TrainingRun:
    """One carbontrack run per training, driven by the framework's hooks.

    ``options`` are ``track()``'s, validated here (at the callback's construction, before any
    training starts) by the same ``make_settings`` that ``track()`` uses. ``start()`` fills in
    ``epochs`` from the framework when the user gave none.
    """

    def __init__(
        self,
        framework: str,
        options: Mapping[str, Any],
        plugins: Sequence[object] = (),
        autoload: bool = True,
    ) -> None:
        self.framework = framework
        self._options = dict(options)
        self.settings: Settings = make_settings(**self._options)
        self._plugins = tuple(plugins)
        self._autoload = autoload
        self.tracker: Tracker | None = None
        self.report: Report | None = None
        self.place = Place()
        self.steps_total: int | None = None
        self._by_epochs = True
        self._epoch_open = False
        self._predictions_seen = 0
        # (duration_s, energy_j) when the figures were last given: power over the interval.
        self._mark = (0.0, 0.0)

    @property
    def running(self) -> bool:
        """Whether a run is being measured now."""
        return self.tracker is not None and self.tracker.running

    def start(
        self,
        *,
        epochs: int | None,
        place: Place,
        steps_total: int | None = None,
        limit: str = "",
        ranks_from_framework: bool = True,
        why_unplanned: str = "",
    ) -> None:
        """Start measuring a training of ``epochs`` epochs (``None``: not known).

        ``steps_total`` set means the training is driven by steps (``max_steps``): the run is
        measured whole, without epochs, and predictions come from progress. ``limit`` names the
        framework's setting for the report's note (``max_epochs=3``). In a job of several
        processes every process runs a tracker in carbontrack's job mode (one reader per device,
        rank 0's report is the job's), with the framework's ranks unless
        ``ranks_from_framework`` is false (the tracker reads the launcher's then).
        ``why_unplanned`` replaces the report's warning that nothing is predicted when there
        are no epochs to plan.
        """
        self.end_previous()
        self.report = None
        self.place = place
        self.steps_total = steps_total
        self._epoch_open = False
        self._predictions_seen = 0
        self._mark = (0.0, 0.0)
        job_options, alone = self._job_options(place, ranks_from_framework)
        if alone and place.local_rank not in (0, None):
            # No id shared by the job's processes: the node's local rank 0 measures the node.
            logger.debug("carbontrack: rank %d measures nothing; local rank 0 does", place.rank)
            self.tracker = None
            return
        given = self.settings.epochs
        planned = given if given is not None else (None if steps_total else epochs)
        self._by_epochs = planned is not None
        options = {**self._options, **job_options, "epochs": planned}
        if not place.logs:
            options["verbose"] = 0
        settings = make_settings(**options)

        from carbontrack._tracker import Tracker

        tracker = Tracker(settings, plugins=self._plugins, autoload=self._autoload)
        tracker.start()
        self.tracker = tracker
        if alone:
            tracker._warn(
                f"{self.framework} runs {place.world_size} processes, but no id shared by all of "
                "them was found (no launcher variables, no MASTER_ADDR/MASTER_PORT): each node's "
                "local rank 0 measured its node alone, and no job total was made; pass job_id= "
                "(the same string in every process) for one"
            )
        if given is not None and epochs is not None and given != epochs and not steps_total:
            tracker._warn(
                f"epochs={given} was given, but {self.framework} is set to train {epochs} "
                f"epochs ({limit}); predictions assume {given}"
            )
        if planned is None and not steps_total and why_unplanned:
            tracker._warn(why_unplanned)
        elif planned is None and not steps_total:
            tracker._warn(
                f"{self.framework} sets no number of epochs ({limit or 'none given'}): the run "
                "is measured, but nothing is predicted; pass epochs= to the callback to predict"
            )

    def end_previous(self) -> None:
        """End a run that a previous training left open (it probably raised)."""
        if self.running:
            self.finish(
                note=f"a new {self.framework} training started before this run was closed "
                "(the previous training probably raised); this run ends there"
            )

    def _job_options(self, place: Place, ranks_from_framework: bool) -> tuple[dict[str, Any], bool]:
        """track() options that make this process's tracker a member of its job.

        Returns the options, and whether the job has no shared id (then ``distributed=False``:
        each process measures alone). Options the user gave win.
        """
        given = self._options
        if place.world_size <= 1 or given.get("distributed") is False:
            return {}, False
        options: dict[str, Any] = {}
        if ranks_from_framework:
            for name, value in (
                ("rank", place.rank),
                ("local_rank", place.local_rank),
                ("world_size", place.world_size),
            ):
                if given.get(name) is None and value is not None:
                    options[name] = value
        if given.get("job_id") is None:
            from carbontrack._job import detect_job

            # Contradictions (rank=5 of world_size=2) raise InvalidOption here, before training.
            job = detect_job(
                rank=options.get("rank", given.get("rank")),
                local_rank=options.get("local_rank", given.get("local_rank")),
                world_size=options.get("world_size", given.get("world_size")),
            )
            if job is None or not job.job_id:
                # Lightning's own DDP launcher sets the rendezvous address but no RANK.
                fallback = _rendezvous_id(os.environ)
                if not fallback:
                    return {"distributed": False}, True
                options["job_id"] = fallback
        return options, False

    def epoch_start(self) -> None:
        """A training epoch starts (nothing happens when the run has no epochs)."""
        tracker = self.tracker
        if tracker is None or not tracker.running or not self._by_epochs or self._epoch_open:
            return
        tracker.epoch_start()
        self._epoch_open = True

    def epoch_end(self, *, repeat_prediction: bool = False) -> dict[str, float]:
        """The training epoch ends: record it, predict when due, return the figures to log.

        The predicted figures come with the epochs after which carbontrack predicts; with
        ``repeat_prediction``, the latest prediction comes with every later epoch too (for logs
        that keep one list per name, such as Keras's ``History``). The figures are empty on
        processes that do not log. ``BudgetExceeded`` comes through when the user asked for it
        (``on_budget="raise"``).
        """
        tracker = self.tracker
        if tracker is None or not tracker.running or not self._epoch_open:
            return {}
        self._epoch_open = False
        record = tracker.epoch_end()
        if not self.place.logs:
            return {}
        return self._epoch_figures(tracker, record, repeat_prediction)

    def _epoch_figures(
        self, tracker: Tracker, record: EpochRecord, repeat_prediction: bool
    ) -> dict[str, float]:
        # Read from the tracker's state as epoch_end() left it: a second hardware read at every
        # epoch boundary (snapshot()) would cost more than the callbacks may add (1 ms).
        with tracker._lock:
            energy_j = tracker._sampler.total_j()
            co2_g = tracker._weighted_co2_g(energy_j)
            prediction = tracker._predictions[-1] if tracker._predictions else None
        figures = {ENERGY_KWH: energy_j / J_PER_KWH, CO2EQ_G: co2_g}
        if record.duration_s > 0:
            figures[POWER_W] = record.energy_j / record.duration_s
        # A prediction is new when made at this epoch's end (rank 0 of a job predicts once the
        # job's epoch is complete, which may be an epoch later).
        new = len(tracker._predictions) > self._predictions_seen
        self._predictions_seen = len(tracker._predictions)
        if prediction is not None and (repeat_prediction or new):
            figures[PREDICTED_CO2EQ_G] = prediction.co2eq_g
            figures[PREDICTED_ENERGY_KWH] = prediction.energy_j / J_PER_KWH
        return figures

    def progress_figures(self, steps_done: int) -> dict[str, float]:
        """Figures of a step-driven run: so far, and the whole run scaled by steps done."""
        tracker = self.tracker
        if tracker is None or not tracker.running or not self.place.logs:
            return {}
        snapshot = safe(tracker.snapshot, "a snapshot for the framework's logs")
        if snapshot is None:
            return {}
        figures = {ENERGY_KWH: snapshot.energy_kwh, CO2EQ_G: snapshot.co2eq_g}
        t0, e0 = self._mark
        if snapshot.duration_s > t0:
            figures[POWER_W] = (snapshot.energy_j - e0) / (snapshot.duration_s - t0)
        self._mark = (snapshot.duration_s, snapshot.energy_j)
        total = self.steps_total
        if total and 0 < steps_done <= total:
            scale = total / steps_done
            figures[PREDICTED_CO2EQ_G] = snapshot.co2eq_g * scale
            figures[PREDICTED_ENERGY_KWH] = snapshot.energy_kwh * scale
        return figures

    def finish(self, exc: BaseException | None = None, note: str = "") -> Report | None:
        """Stop the run (if one is running) and keep its report; never raises.

        ``exc`` is the exception that ended training: the report says so, and the caller
        re-raises it (this never swallows it).
        """
        tracker = self.tracker
        if tracker is None or not tracker.running:
            return self.report
        if self.steps_total:
            tracker._warn(
                f"{self.framework} training was driven by steps ({self.steps_total} steps), not "
                "epochs: the run was measured whole, without epochs, and the predictions logged "
                "during training (carbontrack/predicted_*) scaled the figures so far by total "
                "steps / steps done"
            )
        if exc is not None:
            what = (
                "interrupted (KeyboardInterrupt)"
                if isinstance(exc, KeyboardInterrupt)
                else (f"ended by {type(exc).__name__}")
            )
            tracker._warn(
                f"{self.framework} training was {what}: the report covers the run until then"
            )
        if note:
            tracker._warn(note)
        self._epoch_open = False
        report = safe(tracker.stop, "stopping the run")
        if isinstance(report, Report):
            self.report = report
        return self.report


class CallbackMixin:
    """What every ``CarbonTrackCallback`` offers besides its framework's hooks."""

    _carbontrack: TrainingRun

    @property
    def report(self) -> Report | None:
        """The final ``Report`` once training has ended (``None`` before).

        In a job of several processes, rank 0's report is the job's (every node's energy, with
        a breakdown); another rank's report holds what that rank read itself.
        """
        return self._carbontrack.report

    @property
    def settings(self) -> Settings:
        """The validated options (``epochs`` is filled in from the framework at the start)."""
        tracker = self._carbontrack.tracker
        return tracker.settings if tracker is not None else self._carbontrack.settings

    @property
    def tracker(self) -> Tracker | None:
        """The running (or last) ``Tracker``: ``tracker.snapshot()`` gives the figures so far."""
        return self._carbontrack.tracker

    def close(self, exc: BaseException | None = None) -> Report | None:
        """End the run now if training left it open (after an exception); return the report."""
        return self._carbontrack.finish(exc)

    def __enter__(self) -> CallbackMixin:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        # Returning None lets the exception go on: it is never swallowed.
        self._carbontrack.finish(exc)
