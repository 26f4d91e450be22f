"""The user-facing API: ``track()``, ``track_epochs()`` and the ``Tracker`` they drive.

Misuse raises ``UsageError`` with the fix; everything that goes wrong while measuring becomes a
warning and data in the report, never an exception in the user's code.
"""

from __future__ import annotations

import atexit
import bisect
import contextlib
import functools
import itertools
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

import attrs

from carbontrack._safe import safe
from carbontrack._sampler import DeviceTotal, Sampler
from carbontrack._version import __version__
from carbontrack.errors import BudgetExceeded, UsageError
from carbontrack.model import (
    J_PER_KWH,
    METHODS,
    ComponentEnergy,
    Device,
    DeviceEnergy,
    Intensity,
    Location,
    Report,
    RunInfo,
    Unavailable,
    check_device,
    component_of,
)
from carbontrack.settings import Settings, make_settings

if TYPE_CHECKING:
    from carbontrack._ledger import Ledger

    # Imported where first used at run time: a plain run builds none of these, and loading them
    # costs milliseconds (carbontrack._model_later).
    from carbontrack.model import (
        Command,
        EpochRecord,
        JobInfo,
        JobReport,
        Prediction,
        Sample,
    )

__all__ = ["Tracker", "track", "track_epochs"]

logger = logging.getLogger(__name__)

#: Seconds to the first checkpoint (then every ``checkpoint_s``): a run killed early, even
#: within its first minute, leaves the energy of its first seconds in the run log.
FIRST_CHECKPOINT_S = 5.0

P = ParamSpec("P")
R = TypeVar("R")

_NEW, _RUNNING, _STOPPED = "new", "running", "stopped"

# Measured kinds that cover what a model of another kind estimates: RAPL's ``dram`` zones
# measure the memory that the ``ram`` model would estimate, and a ``psys`` platform zone covers
# the packages and DRAM together; counting both would count that hardware twice.
_MEASURED_BY = {
    "ram": frozenset({"ram", "dram", "psys"}),
    "cpu": frozenset({"cpu", "psys"}),
}
# A Grace superchip's NVML counter (kind ``module``) covers GPU, HBM, Grace CPU and LPDDR
# (Zeus PR #172): CPU and memory devices of any method (the estimate, hwmon's Grace meters)
# would count the CPU twice, so they are left out and the module is measured once.
_COVERED_BY_MODULE = frozenset({"cpu", "ram", "dram"})


def _leave_out_what_modules_cover(devices: dict[str, list[Device]]) -> None:
    modules = [d.name for devs in devices.values() for d in devs if d.kind == "module"]
    if not modules:
        return
    for plugin in list(devices):
        kept = [d for d in devices[plugin] if d.kind not in _COVERED_BY_MODULE]
        for d in devices[plugin]:
            if d.kind in _COVERED_BY_MODULE:
                logger.info(
                    "carbontrack: %s (%s) is left out: the superchip module counter of %s "
                    "already holds it",
                    d.name,
                    plugin,
                    ", ".join(modules),
                )
        if kept:
            devices[plugin] = kept
        else:
            del devices[plugin]


def _host_budgets(settings: Settings) -> dict[tuple[str, str], float]:
    """Per-plugin budgets for the built-in plugins that make HTTP requests.

    The live intensity providers and geolocation wait up to ``timeout_s`` (a total deadline per
    request, see ``intensity._http``): the host's 3 s budget would cut off a slower answer the
    user allowed, record it as a hang and fall back to the table. Third-party plugins keep the
    hook's budget, so a hanging one still costs at most that.
    """
    from carbontrack.intensity._http import timeout_s

    allowed = timeout_s(settings) + 1.0  # a second for the provider's own work around the request
    http_plugins = (
        ("geolocate", "carbontrack_locate"),
        ("electricitymaps", "carbontrack_carbon_intensity"),
        ("carbonintensity-gb", "carbontrack_carbon_intensity"),
        ("energidataservice", "carbontrack_carbon_intensity"),
    )
    return {key: allowed for key in http_plugins}


def _device_energy(total: DeviceTotal, detail: str = "") -> DeviceEnergy:
    """A device's line in a report or a live sample, from the sampler's running total."""
    return DeviceEnergy(
        id=total.device.id,
        kind=total.device.kind,
        name=total.device.name,
        backend=total.device.backend,
        method=total.device.method,
        energy_j=total.energy_j,
        shared=total.device.shared,
        resets=total.resets,
        dropped=total.dropped,
        detail=detail,
    )


def _default_store() -> Any:
    # The ledger module is imported only by runs that are part of a job.
    from carbontrack._ledger import default_store

    return default_store()


class Tracker:
    """One measured run. Made by ``track()``; use ``start()``/``stop()`` or ``with``.

    ``report`` holds the immutable result after ``stop()``. Epochs are marked with
    ``with run.epoch():`` or ``epoch_start()``/``epoch_end()``.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        plugins: Sequence[object] = (),
        autoload: bool = True,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings if settings is not None else make_settings()
        self._plugins = tuple(plugins)
        self._autoload = autoload
        self._clock = clock
        self._wall_clock = wall_clock
        self._state = _NEW
        self._lock = threading.RLock()
        self._report: Report | None = None
        self._epochs: list[EpochRecord] = []
        self._predictions: list[Prediction] = []
        self._epoch_open: tuple[float, float, float, dict[str, float]] | None = None
        self._warnings: list[str] = []
        self._budget_hit: Prediction | None = None
        #: Set by ``carbontrack run``: the command measured, then how it ended (before stop()).
        self.command: Command | None = None
        # 48 random bits, as uuid4().hex[:12] gave, without importing uuid at every start.
        self.run_id = os.urandom(6).hex()
        self._pid = os.getpid()
        # A job of many processes (torchrun, srun, mpirun): see _job.py, _ledger.py and
        # docs/clusters.md. All None/empty for a single process, which runs as before.
        self._job: JobInfo | None = None
        self._leader = True
        self._leader_lock: Any = None
        self._ledger: Ledger | None = None
        self._dropped_by_plugin: dict[str, list[Device]] = {}
        self._pending_job_epochs: list[tuple[EpochRecord, float]] = []
        self._job_epochs: list[EpochRecord] = []

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Tracker:
        """Find the devices and start measuring. Raises ``UsageError`` on a second start."""
        with self._lock:
            if self._state == _RUNNING:
                raise UsageError(
                    "this tracker is already running; stop() it first, or use a new track()"
                )
            if self._state == _STOPPED:
                raise UsageError(
                    "this tracker has already run and cannot restart; create a new one with "
                    "track() (its report stays in .report)"
                )
            # Imported here: pluggy and importlib.metadata are not needed to import carbontrack.
            from carbontrack._plugins import PluginHost, make_plugin_manager
            from carbontrack.intensity._location import check_location

            # An unknown location code is the user's mistake: raise it before any work starts.
            check_location(self.settings)
            from carbontrack.writers.prometheus import with_config_file

            # The config file's exporter keys: checked now too, before any work.
            self.settings = with_config_file(self.settings)
            # So is a contradictory job (rank=5 of world_size=2, a garbled launcher variable).
            problems: list[str] = []
            self._job = _resolve_job(self.settings, problems)
            for problem in problems:
                self._warn(problem)

            # Loud on purpose: a broken plugin import must fail before training starts.
            pm = make_plugin_manager(autoload=self._autoload, extra_plugins=self._plugins)
            self._host = PluginHost(pm, plugin_budgets=_host_budgets(self.settings))
            self._discover()
            if self._job is not None:
                self._take_job_role()
            self._location = self._host.first("carbontrack_locate", settings=self.settings) or (
                Location(country=None, source="unknown")
            )
            # Asked once: a run without a live exporter builds no per-tick sample at all (the
            # built-in Prometheus exporter only wants them when the run exports).
            wants_samples = set(self._host.implementers("carbontrack_sample"))
            if self.settings.prometheus is None and self.settings.prometheus_push is None:
                wants_samples.discard("prometheus")
            self._sample_hook = bool(wants_samples)
            self._started_wall = self._wall_clock()
            self._intensity = self._intensity_for(self._started_wall, self._started_wall)
            if self._job is not None:
                from carbontrack._ledger import Ledger
                from carbontrack.paths import log_dir

                self._ledger = Ledger(
                    self._job,
                    run_id=self.run_id,
                    started_at=self._started_wall,
                    log_dir=log_dir(self.settings),
                    wait_s=self.settings.job_wait_s,
                    store_finder=self._store_finder,
                )
            self._sampler = Sampler(
                self._host,
                self._devices_by_plugin,
                interval_s=self.settings.interval_s,
                clock=self._clock,
                on_tick=self._on_tick,
                name=f"carbontrack-sampler-{self.run_id}",
            )
            self._run = RunInfo(
                run_id=self.run_id,
                started_at=self._started_wall,
                devices=tuple(d for devs in self._devices_by_plugin.values() for d in devs),
                unavailable=self._unavailable,
                location=self._location,
                pid=self.settings.tracked_pid,
                epochs=self.settings.epochs,
                components=tuple(sorted(self.settings.components)),
                job=self._job,
                job_sequence=self._ledger.sequence if self._ledger is not None else 0,
            )
            self._host.broadcast("carbontrack_run_started", run=self._run, settings=self.settings)
            if self._ledger is not None:
                self._ledger.announce()
            self._started = self._sampler.read()
            self._last_checkpoint = self._started
            self._sampler.start()
            self._state = _RUNNING
            _running_trackers.add(self)
        return self

    def _discover(self) -> None:
        found = self._host.broadcast("carbontrack_discover_devices", settings=self.settings)
        devices: dict[str, list[Device]] = {}
        unavailable: list[Unavailable] = []
        hook = "carbontrack_discover_devices"
        for plugin, items in found.items():
            if items is None:
                continue
            if not isinstance(items, list):  # the host runs out any iterable into a list
                self._host.record_failure(
                    plugin, hook, TypeError(f"returned {items!r:.100}, not a list of Device")
                )
                continue
            seen: set[str] = set()
            for item in items:
                problem = check_device(item)
                if problem is not None:
                    # One bad value costs that value only; the plugin's other devices measure.
                    self._host.record_failure(plugin, hook, TypeError(problem))
                elif isinstance(item, Unavailable):
                    if self.settings.wants(item.kind):
                        unavailable.append(item)
                elif isinstance(item, Device):
                    if item.id in seen:
                        self._warn(
                            f"plugin {plugin!r} reported device {item.id!r} twice; kept the first"
                        )
                    elif self.settings.wants(item.kind):
                        seen.add(item.id)
                        devices.setdefault(plugin, []).append(item)
        # A model estimate only stands in where nothing of its kind is measured: the host decides,
        # so plugin order can never put an estimate beside (and on top of) a measurement.
        measured = {d.kind for devs in devices.values() for d in devs if d.method != "model"}
        # One model per kind, too: two plugins modelling the same kind (compat's sim_cpu and the
        # built-in estimate) model the same hardware. The plugin asked first keeps it; plugins
        # given to track() and installed ones are asked before the built-ins.
        modelled_by: dict[str, str] = {}
        for plugin in list(devices):
            kept = []
            for d in devices[plugin]:
                if d.method == "model":
                    if _MEASURED_BY.get(d.kind, frozenset({d.kind})) & measured:
                        continue
                    if modelled_by.setdefault(d.kind, plugin) != plugin:
                        continue
                kept.append(d)
            if kept:
                devices[plugin] = kept
            else:
                del devices[plugin]
        _leave_out_what_modules_cover(devices)
        self._devices_by_plugin = devices
        self._unavailable = tuple(unavailable)
        if not devices and (self._job is None or _node_leader_hint(self._job)):
            self._warn(
                "no device could be measured or estimated here, so the energy is 0 and the "
                "report says nothing about this machine's use; run `carbontrack devices` to see why"
            )

    def _intensity_for(self, start: float, end: float) -> Intensity:
        found = self._host.first(
            "carbontrack_carbon_intensity",
            location=self._location,
            start=start,
            end=end,
            settings=self.settings,
        )
        if isinstance(found, Intensity):
            return found
        from carbontrack.intensity._world import world_intensity

        return world_intensity("no intensity provider answered: using the world average")

    def stop(self) -> Report:
        """Stop measuring, close the devices, write the report and return it.

        Calling ``stop()`` again returns the same report.
        """
        with self._lock:
            if self._state == _STOPPED and self._report is not None:
                return self._report
            if self._state == _NEW:
                raise UsageError(
                    "this tracker was never started; call start() or use `with track():`"
                )
            if self._forked:
                raise UsageError(
                    "this tracker was started in the parent process before os.fork(); the child "
                    "measures nothing: start a new track() in the child if it should be measured"
                )
            self._sampler.stop()
            if self._epoch_open is not None:
                # An interrupted epoch is not a whole one: recording it would skew the epoch
                # count and the means behind predictions. Its energy stays in the run's total.
                self._warn(
                    f"epoch {len(self._epochs) + 1} was still open when the run stopped: its "
                    "energy counts in the total but not as an epoch"
                )
                self._epoch_open = None
            ended = safe(self._sampler.read, "final reading")
            self._ended = ended if ended is not None else self._clock()
            # All plugins at once, each on its own worker: a close that hangs costs one budget.
            self._host.call_each(
                "carbontrack_close_devices",
                {
                    plugin: {"devices": devs + self._dropped_by_plugin.get(plugin, [])}
                    for plugin, devs in self._devices_by_plugin.items()
                },
            )
            end_wall = self._started_wall + (self._ended - self._started)
            intensity = safe(lambda: self._intensity_for(self._started_wall, end_wall), "intensity")
            if intensity is not None:
                self._intensity = intensity
            self._report = self._build_report(final=True, now=self._ended)
            if self._ledger is not None:
                self._report = safe(self._finish_job, "the job's ledger") or self._report
            self._state = _STOPPED
            _running_trackers.discard(self)
            self._host.broadcast(
                "carbontrack_report_ready", report=self._report, settings=self.settings
            )
            self._host.close()  # the plugins' worker threads end (a stuck one when it returns)
            return self._report

    @property
    def _forked(self) -> bool:
        return os.getpid() != self._pid

    @property
    def running(self) -> bool:
        """Whether the tracker is measuring now."""
        return self._state == _RUNNING and not self._forked

    @property
    def report(self) -> Report:
        """The final report; available once the run has stopped."""
        if self._report is None:
            raise UsageError(
                "the report exists once the run stops: read run.report after the `with` block "
                "(or after stop()); use run.snapshot() for the figures so far"
            )
        return self._report

    def snapshot(self) -> Report:
        """A report of the run so far (``final=False``), without stopping it."""
        with self._lock:
            if self._state != _RUNNING:
                return self.report
            now = self._sampler.read()
            return self._build_report(final=False, now=now)

    def __enter__(self) -> Tracker:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        if self._state == _RUNNING and not self._forked:
            self.stop()

    # -- epochs ------------------------------------------------------------------------------

    def epoch_start(self) -> None:
        """Mark the start of an epoch. Raises ``UsageError`` if one is already open."""
        with self._lock:
            self._require_running("epoch_start()")
            if self._epoch_open is not None:
                raise UsageError(
                    f"epoch {len(self._epochs) + 1} is already open; call epoch_end() before "
                    "the next epoch_start()"
                )
            if self._budget_hit is not None and self.settings.on_budget == "raise":
                raise self._budget_error(self._budget_hit)
            now = self._sampler.read()
            self._epoch_open = (
                now,
                self._wall_at(now),
                self._sampler.total_j(),
                self._by_component(),
            )

    def epoch_end(self) -> EpochRecord:
        """Mark the end of the open epoch and return its record (and predict when due)."""
        with self._lock:
            self._require_running("epoch_end()")
            if self._epoch_open is None:
                raise UsageError("epoch_end() without epoch_start(): call epoch_start() first")
            record, prediction = self._end_epoch_locked()
        if prediction is not None:
            self._after_prediction(prediction)
        return record

    @contextlib.contextmanager
    def epoch(self) -> Iterator[None]:
        """``with run.epoch():`` measures the block as one epoch, even if it raises."""
        self.epoch_start()
        try:
            yield
        except BaseException:
            # The block's own error is the one to see: a budget error raised as this epoch
            # ends would hide it (it is raised again at the next epoch_start()).
            if self.running:
                with contextlib.suppress(BudgetExceeded):
                    self.epoch_end()
            raise
        if self.running:
            self.epoch_end()

    def _end_epoch_locked(self) -> tuple[EpochRecord, Prediction | None]:
        assert self._epoch_open is not None
        t0, wall0, e0, by0 = self._epoch_open
        now = self._sampler.read()
        energy = self._sampler.total_j() - e0
        by1 = self._by_component()
        from carbontrack.model import EpochRecord

        record = EpochRecord(
            index=len(self._epochs) + 1,
            started_at=wall0,
            duration_s=now - t0,
            energy_j=energy,
            co2eq_g=self._co2_g(energy),
            energy_by_component_j={k: v - by0.get(k, 0.0) for k, v in by1.items()},
        )
        self._epochs.append(record)
        self._epoch_open = None
        if self._ledger is not None:
            # Rank 0 predicts as the job's epochs complete (each when every tracking rank's
            # figure for it is in); the other ranks leave predicting to rank 0.
            made = safe(lambda: self._job_epoch_ended(record), "the job's epochs") or []
            self._predictions.extend(made)
            prediction = made[-1] if made else None
        else:
            prediction = safe(self._maybe_predict, "prediction")
            if prediction is not None:
                self._predictions.append(prediction)
        self._host.broadcast(
            "carbontrack_epoch_ended",
            run=self._run,
            epoch=record,
            prediction=prediction,
            settings=self.settings,
        )
        return record, prediction

    def _maybe_predict(self) -> Prediction | None:
        # The first prediction comes after epochs_before_pred epochs, or once an epoch past the
        # warm-up is measured; then one after each of the next monitor_epochs - 1 epochs (-1:
        # after every epoch), never after the last planned epoch (the actual figure follows).
        s = self.settings
        epochs = self._job_epochs if self._predicts_for_job else self._epochs
        done = len(epochs)
        if s.epochs is None or s.epochs_before_pred == 0 or done >= s.epochs:
            return None
        first = max(s.epochs_before_pred, s.warmup_epochs + 1)
        if done < first or (s.monitor_epochs != -1 and done >= first + s.monitor_epochs):
            return None
        last = epochs[-1]
        now_wall = last.started_at + last.duration_s
        from carbontrack import predict as _predict

        predict = functools.partial(
            _predict.predict,
            tuple(epochs),
            total_epochs=s.epochs,
            pue=s.pue,
            warmup_epochs=s.warmup_epochs,
            now_ts=now_wall,
        )
        rest_s = predict(g_per_kwh=self._intensity.g_per_kwh).duration_s - sum(
            e.duration_s for e in epochs
        )
        # The provider is asked about the predicted window (it may have a forecast for it);
        # the measured epochs keep the intensity they were recorded with.
        window = safe(
            lambda: self._intensity_for(now_wall, now_wall + max(rest_s, 0.0)),
            "intensity for the prediction",
        )
        intensity = window if window is not None else self._intensity
        return predict(
            g_per_kwh=intensity.g_per_kwh,
            intensity_source=intensity.source,
            forecast=intensity.forecast,
        )

    def _after_prediction(self, prediction: Prediction) -> None:
        # Runs on the user's thread at the epoch boundary (epoch_end), outside the lock: the
        # callback and the exception reach user code there and nowhere else.
        s = self.settings
        over = (s.budget_co2eq_g is not None and prediction.co2eq_g > s.budget_co2eq_g) or (
            s.budget_kwh is not None and prediction.energy_j * s.pue / J_PER_KWH > s.budget_kwh
        )
        if not over:
            return
        first_time = self._budget_hit is None
        self._budget_hit = prediction
        if s.on_budget == "raise":
            raise self._budget_error(prediction)
        if not first_time:
            return  # warn and call back once per run, not after every re-prediction
        if callable(s.on_budget):
            callback = s.on_budget
            safe(lambda: callback(prediction), "the on_budget callback")
        else:
            message = str(self._budget_error(prediction))
            # Said now, while the user can still act on it, and kept for the final summary.
            logger.warning("carbontrack: %s", message)
            self._warn(message)

    def _budget_error(self, p: Prediction) -> BudgetExceeded:
        # The fix depends on what happens next: raising stops the run, warning carries on.
        fix = (
            "pass on_budget='warn' to carry on"
            if self.settings.on_budget == "raise"
            else "pass on_budget='raise' to stop such a run at the first prediction"
        )
        s = self.settings
        kwh = p.energy_j * s.pue / J_PER_KWH
        parts = []
        if s.budget_co2eq_g is not None:
            parts.append(f"{p.co2eq_g:.3g} gCO2eq against budget_co2eq_g={s.budget_co2eq_g:g}")
        if s.budget_kwh is not None:
            parts.append(f"{kwh:.3g} kWh (facility) against budget_kwh={s.budget_kwh:g}")
        return BudgetExceeded(
            f"after {p.after_epoch} epoch(s), the predicted footprint of all {p.epochs} epochs "
            f"exceeds the budget: {'; '.join(parts)}. Raise the budget, train fewer epochs, or "
            + fix
        )

    def _require_running(self, what: str) -> None:
        if self._state == _NEW:
            raise UsageError(f"{what} before the run started: use `with track() as run:` first")
        if self._state == _STOPPED:
            raise UsageError(f"{what} after the run stopped: start a new run with track()")
        if self._forked:
            raise UsageError(f"{what} in a forked child: the parent's run is not measured here")

    # -- building results ------------------------------------------------------------------

    def _wall_at(self, now: float) -> float:
        return self._started_wall + (now - self._started)

    def _by_component(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for t in self._sampler.totals():
            comp = component_of(t.device.kind)
            out[comp] = out.get(comp, 0.0) + t.energy_j
        return out

    def _co2_g(self, energy_j: float) -> float:
        return energy_j * self.settings.pue / J_PER_KWH * self._intensity.g_per_kwh

    def _weighted_co2_g(self, energy_j: float, now: float | None = None) -> float:
        """CO2eq of the whole run, each part weighted by the intensity at the time it was drawn.

        Each timeline step's energy is split across the intensity points it overlaps, in
        proportion to time (power is taken as constant within a step); the last, partial step
        runs to ``now``. Time no point covers counts at the window's value.
        """
        points = sorted(self._intensity.points, key=lambda p: p.start_ts)
        timeline = list(self._sampler.timeline)
        if not points or not timeline:
            return self._co2_g(energy_j)
        steps = list(itertools.pairwise(timeline))
        if now is not None and now > timeline[-1][0]:
            steps.append((timeline[-1], (now, energy_j)))
        ends = [p.end_ts for p in points]
        co2 = 0.0
        counted = 0.0
        for (t0, e0), (t1, e1) in steps:
            w0, w1 = self._wall_at(t0), self._wall_at(t1)
            step_j = e1 - e0
            counted += step_j
            if w1 <= w0:
                co2 += self._co2_g(step_j)
                continue
            covered = 0.0
            i = bisect.bisect_right(ends, w0)
            while i < len(points) and points[i].start_ts < w1:
                overlap = min(points[i].end_ts, w1) - max(points[i].start_ts, w0)
                if overlap > 0:
                    covered += overlap
                    share_j = step_j * overlap / (w1 - w0)
                    co2 += share_j * self.settings.pue / J_PER_KWH * points[i].g_per_kwh
                i += 1
            co2 += self._co2_g(step_j * max(0.0, 1.0 - covered / (w1 - w0)))
        # Energy not on the timeline (a report built before the first step) at the window's value.
        return co2 + self._co2_g(max(energy_j - counted, 0.0))

    def _build_report(self, *, final: bool, now: float) -> Report:
        totals = self._sampler.totals()
        devices = tuple(_device_energy(t, detail=t.device.detail) for t in totals)
        components = _components(devices, self._unavailable)
        energy = sum(d.energy_j for d in devices)
        pue = self.settings.pue
        warnings = list(self._warnings)
        if self._intensity.note:
            warnings.append(self._intensity.note)
        for d in devices:
            if d.dropped:
                warnings.append(f"{d.name} ({d.backend}): {d.dropped}")
        for t in totals:
            if t.resets:
                # Each reset loses its interval: the figure is a lower bound, and says so.
                warnings.append(
                    f"{t.device.name} ({t.device.backend}): {t.resets} counter reset(s) over "
                    f"{t.reset_s:.3g} s counted nothing (a driver reload, or a jump no "
                    "plausible power explains); its figure is a lower bound"
                )
        co2 = self._weighted_co2_g(energy, now)
        return Report(
            run_id=self.run_id,
            started_at=self._started_wall,
            duration_s=now - self._started,
            energy_j=energy,
            pue=pue,
            facility_energy_j=energy * pue,
            co2eq_g=co2,
            intensity=self._intensity,
            location=self._location,
            devices=devices,
            components=components,
            epochs=tuple(self._epochs),
            epochs_planned=self.settings.epochs,
            predictions=tuple(self._predictions),
            unavailable=self._unavailable,
            failures=self._host.failures,
            warnings=tuple(warnings),
            partial=any(d.dropped or d.resets for d in devices) or bool(self._unavailable),
            final=final,
            command=self.command,
            carbontrack_version=__version__,
            job=self._rank_job_report(
                final=final, devices=devices, energy_j=energy, co2eq_g=co2, now=now
            )
            if self._job is not None
            else None,
        )

    # -- jobs of many processes ------------------------------------------------------------

    # Where the job's store comes from; the benchmark of simulated ranks replaces it.
    _store_finder: Callable[[], Any] = staticmethod(_default_store)

    @property
    def _predicts_for_job(self) -> bool:
        # Rank 0 of a job predicts the job's footprint, from the job's epochs.
        return self._ledger is not None and self._job is not None and self._job.is_rank_zero

    def _take_job_role(self) -> None:
        """Keep only the devices this process reads in the job (one reader per device).

        The node leader reads the node-wide hardware (CPU packages, DRAM, psys, models, hwmon,
        plugins' node devices); GPUs are read by the rank that owns them: the one it sees when
        it sees one (per-task GPU binding), else the one at its local rank (torchrun's
        cuda:LOCAL_RANK); the leader also reads GPUs no local rank owns.
        """
        job = self._job
        assert job is not None
        if job.local_rank is not None:
            self._leader = job.local_rank == 0
        else:
            from carbontrack._ledger import elect_node_leader

            self._leader, self._leader_lock = elect_node_leader(job)
        gpus = [d for devs in self._devices_by_plugin.values() for d in devs if _is_gpu(d)]
        owned: list[Device] = []
        if len(gpus) == 1:
            owned = gpus  # bound to this task, or shared: the ledger counts a shared one once
        elif job.local_rank is not None and job.local_rank < len(gpus):
            owned = [gpus[job.local_rank]]
        if self._leader:
            per_node = job.local_world_size
            if job.local_rank is None:
                owned = gpus
            elif per_node is not None and per_node < len(gpus):
                owned += gpus[per_node:]
        owned_ids = {id(d) for d in owned}
        kept: dict[str, list[Device]] = {}
        for plugin, devs in self._devices_by_plugin.items():
            for d in devs:
                mine = id(d) in owned_ids if _is_gpu(d) else self._leader
                if mine:
                    kept.setdefault(plugin, []).append(d)
                else:
                    self._dropped_by_plugin.setdefault(plugin, []).append(d)
        for plugin, dropped in list(self._dropped_by_plugin.items()):
            if plugin not in kept:
                # Nothing of this plugin is read here: release it now (a powermetrics child,
                # an NVML session), not at the end of the run.
                self._host.call_one(plugin, "carbontrack_close_devices", devices=dropped)
                del self._dropped_by_plugin[plugin]
        self._devices_by_plugin = kept
        if not self._leader:
            # What cannot be read here is the leader's to report.
            self._unavailable = tuple(u for u in self._unavailable if component_of(u.kind) == "gpu")
            self._warnings = [w for w in self._warnings if not w.startswith("no device could")]

    def _measured_by(self) -> str:
        job = self._job
        assert job is not None
        if self._leader:
            return ""
        return (
            f"node-wide hardware on {job.node} (CPU, memory, other node devices) is measured by "
            "this job's node leader there (local rank 0); this report has only the GPUs this "
            "process owns"
        )

    def _rank_job_report(
        self,
        *,
        final: bool,
        devices: tuple[DeviceEnergy, ...],
        energy_j: float,
        co2eq_g: float,
        now: float,
    ) -> JobReport:
        from carbontrack.model import JobReport, RankEnergy

        job = self._job
        assert job is not None
        entry = RankEnergy(
            rank=job.rank,
            node=job.node,
            local_rank=job.local_rank,
            pid=os.getpid(),
            leader=self._leader,
            started_at=self._started_wall,
            duration_s=now - self._started,
            energy_j=energy_j,
            co2eq_g=co2eq_g,
            pue=self.settings.pue,
            g_per_kwh=self._intensity.g_per_kwh,
            location=self._location,
            devices=devices,
            epochs=tuple(self._epochs),
            final=final,
        )
        return JobReport(
            job_id=job.job_id,
            rank=job.rank,
            world_size=job.world_size,
            node=job.node,
            local_rank=job.local_rank,
            source=job.source,
            scope="rank",
            measured_by=self._measured_by(),
            ranks=(entry,),
        )

    def _job_epoch_ended(self, record: EpochRecord) -> list[Prediction]:
        """Send the epoch; on rank 0, complete the job's epochs and predict after each."""
        ledger = self._ledger
        assert ledger is not None
        ledger.publish_epoch(record)
        if not self._predicts_for_job:
            # Rank 0 predicts the job; a rank's own share would read as the job's footprint.
            return []
        self._pending_job_epochs.append((record, time.monotonic()))
        # The others' epochs arrive in the background; this boundary uses what is in.
        ledger.poll_epochs()
        made: list[Prediction] = []
        while self._pending_job_epochs:
            merged = ledger.job_epoch(*self._pending_job_epochs[0])
            if merged is None:
                break
            self._job_epochs.append(merged)
            self._pending_job_epochs.pop(0)
            # One prediction step per completed epoch, as a single process makes them.
            prediction = safe(self._maybe_predict, "prediction")
            if prediction is not None:
                made.append(prediction)
        return made

    def _finish_job(self) -> Report:
        """Publish this rank's figures; on rank 0, wait (bounded) and write the job's report."""
        ledger, job, own = self._ledger, self._job, self._report
        assert ledger is not None
        assert job is not None
        assert own is not None
        assert own.job is not None
        entry = own.job.ranks[0]
        try:
            if not job.is_rank_zero:
                ledger.publish_final(entry)
                return own
            entries, notes, transport = ledger.collect(entry)
        finally:
            ledger.close()
            if self._leader_lock is not None:
                self._leader_lock.close()
        from carbontrack._ledger import merge_job

        ledger_report, devices, epochs, facility_j, co2 = merge_job(
            job, entries, notes=notes, transport=transport
        )
        energy = sum(d.energy_j for d in devices)
        return attrs.evolve(
            own,
            energy_j=energy,
            facility_energy_j=facility_j,
            co2eq_g=co2,
            devices=devices,
            components=_components(devices, own.unavailable),
            epochs=epochs if own.epochs else own.epochs,
            predictions=tuple(self._predictions),
            warnings=(*own.warnings, *ledger_report.missing),
            partial=own.partial or ledger_report.partial,
            job=ledger_report,
        )

    def _sample(self, now: float) -> Sample:
        # No tracker lock: the sampler's totals are consistent on their own, and the caller's
        # thread may hold the lock for as long as an epoch boundary takes.
        # No detail text per tick: the live exporters do not show it.
        devices = tuple(_device_energy(t) for t in self._sampler.totals())
        energy = sum(d.energy_j for d in devices)
        intensity = self._intensity
        from carbontrack.model import Sample

        return Sample(
            run_id=self.run_id,
            at=now,
            duration_s=now - self._started,
            devices=devices,
            energy_j=energy,
            co2eq_g=self._co2_g(energy),
            g_per_kwh=intensity.g_per_kwh,
        )

    def _on_tick(self, now: float) -> None:
        if self._pending_job_epochs and self._ledger is not None:
            # Fetch the other ranks' epochs between boundaries too (in the background), so
            # the next boundary can complete the job's epoch.
            self._ledger.poll_epochs()
        if self._sample_hook and self._state == _RUNNING:
            self._host.broadcast(
                "carbontrack_sample", sample=self._sample(now), settings=self.settings
            )
        # The first checkpoint comes early: a run killed before one whole interval still
        # leaves a measurement in its log.
        due = self.settings.checkpoint_s
        if self._last_checkpoint == self._started:
            due = min(due, FIRST_CHECKPOINT_S)
        if now - self._last_checkpoint < due:
            return
        self._last_checkpoint = now
        # Never wait for the caller's thread: it may hold the lock while stop() joins this
        # thread, and a checkpoint can just as well be taken on the next tick.
        if not self._lock.acquire(blocking=False):
            return
        try:
            if self._state != _RUNNING:
                return
            report = self._build_report(final=False, now=now)
        finally:
            self._lock.release()
        self._host.broadcast("carbontrack_checkpoint", report=report, settings=self.settings)

    def _warn(self, message: str) -> None:
        if message not in self._warnings:
            self._warnings.append(message)
            # The console summary prints every report warning; logging it louder would say it twice.
            logger.info("carbontrack: %s", message)


def _components(
    devices: Sequence[DeviceEnergy], unavailable: Sequence[Unavailable]
) -> tuple[ComponentEnergy, ...]:
    """Per-component sums of ``devices``; partial where a device dropped or hardware of that
    component could not be read."""
    unavailable_components = {component_of(u.kind) for u in unavailable}
    components = []
    for comp in sorted({component_of(d.kind) for d in devices}):
        members = [d for d in devices if component_of(d.kind) == comp]
        used = {d.method for d in members}
        components.append(
            ComponentEnergy(
                component=comp,
                energy_j=sum(d.energy_j for d in members),
                methods=tuple(m for m in METHODS if m in used),
                devices=len(members),
                partial=any(d.dropped or d.resets for d in members)
                or comp in unavailable_components,
            )
        )
    return tuple(components)


def _is_gpu(device: Device) -> bool:
    return component_of(device.kind) == "gpu"


def _node_leader_hint(job: JobInfo) -> bool:
    # Before the role is taken (during discovery): whether this process may lead its node.
    return job.local_rank is None or job.local_rank == 0


def _resolve_job(settings: Settings, problems: list[str] | None = None) -> JobInfo | None:
    """The job of this run, from the options and the launcher; ``None`` for one process.

    Raises ``InvalidOption`` for contradictions and for a job without an id. Launcher variables
    that are ignored, not fatal (an unreadable ``TF_CONFIG``), are described in ``problems``.
    """
    from carbontrack._job import detect_job
    from carbontrack.errors import InvalidOption

    job = detect_job(
        distributed=settings.distributed,
        job_id=settings.job_id,
        rank=settings.rank,
        local_rank=settings.local_rank,
        world_size=settings.world_size,
        node=settings.node_name,
        problems=problems,
    )
    if job is None or not job.distributed:
        return None
    if not job.job_id:
        raise InvalidOption(
            f"rank {job.rank} of {job.world_size} ({job.source}) has no job id shared by every "
            "process: pass job_id= (the same string in every process, such as the scheduler's "
            "job id), or distributed=False to measure each process alone"
        )
    return job


_running_trackers: weakref.WeakSet[Tracker] = weakref.WeakSet()


@atexit.register
def _stop_at_exit() -> None:
    # A run still open at interpreter exit (a script that never left its epochs loop) still
    # gets its final report written; nothing is lost.
    for tracker in list(_running_trackers):
        if tracker.running:
            safe(tracker.stop, "stopping a run at exit")


class _Track:
    """What ``track()`` returns: a context manager and a decorator, fresh state per use."""

    def __init__(self, settings: Settings, plugins: Sequence[object], autoload: bool) -> None:
        self.settings = settings
        self._plugins = plugins
        self._autoload = autoload
        self._local = threading.local()
        # Every run entered and not yet exited, in order, whatever the thread: a `with` entered
        # in one thread and exited in another (a callback, an executor) still ends its run.
        self._open: list[Tracker] = []
        self._open_lock = threading.Lock()

    def new_tracker(self) -> Tracker:
        """A new, unstarted ``Tracker`` with these options."""
        return Tracker(self.settings, plugins=self._plugins, autoload=self._autoload)

    def __enter__(self) -> Tracker:
        tracker = self.new_tracker()
        stack: list[Tracker] = self._local.__dict__.setdefault("stack", [])
        tracker.start()
        stack.append(tracker)
        with self._open_lock:
            self._open.append(tracker)
        return tracker

    def __exit__(self, *exc_info: object) -> None:
        stack: list[Tracker] = self._local.__dict__.setdefault("stack", [])
        with self._open_lock:
            while stack and stack[-1] not in self._open:
                stack.pop()  # ended by an exit in another thread
            if stack:
                tracker = stack.pop()
            elif self._open:
                # Entered in another thread: the run entered last is the one ending.
                tracker = self._open[-1]
            else:
                return  # nothing entered: exiting twice is not the user's code's problem
            if tracker in self._open:
                self._open.remove(tracker)
        tracker.__exit__(*exc_info)

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:
        # Without these checks the run would cover creating the coroutine or generator (a few
        # microseconds), not the work, and report a silently wrong, near-zero figure.
        import inspect  # here: costs milliseconds; `from carbontrack import track` stays light

        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            raise TypeError(
                f"@track() on {func.__qualname__}(), which is a generator function: the run "
                "would end before the first item. Measure the loop that consumes it with "
                "`with track():` instead"
            )
        if inspect.iscoroutinefunction(func):
            coroutine_function: Callable[..., Any] = func

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                run = self.new_tracker()
                try:
                    with run:
                        return await coroutine_function(*args, **kwargs)
                finally:
                    _keep_report(async_wrapper, run)

            async_wrapper.__dict__["last_report"] = None
            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            run = self.new_tracker()
            try:
                with run:
                    return func(*args, **kwargs)
            finally:
                _keep_report(wrapper, run)

        wrapper.__dict__["last_report"] = None
        return wrapper


def _keep_report(wrapper: Callable[..., Any], run: Tracker) -> None:
    # The decorated function's latest report, as `func.last_report` (the user holds only the
    # function, not the trackers behind its calls).
    if run._report is not None:
        wrapper.__dict__["last_report"] = run._report


@overload
def track(
    func: None = None, /, *, plugins: Sequence[object] = (), autoload: bool = True, **options: Any
) -> _Track: ...
@overload
def track(func: Callable[P, R], /) -> Callable[P, R]: ...
def track(
    func: Callable[P, R] | None = None,
    /,
    *,
    plugins: Sequence[object] = (),
    autoload: bool = True,
    **options: Any,
) -> _Track | Callable[P, R]:
    """Measure a block (``with track() as run:``) or every call of a function (``@track()``).

    Options (validated now, before anything runs): ``epochs``, ``epochs_before_pred``,
    ``components`` ("all", "cpu", "gpu", or a list), ``interval_s``, ``log_dir``, ``verbose``,
    ``location``, ``pue`` and the rest of ``carbontrack.Settings``. ``plugins`` adds plugin
    objects for this run (such as ``carbontrack.testing.FakeHardware``); ``autoload=False``
    skips installed entry-point plugins. A decorated function keeps the report of its latest
    call as ``func.last_report``.
    """
    settings = make_settings(**options)
    tracker = _Track(settings, tuple(plugins), autoload)
    if func is not None:
        return tracker(func)
    return tracker


class _EpochFunction:
    """A function whose every call is one epoch of one run (made by ``track_epochs``)."""

    def __init__(self, func: Callable[..., Any], factory: _Track) -> None:
        functools.update_wrapper(self, func)
        self._func = func
        self._factory = factory
        self._lock = threading.Lock()
        self.tracker: Tracker | None = None
        self.report: Report | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            if self.tracker is None or not self.tracker.running:
                self.tracker = self._factory.new_tracker().start()
            tracker = self.tracker
        try:
            with tracker.epoch():
                return self._func(*args, **kwargs)
        finally:
            planned = tracker.settings.epochs
            if planned is not None and len(tracker._epochs) >= planned:
                self.stop()

    def stop(self) -> Report | None:
        """End the run now (fewer calls than ``epochs``); return its report."""
        with self._lock:
            if self.tracker is not None and self.tracker.running:
                self.report = self.tracker.stop()
            return self.report


def track_epochs(
    *, epochs: int, plugins: Sequence[object] = (), autoload: bool = True, **options: Any
) -> Callable[[Callable[..., Any]], _EpochFunction]:
    """Decorate an epoch function: every call is one epoch of a run of ``epochs`` calls.

    The run starts at the first call and stops (writing its report, available as
    ``func.report``) after ``epochs`` calls; ``func.stop()`` ends it early. Calls after that start
    a new run.
    """
    factory = _Track(make_settings(epochs=epochs, **options), tuple(plugins), autoload)

    def decorate(func: Callable[..., Any]) -> _EpochFunction:
        import inspect  # here: costs milliseconds; `from carbontrack import track` stays light

        # A call of these returns at once (a coroutine or generator): each "epoch" would
        # measure a few microseconds, silently.
        if (
            inspect.iscoroutinefunction(func)
            or inspect.isgeneratorfunction(func)
            or inspect.isasyncgenfunction(func)
        ):
            raise TypeError(
                f"@track_epochs() on {func.__qualname__}(), an async or generator function: a "
                "call returns before the epoch's work is done. Use `with track(epochs=N) as "
                "run:` and `with run.epoch():` around each epoch's work instead"
            )
        return _EpochFunction(func, factory)

    return decorate
