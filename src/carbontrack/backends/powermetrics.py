"""Apple Silicon CPU, GPU and ANE energy from macOS ``powermetrics`` (run through ``sudo -n``).

One ``powermetrics`` process per run streams NUL-separated plist samples; a reader thread sums
each sample's energy into counters that ``carbontrack_read_energy`` hands out without blocking.
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
import weakref
from collections.abc import Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any

import attrs

from carbontrack.hookspecs import hookimpl
from carbontrack.model import Device, Method, Reading, Unavailable
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

#: ``close`` waits this long after SIGTERM, then SIGKILLs and waits ``KILL_WAIT_S`` to reap:
#: together well under the one second that ``stop()`` may spend on a hung process.
TERM_GRACE_S = 0.4
KILL_WAIT_S = 0.3
#: Discovery waits one sampling interval plus this for the first sample (sudo and powermetrics
#: start-up), so that a refused ``sudo -n`` or a broken install is reported before training.
FIRST_SAMPLE_GRACE_S = 3.0
#: A process that sends nothing for this many intervals (and at least ``MIN_STALE_S``) is hung:
#: its devices get failed reads, so the sampler drops them and the report says so.
STALE_INTERVALS = 5
MIN_STALE_S = 1.0
#: Bytes without a NUL after which the pending text is garbage, not a document being written.
MAX_PENDING_BYTES = 4 * 1024 * 1024
_POLL_S = 0.1
#: The longest powermetrics sampling interval (a longer ``interval_s`` is cut to it): the first
#: sample, which discovery waits for, comes one interval after the start.
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


@attrs.frozen
class Sample:
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
    """Decode one NUL-delimited plist document; raise ``SampleError`` if it is garbled."""
    import plistlib

    try:
        doc = plistlib.loads(raw.strip())
    except Exception as exc:  # plistlib raises ValueError, ExpatError and more on garbage
        raise SampleError(f"not a plist ({type(exc).__name__}: {exc})") from exc
    return parse_sample(doc)


def sudoers_fix(user: str, executable: str) -> str:
    """The fix for a refused ``sudo -n``: the sudoers line that lets ``user`` run powermetrics."""
    line = f"{user} ALL=(ALL) NOPASSWD: {executable}"
    return (
        f"let {user} run powermetrics without a password: run `sudo visudo` and add the line "
        f"`{line}`, or run `echo '{line}' | sudo tee -a /etc/sudoers`; or run as root"
    )


def command(executable: str, interval_s: float, *, sudo: str | None) -> list[str]:
    """The fixed argument list: plist samples of the CPU, GPU and ANE samplers, unbuffered."""
    interval_ms = max(1, round(interval_s * 1000))
    argv = [executable, "-f", "plist", "-s", SAMPLERS, "-i", str(interval_ms), "-b", "0"]
    return [sudo, "-n", *argv] if sudo is not None else argv


# -- the process -------------------------------------------------------------------------------


def _signal_group(proc: subprocess.Popen[bytes], signum: int) -> None:
    # The process leads its own group (start_new_session), so the group signal also reaches
    # powermetrics under sudo; members owned by root are skipped by the kernel, sudo relays.
    try:
        os.killpg(proc.pid, signum)
    except ProcessLookupError:
        pass
    except PermissionError:
        with contextlib.suppress(OSError):
            proc.send_signal(signum)


def _stop_process(proc: subprocess.Popen[bytes], owner_pid: int, stop: threading.Event) -> None:
    """Terminate, then kill, then reap ``proc`` and its group; at most about 0.7 s."""
    import signal
    import subprocess

    stop.set()
    if os.getpid() != owner_pid:
        return  # a forked child holds a copy of the parent's session: the process is not its own
    if proc.poll() is None:
        _signal_group(proc, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(TERM_GRACE_S)
        # Also reaches a straggler in the group whose parent (sudo) already went.
        _signal_group(proc, signal.SIGKILL)
    try:
        proc.wait(KILL_WAIT_S)
    except subprocess.TimeoutExpired:
        logger.warning(
            "carbontrack: powermetrics (pid %d) did not exit after SIGKILL; it is left running",
            proc.pid,
        )


@attrs.frozen
class _Snapshot:
    joules: Mapping[str, float]
    error: str | None


class PowermetricsSession:
    """One running ``powermetrics`` and the reader thread that sums its samples.

    ``read()`` never blocks: it returns what the reader has summed so far. ``close()`` stops
    the process within about 0.7 s, also when it hangs; an unclosed session is closed at
    interpreter exit.
    """

    def __init__(self, argv: Sequence[str], *, interval_s: float) -> None:
        self.argv = tuple(argv)
        self.interval_s = interval_s
        self.stale_after_s = max(STALE_INTERVALS * interval_s, MIN_STALE_S)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._first = threading.Event()
        self._totals = dict.fromkeys(KINDS, 0.0)
        self._first_sample: Sample | None = None
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
        self._reader: threading.Thread | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    @property
    def pid(self) -> int | None:
        """The process id of the started command (``sudo`` when run through it)."""
        return self._proc.pid if self._proc is not None else None

    @property
    def samples(self) -> int:
        """Good samples summed so far."""
        with self._lock:
            return self._samples

    @property
    def skipped(self) -> int:
        """Garbled or truncated documents skipped so far."""
        with self._lock:
            return self._skipped

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
        self._last_sample_t = time.monotonic()
        self._finalizer = weakref.finalize(self, _stop_process, self._proc, os.getpid(), self._stop)
        self._reader = threading.Thread(
            target=self._read_loop, name=f"carbontrack-powermetrics-{self._proc.pid}", daemon=True
        )
        self._reader.start()

    def wait_first_sample(self, timeout_s: float) -> Sample | None:
        """The first good sample, or ``None`` if the process exited or sent none in time."""
        deadline = time.monotonic() + timeout_s
        while not self._first.wait(_POLL_S):
            with self._lock:
                if self._exit is not None:
                    return None
            if time.monotonic() >= deadline:
                return None
        return self._first_sample

    def failure(self) -> tuple[str, str]:
        """Why no sample came: ``(reason, stderr text)``."""
        with self._lock:
            exit_reason = self._exit
        stderr = self._stderr_text()
        if exit_reason is not None:
            return exit_reason, stderr
        return (
            f"{self._name()} sent no sample within {FIRST_SAMPLE_GRACE_S + self.interval_s:g} s",
            stderr,
        )

    def read(self) -> _Snapshot:
        """The energy summed so far by kind, or the error that stops it. Never blocks."""
        with self._lock:
            totals = dict(self._totals)
            if self._exit is not None and not self._closed:
                if not self._final_given:
                    # Hand out what arrived before the end once, then fail: nothing is lost.
                    self._final_given = True
                    return _Snapshot(totals, None)
                return _Snapshot({}, self._exit)
            if self._closed:
                return _Snapshot(totals, None)
            age = time.monotonic() - self._last_sample_t
            if age <= self.stale_after_s:
                return _Snapshot(totals, None)
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
        return _Snapshot({}, error)

    def close(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL after a short grace) and reap it."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            skipped = self._skipped
        self._stop.set()
        if self._finalizer is not None:
            self._finalizer()  # runs _stop_process once; a later call (or exit) does nothing
        reader = self._reader
        if reader is not None and reader is not threading.current_thread():
            reader.join(_POLL_S * 2)
        if reader is None or not reader.is_alive():
            # Only once the reader is done with the descriptor (it could be reused under it).
            # With our end closed, a powermetrics that escaped the signals (root-owned under a
            # killed sudo) dies of SIGPIPE at its next sample instead of running on.
            if self._proc is not None and self._proc.stdout is not None:
                self._proc.stdout.close()
            if self._stderr is not None:
                self._stderr.close()
        if skipped > 1:
            logger.info("carbontrack: %d garbled powermetrics documents were skipped", skipped)

    # -- reader thread -----------------------------------------------------------------------

    def _name(self) -> str:
        return f"powermetrics (pid {self.pid})"

    def _read_loop(self) -> None:
        try:
            pending = self._pump()
            if not self._stop.is_set():
                if pending.strip():
                    self._take(pending)  # the last document, or a truncated one
                self._on_exit()
        except Exception as exc:  # isolation boundary: the reader thread must not die silently
            logger.warning("carbontrack: the powermetrics reader failed", exc_info=True)
            with self._lock:
                if self._exit is None:
                    self._exit = f"the reader of {self._name()} failed: {exc}"

    def _pump(self) -> bytes:
        import select

        assert self._proc is not None
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        pending = b""
        # select() with a timeout, so that close() never waits on a read that cannot return.
        while not self._stop.is_set():
            ready, _, _ = select.select([fd], [], [], _POLL_S)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break  # end of stream: the process exited
            *documents, pending = (pending + chunk).split(b"\x00")
            for raw in documents:
                if raw.strip():
                    self._take(raw)
            if len(pending) > MAX_PENDING_BYTES:
                self._skip(SampleError(f"{len(pending)} bytes without a NUL separator"))
                pending = b""
        return pending

    def _take(self, raw: bytes) -> None:
        try:
            sample = decode_sample(raw)
        except SampleError as exc:
            self._skip(exc)
            return
        with self._lock:
            for kind in KINDS:
                if kind in sample.joules:
                    self._totals[kind] += sample.joules[kind]
                elif self._first_sample is not None and kind in self._first_sample.joules:
                    self._warn_missing(kind)
            self._samples += 1
            self._last_sample_t = time.monotonic()
            if self._first_sample is None:
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
            self._exit = why
            started = self._first_sample is not None
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


def _is_apple_silicon() -> bool:
    return platform.system() == "Darwin" and platform.machine() == "arm64"


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


def _detail(kind: str, source: str, interval_s: float) -> str:
    every = f"one sample every {interval_s:g} s"
    if source == "energy":
        return (
            f"sums powermetrics' {kind}_energy (the SoC's energy estimate, mJ per sample); {every}"
        )
    return (
        f"sums powermetrics' {kind}_power (mW averaged over each sample) times elapsed_ns, as "
        f"samples here carry no {kind}_energy; {every}"
    )


def discover(settings: Settings) -> list[Device | Unavailable]:
    """Start powermetrics and return its CPU, GPU and ANE devices (or why they can't be read)."""
    if os.name != "posix" or not (_forced(settings) or _is_apple_silicon()):
        return []
    kinds = [k for k in KINDS if settings.wants(k)]
    if not kinds:
        return []
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
        sudo = shutil.which("sudo")
        if sudo is None:
            return _unavailable(
                kinds,
                "powermetrics needs root and sudo was not found on PATH",
                "run as root, or put sudo on PATH and " + sudoers_fix(_user_name(), executable),
            )
    # Samples at most MAX_SAMPLE_INTERVAL_S apart: discovery waits for the first one (it comes
    # one -i after the start), which must not hold up the user's code for a long interval_s.
    sample_s = min(settings.interval_s, MAX_SAMPLE_INTERVAL_S)
    session = PowermetricsSession(command(executable, sample_s, sudo=sudo), interval_s=sample_s)
    try:
        session.start()
    except OSError as exc:
        return _unavailable(
            kinds, f"could not start {session.argv[0]}: {exc}", f"check that {found} runs"
        )
    first = session.wait_first_sample(sample_s + FIRST_SAMPLE_GRACE_S)
    if first is None:
        reason, stderr = session.failure()
        session.close()
        lowered = stderr.lower()
        if sudo is not None and any(word in lowered for word in _PERMISSION_WORDS):
            return _unavailable(
                kinds,
                f"sudo -n refused to run {executable} without a password ({stderr})",
                sudoers_fix(_user_name(), executable),
            )
        return _unavailable(
            kinds,
            reason,
            f"check that `{' '.join(session.argv)} -n 1` prints a plist sample in a terminal",
        )
    model = f" ({first.hw_model})" if first.hw_model else ""
    result: list[Device | Unavailable] = []
    for kind in kinds:
        source = first.sources.get(kind)
        if source is None:
            result.append(
                Unavailable(
                    backend=BACKEND,
                    kind=kind,
                    reason=f"powermetrics samples here carry no {kind}_energy or {kind}_power",
                    fix="none known: this macOS's powermetrics does not report it",
                )
            )
            continue
        method: Method = "counter" if source == "energy" else "power"
        result.append(
            Device(
                id=kind,
                kind=kind,
                name=f"Apple Silicon {_LABELS[kind]}{model}",
                backend=BACKEND,
                method=method,
                detail=_detail(kind, source, sample_s),
                handle=session,
            )
        )
    if not any(isinstance(item, Device) for item in result):
        session.close()
    return result


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
            else:
                readings.append(Reading(device.id, joules=snapshot.joules[device.kind]))
    return readings


@hookimpl
def carbontrack_close_devices(devices: Sequence[Device]) -> None:
    """Stop the powermetrics process behind these devices and reap it."""
    for session, _devs in _sessions(devices).values():
        session.close()
