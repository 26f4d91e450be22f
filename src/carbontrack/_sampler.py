"""The measuring engine: turns counter and power readings into energy per device over time.

Counters are differenced (with wrap and reset handling); power is integrated with the trapezoid
rule. One named daemon thread reads between the edges; the edges themselves (start, epoch
boundaries, stop) are read on the caller's thread. Nothing here raises into user code.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple

from carbontrack.model import Device, Reading

if TYPE_CHECKING:
    from carbontrack._plugins import PluginHost

__all__ = ["DROP_AFTER_FAILURES", "Sampler", "counter_delta", "trapezoid_j"]

logger = logging.getLogger(__name__)

#: Consecutive failed reads after which a device is dropped (one glitch is forgiven).
DROP_AFTER_FAILURES = 3

#: The background interval is shortened so that a counter can advance at most this share of its
#: range between two reads at the highest power seen; a wrap is therefore never missed, and a
#: backwards step larger than half the range cannot be a wrap (it is a reset).
WRAP_SAFETY = 0.25
MIN_INTERVAL_S = 0.01

#: How long a read on the caller's thread (start, epoch boundaries, stop) waits for a read in
#: progress on the background thread. Every plugin call in a read is bounded by the plugin
#: host's read budget (``HOOK_BUDGET_S``), so this is a second line of defence only.
EDGE_WAIT_S = 2.0

#: The first background read comes this soon after the start, whatever ``interval_s``: until a
#: second read no power is known, so the interval cannot yet be shortened for fast-wrapping
#: counters (a 15 s interval would miss every wrap of its first 15 s).
FIRST_TICK_S = 0.1

#: The most power one device of a kind can draw (W), for plausibility: a counter that jumps
#: forward by more than ``max(this, 10 x the highest power seen) x max(interval, 5 s)`` was reset
#: or reloaded, not drawn (a RAPL package counter reset to 250 kJ mid-run would otherwise count
#: 200 kJ). Generous: a GB200 superchip draws ~2.7 kW, a 2-socket node's psys ~2 kW; a 5 s floor
#: on the interval leaves room for counters that update in lumps.
MAX_KIND_W: dict[str, float] = {
    "cpu": 2_000.0,
    "dram": 1_000.0,
    "ram": 1_000.0,
    "gpu": 5_000.0,
    "ane": 500.0,
    "psys": 20_000.0,
}
#: Plugins' own kinds (a PDU, a whole node): a megawatt is beyond any single device.
MAX_OTHER_W = 1_000_000.0
PLAUSIBLE_MIN_DT_S = 5.0

#: Readings beyond these are rejected as garbage (a failed read naming the value), so that sums
#: and the trapezoid rule stay finite: 1.7e308 W + 1.7e308 W is ``inf``.
ABSURD_W = 1e7
ABSURD_J = 1e18

#: A wrap that implies more than this multiple of the highest power seen so far is a reset: a
#: driver reload from above half the range would otherwise count up to half the range (131 kJ
#: on a RAPL package) as energy. Ten times leaves room for idle-to-load jumps.
PLAUSIBLE_POWER_FACTOR = 10.0

#: The timeline (total energy over time, for time-resolved intensity and live status) keeps one
#: point per this many seconds, at most ``TIMELINE_POINTS``: memory stays flat on long runs.
TIMELINE_STEP_S = 30.0
TIMELINE_POINTS = 20_160  # one week at 30 s


def counter_delta(
    previous_j: float,
    current_j: float,
    wrap_j: float | None,
    max_advance_j: float | None = None,
    max_forward_j: float | None = None,
) -> tuple[float, bool]:
    """Energy between two reads of a cumulative counter: ``(joules, was_reset)``.

    A counter that went down wrapped when ``wrap_j`` is known and the implied advance is under
    half the range (the sampler reads often enough for that) and under ``max_advance_j`` (what
    the device could plausibly have drawn in the interval); otherwise it was reset (driver
    reload, counter cleared) and the interval counts nothing rather than a negative or huge value.
    A counter that went up by more than ``max_forward_j`` was reset too (set to a new value).
    """
    if current_j >= previous_j:
        advance = current_j - previous_j
        if max_forward_j is not None and advance > max_forward_j:
            return 0.0, True  # more than the device could draw: reloaded, not energy
        return advance, False
    if wrap_j is not None and wrap_j > 0 and previous_j <= wrap_j:
        advance = (wrap_j - previous_j) + current_j
        plausible = max_advance_j is None or advance <= max_advance_j
        if advance <= wrap_j / 2 and plausible:
            return advance, False
    return 0.0, True


def trapezoid_j(previous_w: float, current_w: float, dt_s: float) -> float:
    """Energy of a linear power ramp from ``previous_w`` to ``current_w`` over ``dt_s``."""
    return (previous_w + current_w) / 2.0 * dt_s


class _DeviceState:
    # A plain slotted class, not attrs: see DeviceTotal.
    __slots__ = (
        "device",
        "dropped",
        "energy_j",
        "failures_in_row",
        "last_error",
        "last_j",
        "last_t",
        "last_w",
        "peak_w",
        "plugin",
        "reset_s",
        "resets",
        "wrap_j",
    )

    def __init__(self, *, device: Device, plugin: str) -> None:
        self.device = device
        self.plugin = plugin
        self.energy_j = 0.0
        self.last_j: float | None = None
        self.last_w: float | None = None
        self.last_t: float | None = None
        self.wrap_j: float | None = None
        self.peak_w = 0.0
        self.resets = 0
        self.reset_s = 0.0
        self.failures_in_row = 0
        self.last_error = ""
        self.dropped: str | None = None


class DeviceTotal(NamedTuple):
    """A device's energy so far and its state, as the tracker builds reports from.

    A named tuple rather than an attrs class: generating an attrs class costs about half a
    millisecond in every process, and this record never leaves the tracker.
    """

    device: Device
    plugin: str
    energy_j: float
    resets: int
    dropped: str | None
    reset_s: float = 0.0


_live_samplers: weakref.WeakSet[Sampler] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # The parent's sampler thread does not exist in the child; its lock may have been held
    # at the moment of the fork. Give the child a fresh lock and a stopped sampler.
    for sampler in list(_live_samplers):
        sampler._forget_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Sampler:
    """Reads devices, accumulates their energy and runs the background thread for one tracker."""

    def __init__(
        self,
        host: PluginHost,
        devices: Mapping[str, Sequence[Device]],
        *,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
        on_tick: Callable[[float], None] | None = None,
        name: str = "carbontrack-sampler",
    ) -> None:
        self._host = host
        self._states: dict[tuple[str, str], _DeviceState] = {
            (plugin, d.id): _DeviceState(device=d, plugin=plugin)
            for plugin, devs in devices.items()
            for d in devs
        }
        self.interval_s = interval_s
        self._clock = clock
        self._on_tick = on_tick
        self._name = name
        self._lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._blocked = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned: set[str] = set()
        self.timeline: deque[tuple[float, float]] = deque(maxlen=TIMELINE_POINTS)
        self.ticks = 0
        self.forked = False
        _live_samplers.add(self)

    # -- reading -----------------------------------------------------------------------------

    def read(self, *, wait_s: float | None = EDGE_WAIT_S) -> float:
        """Read every active device once and update its energy; return the clock time used.

        Reads never overlap; every plugin is read at once on its own worker (a plugin that does
        not answer within the host's read budget is left behind, its devices fail that read,
        and it is not read again until it returns). ``wait_s`` bounds how long this call waits
        for a read in progress on another thread (``None``: as long as that takes, which the
        read budget bounds).
        """
        timeout = -1.0 if wait_s is None else wait_s
        if not self._read_lock.acquire(timeout=timeout):
            self._warn_once(
                "blocked",
                "a read has been in progress for over %.1f s; this one is skipped, and the "
                "figures stay at the last good read",
                wait_s,
            )
            return self._clock()
        try:
            now = self._clock()
            with self._lock:
                by_plugin: dict[str, list[_DeviceState]] = {}
                for state in self._states.values():
                    if state.dropped is None:
                        by_plugin.setdefault(state.plugin, []).append(state)
            # The plugins are called without the state lock: totals, snapshots and reports
            # stay available while a plugin is slow.
            # Each plugin's readings are timed on its worker, just before it is called: the
            # hand-over to the worker thread must not skew power integration.
            results = self._host.call_each(
                "carbontrack_read_energy",
                {p: {"devices": [s.device for s in states]} for p, states in by_plugin.items()},
                clock=self._clock,
            )
            stuck = self._host.stuck() if not all(r[0] for r in results.values()) else {}
            # The read's own time is the earliest plugin's: with one plugin, the report's
            # duration and its power integration cover exactly the same window.
            stamps = [r[2] for r in results.values() if r[2] is not None]
            now = max(min(stamps), now) if stamps else now
            with self._lock:
                for plugin, states in by_plugin.items():
                    ok, result, at = results.get(plugin, (True, None, None))
                    at = now if at is None else max(at, now)
                    self._apply_plugin(plugin, states, ok, result, at, stuck_in=stuck.get(plugin))
                total = self._total_locked()
                if not self.timeline or now - self.timeline[-1][0] >= TIMELINE_STEP_S:
                    self.timeline.append((now, total))
            return now
        finally:
            self._read_lock.release()

    def _apply_plugin(
        self,
        plugin: str,
        states: list[_DeviceState],
        ok: bool,
        result: object,
        now: float,
        *,
        stuck_in: str | None = None,
    ) -> None:
        readings: dict[str, Reading] = {}
        if ok:
            try:
                readings = _as_readings(result)
            except (TypeError, ValueError, AttributeError) as exc:
                self._host.record_failure(plugin, "carbontrack_read_energy", exc)
                ok = False
        dropped: dict[str, list[str]] = {}
        for state in states:
            reading = readings.get(state.device.id)
            why: str | None = None
            if not ok:
                why = (
                    f"plugin {plugin!r} has not returned from {stuck_in} (over its time budget)"
                    if stuck_in is not None
                    else "the plugin failed (see failures)"
                )
            elif reading is None:
                why = "no reading"
            elif reading.error is not None:
                why = reading.error
            else:
                why = self._implausible(state, reading)
                if why is not None:
                    self._host.record_failure(
                        plugin, "carbontrack_read_energy", ValueError(why), log=False
                    )
                    self._warn_once(f"garbage:{plugin}:{state.device.id}", "%s", why)
            if why is not None:
                if self._fail(state, why):
                    dropped.setdefault(why, []).append(state.device.name)
            else:
                assert reading is not None
                self._apply(state, reading, now)
        # One warning per plugin and cause: a dead subprocess behind three devices is one event.
        for why, names in dropped.items():
            logger.warning(
                "carbontrack: stopped measuring %s (%s): %s; the report marks coverage as partial",
                ", ".join(names),
                plugin,
                why,
            )

    def _apply(self, state: _DeviceState, reading: Reading, now: float) -> None:
        dt = now - state.last_t if state.last_t is not None else 0.0
        if reading.joules is not None:
            state.wrap_j = reading.wrap_j
            if state.last_j is not None:
                limit = PLAUSIBLE_POWER_FACTOR * state.peak_w * dt if state.peak_w > 0 else None
                forward = max(
                    PLAUSIBLE_POWER_FACTOR * state.peak_w,
                    MAX_KIND_W.get(state.device.kind, MAX_OTHER_W),
                ) * max(dt, PLAUSIBLE_MIN_DT_S)
                delta, reset = counter_delta(
                    state.last_j, reading.joules, reading.wrap_j, limit, forward
                )
                if reset:
                    state.resets += 1
                    state.reset_s += dt
                    self._warn_once(
                        f"reset:{state.plugin}:{state.device.id}",
                        "counter of %s went from %.3f J to %.3f J in %.3g s, which no wrap or "
                        "plausible power explains: treated as a reset (driver reload?), this "
                        "interval counts nothing",
                        state.device.name,
                        state.last_j,
                        reading.joules,
                        dt,
                    )
                state.energy_j += delta
                if dt > 0:
                    state.peak_w = max(state.peak_w, delta / dt)
            state.last_j = reading.joules
        elif reading.watts is not None:
            if state.last_w is not None and dt > 0:
                state.energy_j += trapezoid_j(state.last_w, reading.watts, dt)
            state.last_w = reading.watts
            state.peak_w = max(state.peak_w, reading.watts)
        state.last_t = now
        state.failures_in_row = 0

    def _implausible(self, state: _DeviceState, reading: Reading) -> str | None:
        """Why ``reading`` cannot be a true value for this device, or None."""
        name = f"{state.device.name} ({state.plugin})"
        for field, value, limit in (
            ("joules", reading.joules, ABSURD_J),
            ("watts", reading.watts, ABSURD_W),
            ("wrap_j", reading.wrap_j, ABSURD_J),
        ):
            if value is None:
                continue
            if not isinstance(value, int | float) or isinstance(value, bool):
                return f"{name}: {field}={value!r} is not a number"
            if not math.isfinite(value) or value < 0 or value > limit:
                return f"{name}: {field}={value!r} is not a plausible reading (0 to {limit:g})"
        wrap = reading.wrap_j
        if reading.joules is not None and wrap and reading.joules > wrap:
            return (
                f"{name}: counter {reading.joules:.6g} J is above its declared range "
                f"{wrap:.6g} J (max_energy_range); the value is garbage"
            )
        return None

    def _fail(self, state: _DeviceState, why: str) -> bool:
        """Count a failed read; return True when it drops the device."""
        state.failures_in_row += 1
        state.last_error = why
        if state.failures_in_row >= DROP_AFTER_FAILURES:
            state.dropped = f"dropped after {state.failures_in_row} failed reads: {why}"
            return True
        return False

    def _warn_once(self, key: str, msg: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning("carbontrack: " + msg, *args)

    # -- results -----------------------------------------------------------------------------

    def _total_locked(self) -> float:
        return sum(s.energy_j for s in self._states.values())

    def totals(self) -> list[DeviceTotal]:
        """Every device's energy so far (dropped devices keep what they measured)."""
        with self._lock:
            return [
                DeviceTotal(s.device, s.plugin, s.energy_j, s.resets, s.dropped, s.reset_s)
                for s in self._states.values()
            ]

    def total_j(self) -> float:
        """The sum of every device's energy so far."""
        with self._lock:
            return self._total_locked()

    def current_power_w(self) -> float:
        """Total power over the last timeline step, for the live status line (0 before a step)."""
        with self._lock:
            if len(self.timeline) < 2:
                return 0.0
            (t0, e0), (t1, e1) = self.timeline[-2], self.timeline[-1]
            return (e1 - e0) / (t1 - t0) if t1 > t0 else 0.0

    def next_interval(self) -> float:
        """The background interval: ``interval_s``, shortened so no counter wrap goes unseen."""
        interval = self.interval_s
        with self._lock:
            for s in self._states.values():
                if s.dropped is None and s.wrap_j:  # <= 60 s: no range wraps twice (hw notes 1.5)
                    interval = min(interval, 60.0, WRAP_SAFETY * s.wrap_j / max(s.peak_w, 1e-9))
        return max(interval, MIN_INTERVAL_S)

    # -- thread ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the background thread (the first edge read is the caller's job)."""
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # The first read comes early, so the second interval already knows the power and can
        # shorten itself for fast-wrapping counters.
        wait = min(FIRST_TICK_S, self.next_interval())
        while not self._stop.wait(wait):
            self.tick()
            wait = self.next_interval()

    def tick(self) -> None:
        """One background step: read, then let the tracker checkpoint. Never raises."""
        try:
            now = self.read(wait_s=None)
            self.ticks += 1
            if self._on_tick is not None:
                self._on_tick(now)
        except Exception:  # isolation boundary: the sampler thread must not die silently
            self._warn_once("tick", "background read failed; measurement goes on")
            logger.debug("sampler tick failed", exc_info=True)

    def stop(self, timeout_s: float = 1.0) -> None:
        """Stop the background thread, waiting at most ``timeout_s`` for it."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)
            if thread.is_alive():
                logger.warning(
                    "carbontrack: sampler thread did not stop within %.1f s (a plugin read is "
                    "blocking); the run ends with the figures of the last read that returned",
                    timeout_s,
                )
        _live_samplers.discard(self)

    @property
    def running(self) -> bool:
        """Whether the background thread is alive."""
        return self._thread is not None and self._thread.is_alive() and not self.forked

    def _forget_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._stop = threading.Event()
        self._stop.set()
        self._thread = None
        self.forked = True


def _as_readings(result: object) -> dict[str, Reading]:
    """The readings of a plugin's answer by device id; ``TypeError`` naming the bad value."""
    if result is None:
        return {}
    if isinstance(result, str | bytes | Mapping) or not isinstance(result, Iterable):
        raise TypeError(f"carbontrack_read_energy returned {result!r:.200}, not a list of Reading")
    readings: dict[str, Reading] = {}
    for r in result:
        if not isinstance(r, Reading):
            raise TypeError(f"carbontrack_read_energy returned {r!r:.200}, not a Reading")
        if not isinstance(r.device_id, str):
            raise TypeError(f"Reading.device_id={r.device_id!r:.200} is not a str")
        readings[r.device_id] = r
    return readings
