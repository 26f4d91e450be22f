"""A drop-in for carbontracker: ``from carbontrack.compat import CarbonTracker``.

Same constructor and methods as ``carbontracker.tracker.CarbonTracker`` (2.4.7), implemented on
``track()``. Where carbontracker's behaviour was harmful, carbontrack's wins: no ``input()``
prompt, no process exit on errors, devices summed instead of averaged. See docs/migration.md.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from carbontrack._tracker import Tracker, track
from carbontrack.hookspecs import hookimpl
from carbontrack.model import Device, EpochRecord, Prediction, Reading, Report
from carbontrack.settings import Settings

__all__ = ["CarbonTracker", "SimulatedHardware"]

logger = logging.getLogger(__name__)

#: carbontracker's default utilisation for simulated devices (``sim_*_util=None``).
DEFAULT_SIM_UTIL = 0.5


@attrs.frozen
class _SimSpec:
    id: str
    kind: str
    name: str
    watts: float


class SimulatedHardware:
    """carbontracker's ``sim_cpu`` / ``sim_gpu``: constant-power devices, labelled as models.

    Each device reports ``method="model"``, so reports and summaries mark its energy as an
    estimate; a measured device of the same kind takes precedence over it.
    """

    name = "simulated"

    def __init__(self, specs: Sequence[_SimSpec]) -> None:
        self._specs = {s.id: s for s in specs}

    @hookimpl
    def carbontrack_discover_devices(self, settings: Settings) -> list[Device]:
        """The simulated devices, as models."""
        return [
            Device(
                id=s.id,
                kind=s.kind,
                name=s.name,
                backend=self.name,
                method="model",
                detail=f"simulated by carbontracker's sim_{s.kind} option: {s.watts:g} W constant",
            )
            for s in self._specs.values()
        ]

    @hookimpl
    def carbontrack_read_energy(self, devices: Sequence[Device]) -> list[Reading]:
        """Constant power for every simulated device."""
        return [Reading(d.id, watts=self._specs[d.id].watts) for d in devices]


def _sim_spec(kind: str, name: object, watts: object, util: object, watts_arg: str) -> _SimSpec:
    if watts is None:
        raise ValueError(
            f"sim_{kind}={name!r} needs {watts_arg}= (the device's power in W); "
            f"pass {watts_arg}=<watts> or drop sim_{kind}"
        )
    if isinstance(watts, bool) or not isinstance(watts, int | float) or not watts > 0:
        raise ValueError(f"{watts_arg}={watts!r} is not valid: expected a number > 0 (watts)")
    u = DEFAULT_SIM_UTIL if util is None else util
    if isinstance(u, bool) or not isinstance(u, int | float) or not 0 <= u <= 1:
        raise ValueError(f"sim_{kind}_util={util!r} is not valid: expected a number from 0 to 1")
    return _SimSpec(
        id=f"sim-{kind}",
        kind=kind,
        name=f"{name} (simulated)",
        watts=float(watts) * float(u),
    )


#: The smallest positive budget: every prediction exceeds it, so the callback runs at the first.
_EVERY_PREDICTION_G = 5e-324


def _confirm_by_warning(prediction: Prediction) -> None:
    warnings.warn(
        f"stop_and_confirm=True: carbontracker would stop here and ask whether to go on "
        f"(predicted {prediction.co2eq_g:.4g} gCO2eq for {prediction.epochs} epochs). carbontrack "
        "never waits for input(): training goes on. To stop automatically, use "
        "carbontrack.track(budget_co2eq_g=..., on_budget='raise')",
        UserWarning,
        stacklevel=2,
    )


class CarbonTracker:
    """carbontracker's tracker on top of carbontrack; see docs/migration.md for the mapping.

    Measuring starts at construction (as in carbontracker) and covers the whole run, not only
    the time inside epochs. After ``monitor_epochs`` epochs (all epochs with ``-1``) the run
    stops and the report is printed and written; ``report`` holds it.
    """

    def __init__(  # noqa: PLR0917 (carbontracker's arguments could be passed by position)
        self,
        epochs: int,
        epochs_before_pred: int = 1,
        monitor_epochs: int = -1,
        update_interval: float = 1,
        interpretable: bool = True,
        stop_and_confirm: bool = False,
        ignore_errors: bool = False,
        components: str = "all",
        devices_by_pid: bool = False,
        log_dir: str | None = None,
        log_file_prefix: str = "",
        verbose: int = 1,
        decimal_precision: int = 12,
        api_keys: Mapping[str, str] | None = None,
        sim_cpu: str | None = None,
        sim_cpu_tdp: float | None = None,
        sim_cpu_util: float | None = None,
        sim_gpu: str | None = None,
        sim_gpu_watts: float | None = None,
        sim_gpu_util: float | None = None,
    ) -> None:
        if monitor_epochs == 0 or 0 < monitor_epochs < epochs_before_pred:
            raise ValueError(
                f"monitor_epochs={monitor_epochs!r} is not valid: expected -1 (all epochs) or "
                f"an integer >= epochs_before_pred ({epochs_before_pred})"
            )
        if isinstance(decimal_precision, bool) or not isinstance(decimal_precision, int):
            raise TypeError(
                f"decimal_precision={decimal_precision!r} is not valid: expected an int"
            )
        if decimal_precision < 0:
            raise ValueError(f"decimal_precision={decimal_precision!r} is not valid: expected >= 0")
        sims = []
        if sim_cpu is not None:
            sims.append(_sim_spec("cpu", sim_cpu, sim_cpu_tdp, sim_cpu_util, "sim_cpu_tdp"))
        if sim_gpu is not None:
            sims.append(_sim_spec("gpu", sim_gpu, sim_gpu_watts, sim_gpu_util, "sim_gpu_watts"))
        self.interpretable = interpretable
        self.ignore_errors = ignore_errors
        self.decimal_precision = decimal_precision
        self.stop_and_confirm = stop_and_confirm
        # -1 meant "all epochs" in carbontracker's docs but predicted nothing in 2.x: never predict.
        before_pred = 0 if epochs_before_pred == -1 else epochs_before_pred
        self.monitor_epochs = epochs if monitor_epochs == -1 else monitor_epochs
        # carbontracker asked for input() after its prediction. Here the same moment goes
        # through the budget mechanism: a budget every prediction exceeds, with a callback
        # that warns (once per run) and lets training go on.
        confirm: dict[str, Any] = (
            {"budget_co2eq_g": _EVERY_PREDICTION_G, "on_budget": _confirm_by_warning}
            if stop_and_confirm
            else {}
        )
        self._factory = track(
            plugins=[SimulatedHardware(sims)] if sims else (),
            epochs=epochs,
            epochs_before_pred=before_pred,
            interval_s=update_interval,
            components=components,
            devices_by_pid=devices_by_pid,
            log_dir=log_dir,
            write_log=log_dir is not None,  # carbontracker wrote no files without a log_dir
            log_file_prefix=f"{log_file_prefix}_" if log_file_prefix else "",
            # carbontracker accepted any verbosity and treated everything above 1 alike.
            verbose=min(verbose, 2) if isinstance(verbose, int) and verbose >= 0 else verbose,
            api_keys=dict(api_keys or {}),
            plugin_options={"console": {"equivalents": bool(interpretable)}},
            **confirm,
        )
        self.tracker: Tracker = self._factory.new_tracker().start()
        self.report: Report | None = None

    @property
    def settings(self) -> Settings:
        """The carbontrack settings this tracker runs with."""
        return self.tracker.settings

    def epoch_start(self) -> None:
        """Start an epoch (a no-op once the run has stopped, as in carbontracker)."""
        if self.tracker.running:
            self.tracker.epoch_start()

    def epoch_end(self) -> EpochRecord | None:
        """End the epoch; after ``monitor_epochs`` epochs, stop and report."""
        if not self.tracker.running:
            return None
        record = self.tracker.epoch_end()
        if record.index >= self.monitor_epochs:
            self.report = self.tracker.stop()
        return record

    def stop(self) -> Report | None:
        """End the run early (training interrupted) and report what was measured."""
        if self.tracker.running:
            self.report = self.tracker.stop()
        return self.report

    def set_api_keys(self, api_keys: Mapping[str, str]) -> None:
        """Set live intensity provider keys; they apply to the intensity looked up at the end."""
        merged = {**self.tracker.settings.api_keys, **dict(api_keys)}
        self.tracker.settings = attrs.evolve(self.tracker.settings, api_keys=merged)
