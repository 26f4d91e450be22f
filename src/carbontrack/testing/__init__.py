"""Fakes at the hardware boundary, for carbontrack's tests, users' tests and plugin authors.

``FakeHardware`` is a real plugin whose devices follow a script: energy counters advancing at
given watts (with wraps and resets), power sensors, read failures at chosen reads, and
exceptions in discovery or reading. ``FakeClock`` lets a test run hours of measurement in
milliseconds. Figures from these fakes are simulated: they never reach a real report.

Fakes of real hardware interfaces live in submodules, re-exported here: a powercap sysfs tree,
an NVML module, a ``powermetrics`` executable, HTTP servers for the intensity APIs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

import attrs

from carbontrack.hookspecs import hookimpl
from carbontrack.model import Device, Method, Reading, Unavailable
from carbontrack.settings import Settings

__all__ = ["FakeClock", "FakeDevice", "FakeHardware", "integrate_j"]


class FakeClock:
    """A monotonic clock that only moves when told to (``advance``), thread-safe."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        with self._lock:
            self._now += seconds


Watts = float | Callable[[float], float]


def integrate_j(watts: Watts, t0: float, t1: float) -> float:
    """Exact energy of ``watts`` (constant, or a function of time) from ``t0`` to ``t1``.

    A function is integrated with the midpoint rule on 1 ms steps: exact for piecewise-constant
    traces on that grid, which is what the fakes' power traces are.
    """
    if t1 <= t0:
        return 0.0
    if not callable(watts):
        return float(watts) * (t1 - t0)
    steps = max(1, min(1_000_000, round((t1 - t0) / 0.001)))
    h = (t1 - t0) / steps
    return sum(float(watts(t0 + (i + 0.5) * h)) for i in range(steps)) * h


@attrs.define
class FakeDevice:
    """One scripted device.

    ``watts`` is constant power or a function of the seconds since the plugin's first read.
    With ``method="counter"`` the device reports a cumulative counter (starting at ``start_j``,
    wrapping at ``wrap_j``); with ``"power"`` or ``"model"`` it reports ``watts``. ``readings``
    replaces the physics with a fixed sequence of raw values (joules or watts), the last one
    repeating. Reads are numbered from 1 (discovery does not count): ``fail_at`` reads return an
    error for this device, ``reset_at`` reads find the counter restarted from 0.
    """

    id: str
    kind: str = "cpu"
    watts: Watts = 10.0
    method: Method = "counter"
    wrap_j: float | None = None
    start_j: float = 0.0
    readings: Sequence[float] | None = None
    fail_at: Collection[int] = ()
    reset_at: Collection[int] = ()
    name: str | None = None
    shared: bool = False
    # Simulation state: the true energy drawn so far and the raw counter (before wrapping).
    true_j: float = attrs.field(default=0.0, init=False)
    _counter_j: float = attrs.field(default=0.0, init=False)

    def power_at(self, elapsed_s: float) -> float:
        """The device's power ``elapsed_s`` after the first read."""
        return float(self.watts(elapsed_s)) if callable(self.watts) else float(self.watts)

    def _advance(self, t0: float, t1: float) -> None:
        energy = integrate_j(self.watts, t0, t1)
        self.true_j += energy
        self._counter_j += energy

    def _reading(self, read_number: int, elapsed_s: float) -> Reading:
        if read_number in self.fail_at:
            return Reading(self.id, error=f"fake failure of {self.id} at read {read_number}")
        if read_number in self.reset_at:
            # A reset clears the hardware counter, offset included (a driver reload).
            self._counter_j = 0.0
            self.start_j = 0.0
        if self.readings is not None:
            value = self.readings[min(read_number - 1, len(self.readings) - 1)]
            if self.method == "counter":
                return Reading(self.id, joules=value, wrap_j=self.wrap_j)
            return Reading(self.id, watts=value)
        if self.method == "counter":
            raw = self.start_j + self._counter_j
            if self.wrap_j:
                raw %= self.wrap_j
            return Reading(self.id, joules=raw, wrap_j=self.wrap_j)
        return Reading(self.id, watts=self.power_at(elapsed_s))


class FakeHardware:
    """A plugin serving scripted ``FakeDevice`` s; pass it to ``track(plugins=[...])``.

    ``unavailable`` lists ``Unavailable`` entries to report from discovery;
    ``discover_error`` / ``read_error_at`` make the plugin raise (in discovery, or at the given
    read numbers) to exercise isolation; ``hang_at`` read numbers block for ``hang_s`` seconds,
    like a driver call that hangs. ``reads`` counts read calls; ``closed`` turns true when the
    host closes the devices.
    """

    def __init__(
        self,
        devices: Sequence[FakeDevice] = (),
        *,
        name: str = "fake",
        clock: Callable[[], float] = time.monotonic,
        unavailable: Sequence[Unavailable] = (),
        discover_error: BaseException | None = None,
        read_error_at: Collection[int] = (),
        read_delay_s: float = 0.0,
        hang_at: Collection[int] = (),
        hang_s: float = 5.0,
    ) -> None:
        self.name = name
        self.devices = {d.id: d for d in devices}
        self.unavailable = tuple(unavailable)
        self.discover_error = discover_error
        self.read_error_at = frozenset(read_error_at)
        self.read_delay_s = read_delay_s
        self.hang_at = frozenset(hang_at)
        self.hang_s = hang_s
        self.reads = 0
        self.closed = False
        self._clock = clock
        self._t0: float | None = None
        self._last_t: float | None = None
        self._lock = threading.Lock()

    @property
    def true_energy_j(self) -> float:
        """The exact energy all devices drew since the first read (the truth to compare with)."""
        return sum(d.true_j for d in self.devices.values())

    @hookimpl
    def carbontrack_discover_devices(self, settings: Settings) -> list[Device | Unavailable]:
        """Return the scripted devices, or raise ``discover_error``."""
        if self.discover_error is not None:
            raise self.discover_error
        found: list[Device | Unavailable] = [
            Device(
                id=d.id,
                kind=d.kind,
                name=d.name or f"{self.name} {d.id}",
                backend=self.name,
                method=d.method,
                shared=d.shared,
            )
            for d in self.devices.values()
        ]
        return [*found, *self.unavailable]

    @hookimpl
    def carbontrack_read_energy(self, devices: Sequence[Device]) -> list[Reading]:
        """Advance the simulation to now and read the requested devices."""
        with self._lock:
            self.reads += 1
            number = self.reads
            now = self._clock()
            if self._t0 is None:
                self._t0 = self._last_t = now
            assert self._last_t is not None
            for d in self.devices.values():
                d._advance(self._last_t - self._t0, now - self._t0)
            self._last_t = now
            if self.read_delay_s:
                time.sleep(self.read_delay_s)
            if number in self.hang_at:
                time.sleep(self.hang_s)  # a driver call that blocks
            if number in self.read_error_at:
                raise OSError(f"fake read error at read {number}")
            return [self.devices[d.id]._reading(number, now - self._t0) for d in devices]

    @hookimpl
    def carbontrack_close_devices(self, devices: Sequence[Device]) -> None:
        """Remember that the host closed the devices."""
        self.closed = True

    def __repr__(self) -> str:
        return f"FakeHardware(name={self.name!r}, devices={list(self.devices)!r})"


def fake_settings(**options: Any) -> Settings:
    """``Settings`` for tests, validated like ``track()`` options."""
    from carbontrack.settings import make_settings

    return make_settings(**options)
