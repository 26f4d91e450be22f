"""CPU (and optional RAM) power estimates where no energy counter can be read: VMs, containers.

Every figure from here is a model (``method="model"``), never a measurement; the host drops it
when a measured device of the same kind exists. The curve, the tables and their sources:

* CPU power ``P = TDP x (IDLE_SHARE + (1 - IDLE_SHARE) x u)``, ``u`` the CPU utilisation in
  [0, 1]. Linear between an idle floor and the rated power, as in Cloud Carbon Footprint's
  methodology (itself from SPECpower_ssj2008 results): its AWS averages of 0.74 W (0 % load) and
  3.5 W (100 % load) per vCPU give ``IDLE_SHARE = 0.74 / 3.5 = 0.211``.
* TDP, in order: ``settings.cpu_tdp_w`` (all sockets together); the shipped table
  ``data/cpu_tdp.csv`` (CodeCarbon's ``cpu_power.csv``, MIT, see ``cpu_tdp_meta.json``) matched
  against the model string and multiplied by the number of sockets (in a VM at most
  ``DEFAULT_W_PER_THREAD`` per vCPU: the table's figure is the whole chip's); else
  ``DEFAULT_W_PER_THREAD`` x logical CPUs.
* ``u``: the machine's busy share from ``/proc/stat``; with ``attribution="process"`` the
  tracked process tree's CPU time over the machine's, and the idle floor shared in proportion
  to the tree's part of the busy time. Elsewhere: ``os.getloadavg`` / ``os.times``.
* RAM (only when ``components`` includes ``ram``): ``RAM_W_PER_GB`` x installed memory
  (machine) or the process tree's resident memory (process).

``CARBONTRACK_PROC_ROOT`` (default ``/proc``) and ``CARBONTRACK_POWERCAP_ROOT`` (default
``/sys/class/powercap``, shared with the ``rapl`` backend) let tests point this module at fake
trees (``carbontrack.testing.procfs``).
"""

from __future__ import annotations

import functools
import logging
import os
import re
import threading
import time
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from carbontrack.hookspecs import hookimpl
from carbontrack.model import Device, Reading, Unavailable
from carbontrack.settings import Settings

__all__ = [
    "BACKEND",
    "DEFAULT_W_PER_THREAD",
    "IDLE_SHARE",
    "RAM_W_PER_GB",
    "UNKNOWN_UTILISATION",
    "CpuInfo",
    "TdpChoice",
    "TdpMatch",
    "carbontrack_discover_devices",
    "carbontrack_read_energy",
    "cpu_power_w",
    "load_tdp_table",
    "match_cpu",
    "normalise_cpu_name",
    "read_cpu_info",
    "resolve_tdp",
]

logger = logging.getLogger(__name__)

BACKEND = "estimate"
PROC_ROOT_ENV = "CARBONTRACK_PROC_ROOT"
# The rapl backend's variable: both must look at the same tree.
POWERCAP_ROOT_ENV = "CARBONTRACK_POWERCAP_ROOT"

#: Share of the rated power drawn at 0 % utilisation: Cloud Carbon Footprint's AWS averages,
#: 0.74 W idle and 3.5 W at full load per vCPU (SPECpower_ssj2008), i.e. 0.211.
IDLE_SHARE = 0.74 / 3.5

#: Watts per logical CPU when the model is unknown: CodeCarbon's fallback (4 W per thread).
#: Close to known chips: Xeon Gold 6248 150 W / 40 threads = 3.75 W, Core i7-10700 65 W / 16 =
#: 4.1 W, Ryzen 9 5950X 105 W / 32 = 3.3 W, EPYC 7742 225 W / 128 = 1.8 W.
DEFAULT_W_PER_THREAD = 4.0

#: Utilisation assumed where nothing can be read (Windows, for another process): Cloud Carbon
#: Footprint's average utilisation of hyperscale servers (50 %).
UNKNOWN_UTILISATION = 0.5

#: Watts per GB (10^9 bytes) of memory: Green Algorithms (Lannelongue et al. 2021), 0.3725 W/GB.
RAM_W_PER_GB = 0.3725

_TABLE_FILE = "cpu_tdp.csv"


def cpu_power_w(tdp_w: float, utilisation: float, idle_weight: float = 1.0) -> float:
    """Modelled CPU power: ``tdp_w x (IDLE_SHARE x idle_weight + (1 - IDLE_SHARE) x u)``.

    ``utilisation`` and ``idle_weight`` (the share of the idle floor that is attributed, 1 for
    the whole machine) are clamped to [0, 1].
    """
    u = min(max(utilisation, 0.0), 1.0)
    w = min(max(idle_weight, 0.0), 1.0)
    return tdp_w * (IDLE_SHARE * w + (1.0 - IDLE_SHARE) * u)


# -- model strings and the TDP table --------------------------------------------------------

# Patterns, not compiled patterns: ``re`` compiles and caches each on first use, so a run whose
# CPU is measured (RAPL) never pays for them (docs/performance.md, "Start-up").
_TRADEMARKS = r"(?i)\((?:r|tm|c)\)|[®™]"
_FREQUENCY = r"(?i)@\s*[\d.]+\s*[gm]hz\b"
_GENERATION = r"(?i)\b\d+(?:st|nd|rd|th)\s+gen(?:eration)?\b"
_CORE_COUNT = r"(?i)\b(?:\d+|dual|quad|six|eight|twelve|sixteen)-cores?(?:\s+processor)?\b"
_GRAPHICS = r"(?i)\s(?:with|w/)\s.*$"
_NOISE = frozenset({"processor", "cpu"})


def normalise_cpu_name(name: str) -> str:
    """Reduce a CPU model string to the words that identify it, lower case.

    ``Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz`` -> ``intel xeon gold 6248``;
    ``AMD EPYC 7742 64-Core Processor`` -> ``amd epyc 7742``;
    ``11th Gen Intel(R) Core(TM) i7-1185G7 @ 3.00GHz`` -> ``intel core i7-1185g7``.
    """
    s = re.sub(_TRADEMARKS, " ", name)
    s = re.sub(_FREQUENCY, " ", s)
    s = re.sub(_GENERATION, " ", s)
    s = re.sub(_CORE_COUNT, " ", s)
    s = re.sub(_GRAPHICS, " ", s)
    s = s.lower().replace(",", " ")
    # "Core(TM)2 Duo" loses its trademark and must read as the table's "Core 2 Duo".
    s = re.sub(r"\bcore2\b", "core 2", s)
    return " ".join(w for w in s.split() if w not in _NOISE)


class TdpMatch(typing.NamedTuple):
    """A table row matched to a model string: the row's ``name``, its TDP and how it matched."""

    name: str
    tdp_w: float
    how: str  # "exact" (same words in order) or "words" (same words, another order)


@functools.cache
def _table_text() -> str:
    # Read beside this module rather than through importlib.resources, whose import (zipfile,
    # email) costs more than the whole look-up; the wheel installs the package as files.
    return (Path(__file__).parent / "data" / _TABLE_FILE).read_text("utf-8")


def _split_row(line: str) -> tuple[str, str, str]:
    import csv  # a name may be quoted; csv only loads when a row is matched

    key, name, tdp = next(csv.reader([line]))
    return key, name, tdp


def load_tdp_table() -> Mapping[str, tuple[str, float]]:
    """The shipped table: normalised model name -> (name as listed, TDP in W per socket)."""
    import csv
    import io

    rows = csv.DictReader(io.StringIO(_table_text()))
    return {row["key"]: (row["name"], float(row["tdp_w"])) for row in rows}


def _rows_with_words(text: str, words: frozenset[str]) -> set[tuple[str, float]]:
    """``(name, tdp_w)`` of the rows whose key has exactly ``words``, in any order."""
    found = set()
    rarest = min(words, key=text.count)  # only rows holding it can match
    at = text.find(rarest)
    while at >= 0:
        start = text.rfind("\n", 0, at) + 1
        end = text.find("\n", at)
        end = len(text) if end < 0 else end
        line = text[start:end]
        comma = line.find(",")  # the key column is plain words, never quoted
        if at - start < comma and frozenset(line[:comma].split()) == words:
            _key, name, tdp = _split_row(line)
            found.add((name, float(tdp)))
        at = text.find(rarest, end)
    return found


def match_cpu(model: str) -> TdpMatch | None:
    """Find ``model`` (a real model string) in the shipped table, or ``None`` if unknown.

    Exact on the normalised words first, then on the same set of words in any order. No fuzzy
    matching: a near miss (``Gold 6248`` vs ``Gold 6248R``) is a different chip, and an unknown
    chip gets the documented per-thread default instead of a neighbour's TDP.
    """
    key = normalise_cpu_name(model)
    if not key:
        return None
    # The table's first column is this normalised key (written by scripts/build_cpu_tdp.py):
    # string searches find the rows without parsing (or keeping) 4,600 others at every start.
    text = _table_text()
    at = text.find("\n" + key + ",")
    if at >= 0:
        line = text[at + 1 : text.find("\n", at + 1)]
        _key, name, tdp = _split_row(line)
        return TdpMatch(name, float(tdp), "exact")
    rows = _rows_with_words(text, frozenset(key.split()))
    if len(rows) == 1:  # two chips with these words in other orders: no answer
        ((row_name, row_tdp_w),) = rows
        return TdpMatch(row_name, row_tdp_w, "words")
    return None


# -- the machine -----------------------------------------------------------------------------


def _proc_root() -> Path:
    return Path(os.environ.get(PROC_ROOT_ENV, "").strip() or "/proc")


def _powercap_root() -> Path:
    return Path(os.environ.get(POWERCAP_ROOT_ENV, "").strip() or "/sys/class/powercap")


class CpuInfo(typing.NamedTuple):
    """What the machine says about its CPUs (``model`` is ``""`` when it says nothing)."""

    model: str
    sockets: int
    threads: int
    virtual: bool
    source: str


def _sysctl(key: str) -> str | None:
    import shutil
    import subprocess

    exe = shutil.which("sysctl")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "-n", key], capture_output=True, text=True, timeout=2.0, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    value = out.stdout.strip()
    return value if out.returncode == 0 and value else None


def read_cpu_info(proc_root: Path | None = None) -> CpuInfo:
    """Model string, sockets and logical CPUs, from ``/proc/cpuinfo`` or else ``sysctl``."""
    root = proc_root if proc_root is not None else _proc_root()
    try:
        text = (root / "cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    if text:
        model = ""
        sockets: set[str] = set()
        threads = 0
        virtual = False
        for line in text.splitlines():
            key, _, value = line.partition(":")
            key, value = key.strip().lower(), value.strip()
            if key == "processor":
                threads += 1
            elif key == "model name" and not model:
                model = value
            elif key == "physical id":
                sockets.add(value)
            elif key == "flags" and "hypervisor" in value.split():
                virtual = True
        return CpuInfo(
            model=model,
            sockets=max(len(sockets), 1),
            threads=threads or os.cpu_count() or 1,
            virtual=virtual,
            source=str(root / "cpuinfo"),
        )
    model = _sysctl("machdep.cpu.brand_string") or ""
    packages = _sysctl("hw.packages")
    sockets_n = int(packages) if packages and packages.isdigit() and int(packages) > 0 else 1
    source = "sysctl machdep.cpu.brand_string" if model else "platform.processor()"
    if not model:
        import platform

        model = platform.processor()
    return CpuInfo(
        model=model,
        sockets=sockets_n,
        threads=os.cpu_count() or 1,
        virtual=False,
        source=source,
    )


class TdpChoice(typing.NamedTuple):
    """The rated power used for the whole machine and where it came from."""

    total_w: float
    source: str
    known_model: bool


def resolve_tdp(settings: Settings, cpu: CpuInfo) -> TdpChoice:
    """Pick the TDP: ``cpu_tdp_w``, else the table x sockets, else the per-thread default."""
    if settings.cpu_tdp_w is not None:
        return TdpChoice(float(settings.cpu_tdp_w), "the cpu_tdp_w setting", True)
    found = match_cpu(cpu.model) if cpu.model else None
    if found is not None:
        table_w = found.tdp_w * cpu.sockets
        table = f"{cpu.sockets} x {found.tdp_w:g} W for {found.name!r} in carbontrack's CPU table"
        share_w = DEFAULT_W_PER_THREAD * cpu.threads
        if cpu.virtual and share_w < table_w:
            # A VM sees a few vCPUs of a chip whose TDP covers all its cores: the whole chip's
            # figure would charge a 4-vCPU VM for a 64-core processor.
            return TdpChoice(
                share_w,
                f"in a VM: {cpu.threads} vCPUs x {DEFAULT_W_PER_THREAD:g} W, less than the "
                f"whole chip's {table_w:g} W ({table}); set cpu_tdp_w to your share",
                True,
            )
        return TdpChoice(table_w, table, True)
    why = "model not in carbontrack's CPU table" if cpu.model else "CPU model unknown"
    return TdpChoice(
        DEFAULT_W_PER_THREAD * cpu.threads,
        f"{cpu.threads} logical CPUs x {DEFAULT_W_PER_THREAD:g} W default; {why}, "
        "set cpu_tdp_w for a better estimate",
        False,
    )


# -- utilisation -----------------------------------------------------------------------------


def _read_proc_stat(root: Path) -> tuple[int, int]:
    """``(busy, counted)`` clock ticks over all CPUs; steal time (another VM ran) is neither."""
    with (root / "stat").open(encoding="ascii", errors="replace") as f:
        first = f.readline().split()
    if not first or first[0] != "cpu":
        raise OSError(f"{root / 'stat'}: first line is not the 'cpu' total")
    values = [int(v) for v in first[1:9]] + [0] * max(0, 9 - len(first))
    user, nice, system, idle, iowait, irq, softirq = values[:7]
    busy = user + nice + system + irq + softirq
    return busy, busy + idle + iowait


def _stat_fields(root: Path, pid: str) -> list[str] | None:
    try:
        raw = (root / pid / "stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    return raw[raw.rfind(")") + 2 :].split()


def _children(root: Path, pid: str) -> list[str] | None:
    """Child pids from ``task/*/children`` (fast), or ``None`` when the kernel lacks it."""
    tasks = root / pid / "task"
    try:
        names = os.listdir(tasks)
    except OSError:
        return None
    kids: list[str] = []
    for tid in names:
        try:
            kids += (tasks / tid / "children").read_text(encoding="ascii").split()
        except FileNotFoundError:
            return None
        except OSError:
            continue
    return kids


def _process_tree(root: Path, pid: int) -> list[str] | None:
    """The pid and all its descendants (as strings), or ``None`` when ``pid`` is gone."""
    top = str(pid)
    if not (root / top).is_dir():
        return None
    tree = [top]
    queue = [top]
    fast = True
    while queue and fast:
        kids = _children(root, queue.pop())
        if kids is None:
            fast = False
            break
        tree += kids
        queue += kids
    if fast:
        return tree
    # No children files (kernel without CONFIG_PROC_CHILDREN): one pass over every process.
    parent_of: dict[str, list[str]] = {}
    for name in os.listdir(root):
        if name.isdigit():
            fields = _stat_fields(root, name)
            if fields is not None and len(fields) > 1:
                parent_of.setdefault(fields[1], []).append(name)
    tree, queue = [top], [top]
    while queue:
        kids = parent_of.get(queue.pop(), [])
        tree += kids
        queue += kids
    return tree


def _tree_ticks(root: Path, pids: Sequence[str]) -> int:
    """CPU ticks of the processes, their reaped children included (utime+stime+cutime+cstime)."""
    total = 0
    for pid in pids:
        fields = _stat_fields(root, pid)
        if fields is not None and len(fields) > 14:
            total += sum(int(v) for v in fields[11:15])
    return total


def _tree_rss_bytes(root: Path, pids: Sequence[str]) -> int:
    page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
    total = 0
    for pid in pids:
        fields = _stat_fields(root, pid)
        if fields is not None and len(fields) > 21:
            total += int(fields[21]) * page
    return total


class _Utilisation:
    """Utilisation since the previous ``sample()``; ``describe`` says where it comes from."""

    describe = ""

    def sample(self) -> tuple[float, float]:
        """``(u, idle_weight)`` since the previous call."""
        raise NotImplementedError


class _MachineProcStat(_Utilisation):
    def __init__(self, root: Path) -> None:
        self._root = root
        self._last = _read_proc_stat(root)
        # Until a tick has passed, the best guess is the share since boot.
        self._u = self._last[0] / self._last[1] if self._last[1] else 0.0
        self.describe = f"machine CPU utilisation ({root / 'stat'})"

    def sample(self) -> tuple[float, float]:
        busy, counted = _read_proc_stat(self._root)
        d_busy, d_counted = busy - self._last[0], counted - self._last[1]
        if d_counted > 0:
            self._u = max(d_busy, 0) / d_counted
            self._last = (busy, counted)
        return self._u, 1.0


class _ProcessProcStat(_Utilisation):
    def __init__(self, root: Path, pid: int) -> None:
        self._root = root
        self._pid = pid
        tree = _process_tree(root, pid)
        if tree is None:
            raise OSError(f"{root / str(pid)}: the tracked process {pid} does not exist")
        self._stat = _read_proc_stat(root)
        self._ticks = _tree_ticks(root, tree)
        self._value = (0.0, 0.0)
        self.describe = (
            f"CPU time of process {pid} and its children over the machine's ({root}), "
            "idle power shared by their part of the busy time"
        )

    def sample(self) -> tuple[float, float]:
        tree = _process_tree(self._root, self._pid)
        stat = _read_proc_stat(self._root)
        if tree is None:
            # The tracked process has exited (and was reaped): its last interval is unknowable,
            # the previous figure is the best guess for it.
            return self._value
        ticks = _tree_ticks(self._root, tree)
        d_counted = stat[1] - self._stat[1]
        if d_counted > 0:
            d_busy = max(stat[0] - self._stat[0], 0)
            # A descendant that left the tree (re-parented) takes its ticks along: never < 0.
            d_tree = min(max(ticks - self._ticks, 0), d_busy)
            u = d_tree / d_counted
            self._value = (u, d_tree / d_busy if d_busy else 0.0)
            self._stat, self._ticks = stat, ticks
        return self._value


class _MachineLoadAvg(_Utilisation):
    describe = "machine load average (1 min) over logical CPUs, from os.getloadavg()"

    def __init__(self, threads: int) -> None:
        self._threads = max(threads, 1)
        os.getloadavg()  # raises OSError where unavailable

    def sample(self) -> tuple[float, float]:
        return os.getloadavg()[0] / self._threads, 1.0


class _OwnProcessTimes(_Utilisation):
    describe = "CPU time of this process and its reaped children, from os.times()"

    def __init__(self, threads: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._threads = max(threads, 1)
        self._clock = clock
        self._last = (self._cpu(), clock())
        self._value = (0.0, 0.0)

    @staticmethod
    def _cpu() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def sample(self) -> tuple[float, float]:
        cpu, now = self._cpu(), self._clock()
        dt = now - self._last[1]
        if dt > 0:
            u = max(cpu - self._last[0], 0.0) / (dt * self._threads)
            # No machine figure to share the idle floor against: by capacity used.
            self._value = (u, u)
            self._last = (cpu, now)
        return self._value


class _Constant(_Utilisation):
    def __init__(self, why: str) -> None:
        self.describe = f"utilisation assumed {UNKNOWN_UTILISATION:.0%} ({why})"

    def sample(self) -> tuple[float, float]:
        return UNKNOWN_UTILISATION, 1.0


def _utilisation_source(settings: Settings, cpu: CpuInfo) -> _Utilisation:
    root = _proc_root()
    if settings.attribution == "process":
        pid = settings.tracked_pid
        try:
            return _ProcessProcStat(root, pid)
        except (OSError, ValueError):
            pass
        if pid == os.getpid():
            return _OwnProcessTimes(cpu.threads)
        machine = _machine_source(root, cpu)
        machine.describe += f" (process {pid}'s CPU time cannot be read here: whole machine)"
        return machine
    return _machine_source(root, cpu)


def _machine_source(root: Path, cpu: CpuInfo) -> _Utilisation:
    try:
        return _MachineProcStat(root)
    except (OSError, ValueError):
        pass
    try:
        return _MachineLoadAvg(cpu.threads)
    except (OSError, AttributeError):
        return _Constant("nothing on this system reports it")


# -- why nothing was measured ----------------------------------------------------------------


def _not_measured(cpu: CpuInfo) -> tuple[str, str] | None:
    """``(reason, fix)`` when no other plugin will explain the missing CPU measurement.

    Where a RAPL tree or ``powermetrics`` exists, that backend reports the reason and the fix
    itself (an ``Unavailable``), so the summary says it once.
    """
    from carbontrack._plugins import blocked_plugins

    blocked = blocked_plugins()
    import platform

    system = platform.system()
    if system == "Darwin":
        if "powermetrics" in blocked:
            return (
                "the powermetrics plugin is disabled (CARBONTRACK_DISABLE_PLUGINS)",
                "remove powermetrics from CARBONTRACK_DISABLE_PLUGINS",
            )
        return None
    if system != "Linux":
        return (
            f"carbontrack reads no CPU energy counter on {system or 'this system'}",
            "measure on Linux or macOS; meanwhile set cpu_tdp_w to the CPUs' rated power",
        )
    if "rapl" in blocked:
        return (
            "the rapl plugin is disabled (CARBONTRACK_DISABLE_PLUGINS)",
            "remove rapl from CARBONTRACK_DISABLE_PLUGINS",
        )
    powercap = _powercap_root()
    try:
        entries = [powercap / n for n in os.listdir(powercap) if n.startswith("intel-rapl")]
    except OSError:
        entries = []
    # The rapl backend skips zones whose ``name`` cannot be read (dangling links in containers
    # that mask the tree) without a word; so the reason is ours to give in that case too.
    if any(_readable(zone / "name") for zone in entries):
        return None  # the rapl backend says why it could not read them
    meanwhile = "meanwhile set cpu_tdp_w to the rated power of the CPUs you use"
    if cpu.virtual and not entries:
        return (
            f"a virtual machine exposes no CPU energy counter ({powercap}/intel-rapl* is missing)",
            f"measure on bare metal (VMs rarely expose RAPL); {meanwhile}",
        )
    if entries:
        what = f"the RAPL zones in {powercap} are masked (dangling links: a container?)"
    else:
        what = (
            "this machine or container exposes no CPU energy counter "
            f"({powercap}/intel-rapl* is missing)"
        )
    # /sys/class/powercap holds only links into /sys/devices/virtual/powercap, which container
    # runtimes mask: mount the zones themselves somewhere else and point carbontrack there.
    return (
        what,
        "measure on bare metal; in a container on a bare-metal host, mount the host's RAPL zones "
        "and run as root: docker run -v /sys/devices/virtual/powercap:/host-powercap:ro "
        f"-e {POWERCAP_ROOT_ENV}=/host-powercap ...; {meanwhile}",
    )


def _readable(path: Path) -> bool:
    try:
        path.read_bytes()
    except OSError:
        return False
    return True


# -- the plugin ------------------------------------------------------------------------------


class _CpuModel:
    def __init__(self, tdp_w: float, source: _Utilisation) -> None:
        self.tdp_w = tdp_w
        self.source = source
        self.lock = threading.Lock()

    def watts(self) -> float:
        with self.lock:
            u, weight = self.source.sample()
        return cpu_power_w(self.tdp_w, u, weight)


class _RamModel:
    def __init__(self, settings: Settings) -> None:
        root = _proc_root()
        self._root = root
        self._pid: int | None = None
        self._fixed_bytes = 0
        self.lock = threading.Lock()
        self._last_w = 0.0
        if settings.attribution == "process" and _process_tree(root, settings.tracked_pid):
            self._pid = settings.tracked_pid
            self.describe = f"resident memory of process {self._pid} and its children"
            return
        self._fixed_bytes = _installed_memory_bytes(root)
        self.describe = f"installed memory ({self._fixed_bytes / 1e9:.1f} GB)"

    def watts(self) -> float:
        with self.lock:
            if self._pid is None:
                return RAM_W_PER_GB * self._fixed_bytes / 1e9
            tree = _process_tree(self._root, self._pid)
            if tree is not None:
                self._last_w = RAM_W_PER_GB * _tree_rss_bytes(self._root, tree) / 1e9
            return self._last_w


def _installed_memory_bytes(root: Path) -> int:
    """``MemTotal`` from ``meminfo``, else ``os.sysconf``; ``OSError`` when neither answers."""
    try:
        for line in (root / "meminfo").read_text(encoding="ascii").splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError) as exc:  # no sysconf (Windows)
        raise OSError(f"installed memory unknown ({root / 'meminfo'} unreadable)") from exc


@hookimpl
def carbontrack_discover_devices(settings: Settings) -> list[Device | Unavailable]:
    """A ``model`` CPU device (and a RAM one when ``components`` has ``ram``), always labelled.

    The host keeps the CPU estimate only where no measured CPU device exists.
    """
    found: list[Device | Unavailable] = []
    cpu = read_cpu_info()
    if settings.wants("cpu"):
        tdp = resolve_tdp(settings, cpu)
        source = _utilisation_source(settings, cpu)
        if not tdp.known_model:
            logger.info("carbontrack estimate: %s", tdp.source)
        detail = (
            f"P = TDP x ({IDLE_SHARE:.2f} + {1 - IDLE_SHARE:.2f} x u), TDP {tdp.total_w:g} W "
            f"({tdp.source}), u = {source.describe}"
        )
        # (A VM's share already capped in resolve_tdp says so in its source.)
        chip_tdp_in_vm = cpu.virtual and tdp.known_model and settings.cpu_tdp_w is None
        if chip_tdp_in_vm and not tdp.source.startswith("in a VM"):
            detail += "; in a VM the table's TDP is the whole chip's: set cpu_tdp_w to your share"
        why = _not_measured(cpu)
        if why is not None:
            detail += f". Not measured: {why[0]}. Fix: {why[1]}"
        found.append(
            Device(
                id="cpu-model",
                kind="cpu",
                name=f"CPU estimate ({cpu.model or 'unknown model'})",
                backend=BACKEND,
                method="model",
                detail=detail,
                handle=_CpuModel(tdp.total_w, source),
            )
        )
    if settings.wants("ram"):
        try:
            ram = _RamModel(settings)
        except OSError as exc:
            # Never a silent 0 W: no RAM figure at all, and the reason once.
            logger.warning("carbontrack: no RAM estimate: %s", exc)
            return found
        found.append(
            Device(
                id="ram-model",
                kind="ram",
                name="RAM estimate",
                backend=BACKEND,
                method="model",
                detail=f"P = {RAM_W_PER_GB} W/GB x {ram.describe} (Green Algorithms)",
                handle=ram,
            )
        )
    return found


@hookimpl
def carbontrack_read_energy(devices: Sequence[Device]) -> list[Reading]:
    """Modelled power of each device now; a failed read names the file at fault."""
    readings = []
    for device in devices:
        model = device.handle
        if not isinstance(model, _CpuModel | _RamModel):
            readings.append(Reading(device.id, error=f"{device.id}: not an estimate device"))
            continue
        try:
            readings.append(Reading(device.id, watts=model.watts()))
        except (OSError, ValueError) as exc:
            readings.append(Reading(device.id, error=f"{BACKEND}: {exc}"))
    return readings
