"""The measuring engine: turns counter and power readings into energy per device over time.

Counters are differenced (with wrap and reset handling); power is integrated with the trapezoid
rule. One named daemon thread reads between the edges; the edges themselves (start, epoch
boundaries, stop) are read on the caller's thread. Nothing here raises into user code.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import attrs

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

#: How long a read on the caller's thread (start, epoch boundaries, stop) waits for a
#: background read still inside a plugin before it is skipped: training never hangs on a plugin.
EDGE_WAIT_S = 1.0

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
) -> tuple[float, bool]:
    """Energy between two reads of a cumulative counter: ``(joules, was_reset)``.

    A counter that went down wrapped when ``wrap_j`` is known and the implied advance is under
    half the range (the sampler reads often enough for that) and under ``max_advance_j`` (what
    the device could plausibly have drawn in the interval); otherwise it was reset (driver
    reload, counter cleared) and the interval counts nothing rather than a negative or huge value.
    """
    if current_j >= previous_j:
        return current_j - previous_j, False
    if wrap_j is not None and wrap_j > 0 and previous_j <= wrap_j:
        advance = (wrap_j - previous_j) + current_j
        plausible = max_advance_j is None or advance <= max_advance_j
        if advance <= wrap_j / 2 and plausible:
            return advance, False
    return 0.0, True


def trapezoid_j(previous_w: float, current_w: float, dt_s: float) -> float:
    """Energy of a linear power ramp from ``previous_w`` to ``current_w`` over ``dt_s``."""
    return (previous_w + current_w) / 2.0 * dt_s


@attrs.define
class _DeviceState:
    device: Device
    plugin: str
    energy_j: float = 0.0
    last_j: float | None = None
    last_w: float | None = None
    last_t: float | None = None
    wrap_j: float | None = None
    peak_w: float = 0.0
    resets: int = 0
    failures_in_row: int = 0
    last_error: str = ""
    dropped: str | None = None


@attrs.frozen
class DeviceTotal:
    """A device's energy so far and its state, as the tracker builds reports from."""

    device: Device
    plugin: str
    energy_j: float
    resets: int
    dropped: str | None


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

        Plugin reads never overlap. ``wait_s`` bounds how long this call waits for a read in
        progress on another thread (``None``: as long as it takes): the caller's edge reads
        must not hang on a plugin that blocks the background thread, so after ``wait_s`` this
        read is skipped, with one warning, and the figures stay at the last good read.
        """
        # Once a read is known to block, later edges do not wait for it again.
        timeout = -1.0 if wait_s is None else (0.0 if self._blocked else wait_s)
        if not self._read_lock.acquire(timeout=timeout):
            self._blocked = True
            self._warn_once(
                "blocked",
                "a plugin read has blocked for over %.1f s; readings are skipped until it "
                "returns, and the figures stay at the last good read",
                wait_s,
            )
            return self._clock()
        try:
            self._blocked = False
            now = self._clock()
            with self._lock:
                by_plugin: dict[str, list[_DeviceState]] = {}
                for state in self._states.values():
                    if state.dropped is None:
                        by_plugin.setdefault(state.plugin, []).append(state)
            for plugin, states in by_plugin.items():
                # The plugin is called without the state lock: totals, snapshots and reports
                # stay available while a plugin is slow.
                ok, result = self._host.call_one(
                    plugin, "carbontrack_read_energy", devices=[s.device for s in states]
                )
                with self._lock:
                    self._apply_plugin(plugin, states, ok, result, now)
            with self._lock:
                total = self._total_locked()
                if not self.timeline or now - self.timeline[-1][0] >= TIMELINE_STEP_S:
                    self.timeline.append((now, total))
            return now
        finally:
            self._read_lock.release()

    def _apply_plugin(
        self, plugin: str, states: list[_DeviceState], ok: bool, result: object, now: float
    ) -> None:
        readings: dict[str, Reading] = {}
        if ok:
            try:
                readings = {r.device_id: r for r in _as_readings(result)}
            except (TypeError, AttributeError) as exc:
                self._host.record_failure(plugin, "carbontrack_read_energy", exc)
        dropped: dict[str, list[str]] = {}
        for state in states:
            reading = readings.get(state.device.id)
            if reading is None or reading.error is not None:
                why = reading.error if reading is not None and reading.error else "no reading"
                if not ok:
                    why = "the plugin raised (see failures)"
                if self._fail(state, why):
                    dropped.setdefault(why, []).append(state.device.name)
            else:
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
                delta, reset = counter_delta(state.last_j, reading.joules, reading.wrap_j, limit)
                if reset:
                    state.resets += 1
                    self._warn_once(
                        f"reset:{state.plugin}:{state.device.id}",
                        "counter of %s went back from %.3f J to %.3f J: treated as a reset "
                        "(driver reload?), this interval counts nothing",
                        state.device.name,
                        state.last_j,
                        reading.joules,
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
                DeviceTotal(s.device, s.plugin, s.energy_j, s.resets, s.dropped)
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
        while not self._stop.wait(self.next_interval()):
            self.tick()

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


def _as_readings(result: object) -> Iterable[Reading]:
    if result is None:
        return ()
    if not isinstance(result, Iterable):
        raise TypeError(f"carbontrack_read_energy returned {type(result).__name__}, not a list")
    readings = list(result)
    for r in readings:
        if not isinstance(r, Reading):
            raise TypeError(f"carbontrack_read_energy returned {r!r}, not a Reading")
    return readings
