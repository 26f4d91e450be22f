"""Apple Silicon CPU, GPU and ANE energy from macOS ``powermetrics`` (run through ``sudo -n``).

One ``powermetrics`` process per run streams plist samples; a reader thread sums each sample's
energy into counters that ``carbontrack_read_energy`` hands out without blocking.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import platform
import shutil
import threading
import time
import typing
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any

from carbontrack.hookspecs import hookimpl
from carbontrack.model import Device, Reading, Unavailable
from carbontrack.settings import Settings

if TYPE_CHECKING:
    import subprocess

__all__ = [
    "BACKEND",
    "FORCE_ENV",
    "KINDS",
    "PowermetricsSession",
    "Sample",
    "SampleError",
    "command",
    "decode_sample",
    "discover",
    "parse_sample",
    "sudoers_fix",
]

logger = logging.getLogger(__name__)

BACKEND = "powermetrics"
#: Set to ``1`` to look for ``powermetrics`` on any system (tests with the fake executable);
#: ``plugin_options={"powermetrics": {"force": True}}`` does the same for one run.
FORCE_ENV = "CARBONTRACK_POWERMETRICS"
KINDS = ("cpu", "gpu", "ane")
SAMPLERS = "cpu_power,gpu_power,ane_power"
_LABELS = {"cpu": "CPU", "gpu": "GPU", "ane": "Neural Engine"}
_DEFAULT_PATH = "/usr/bin/powermetrics"

#: ``close`` (as root, without sudo) waits this long after SIGTERM, then SIGKILLs and waits
#: ``KILL_WAIT_S`` to reap: together well under the one second ``stop()`` may spend on a hang.
TERM_GRACE_S = 0.4
KILL_WAIT_S = 0.3
#: Discovery waits this long for an early exit (a refused ``sudo -n`` or a broken install exits
#: within milliseconds), not for the first sample, which comes a whole interval after the start:
#: entering ``track()`` stays well under 0.3 s. A later exit fails the reads with the same
#: reason and fix.
START_WAIT_S = 0.1
_START_POLL_S = 0.005
#: A process that sends nothing for this many intervals (and at least ``MIN_STALE_S``) is hung:
#: its devices get failed reads, so the sampler drops them and the report says so.
STALE_INTERVALS = 5
MIN_STALE_S = 1.0
#: After the pipe is closed, the daemon thread that reaps sudo waits this much beyond the stale
#: limit before it says (at info level) that the process is still there.
REAP_GRACE_S = 2.0
#: Bytes without a document end after which the pending text is garbage, not a sample.
MAX_PENDING_BYTES = 4 * 1024 * 1024
_POLL_S = 0.1
_END_TAG = b"</plist>"
#: The longest powermetrics sampling interval (a longer ``interval_s`` is cut to it): the
#: sample in flight at an edge is estimated from the latest one, which must be recent.
MAX_SAMPLE_INTERVAL_S = 1.0

_PERMISSION_WORDS = (
    "password is required",
    "terminal is required",
    "not allowed",
    "may not run",
    "sudoers",
    "superuser",
)


class SampleError(ValueError):
    """A plist document that is not a usable powermetrics sample."""


class Sample(typing.NamedTuple):
    """One powermetrics sample: energy by device kind (J), and where each figure came from.

    ``sources[kind]`` is ``"energy"`` (the ``*_energy`` field, mJ) or ``"power"`` (``*_power``
    in mW times ``elapsed_ns``).
    """

    joules: Mapping[str, float]
    sources: Mapping[str, str]
    elapsed_s: float | None
    hw_model: str


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def parse_sample(doc: object) -> Sample:
    """Turn one decoded plist document into a ``Sample``; raise ``SampleError`` if it is not one.

    Energy per kind is ``processor.<kind>_energy`` / 1000 (mJ per sample) when present, else
    ``processor.<kind>_power`` (mW, averaged over the sample) times ``elapsed_ns`` / 1e12.
    Kinds with neither field are left out.
    """
    if not isinstance(doc, dict):
        raise SampleError(f"a sample is a dict, got {type(doc).__name__}")
    processor = doc.get("processor")
    if not isinstance(processor, dict):
        raise SampleError("the sample has no 'processor' dict")
    elapsed_ns = _number(doc.get("elapsed_ns"))
    if elapsed_ns is not None and (not math.isfinite(elapsed_ns) or elapsed_ns < 0):
        raise SampleError(f"elapsed_ns={doc.get('elapsed_ns')!r} is not a duration")
    joules: dict[str, float] = {}
    sources: dict[str, str] = {}
    for kind in KINDS:
        energy_mj = _number(processor.get(f"{kind}_energy"))
        power_mw = _number(processor.get(f"{kind}_power"))
        for name, value in ((f"{kind}_energy", energy_mj), (f"{kind}_power", power_mw)):
            if value is not None and (not math.isfinite(value) or value < 0):
                raise SampleError(f"{name}={value!r} is not a finite number >= 0")
        if energy_mj is not None:
            joules[kind], sources[kind] = energy_mj / 1000.0, "energy"
        elif power_mw is not None and elapsed_ns is not None:
            joules[kind], sources[kind] = power_mw * elapsed_ns / 1e12, "power"
    hw_model = doc.get("hw_model")
    return Sample(
        joules=joules,
        sources=sources,
        elapsed_s=elapsed_ns / 1e9 if elapsed_ns is not None else None,
        hw_model=hw_model if isinstance(hw_model, str) else "",
    )


def decode_sample(raw: bytes) -> Sample:
    """Decode one plist document of the stream; raise ``SampleError`` if it is garbled."""
    import plistlib

    try:
        doc = plistlib.loads(raw.strip())
    except Exception as exc:  # plistlib raises ValueError, ExpatError and more on garbage
        raise SampleError(f"not a plist ({type(exc).__name__}: {exc})") from exc
    return parse_sample(doc)


def _sudoers_word(word: str) -> str:
    # sudoers(5): these characters must be escaped with a backslash inside a command's arguments.
    return "".join("\\" + c if c in "\\,:=!()" else c for c in word)


def sudoers_fix(user: str, argv: Sequence[str]) -> str:
    """The fix for a refused ``sudo -n``: a sudoers rule that lets ``user`` run exactly
    ``argv`` (the root-owned executable and the arguments carbontrack passes) as root.

    The rule names the arguments, not a wildcard (sudoers wildcards match across words, so
    ``-i *`` would also allow ``-o /etc/anything``), and goes in its own file through
    ``visudo -f``, which checks the syntax before installing it (``tee -a /etc/sudoers`` does
    not: one typo there locks sudo).
    """
    line = f"{user} ALL=(root) NOPASSWD: " + " ".join(_sudoers_word(w) for w in argv)
    return (
        f"let {user} run powermetrics without a password: run "
        f"`sudo visudo -f /etc/sudoers.d/carbontrack` and add the line `{line}` "
        "(it allows these arguments only: with another interval_s carbontrack prints the new "
        "line); or run as root"
    )


def trust_problem(path: str) -> str | None:
    """Why ``path`` must not be run through sudo (``None`` when it may): it and every directory
    above it must be owned by root and writable by no one else (a world-writable directory
    only with the sticky bit, like /tmp), or another user could swap the file for their own."""
    import stat

    current = os.path.realpath(path)
    first = True
    while True:
        try:
            info = os.stat(current)
        except OSError as exc:
            return f"{current} cannot be checked ({exc.strerror})"
        open_to_others = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        sticky_dir = not first and info.st_mode & stat.S_ISVTX
        if info.st_uid != 0:
            return f"{current} is owned by uid {info.st_uid}, not root"
        if open_to_others and not sticky_dir:
            return f"{current} is writable by users other than root"
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current, first = parent, False


def command(executable: str, interval_s: float, *, sudo: str | None) -> list[str]:
    """The fixed argument list: plist samples of the CPU, GPU and ANE samplers, unbuffered."""
    interval_ms = max(1, round(interval_s * 1000))
    argv = [executable, "-f", "plist", "-s", SAMPLERS, "-i", str(interval_ms), "-b", "0"]
    return [sudo, "-n", *argv] if sudo is not None else argv


# -- the process -------------------------------------------------------------------------------


def _signal_group(proc: subprocess.Popen[bytes], signum: int) -> None:
    # The process leads its own group (start_new_session), so the group signal also reaches
    # a child it started; only used where we own the process (running as root, no sudo).
    try:
        os.killpg(proc.pid, signum)
    except ProcessLookupError:
        pass
    except PermissionError:
        with contextlib.suppress(OSError):
            proc.send_signal(signum)


def _close_quietly(stream: IO[bytes] | None) -> None:
    if stream is not None:
        with contextlib.suppress(OSError, ValueError):
            stream.close()


def _reap_later(proc: subprocess.Popen[bytes], within_s: float) -> None:
    """Reap ``proc`` on a daemon thread: the caller never waits for it."""

    def reap() -> None:
        import subprocess

        try:
            proc.wait(within_s)
        except subprocess.TimeoutExpired:
            # Root-owned (sudo): nothing we may do. It ends at its next write to the closed pipe.
            logger.info(
                "carbontrack: powermetrics under sudo (pid %d) has not exited %.0f s after its "
                "pipe was closed; it ends at its next sample, or stop it with `sudo kill %d`",
                proc.pid,
                within_s,
                proc.pid,
            )

    threading.Thread(
        target=reap, name=f"carbontrack-powermetrics-reap-{proc.pid}", daemon=True
    ).start()


def _stop_process(
    proc: subprocess.Popen[bytes],
    owner_pid: int,
    stop: threading.Event,
    wake: int,
    *,
    under_sudo: bool,
    reap_within_s: float,
) -> None:
    """Stop ``proc``: under sudo by closing the pipe, else terminate, kill and reap (<= 0.7 s)."""
    import signal
    import subprocess

    stop.set()
    with contextlib.suppress(OSError):
        os.write(wake, b"x")  # the reader leaves select() at once
    if os.getpid() != owner_pid:
        return  # a forked child holds a copy of the parent's session: the process is not its own
    if under_sudo:
        # sudo makes itself full root "so user cannot kill us" (sudo src/sudo.c): our SIGTERM
        # and SIGKILL would fail with EPERM, and waiting for them only delays the user's code.
        # With the read end closed, powermetrics dies of SIGPIPE at its next sample and sudo
        # exits with it (shared/reference/hardware.md 3.2); a daemon thread reaps sudo.
        _close_quietly(proc.stdout)
        if proc.poll() is None:
            _reap_later(proc, reap_within_s)
        return
    if proc.poll() is None:
        _signal_group(proc, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(TERM_GRACE_S)
        # Also reaches a straggler in the group whose parent already went.
        _signal_group(proc, signal.SIGKILL)
    try:
        proc.wait(KILL_WAIT_S)
    except subprocess.TimeoutExpired:
        logger.warning(
            "carbontrack: powermetrics (pid %d) did not exit after SIGKILL; it is left running",
            proc.pid,
        )


class _Snapshot(typing.NamedTuple):
    joules: Mapping[str, float]
    error: str | None
    #: Kinds the samples do not carry, with the reason (their reads fail; the others measure).
    missing: Mapping[str, str]


def _split_documents(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Split complete documents off ``buffer``: ``(documents, rest)``.

    powermetrics writes a NUL right before each sample after the first, not after it (cubestat
    ``cubestat/platforms/macos.py``: "powermetrics injects 0x00 right before the measurement
    event"; asitop ``asitop/utils.py`` ``enqueue_powermetrics`` starts a new document at a line
    that begins with ``\\x00``). So a document is complete at its ``</plist>``; waiting for the
    NUL would take every sample one interval late. A NUL still ends whatever precedes it (a
    document cut short is then skipped as garbled, not glued to the next one).
    """
    documents: list[bytes] = []
    while True:
        nul = buffer.find(b"\x00")
        end = buffer.find(_END_TAG)
        if end >= 0 and (nul < 0 or end < nul):
            cut = end + len(_END_TAG)
            documents.append(buffer[:cut])
            buffer = buffer[cut:]
        elif nul >= 0:
            documents.append(buffer[:nul])
            buffer = buffer[nul + 1 :]
        else:
            return [d for d in documents if d.strip(b"\x00 \t\r\n")], buffer


class PowermetricsSession:
    """One running ``powermetrics`` and the reader thread that sums its samples.

    ``read()`` never blocks. Its value is the energy since the session's first read, like a
    counter that starts there: complete samples (the part of the first one after that read),
    plus the sample in flight estimated as the latest power times its elapsed part, so that the
    start, epoch edges and the stop are not a sample late. It never goes down: a later sample
    that comes in under the estimate adds nothing until the total catches up. ``close()`` does
    not wait under sudo (the pipe is closed) and at most about 0.7 s otherwise; an unclosed
    session is closed at interpreter exit.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        interval_s: float,
        under_sudo: bool = False,
        kinds: Sequence[str] = KINDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.argv = tuple(argv)
        self.interval_s = interval_s
        self.under_sudo = under_sudo
        self.kinds = tuple(kinds)
        self.stale_after_s = max(STALE_INTERVALS * interval_s, MIN_STALE_S)
        self._clock = clock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._first = threading.Event()
        self._ended = threading.Event()
        self._origin: float | None = None
        self._committed = dict.fromkeys(KINDS, 0.0)
        self._reported = dict.fromkeys(KINDS, 0.0)
        self._power_w: dict[str, float] = {}
        self._last_end: float | None = None
        self._first_sample: Sample | None = None
        self._missing: dict[str, str] = {}
        self._samples = 0
        self._skipped = 0
        self._missing_warned: set[str] = set()
        self._exit: str | None = None
        self._final_given = False
        self._stale_warned = False
        self._closed = False
        self._last_sample_t = 0.0
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._wake_r, self._wake_w = -1, -1
        self._reader: threading.Thread | None = None
        #: Appended to an exit's reason when sudo refused (the process ended before a sample).
        self.permission_fix = ""
        self._finalizer: weakref.finalize[Any, Any] | None = None

    @property
    def pid(self) -> int | None:
        """The process id of the started command (``sudo`` when run through it)."""
        return self._proc.pid if self._proc is not None else None

    @property
    def samples(self) -> int:
        """Good samples received so far."""
        with self._lock:
            return self._samples

    @property
    def skipped(self) -> int:
        """Garbled or truncated documents skipped so far."""
        with self._lock:
            return self._skipped

    @property
    def first_sample(self) -> Sample | None:
        """The first good sample, once it has come."""
        with self._lock:
            return self._first_sample

    def start(self) -> None:
        """Start the process and the reader thread; raise ``OSError`` if it cannot start."""
        import subprocess
        import tempfile

        # Lives as long as the session: close() closes it.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        try:
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,  # sudo -n never prompts anyway; nothing else may either
                stdout=subprocess.PIPE,
                stderr=self._stderr,  # a file never fills up and blocks the process, a pipe could
                start_new_session=True,  # its own group: killed as one, spared the user's Ctrl-C
                close_fds=True,
            )
        except OSError:
            self._stderr.close()
            raise
        self._wake_r, self._wake_w = os.pipe()
        self._last_sample_t = self._clock()
        self._finalizer = weakref.finalize(
            self,
            _stop_process,
            self._proc,
            os.getpid(),
            self._stop,
            self._wake_w,
            under_sudo=self.under_sudo,
            reap_within_s=self.stale_after_s + REAP_GRACE_S,
        )
        self._reader = threading.Thread(
            target=self._read_loop, name=f"carbontrack-powermetrics-{self._proc.pid}", daemon=True
        )
        self._reader.start()

    def wait_started(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for an early exit; False if the process exited by then.

        Returns True at once when the first sample comes (the process clearly runs), else
        after ``timeout_s`` if it is still running: a refused ``sudo -n`` or a broken install
        exits within milliseconds, while a sample can take a whole interval.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            if self._first.is_set():
                return True
            if self._ended.is_set():
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            self._ended.wait(min(left, _START_POLL_S))

    def failure(self) -> tuple[str, str]:
        """Why the process gave no samples: ``(reason, stderr text)``."""
        with self._lock:
            exit_reason = self._exit
        return exit_reason or f"{self._name()} did not start", self._stderr_text()

    def read(self) -> _Snapshot:
        """The energy since the first read by kind, or the error that stops it. Never blocks."""
        now = self._clock()
        with self._lock:
            if self._origin is None:
                self._origin = now
                return _Snapshot(dict(self._reported), None, dict(self._missing))
            if self._closed:
                return _Snapshot(dict(self._reported), None, dict(self._missing))
            if self._exit is not None:
                if not self._final_given:
                    # Hand out what arrived before the end once, then fail: nothing is lost.
                    self._final_given = True
                    self._update_reported(now, in_flight=False)
                    return _Snapshot(dict(self._reported), None, dict(self._missing))
                return _Snapshot({}, self._exit, {})
            age = now - self._last_sample_t
            if age <= self.stale_after_s:
                self._update_reported(now, in_flight=True)
                return _Snapshot(dict(self._reported), None, dict(self._missing))
            error = (
                f"{self._name()} sent no sample for {age:.1f} s (one was due every "
                f"{self.interval_s:g} s): it hangs"
            )
            warn = not self._stale_warned
            self._stale_warned = True
        if warn:
            # Info, not warning: the reads fail with this reason, and the sampler's single
            # warning when it drops the devices is the one the user sees.
            logger.info(
                "carbontrack: %s; its CPU, GPU and ANE readings fail until it sends again", error
            )
        return _Snapshot({}, error, {})

    def _update_reported(self, now: float, *, in_flight: bool) -> None:
        # Called with the lock held and the origin set.
        assert self._origin is not None
        since = self._origin if self._last_end is None else max(self._last_end, self._origin)
        flight_s = min(max(now - since, 0.0), self.stale_after_s) if in_flight else 0.0
        for kind in KINDS:
            estimate = self._committed[kind] + self._power_w.get(kind, 0.0) * flight_s
            self._reported[kind] = max(self._reported[kind], estimate)

    def close(self) -> None:
        """Stop the process: under sudo by closing its pipe (no wait), else signals (<= 0.7 s)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            skipped = self._skipped
        self._stop.set()
        if self._wake_w >= 0:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")
        reader = self._reader
        if reader is not None and reader is not threading.current_thread():
            reader.join(_POLL_S)  # woken above: leaves select() at once
        if self._finalizer is not None:
            self._finalizer()  # runs _stop_process once; a later call (or exit) does nothing
        if reader is None or not reader.is_alive():
            # Only once the reader is done with the descriptors (they could be reused under it).
            # With our end closed, a powermetrics that escaped the signals (root-owned under a
            # killed sudo) dies of SIGPIPE at its next sample instead of running on.
            if self._proc is not None:
                _close_quietly(self._proc.stdout)
            _close_quietly(self._stderr)
            for fd in (self._wake_r, self._wake_w):
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            self._wake_r = self._wake_w = -1
        if skipped > 1:
            logger.info("carbontrack: %d garbled powermetrics documents were skipped", skipped)

    # -- reader thread -----------------------------------------------------------------------

    def _name(self) -> str:
        return f"powermetrics (pid {self.pid})"

    def _read_loop(self) -> None:
        try:
            pending = self._pump()
            if not self._stop.is_set():
                if pending.strip(b"\x00 \t\r\n"):
                    self._take(pending)  # a truncated last document: skipped as garbled
                self._on_exit()
        except Exception as exc:  # isolation boundary: the reader thread must not die silently
            if self._stop.is_set():
                return  # the descriptors were closed under it at exit: nothing went wrong
            logger.warning("carbontrack: the powermetrics reader failed", exc_info=True)
            with self._lock:
                if self._exit is None:
                    self._exit = f"the reader of {self._name()} failed: {exc}"
        finally:
            self._ended.set()

    def _pump(self) -> bytes:
        import select

        assert self._proc is not None
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        pending = b""
        # select() with a timeout and a wake-up pipe: close() never waits on a read.
        while not self._stop.is_set():
            ready, _, _ = select.select([fd, self._wake_r], [], [], _POLL_S)
            if fd not in ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break  # end of stream: the process exited
            documents, pending = _split_documents(pending + chunk)
            for raw in documents:
                self._take(raw)
            if len(pending) > MAX_PENDING_BYTES:
                self._skip(SampleError(f"{len(pending)} bytes without a document end"))
                pending = b""
        return pending

    def _take(self, raw: bytes) -> None:
        arrived = self._clock()
        try:
            sample = decode_sample(raw.strip(b"\x00"))
        except SampleError as exc:
            self._skip(exc)
            return
        with self._lock:
            if self._stop.is_set():
                return
            first = self._first_sample is None
            elapsed = sample.elapsed_s
            if elapsed is None or elapsed <= 0:
                previous = self._last_end
                elapsed = arrived - previous if previous is not None else self.interval_s
            # The sample ended when it was written: at its arrival, or earlier where the
            # previous end plus its elapsed_ns says so (a late wake-up of this thread must not
            # shift the sample; powermetrics' samples follow one another without gaps).
            end = arrived
            if self._last_end is not None:
                end = min(arrived, self._last_end + elapsed)
            began = end - elapsed
            # The share of this sample after the first read (the counter's zero): a sample that
            # straddles it counts only for its part after, one wholly before counts nothing.
            share = 1.0
            if self._origin is None:
                share = 0.0
            elif began < self._origin:
                share = max(0.0, end - self._origin) / elapsed
            for kind in KINDS:
                if kind in sample.joules:
                    self._committed[kind] += sample.joules[kind] * share
                    self._power_w[kind] = sample.joules[kind] / elapsed
                elif first and kind in self.kinds:
                    self._missing[kind] = (
                        f"powermetrics samples here carry no {kind}_energy or {kind}_power"
                    )
                elif not first and kind not in self._missing:
                    self._power_w.pop(kind, None)
                    if kind in self.kinds:
                        self._warn_missing(kind)
            self._last_end = end
            self._samples += 1
            self._last_sample_t = arrived
            if first:
                self._first_sample = sample
        self._first.set()

    def _warn_missing(self, kind: str) -> None:
        # Called with the lock held.
        if kind not in self._missing_warned:
            self._missing_warned.add(kind)
            logger.warning(
                "carbontrack: a powermetrics sample has neither %s_energy nor %s_power; the %s "
                "energy of such samples is missing from the total",
                kind,
                kind,
                kind,
            )

    def _skip(self, exc: SampleError) -> None:
        with self._lock:
            self._skipped += 1
            first = self._skipped == 1
        if first:
            logger.warning(
                "carbontrack: skipped a garbled or truncated powermetrics document (%s); "
                "later ones are skipped silently",
                exc,
            )
        else:
            logger.debug("skipped a garbled powermetrics document: %s", exc)

    def _on_exit(self) -> None:
        import subprocess

        assert self._proc is not None
        try:
            status: int | None = self._proc.wait(1.0)
        except subprocess.TimeoutExpired:
            status = None
        stderr = self._stderr_text()
        why = f"{self._name()} exited with status {status}"
        if status is None:
            why = f"{self._name()} closed its output"
        if stderr:
            why += f": {stderr}"
        with self._lock:
            started = self._first_sample is not None
        lowered = stderr.lower()
        if not started and self.permission_fix and any(w in lowered for w in _PERMISSION_WORDS):
            why += f"; fix: {self.permission_fix}"
        with self._lock:
            self._exit = why
        if started:
            # The sampler warns once when it drops the three devices for this reason.
            logger.info("carbontrack: %s; CPU, GPU and ANE energy stop being measured", why)

    def _stderr_text(self) -> str:
        stderr = self._stderr
        if stderr is None or stderr.closed:
            return ""
        try:
            stderr.seek(0)
            text = stderr.read()[-2000:].decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return " / ".join(lines[-3:])


# -- discovery and the hooks -------------------------------------------------------------------


def _platform_id() -> tuple[str, str]:
    """``(system, machine)`` as Python sees them (``x86_64`` under Rosetta on Apple Silicon)."""
    return platform.system(), platform.machine()


def _sysctlbyname(name: str) -> bytes | None:
    """The raw value of a macOS sysctl, or ``None`` where it does not exist (or off macOS).

    ctypes rather than ``sysctl -n``: no subprocess on the way into ``track()``. Tests replace
    this function through ``carbontrack.testing.powermetrics.fake_macos``.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        lookup = libc.sysctlbyname
    except (OSError, AttributeError):
        return None
    key = name.encode()
    size = ctypes.c_size_t(0)
    if lookup(key, None, ctypes.byref(size), None, ctypes.c_size_t(0)) != 0:
        return None  # ENOENT: no such sysctl here
    buf = ctypes.create_string_buffer(size.value)
    if lookup(key, buf, ctypes.byref(size), None, ctypes.c_size_t(0)) != 0:
        return None
    return buf.raw[: size.value]


def _sysctl_int(name: str) -> int | None:
    raw = _sysctlbyname(name)
    if raw is None or len(raw) not in (4, 8):
        return None
    return int.from_bytes(raw, "little")


def _sysctl_str(name: str) -> str:
    raw = _sysctlbyname(name)
    return raw.split(b"\x00", 1)[0].decode("utf-8", "replace") if raw else ""


def translated_by_rosetta() -> bool:
    """Whether this process is x86_64 code run by Rosetta on Apple Silicon.

    ``sysctl.proc_translated`` is 1 under Rosetta, 0 in a native process, and missing (ENOENT)
    on Intel Macs (Apple, "About the Rosetta translation environment").
    """
    system, _machine = _platform_id()
    return system == "Darwin" and _sysctl_int("sysctl.proc_translated") == 1


def _is_apple_silicon() -> bool:
    system, machine = _platform_id()
    return system == "Darwin" and (machine == "arm64" or translated_by_rosetta())


def _running_as_root() -> bool:
    return os.geteuid() == 0


def _user_name() -> str:
    import getpass
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return getpass.getuser()


def _forced(settings: Settings) -> bool:
    options = settings.plugin_options.get(BACKEND, {})
    if not isinstance(options, Mapping):
        raise TypeError(
            f"plugin_options[{BACKEND!r}]={options!r} is not valid: expected a dict such as "
            "{'force': True}"
        )
    force = options.get("force", False)
    if not isinstance(force, bool):
        raise TypeError(
            f"plugin_options[{BACKEND!r}]['force']={force!r} is not valid: expected True or False"
        )
    return force or os.environ.get(FORCE_ENV, "").strip().lower() in ("1", "true", "yes")


def _unavailable(kinds: Sequence[str], reason: str, fix: str) -> list[Device | Unavailable]:
    return [Unavailable(backend=BACKEND, kind=kind, reason=reason, fix=fix) for kind in kinds]


def _detail(kind: str, interval_s: float, *, rosetta: bool) -> str:
    detail = (
        f"sums powermetrics' {kind}_energy (the SoC's energy estimate, mJ per sample; "
        f"{kind}_power in mW times elapsed_ns where a sample lacks it), one sample every "
        f"{interval_s:g} s, each counted when its plist document is complete (</plist>); at "
        "the start, at epoch edges and at the stop the sample still in flight counts as the "
        "latest sample's power times its elapsed part, and the first sample only for its part "
        "after the start"
    )
    if rosetta:
        detail += (
            "; this Python runs as x86_64 under Rosetta (sysctl.proc_translated=1): the SoC is "
            "Apple Silicon and measured natively by powermetrics"
        )
    return detail


def needed_by(settings: Settings) -> bool:
    """Whether discovery could find anything for a run with ``settings``: Apple Silicon (or
    forced) and a kind it reads wanted (the host calls this backend only then)."""
    if os.name != "posix" or not (_forced(settings) or _is_apple_silicon()):
        return False
    return any(settings.wants(k) for k in KINDS)


def discover(settings: Settings) -> list[Device | Unavailable]:
    """Start powermetrics and return its CPU, GPU and ANE devices (or why they can't be read).

    Waits at most ``START_WAIT_S`` for an early exit, never for a sample: kinds that the
    samples turn out not to carry fail their reads with the reason instead.
    """
    if not needed_by(settings):
        return []
    kinds = [k for k in KINDS if settings.wants(k)]
    found = shutil.which("powermetrics")
    if found is None and os.path.exists(_DEFAULT_PATH):
        found = _DEFAULT_PATH  # PATH without /usr/bin
    if found is None:
        return _unavailable(
            kinds,
            "powermetrics was not found on PATH or at /usr/bin/powermetrics",
            "powermetrics ships with macOS in /usr/bin: put /usr/bin on PATH",
        )
    executable = os.path.abspath(found)  # sudoers rules name absolute paths
    sudo = None
    if not _running_as_root():
        # Through sudo only a root-owned executable that no one else can replace: a
        # user-writable powermetrics first on PATH run (or named in a sudoers rule) as root
        # would hand root to whoever can write it.
        problem = trust_problem(executable)
        if problem is not None and executable != _DEFAULT_PATH:
            logger.info("carbontrack: %s is not run through sudo (%s)", executable, problem)
            if os.path.exists(_DEFAULT_PATH):
                executable, problem = _DEFAULT_PATH, trust_problem(_DEFAULT_PATH)
        if problem is not None:
            return _unavailable(
                kinds,
                f"powermetrics needs root, and {executable} may not be run through sudo: {problem}",
                f"use the system's {_DEFAULT_PATH} (root-owned), or run as root",
            )
        sudo = shutil.which("sudo")
        argv = command(executable, min(settings.interval_s, MAX_SAMPLE_INTERVAL_S), sudo=None)
        if sudo is None:
            return _unavailable(
                kinds,
                "powermetrics needs root and sudo was not found on PATH",
                "run as root, or put sudo on PATH and " + sudoers_fix(_user_name(), argv),
            )
    # Samples at most MAX_SAMPLE_INTERVAL_S apart: the sample in flight at an edge is estimated
    # from the latest one, and a hang is noticed within a few seconds.
    sample_s = min(settings.interval_s, MAX_SAMPLE_INTERVAL_S)
    session = PowermetricsSession(
        command(executable, sample_s, sudo=sudo),
        interval_s=sample_s,
        under_sudo=sudo is not None,
        kinds=kinds,
    )
    if sudo is not None:
        session.permission_fix = sudoers_fix(_user_name(), session.argv[2:])
    try:
        session.start()
    except OSError as exc:
        return _unavailable(
            kinds, f"could not start {session.argv[0]}: {exc}", f"check that {found} runs"
        )
    if not session.wait_started(START_WAIT_S):
        reason, stderr = session.failure()
        session.close()
        lowered = stderr.lower()
        if sudo is not None and any(word in lowered for word in _PERMISSION_WORDS):
            return _unavailable(
                kinds,
                f"sudo -n refused to run {executable} without a password ({stderr})",
                sudoers_fix(_user_name(), session.argv[2:]),
            )
        return _unavailable(
            kinds,
            reason,
            f"check that `{' '.join(session.argv)} -n 1` prints a plist sample in a terminal",
        )
    first = session.first_sample
    model = (first.hw_model if first is not None else "") or _sysctl_str("hw.model")
    label = f" ({model})" if model else ""
    rosetta = translated_by_rosetta()
    if rosetta:
        logger.info(
            "carbontrack: this Python is x86_64 under Rosetta on Apple Silicon; measuring the "
            "SoC with powermetrics"
        )
    return [
        Device(
            id=kind,
            kind=kind,
            name=f"Apple Silicon {_LABELS[kind]}{label}",
            backend=BACKEND,
            method="counter",
            detail=_detail(kind, sample_s, rosetta=rosetta),
            handle=session,
        )
        for kind in kinds
    ]


def _sessions(devices: Sequence[Device]) -> dict[int, tuple[PowermetricsSession, list[Device]]]:
    by_session: dict[int, tuple[PowermetricsSession, list[Device]]] = {}
    for device in devices:
        if isinstance(device.handle, PowermetricsSession):
            by_session.setdefault(id(device.handle), (device.handle, []))[1].append(device)
    return by_session


@hookimpl
def carbontrack_discover_devices(settings: Settings) -> list[Device | Unavailable]:
    """Apple Silicon CPU, GPU and ANE through powermetrics (macOS on arm64, or when forced)."""
    return discover(settings)


@hookimpl
def carbontrack_read_energy(devices: Sequence[Device]) -> list[Reading]:
    """One reading per device from what the reader thread summed: cumulative joules."""
    readings = []
    for session, devs in _sessions(devices).values():
        snapshot = session.read()
        for device in devs:
            if snapshot.error is not None:
                readings.append(Reading(device.id, error=snapshot.error))
            elif device.kind in snapshot.missing:
                why = snapshot.missing[device.kind]
                readings.append(Reading(device.id, error=f"{why} (this macOS does not report it)"))
            else:
                readings.append(Reading(device.id, joules=snapshot.joules[device.kind]))
    return readings


@hookimpl
def carbontrack_close_devices(devices: Sequence[Device]) -> None:
    """Stop the powermetrics process behind these devices and reap it."""
    for session, _devs in _sessions(devices).values():
        session.close()
