"""``carbontrack run``: run a command as a child process and measure the machine while it runs.

The child keeps the user's stdin, stdout and stderr (except with ``--json -``: the report then
owns stdout and the child's stdout goes to stderr); SIGINT and SIGTERM reach it; the report is
written however the child ends, and carbontrack exits with the child's exit code.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import os
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import attrs

from carbontrack import _files
from carbontrack._redact import redact_argv
from carbontrack.errors import InvalidOption, PluginLoadError
from carbontrack.model import Command, Report
from carbontrack.settings import Settings, make_settings

__all__ = ["StatusLine", "check_command", "configure_parser", "measure", "run"]

logger = logging.getLogger(__name__)

#: Exit codes a shell would give: the command was not found, or found but not executable.
NOT_FOUND = 127
NOT_EXECUTABLE = 126
#: carbontrack itself could not start (a plugin failed to load), so the command was not run;
#: the same convention as ``env`` and ``timeout``.
CANNOT_START = 125

EPILOG = """\
Everything after `--` belongs to the command, options included. With `--json -` the report is
the only thing on stdout: the command's own stdout goes to stderr.

examples:
  carbontrack run -- python train.py --epochs 10
  carbontrack run --components gpu --location DK -- python train.py
  carbontrack run --pue 1.4 --log-dir runs/ --json report.json -- ./train.sh
  carbontrack run -q --json - -- make test > report.json
"""


def _pue(text: str) -> float | str:
    # A number, or a preset name that Settings turns into its figure (and validates).
    try:
        return float(text)
    except ValueError:
        return text


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Add ``run``'s options (they mirror ``track()``'s) to ``p``."""
    p.add_argument(
        "--interval", type=float, metavar="S", help="seconds between background reads (default 1)"
    )
    p.add_argument(
        "--components",
        metavar="LIST",
        help="'all' (default: cpu, gpu, ane) or a comma list of cpu,gpu,ane,ram",
    )
    p.add_argument(
        "--location",
        metavar="CODE",
        help="country or grid zone, e.g. DK or US-CAL-CISO (default $CARBONTRACK_LOCATION)",
    )
    p.add_argument(
        "--intensity",
        type=float,
        metavar="G",
        help="carbon intensity to use, in gCO2eq/kWh (instead of looking it up)",
    )
    p.add_argument(
        "--pue",
        type=_pue,
        metavar="PUE",
        help="power usage effectiveness: a number >= 1 or a preset such as none (1.0, a "
        "laptop), aws, uptime-2024 (default 1.56, the Uptime Institute 2024 survey average)",
    )
    p.add_argument("--gpu-ids", metavar="LIST", help="GPU indices or UUIDs to measure, comma list")
    p.add_argument(
        "--devices-by-pid",
        action="store_true",
        help="measure only the GPUs the command's processes compute on, each from when they "
        "first do (--gpu-ids overrides it)",
    )
    p.add_argument(
        "--attribution",
        choices=("machine", "process"),
        help="count the whole machine (default) or the command's processes' share",
    )
    p.add_argument(
        "--prometheus",
        metavar="HOST:PORT",
        help="serve live metrics for Prometheus at http://HOST:PORT/metrics while the command "
        "runs (a bare PORT listens on 127.0.0.1 only; default $CARBONTRACK_PROMETHEUS); needs "
        "pip install 'carbontrack[prometheus]'",
    )
    p.add_argument(
        "--prometheus-push",
        metavar="URL",
        help="push the metrics to the Pushgateway at URL after each epoch and at the end "
        "(default $CARBONTRACK_PROMETHEUS_PUSH)",
    )
    p.add_argument(
        "--cpu-tdp-w",
        type=float,
        metavar="W",
        help="rated power of all the machine's CPUs together, for the CPU estimate when no "
        "counter can be read (in a VM: your share)",
    )
    p.add_argument(
        "--rapl-psys",
        action="store_true",
        default=None,
        help="measure the whole SoC with RAPL's psys domain instead of package + DRAM",
    )
    p.add_argument(
        "--geolocate",
        action="store_true",
        default=None,
        help="find the country from the public IP address when no location is set (asks a "
        "third party)",
    )
    p.add_argument(
        "--checkpoint",
        type=float,
        metavar="S",
        help="seconds between checkpoints in the run log (default 60; the first after 5 s)",
    )
    p.add_argument("--log-dir", metavar="DIR", help="where the run log goes")
    p.add_argument(
        "--log-file-prefix", metavar="TEXT", help="put TEXT before the run log's file name"
    )
    p.add_argument(
        "--job-id",
        metavar="ID",
        help="the job this task belongs to, shared by all its tasks (default: from srun, "
        "mpirun or torchrun; see docs/clusters.md)",
    )
    p.add_argument(
        "--no-distributed",
        action="store_true",
        help="measure this task alone even under srun/mpirun (each task then counts the "
        "whole node)",
    )
    p.add_argument(
        "--job-wait",
        type=float,
        metavar="S",
        help="how long rank 0 waits for the other tasks' figures at the end (default 2)",
    )
    p.add_argument("--no-log", action="store_true", help="write no run log")
    p.add_argument(
        "--file-mode",
        choices=("private", "shared"),
        help="who may read the run log, CSV files and --json file: 'private' (0600 files in "
        "0700 directories) or 'shared' with your group (0660, 2770); default "
        "$CARBONTRACK_FILE_MODE, the config file's file_mode, else private",
    )
    p.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="FILE",
        help="write the final report as JSON to FILE, or to stdout with '-' or no FILE (the "
        "command's own stdout then goes to stderr, so that stdout holds only the JSON)",
    )
    p.add_argument(
        "--no-status", action="store_true", help="no live status line, even on a terminal"
    )
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")


#: ``Settings`` field -> the option that sets it, so that errors name what the user typed.
_OPTION_OF = {
    "interval_s": "--interval",
    "components": "--components",
    "location": "--location",
    "intensity_g_per_kwh": "--intensity",
    "pue": "--pue",
    "gpu_ids": "--gpu-ids",
    "attribution": "--attribution",
    "log_dir": "--log-dir",
    "cpu_tdp_w": "--cpu-tdp-w",
    "checkpoint_s": "--checkpoint",
    "log_file_prefix": "--log-file-prefix",
    "job_id": "--job-id",
    "job_wait_s": "--job-wait",
    "file_mode": "--file-mode",
    "prometheus": "--prometheus",
    "prometheus_push": "--prometheus-push",
}


def _in_cli_words(message: str) -> str:
    if message.startswith("pue preset "):  # the PUE presets' own wording, from track()'s view
        return "--" + message.replace(" as pue=", "")
    field, sep, rest = message.partition("=")
    if sep and field in _OPTION_OF:
        return f"{_OPTION_OF[field]} {rest}"
    return message


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Validate ``run``'s options into ``Settings``; raises ``InvalidOption`` or ``TypeError``."""
    options: dict[str, Any] = {}
    for name, key in (
        ("interval", "interval_s"),
        ("components", "components"),
        ("location", "location"),
        ("intensity", "intensity_g_per_kwh"),
        ("pue", "pue"),
        ("gpu_ids", "gpu_ids"),
        ("attribution", "attribution"),
        ("log_dir", "log_dir"),
        ("cpu_tdp_w", "cpu_tdp_w"),
        ("rapl_psys", "rapl_psys"),
        ("geolocate", "geolocate"),
        ("checkpoint", "checkpoint_s"),
        ("log_file_prefix", "log_file_prefix"),
        ("job_id", "job_id"),
        ("job_wait", "job_wait_s"),
        ("file_mode", "file_mode"),
        ("prometheus", "prometheus"),
        ("prometheus_push", "prometheus_push"),
    ):
        value = getattr(args, name, None)
        if value is not None:
            options[key] = value
    gpu_ids = getattr(args, "gpu_ids", None)
    if gpu_ids is not None and not gpu_ids.strip(" ,"):
        raise InvalidOption(
            f"--gpu-ids {gpu_ids!r} is empty: expected GPU indices or UUIDs, e.g. --gpu-ids 0,1 "
            "(leave the option out to measure every GPU)"
        )
    if getattr(args, "devices_by_pid", False):
        options["devices_by_pid"] = True
    if getattr(args, "no_log", False):
        options["write_log"] = False
    if getattr(args, "no_distributed", False):
        options["distributed"] = False
    # -v and -vv (debug logging) both ask track() for its most detailed summary (verbose=2).
    options["verbose"] = min(args.verbosity, 2)
    settings = make_settings(**options)
    # Under srun/mpirun each task is one rank of a job: a contradictory launcher environment
    # is found now, before the command runs, not as a warning once it has.
    from carbontrack._tracker import _resolve_job

    _resolve_job(settings)
    return settings


# -- finding the command ---------------------------------------------------------------------


def check_command(name: str, path: str | None = None) -> tuple[int, str] | None:
    """Check ``name`` the way a shell would before running it.

    Returns ``None`` when it can be executed, else ``(exit code, message)``: 127 when it does
    not exist, 126 when it exists but cannot be executed.
    """
    if not name:
        return NOT_FOUND, "command not found: '' (an empty command name)"
    if os.sep in name or (os.altsep and os.altsep in name):
        candidate = Path(name)
        if not candidate.exists():
            return NOT_FOUND, f"{name}: no such file"
        if candidate.is_dir():
            return NOT_EXECUTABLE, f"{name}: is a directory"
        if not os.access(candidate, os.X_OK):
            return NOT_EXECUTABLE, f"{name}: permission denied (not executable; chmod +x {name})"
        return None
    if shutil.which(name, path=path) is not None:
        return None
    # A shell finds a non-executable file of that name in PATH and reports it as not executable.
    search = path if path is not None else os.environ.get("PATH", os.defpath)
    for directory in search.split(os.pathsep):
        candidate = Path(directory or ".") / name
        if candidate.is_file():
            return NOT_EXECUTABLE, f"{name}: permission denied ({candidate} is not executable)"
    return NOT_FOUND, f"{name}: command not found (not in PATH)"


def _exec_failure(name: str, code: int) -> tuple[int, str]:
    if code in (errno.ENOENT, errno.ENOTDIR):
        return NOT_FOUND, f"{name}: command not found"
    if code == errno.ENOEXEC:
        return NOT_EXECUTABLE, f"{name}: cannot execute (not a binary; a script needs a #! line)"
    return NOT_EXECUTABLE, f"{name}: cannot execute ({os.strerror(code)})"


# -- the child ---------------------------------------------------------------------------------


def _prctl() -> Callable[..., int] | None:
    """libc's ``prctl`` (Linux), looked up before the fork: the child only calls it."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        function: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return function


#: ``PR_SET_PDEATHSIG`` from <linux/prctl.h>: the signal a process gets when its parent dies.
PR_SET_PDEATHSIG = 1


def _controlling_tty() -> int | None:
    """A descriptor of our controlling terminal, or ``None`` without one (CI, nohup, setsid)."""
    try:
        return os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return None


def _is_foreground(fd: int, pgid: int) -> bool:
    try:
        return os.tcgetpgrp(fd) == pgid
    except OSError:
        return False


def _set_foreground(fd: int, pgid: int) -> bool:
    # From a background group tcsetpgrp() raises SIGTTOU, which would stop us: block it, as
    # shells do when they take the terminal back from a job.
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTTOU})
    try:
        os.tcsetpgrp(fd, pgid)
        return True
    except OSError:
        return False
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class _Child:
    """A forked child that waits at a gate until the tracker is measuring, then execs.

    The gate lets carbontrack know the child's pid (for ``devices_by_pid`` and process
    attribution) before discovery, and measure from the first instruction of the command.

    When carbontrack leads its process group (as a shell's job or a supervisor's child does),
    the child leads a process group of its own, so that a signal sent to carbontrack's group
    (``kill -INT -- -PGID``, as Slurm and supervisors do) reaches it once, forwarded by
    carbontrack, instead of twice. (A carbontrack sharing its group, started by a script
    without job control, leaves the child in that group: terminal signals reach both, and are
    not forwarded again.) On an interactive terminal its group is made the foreground
    group: Ctrl-C, Ctrl-\\ and terminal input go to the command alone (the kernel signals the
    terminal's foreground group: drivers/tty/n_tty.c, ``isig()``), and a stopped command (Ctrl-Z)
    stops carbontrack too, so that the shell's job control works as without carbontrack.
    On Linux the child dies with carbontrack (``PR_SET_PDEATHSIG``): a SIGKILLed carbontrack
    leaves no orphan running unmeasured.
    """

    def __init__(self, cmd: Sequence[str], *, stdout_to_stderr: bool = False) -> None:
        self.cmd = list(cmd)
        self._stdout_to_stderr = stdout_to_stderr
        self._prctl = _prctl()
        self._parent = os.getpid()
        # Only a group leader (a shell's job, a supervisor's setsid child, a Slurm task) moves
        # the command into a group of its own. A carbontrack that shares its group with others
        # (started by a script without job control) leaves the command in that group, as it
        # was: those others must keep getting Ctrl-C, and the command keeps the terminal.
        self._isolate = os.getpgrp() == self._parent
        gate_r, self._gate_w = os.pipe()
        self._err_r, err_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, which execs or _exits
            self._in_child(gate_r, err_w)
        os.close(gate_r)
        os.close(err_w)
        self.pid = pid
        self.status: int | None = None
        # Both sides set the group, so that it is set whichever runs first.
        if self._isolate:
            with contextlib.suppress(OSError):
                os.setpgid(pid, pid)
        try:
            self.own_group = os.getpgid(pid) == pid
        except OSError:
            self.own_group = False
        # Job control needs the terminal: who is in its foreground, and stopping with the
        # command (a background carbontrack whose command stops on terminal input too).
        self._tty = _controlling_tty() if self.own_group else None

    def _in_child(self, gate_r: int, err_w: int) -> None:  # pragma: no cover - child only
        code = 0
        try:
            os.close(self._gate_w)
            os.close(self._err_r)
            if self._isolate:
                with contextlib.suppress(OSError):
                    os.setpgid(0, 0)
            if self._prctl is not None:
                self._prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
                if os.getppid() != self._parent:
                    os._exit(CANNOT_START)  # carbontrack died before the line above
            # What subprocess does: undo Python's own signal settings, keep what the user set.
            if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                signal.signal(signal.SIGINT, signal.SIG_DFL)
            for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ"):
                if hasattr(signal, name):
                    signal.signal(getattr(signal, name), signal.SIG_DFL)
            if os.read(gate_r, 1) != b"g":
                os._exit(CANNOT_START)  # carbontrack went away before the start: do not run
            if self._stdout_to_stderr:
                # `--json -`: the report owns stdout; the command still prints, on stderr.
                os.dup2(2, 1)
            os.execvp(self.cmd[0], self.cmd)
        except OSError as exc:
            code = exc.errno or errno.EIO
        except BaseException:
            code = errno.EIO
        try:
            os.write(err_w, str(code).encode())
        finally:
            os._exit(NOT_FOUND if code in (errno.ENOENT, errno.ENOTDIR) else NOT_EXECUTABLE)

    def release(self) -> int | None:
        """Let the child exec; return the errno of a failed exec, or ``None`` when it ran."""
        if self._tty is not None and _is_foreground(self._tty, os.getpgrp()):
            _set_foreground(self._tty, self.pid)  # the command gets the keyboard, as if alone
        try:
            os.write(self._gate_w, b"g")
        except OSError:
            pass  # the child died at the gate (a signal); wait() tells how
        finally:
            os.close(self._gate_w)
        data = b""
        while True:  # closes on a successful exec (close-on-exec), or carries the errno
            try:
                chunk = os.read(self._err_r, 32)
            except InterruptedError:  # pragma: no cover - PEP 475 retries for us
                continue
            if not chunk:
                break
            data += chunk
        os.close(self._err_r)
        return int(data) if data.strip().isdigit() else None

    def abandon(self) -> None:
        """Do not run the command: close the gate so the child exits without exec."""
        os.close(self._gate_w)
        os.close(self._err_r)
        self.wait()

    def send_signal(self, signum: int) -> None:
        """Send ``signum`` to the command (its whole process group) unless it was reaped."""
        if self.status is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if self.own_group:
                    try:
                        os.killpg(self.pid, signum)
                        return
                    except ProcessLookupError:
                        pass
                os.kill(self.pid, signum)

    @property
    def signal_name(self) -> str | None:
        """The name of the signal that ended the child (``"SIGKILL"``), else ``None``."""
        if self.status is None or not os.WIFSIGNALED(self.status):
            return None
        number = os.WTERMSIG(self.status)
        try:
            return signal.Signals(number).name
        except ValueError:  # a real-time signal has no name of its own
            return f"signal {number}"

    def wait(self) -> int:
        """Wait for the child; return its exit code, 128+N when killed by signal N."""
        while self.status is None:
            _pid, status = os.waitpid(self.pid, os.WUNTRACED)
            if os.WIFSTOPPED(status):
                self._stopped()
                continue
            self.status = status
        self._take_terminal_back()
        code = os.waitstatus_to_exitcode(self.status)
        return 128 - code if code < 0 else code

    def _stopped(self) -> None:
        # Ctrl-Z stopped the command: stop too, so that the shell sees its job stopped and
        # gets the terminal; on `fg` (or `bg`) carry on and continue the command.
        if self._tty is None:
            return  # no job control here (a debugger, a supervisor): keep waiting
        if _is_foreground(self._tty, self.pid):
            _set_foreground(self._tty, os.getpgrp())
        os.kill(os.getpid(), signal.SIGSTOP)
        # Continued: by `fg` (the terminal is ours again: hand it on) or by `bg`.
        if _is_foreground(self._tty, os.getpgrp()):
            _set_foreground(self._tty, self.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGCONT)

    def _take_terminal_back(self) -> None:
        if self._tty is not None:
            if _is_foreground(self._tty, self.pid):
                _set_foreground(self._tty, os.getpgrp())
            self._close_tty()

    def _close_tty(self) -> None:
        if self._tty is not None:
            with contextlib.suppress(OSError):
                os.close(self._tty)
            self._tty = None


def _terminal_signalled_us(child: _Child) -> bool:
    """Whether a SIGINT, SIGQUIT or SIGHUP now most likely came from our terminal and so
    reached the child too: only where the child could not get a process group of its own."""
    if child.own_group:
        return False  # the terminal signals the child's group, which is not ours
    try:
        if os.getpgid(child.pid) != os.getpgrp():
            return False
    except OSError:
        return False
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)
    except OSError:
        return False
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False
    finally:
        os.close(fd)


class _Forwarder:
    """Signal handlers for the duration of the child: the child decides what a signal means.

    Each signal carbontrack receives is sent on to the command's process group once: the
    command is in a group of its own, so a signal sent to carbontrack's group does not reach
    it directly as well.
    """

    #: Forwarded to the child; carbontrack itself stays to write the report. SIGQUIT
    #: (Ctrl-backslash) and SIGHUP (terminal closed) would otherwise end carbontrack first.
    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT, signal.SIGHUP)
    FROM_TERMINAL = (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP)

    def __init__(self, child: _Child) -> None:
        self._child = child
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if signum in self.FROM_TERMINAL and _terminal_signalled_us(self._child):
            return  # the child got this one from the terminal itself
        self._child.send_signal(signum)

    def __enter__(self) -> _Forwarder:
        for s in self.SIGNALS:
            # An ignored signal (nohup, a background job) stays ignored, as it is for the child.
            if signal.getsignal(s) is not signal.SIG_IGN:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)


# -- the live status line ------------------------------------------------------------------------


def _terminal_size(stream: TextIO) -> tuple[int, int]:
    size = os.get_terminal_size(stream.fileno())
    return size.columns, size.lines


class StatusLine:
    """A live line at the bottom of a terminal: elapsed time, power now, energy and CO2eq so far.

    The command writes to the same terminal, straight from its own file descriptors, so the line
    cannot be erased before each of its writes. Instead the bottom row is taken out of the
    terminal's scrolling region (DECSTBM), as apt's progress bar does
    (apt-pkg/install-progress.cc, ``SetupTerminalScrollArea``): the command's output scrolls
    above it and never runs into it, and the line never enters the scrollback. Each refresh is
    one write (save cursor, draw on the bottom row, restore cursor), which the tty layer does not
    split among other writers' bytes; ``stop()`` gives the row back and erases it.

    Refreshed every ``interval_s`` from a named daemon thread that asks ``snapshot()`` for the
    report so far; power is the energy difference between two snapshots over their time.
    """

    #: A smaller terminal (or one that does not know its size, 0x0) gets no line: it would
    #: take too much of the screen, or say too little.
    MIN_ROWS = 3
    MIN_COLUMNS = 20

    def __init__(
        self,
        snapshot: Callable[[], Report],
        stream: TextIO,
        *,
        interval_s: float = 1.0,
        size: Callable[[], tuple[int, int]] | None = None,
    ) -> None:
        self._snapshot = snapshot
        self._stream = stream
        self._interval_s = interval_s
        self._size = size or (lambda: _terminal_size(stream))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._previous: Report | None = None
        self._rows = 0  # the rows of the terminal when the region was set; 0: not set
        self._lock = threading.Lock()

    @staticmethod
    def render(report: Report, power_w: float | None) -> str:
        """The text of the line for ``report`` (the run so far) and the power now."""
        from carbontrack.writers.console import format_co2, format_duration, format_energy

        power = "-- W" if power_w is None else f"{power_w:.1f} W"
        parts = [
            f"carbontrack: {format_duration(report.duration_s)}",
            power,
            format_energy(report.energy_j),
            format_co2(report.co2eq_g),
        ]
        if report.methods == ("model",):
            parts.append("(estimated)")
        elif report.estimated:
            parts.append("(partly estimated)")
        elif not report.devices:
            parts.append("(no device measured)")
        return " | ".join(parts)

    def _write(self, text: str) -> None:
        # One flush, so one write(2): the terminal gets the whole sequence in one piece.
        self._stream.write(text)
        self._stream.flush()

    @staticmethod
    def _reserve(rows: int) -> str:
        # Index (ESC D: down a row, scrolling at the bottom, column kept) and back up, so that
        # the bottom row is empty and the cursor above it; then the region, which homes the
        # cursor, hence the save and restore around it. The cursor ends where it was (one row
        # up if it was on the bottom row), inside the region, so no terminal moves it.
        return f"\x1bD\x1b[1A\x1b7\x1b[1;{rows - 1}r\x1b8"

    def update(self) -> None:
        """Take a snapshot and redraw the line (one refresh)."""
        report = self._snapshot()
        power = None
        prev = self._previous
        # Before the second refresh, the power so far is the mean since the start.
        e0, t0 = (prev.energy_j, prev.duration_s) if prev is not None else (0.0, 0.0)
        if report.duration_s > t0:
            power = (report.energy_j - e0) / (report.duration_s - t0)
        self._previous = report
        columns, rows = self._size()
        text = self.render(report, power)[: columns - 1]
        with self._lock:
            if self._stop.is_set():
                return
            if rows < self.MIN_ROWS or columns < self.MIN_COLUMNS:
                self._release()  # too small (or unknown, 0x0) now: no line at all
                return
            prefix = ""
            if rows != self._rows:
                # First refresh, or the terminal was resized: (re)take the bottom row.
                prefix = self._reserve(rows)
                self._rows = rows
            self._write(f"{prefix}\x1b7\x1b[{rows};1H{text}\x1b[K\x1b8")

    def _release(self) -> None:
        # Full-screen region again; erase the line; the cursor goes back to where the command
        # left it, so what follows (the summary) comes after its output.
        if self._rows:
            with contextlib.suppress(OSError, ValueError):
                self._write(f"\x1b7\x1b[r\x1b[{self._rows};1H\x1b[2K\x1b8")
            self._rows = 0

    def write_above(self, text: str) -> None:
        """Write ``text`` (log output) where the command's output goes, above the line."""
        with self._lock:
            self._stream.write(text)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.update()
            except Exception:  # a display problem must never touch the run
                logger.debug("status line failed", exc_info=True)
                return

    def start(self) -> None:
        """Start refreshing in the background (the first draw after ``interval_s``)."""
        self._thread = threading.Thread(target=self._loop, name="carbontrack-status", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop refreshing, give the bottom row back to the terminal and erase the line."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        with self._lock:
            self._release()


# -- the command -------------------------------------------------------------------------------


def _say(message: str) -> None:
    print(f"carbontrack: {message}", file=sys.stderr, flush=True)


def _write_json(report: Report, target: str, file_mode: str = "private") -> None:
    text = json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n"
    if target == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    # The report says where and how the command ran: the run log's policy (file_mode) holds.
    _files.write_bytes(Path(target).expanduser(), text.encode("utf-8"), file_mode)


def split_command(argv: Sequence[str]) -> tuple[list[str], list[str] | None]:
    """Split ``run``'s arguments at the first ``--``: ``(carbontrack's, the command's)``.

    Returns ``None`` for the command when there is no ``--`` (argparse then takes it from the
    first non-option word on).
    """
    argv = list(argv)
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1 :]
    return argv, None


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run ``args.cmd`` measured; return the exit code carbontrack should end with."""
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        parser.error(
            "no command to run: give it after `--`, e.g. carbontrack run -- python train.py"
        )
    try:
        settings = settings_from_args(args)
        from carbontrack.writers.prometheus import with_config_file

        # The config file's exporter keys, checked before the command starts.
        settings = with_config_file(settings)
    except (InvalidOption, TypeError, ValueError) as exc:
        parser.error(_in_cli_words(str(exc)))
    if args.json not in (None, "-") and Path(args.json).expanduser().is_dir():
        # Found out now, not when a long run is over and its report has nowhere to go.
        parser.error(
            f"--json {args.json} is a directory: expected a file name, "
            f"e.g. --json {Path(args.json) / 'report.json'}"
        )
    problem = check_command(cmd[0])
    if problem is not None:
        code, message = problem
        _say(message)
        return code
    status = (
        settings.verbose >= 1
        and not args.no_status
        and sys.stderr.isatty()
        and os.environ.get("TERM", "") != "dumb"  # no cursor addressing (Emacs shell)
    )
    returncode, report = measure(
        cmd, settings, status_line=status, stdout_to_stderr=args.json == "-"
    )
    if args.json is not None and returncode != CANNOT_START:
        if report is None:
            _say("no JSON report: measuring did not run (see the warning above)")
        else:
            try:
                _write_json(report, args.json, settings.file_mode)
            except OSError as exc:
                where = "stdout" if args.json == "-" else args.json
                _say(f"cannot write the JSON report to {where}: {exc}")
    return returncode


def measure(
    cmd: Sequence[str],
    settings: Settings,
    *,
    status_line: bool = False,
    stdout_to_stderr: bool = False,
) -> tuple[int, Report | None]:
    """Run ``cmd`` as a child measured with ``settings``; return its exit code and the report.

    The report is ``None`` only when measuring could not start or finish (a warning says why);
    the exit code is the child's whatever happens to the measurement, 125 when a plugin could
    not be loaded (the command is then not run).
    """
    from carbontrack._tracker import Tracker

    child = _Child(cmd, stdout_to_stderr=stdout_to_stderr)
    tracker: Tracker | None = None
    status: StatusLine | None = None
    command = Command(argv=tuple(redact_argv(cmd)))
    with _Forwarder(child):
        try:
            tracker = Tracker(attrs.evolve(settings, pid=child.pid))
            tracker.command = command  # in every checkpoint: a killed run still says what ran
            tracker.start()
        except PluginLoadError as exc:
            # Loud before the command runs, as the library is: the fix is in the message.
            child.abandon()
            _say(f"{exc}\ncarbontrack: the command was not run")
            return CANNOT_START, None
        except Exception as exc:  # measuring must never stop the command or change its result
            logger.warning("carbontrack: cannot measure (%s); running the command anyway", exc)
            logger.debug("measuring failed to start", exc_info=True)
            tracker = None
        failed_exec = child.release()
        if failed_exec is not None:
            _say(_exec_failure(cmd[0], failed_exec)[1])
        elif tracker is not None and status_line:
            status = StatusLine(tracker.snapshot, sys.stderr)
            status.start()
        try:
            returncode = child.wait()
            if tracker is not None:
                tracker.command = attrs.evolve(
                    command, exit_code=returncode, signal=child.signal_name
                )
        finally:
            if status is not None:
                status.stop()
            report = _finish(tracker)
    return returncode, report


def _finish(tracker: Any) -> Report | None:
    if tracker is None or not tracker.running:
        return None
    try:
        report: Report = tracker.stop()
    except Exception as exc:  # the child's exit code stands whatever happens here
        logger.warning("carbontrack: the report could not be completed: %s", exc)
        logger.debug("stopping the tracker failed", exc_info=True)
        return None
    return report
