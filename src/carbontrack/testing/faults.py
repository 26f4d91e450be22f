"""A plugin that misbehaves on purpose, hook by hook: for carbontrack's tests and plugin authors.

``FaultyPlugin(faults={"read": "hang"})`` is a real plugin with one power-measured device whose
chosen hooks hang (until ``release()``, or for ``hang_s``), raise, call ``sys.exit(3)``, or
return garbage (a wrong type, an unhashable id, a NaN, an absurd number). Use it to check that
your own plugin host code, writer or integration copes, or to see what carbontrack reports when
a plugin goes wrong: the run goes on, the failure is recorded against the plugin and hook, and
its devices are marked partial. For example::

    from carbontrack import track
    from carbontrack.testing.faults import FaultyPlugin

    bad = FaultyPlugin(faults={"read": "hang"})
    with track(plugins=[bad]) as run:
        ...
    bad.release()  # let the hung call return (its thread is a daemon either way)
    print(run.report.failures)
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from carbontrack.hookspecs import hookimpl
from carbontrack.model import Device, Intensity, Location, Reading, Unavailable
from carbontrack.settings import Settings

__all__ = ["FAULTS", "HOOKS", "FaultyPlugin", "Garbage", "garbage_for"]

#: Short names of the hooks a fault can be put in (the full ``carbontrack_*`` names work too).
HOOKS = (
    "discover",
    "read",
    "close",
    "locate",
    "carbon_intensity",
    "run_started",
    "epoch_ended",
    "checkpoint",
    "sample",
    "report_ready",
)

#: What a hook can do instead of its job: block, raise ``RuntimeError``, raise ``SystemExit(3)``
#: (a plugin calling ``sys.exit``), or return the hook's typical garbage (``garbage_for``).
FAULTS = ("hang", "raise", "exit", "garbage")


class Garbage:
    """A fault that makes the hook return ``value`` as it is (whatever its type)."""

    def __init__(self, value: object) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"Garbage({self.value!r})"


def _bypass(cls: type[Any], **fields: Any) -> Any:
    # A frozen attrs value with fields its validators would refuse: what a buggy plugin that
    # builds values by hand (or with attrs.validators disabled) hands back.
    value = object.__new__(cls)
    for name, field_value in fields.items():
        object.__setattr__(value, name, field_value)
    return value


def garbage_for(hook: str, device_id: str = "dev-0") -> object:
    """The typical garbage of ``hook``: a value that broke carbontrack before it checked them."""
    hook = hook.removeprefix("carbontrack_")
    if hook == "discover":
        return 42
    if hook == "read":
        # Finite, so Reading's own check lets it through; 2 x 1.7e308 is inf.
        return [Reading(device_id, watts=1.7e308)]
    if hook == "locate":
        return "DK"
    if hook == "carbon_intensity":
        return _bypass(
            Intensity,
            g_per_kwh=float("nan"),
            source="faulty",
            basis="lifecycle",
            year=None,
            zone=None,
            is_fallback=False,
            note="",
            points=(),
            forecast=(),
        )
    return 42  # writers' and close's results are ignored: garbage there must stay harmless


class FaultyPlugin:
    """A plugin with one device, whose hooks fail as told.

    ``faults`` maps a hook (``"read"`` or ``"carbontrack_read_energy"``) to ``"hang"``,
    ``"raise"``, ``"exit"``, ``"garbage"`` or ``Garbage(value)``. A hang lasts ``hang_s``
    seconds, or (``None``) until ``release()``. ``fault_after`` delays the faults until a hook
    has been called that many times without one (e.g. ``{"read": 1}``: the first read works,
    the second hangs). ``calls`` counts each hook's calls; ``hanging`` counts calls blocked now.
    The device (``kind``, measured as ``watts`` of constant power) is a power sensor.
    """

    def __init__(
        self,
        faults: Mapping[str, str | Garbage] | None = None,
        *,
        name: str = "faulty",
        kind: str = "gpu",
        watts: float = 50.0,
        hang_s: float | None = None,
        fault_after: Mapping[str, int] | None = None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.watts = watts
        self.hang_s = hang_s
        self.faults = {self._short(h): f for h, f in (faults or {}).items()}
        self.fault_after = {self._short(h): n for h, n in (fault_after or {}).items()}
        for fault in self.faults.values():
            if not isinstance(fault, Garbage) and fault not in FAULTS:
                raise ValueError(
                    f"fault {fault!r} is not one of {', '.join(FAULTS)} or Garbage(value)"
                )
        self.calls: dict[str, int] = dict.fromkeys(HOOKS, 0)
        self.hanging = 0
        self._release = threading.Event()
        self._lock = threading.Lock()
        self.device_id = f"{name}-0"

    @staticmethod
    def _short(hook: str) -> str:
        short = hook.removeprefix("carbontrack_")
        short = {
            "discover_devices": "discover",
            "read_energy": "read",
            "close_devices": "close",
        }.get(short, short)
        if short not in HOOKS:
            raise ValueError(f"hook {hook!r} is not one of {', '.join(HOOKS)}")
        return short

    def release(self) -> None:
        """End every hang now and later (the hung calls return, with nothing)."""
        self._release.set()

    def _enter(self, hook: str) -> tuple[bool, object]:
        """Count the call and play its fault: ``(True, value)`` when the hook must return
        ``value`` instead of doing its job."""
        with self._lock:
            self.calls[hook] += 1
            number = self.calls[hook]
        fault = self.faults.get(hook)
        if fault is None or number <= self.fault_after.get(hook, 0):
            return False, None
        if isinstance(fault, Garbage):
            return True, fault.value
        if fault == "garbage":
            return True, garbage_for(hook, self.device_id)
        if fault == "raise":
            raise RuntimeError(f"{self.name}: fault injected in {hook}")
        if fault == "exit":
            sys.exit(3)
        with self._lock:
            self.hanging += 1
        try:
            self._release.wait(self.hang_s)
        finally:
            with self._lock:
                self.hanging -= 1
        return True, None

    @hookimpl
    def carbontrack_discover_devices(self, settings: Settings) -> Any:
        """One power device, unless the fault says otherwise."""
        faulted, value = self._enter("discover")
        if faulted:
            return value
        found: list[Device | Unavailable] = [
            Device(
                id=self.device_id,
                kind=self.kind,
                name=f"{self.name} device",
                backend=self.name,
                method="power",
            )
        ]
        return found

    @hookimpl
    def carbontrack_read_energy(self, devices: Sequence[Device]) -> Any:
        """Constant power for each device, unless the fault says otherwise."""
        faulted, value = self._enter("read")
        if faulted:
            return value
        return [Reading(d.id, watts=self.watts) for d in devices]

    @hookimpl
    def carbontrack_close_devices(self, devices: Sequence[Device]) -> Any:
        """Nothing to release, unless the fault says otherwise."""
        return self._enter("close")[1]

    @hookimpl
    def carbontrack_locate(self, settings: Settings) -> Location | None:
        """No answer (the next plugin is asked), unless the fault says otherwise."""
        return self._enter("locate")[1]  # type: ignore[return-value]

    @hookimpl
    def carbontrack_carbon_intensity(
        self, location: Location, start: float, end: float, settings: Settings
    ) -> Intensity | None:
        """No answer, unless the fault says otherwise."""
        return self._enter("carbon_intensity")[1]  # type: ignore[return-value]

    @hookimpl
    def carbontrack_run_started(self) -> Any:
        """A writer hook: nothing, unless the fault says otherwise."""
        return self._enter("run_started")[1]

    @hookimpl
    def carbontrack_epoch_ended(self) -> Any:
        """A writer hook: nothing, unless the fault says otherwise."""
        return self._enter("epoch_ended")[1]

    @hookimpl
    def carbontrack_checkpoint(self) -> Any:
        """A writer hook: nothing, unless the fault says otherwise."""
        return self._enter("checkpoint")[1]

    @hookimpl
    def carbontrack_sample(self) -> Any:
        """A live exporter's hook: nothing, unless the fault says otherwise."""
        return self._enter("sample")[1]

    @hookimpl
    def carbontrack_report_ready(self) -> Any:
        """A writer hook: nothing, unless the fault says otherwise."""
        return self._enter("report_ready")[1]

    def __repr__(self) -> str:
        return f"FaultyPlugin(name={self.name!r}, faults={self.faults!r})"
