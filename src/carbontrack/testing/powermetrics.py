"""A fake macOS ``powermetrics`` (and ``sudo``) executable, for tests on any POSIX machine.

``install_fake_powermetrics(directory)`` writes the scripts; put ``directory`` first on ``PATH``.
The fake streams plist samples like the real tool and can fail in the ways the real one does.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import attrs

__all__ = ["MODES", "FakePowermetrics", "fake_macos", "install_fake_powermetrics"]

#: What the fake does after ``fault_after`` good samples: keep streaming (``normal``), write one
#: truncated document and go on (``truncate``), write half a document and die
#: (``stop-mid-document``), write garbled documents and go on (``garbage``), exit with status 1
#: (``exit``), or stop writing and ignore SIGTERM (``hang``).
MODES = ("normal", "truncate", "stop-mid-document", "garbage", "exit", "hang")

Mode = Literal["normal", "truncate", "stop-mid-document", "garbage", "exit", "hang"]
SudoMode = Literal["root", "allow", "refuse", "missing"]

# The fakes are standalone scripts (no carbontrack import) so that they start in milliseconds.
_POWERMETRICS = r"""
import json, os, plistlib, signal, sys, time


def exec_time():
    # When this process was exec'd, on the monotonic clock: the real powermetrics is a C program
    # that starts sampling within milliseconds, while this script's interpreter can take a
    # second to start on a loaded machine. /proc/self/stat field 22 is the start time in clock
    # ticks of the boot-time clock (proc(5)); elsewhere: now.
    try:
        fields = open("/proc/self/stat").read().rpartition(")")[2].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        return started - (time.clock_gettime(time.CLOCK_BOOTTIME) - time.monotonic())
    except (OSError, ValueError, IndexError, AttributeError):
        return time.monotonic()
from datetime import datetime, timezone

CONFIG = __CONFIG__
cfg = json.loads(open(CONFIG).read())


def log(record):
    with open(cfg["log"], "a") as f:
        f.write(json.dumps(record) + "\n")


log({"prog": "powermetrics", "pid": os.getpid(), "argv": sys.argv[1:]})
signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # like a C program: a closed pipe ends it

args = sys.argv[1:]
opts = {}
names = {"-s": "samplers", "--samplers": "samplers", "-i": "interval", "--sample-rate": "interval",
         "-f": "format", "--format": "format", "-b": "buffer", "--buffer-size": "buffer",
         "-n": "count", "--sample-count": "count"}
while args:
    flag = args.pop(0)
    if flag not in names or not args:
        sys.stderr.write("powermetrics: unrecognized option or missing value: %s\n" % flag)
        sys.exit(64)
    opts[names[flag]] = args.pop(0)

if cfg["require_root"] and os.geteuid() != 0 and os.environ.get("FAKE_SUDO_ROOT") != "1":
    sys.stderr.write("powermetrics must be invoked as the superuser\n")
    sys.exit(1)
if opts.get("format") != "plist":
    sys.stderr.write("fake powermetrics only speaks -f plist\n")
    sys.exit(64)

interval_s = int(opts.get("interval", "5000")) / 1000.0
count = int(opts.get("count", "0"))
samplers = opts.get("samplers", "default").split(",")
out = sys.stdout.buffer


def sample(elapsed_ns):
    proc = {"clusters": [
        {"name": "E-Cluster", "freq_hz": 1.2e9, "idle_ns": elapsed_ns // 2, "idle_ratio": 0.5,
         "dvfm_states": [], "cpus": []},
        {"name": "P-Cluster", "freq_hz": 3.2e9, "idle_ns": elapsed_ns // 3, "idle_ratio": 0.33,
         "dvfm_states": [], "cpus": []},
    ]}
    truth = {}
    for kind in ("cpu", "gpu", "ane"):
        if kind + "_power" not in samplers or kind in cfg["omit"]:
            continue
        mw = cfg["watts"][kind] * 1000.0
        mj = round(mw * elapsed_ns / 1e9)
        if cfg["energy_fields"]:
            proc[kind + "_energy"] = mj
            truth[kind] = mj / 1000.0
        if cfg["power_fields"]:
            proc[kind + "_power"] = mw
            if not cfg["energy_fields"]:
                truth[kind] = mw * elapsed_ns / 1e12
    proc["combined_power"] = sum(cfg["watts"].values()) * 1000.0
    doc = {"is_delta": True, "elapsed_ns": elapsed_ns, "hw_model": cfg["hw_model"],
           "kern_osversion": "24D81", "timestamp": datetime.now(timezone.utc).replace(tzinfo=None),
           "thermal_pressure": "Nominal", "processor": proc,
           "gpu": {"freq_hz": 1398.0, "idle_ratio": 0.41, "dvfm_states": []}}
    return plistlib.dumps(doc), truth


written = [False]


def emit(data, split):
    # Framed as macOS frames it: a NUL right *before* every sample after the first, none after
    # (cubestat cubestat/platforms/macos.py: "powermetrics injects 0x00 right before the
    # measurement event"; asitop asitop/utils.py enqueue_powermetrics splits at lines that
    # start with \x00). A reader that waits for the NUL is one sample late.
    if written[0]:
        data = b"\x00" + data
    written[0] = True
    if split:  # a reader must wait for the rest of a document, not call it garbled
        half = len(data) // 2
        out.write(data[:half]); out.flush()
        time.sleep(min(interval_s / 4, 0.01))
        data = data[half:]
    out.write(data); out.flush()


if os.environ.get("FAKE_SUDO_ROOT") == "1" and cfg["sudo"] == "root":
    # Root-owned under a real sudo: the user's signals fail with EPERM. Simulated: TERM, INT
    # and HUP are logged and have no effect (SIGKILL cannot be caught: a test sees it as the
    # missing exit record of sudo).
    def refused(signum, frame):
        log({"prog": "powermetrics", "pid": os.getpid(), "signal": signum})
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, refused)


# The first sample covers the time since the command (sudo, when run through it) started.
last = min(float(os.environ.get("FAKE_EXEC_T", "inf")), exec_time())
n = 0
while count == 0 or n < count:
    time.sleep(max(0.0, last + interval_s - time.monotonic()))
    now = time.monotonic()
    elapsed_ns = int((now - last) * 1e9)
    last = now
    body, truth = sample(elapsed_ns)
    mode = cfg["mode"] if n >= cfg["fault_after"] else "normal"
    if mode == "exit":
        sys.stderr.write("powermetrics: fake failure after %d samples\n" % n)
        sys.exit(1)
    if mode == "hang":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        log({"prog": "powermetrics", "pid": os.getpid(), "hung": True})
        while True:
            time.sleep(3600)
    if mode == "stop-mid-document":
        emit(body[: len(body) // 2], False)
        sys.exit(1)
    if mode == "truncate" and n == cfg["fault_after"]:
        emit(body[: len(body) // 2], False)  # the NUL before the next sample ends it
        log({"prog": "powermetrics", "bad": "truncated"})
    if mode == "garbage" and n == cfg["fault_after"]:
        emit(b"\x89 not a plist \xff\xfe<<<", False)
        # Well-formed plist of the wrong shape: garbled as far as a sample goes.
        emit(plistlib.dumps(["not", "a", "sample"]), False)
        log({"prog": "powermetrics", "bad": "garbage"})
    # Logged first: a reader can never have a sample that the log lacks.
    log({"prog": "powermetrics", "sample": n, "elapsed_ns": elapsed_ns, "joules": truth})
    emit(body, cfg["split_writes"])
    n += 1
"""

_SUDO = r"""
import json, os, signal, subprocess, sys, time


def exec_time():
    # When this process was exec'd, on the monotonic clock: the real powermetrics is a C program
    # that starts sampling within milliseconds, while this script's interpreter can take a
    # second to start on a loaded machine. /proc/self/stat field 22 is the start time in clock
    # ticks of the boot-time clock (proc(5)); elsewhere: now.
    try:
        fields = open("/proc/self/stat").read().rpartition(")")[2].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        return started - (time.clock_gettime(time.CLOCK_BOOTTIME) - time.monotonic())
    except (OSError, ValueError, IndexError, AttributeError):
        return time.monotonic()

CONFIG = __CONFIG__
cfg = json.loads(open(CONFIG).read())
with open(cfg["log"], "a") as f:
    f.write(json.dumps({"prog": "sudo", "pid": os.getpid(), "argv": sys.argv[1:]}) + "\n")

args = sys.argv[1:]
if not args or args[0] != "-n":
    sys.stderr.write("sudo: a terminal is required to read the password\n")
    sys.exit(1)
if cfg["sudo"] == "refuse":
    sys.stderr.write("sudo: a password is required\n")
    sys.exit(1)
env = dict(os.environ, FAKE_SUDO_ROOT="1", FAKE_EXEC_T=repr(exec_time()))
child = subprocess.Popen(args[1:], env=env)


def log(record):
    with open(cfg["log"], "a") as f:
        f.write(json.dumps(dict(record, prog="sudo", pid=os.getpid())) + "\n")


def relay(signum, frame):  # a sudo the user may signal passes the signal on to the command
    log({"signal": signum})
    child.send_signal(signum)


def refused(signum, frame):
    # Real sudo becomes full root "so user cannot kill us" (sudo src/sudo.c): a non-root
    # caller's kill() fails with EPERM. Simulated: the signal is logged and has no effect.
    log({"signal": signum})


for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(s, refused if cfg["sudo"] == "root" else relay)
rc = child.wait()
log({"exit": rc})  # missing when sudo was killed (SIGKILL cannot be caught)
sys.exit(rc if rc >= 0 else 128 - rc)
"""


@attrs.frozen
class FakePowermetrics:
    """An installed fake: its directory (put it first on ``PATH``), config and log.

    The log holds one JSON record per started process (``prog``, ``pid``, ``argv``) and per
    emitted sample (``joules`` by kind, the figures the plugin should arrive at).
    """

    bin_dir: Path
    config_path: Path
    log_path: Path

    @property
    def executable(self) -> Path:
        """The fake ``powermetrics`` script."""
        return self.bin_dir / "powermetrics"

    @property
    def path_env(self) -> str:
        """A ``PATH`` value with the fake first."""
        return f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"

    def configure(self, **changes: Any) -> None:
        """Change the behaviour of processes started from now on (same keys as install)."""
        cfg = json.loads(self.config_path.read_text())
        cfg.update(_config_changes(changes))
        self.config_path.write_text(json.dumps(cfg))

    def records(self) -> list[dict[str, Any]]:
        """Every record logged so far, in order."""
        if not self.log_path.exists():
            return []
        lines = self.log_path.read_text().splitlines()
        # A record being written right now may be incomplete; it is read on the next call.
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def invocations(self, prog: str = "powermetrics") -> list[list[str]]:
        """The argument lists ``prog`` (``powermetrics`` or ``sudo``) was started with."""
        return [r["argv"] for r in self.records() if r.get("prog") == prog and "argv" in r]

    def pids(self) -> list[int]:
        """Process ids of every fake ``sudo`` and ``powermetrics`` started so far."""
        return [r["pid"] for r in self.records() if "argv" in r]

    def samples(self) -> list[dict[str, Any]]:
        """The good samples emitted so far, each with ``elapsed_ns`` and ``joules`` by kind."""
        return [r for r in self.records() if "sample" in r]

    def emitted_joules(self, kind: str) -> float:
        """The energy of ``kind`` in all good samples emitted so far (what a reader should sum)."""
        return sum(float(r["joules"].get(kind, 0.0)) for r in self.samples())

    def leftover_pids(self, wait_s: float = 2.0) -> list[int]:
        """Fake processes still running after up to ``wait_s`` (a killed one takes a moment).

        A zombie counts as left over only when this process is its parent (it was not reaped).
        """
        deadline = time.monotonic() + wait_s
        while True:
            left = [pid for pid in self.pids() if _left_over(pid)]
            if not left or time.monotonic() >= deadline:
                return left
            time.sleep(0.02)


def _left_over(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:
        # Fields after the command name (which may hold spaces): state, ppid, ...
        state, ppid = stat.read_text().rpartition(")")[2].split()[:2]
    except (OSError, ValueError):
        return True  # no /proc (macOS): the process exists
    return state not in ("Z", "X") or int(ppid) == os.getpid()


def _config_changes(changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(changes)
    if "mode" in out and out["mode"] not in MODES:
        raise ValueError(f"mode={out['mode']!r} is not valid: expected one of {', '.join(MODES)}")
    if "sudo" in out and out["sudo"] not in ("root", "allow", "refuse", "missing"):
        raise ValueError(
            f"sudo={out['sudo']!r} is not valid: expected root, allow, refuse or missing"
        )
    watts = {k: out.pop(f"{k}_w") for k in ("cpu", "gpu", "ane") if f"{k}_w" in out}
    if watts:
        out["watts"] = watts
    if "omit" in out:
        out["omit"] = list(out["omit"])
    return out


def install_fake_powermetrics(
    directory: str | os.PathLike[str],
    *,
    mode: Mode = "normal",
    fault_after: int = 3,
    cpu_w: float = 6.19287,
    gpu_w: float = 2.47156,
    ane_w: float = 0.35,
    energy_fields: bool = True,
    power_fields: bool = True,
    omit: tuple[str, ...] = (),
    split_writes: bool = False,
    sudo: SudoMode = "root",
    require_root: bool = True,
    hw_model: str = "Mac14,2",
) -> FakePowermetrics:
    """Write a fake ``powermetrics`` (and ``sudo``, unless ``sudo="missing"``) into ``directory``.

    The fake honours ``-f plist``, ``-s``, ``-i`` (ms), ``-b`` and ``-n``; each sample carries
    ``elapsed_ns`` (the real time since the previous one) and, in ``processor``, ``*_energy``
    (integer mJ) and/or ``*_power`` (mW) for the samplers asked for, at ``cpu_w``/``gpu_w``/
    ``ane_w`` watts; kinds in ``omit`` are left out. It refuses to run unless started by the
    fake ``sudo`` or as root (``require_root``). Samples are framed as on macOS: a NUL before
    each one after the first. ``sudo="root"`` (the default, as real sudo) makes sudo and the
    powermetrics under it ignore the caller's TERM, INT and HUP (logged as ``signal`` records),
    as EPERM would; ``sudo="allow"`` is a sudo the caller may signal, which relays them;
    ``sudo="refuse"`` makes ``sudo -n`` fail like a password prompt would. ``split_writes``
    writes every document in two parts. Figures from
    this fake are simulated: never report them as a measurement.
    """
    bin_dir = Path(directory)
    bin_dir.mkdir(parents=True, exist_ok=True)
    config_path = bin_dir / "fake-powermetrics.json"
    log_path = bin_dir / "fake-powermetrics.log"
    config = {
        "log": str(log_path),
        "require_root": require_root,
        "hw_model": hw_model,
        "split_writes": split_writes,
        "energy_fields": energy_fields,
        "power_fields": power_fields,
        "fault_after": fault_after,
        "mode": "normal",
        "sudo": "root",
        **_config_changes(
            {"mode": mode, "sudo": sudo, "cpu_w": cpu_w, "gpu_w": gpu_w, "ane_w": ane_w}
        ),
        "omit": list(omit),
    }
    config_path.write_text(json.dumps(config))
    header = f"#!{sys.executable}\n"
    _write_script(
        bin_dir / "powermetrics",
        header + _POWERMETRICS.replace("__CONFIG__", repr(str(config_path))),
    )
    sudo_path = bin_dir / "sudo"
    if sudo == "missing":
        sudo_path.unlink(missing_ok=True)
    else:
        _write_script(sudo_path, header + _SUDO.replace("__CONFIG__", repr(str(config_path))))
    return FakePowermetrics(bin_dir=bin_dir, config_path=config_path, log_path=log_path)


def _write_script(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


@contextlib.contextmanager
def fake_macos(
    *, machine: str = "arm64", sysctls: Mapping[str, int | str] | None = None
) -> Iterator[None]:
    """Make the powermetrics backend see macOS on ``machine`` with these sysctl values.

    The seam is the backend's view of ``platform`` and of ``sysctlbyname(3)``: integers come
    back as 4 little-endian bytes and strings NUL-terminated, as the real call returns them;
    a name not in ``sysctls`` is missing (ENOENT), as ``sysctl.proc_translated`` is on Intel
    Macs. Under Rosetta an x86_64 Python sees ``machine="x86_64"`` and
    ``sysctl.proc_translated=1`` (Apple, "About the Rosetta translation environment").
    """
    from carbontrack.backends import powermetrics as pm

    values = dict(sysctls or {})

    def sysctlbyname(name: str) -> bytes | None:
        value = values.get(name)
        if value is None:
            return None
        if isinstance(value, int):
            return value.to_bytes(4, "little")
        return value.encode() + b"\x00"

    saved = pm._platform_id, pm._sysctlbyname
    pm._platform_id = lambda: ("Darwin", machine)
    pm._sysctlbyname = sysctlbyname
    try:
        yield
    finally:
        pm._platform_id, pm._sysctlbyname = saved
