"""NVIDIA GPUs through NVML (nvidia-ml-py): energy counters where the GPU has them, else power.

Measures the GPUs this job uses: ``gpu_ids`` if given, else the processes' GPUs
(``devices_by_pid``; when they use none yet, each visible GPU counted from when they first do),
else those ``CUDA_VISIBLE_DEVICES`` exposes, mapped by UUID and PCI bus id.

The module is found through ``$CARBONTRACK_NVML_MODULE`` (default ``pynvml``), imported when
discovery runs; ``carbontrack.testing.nvml.FakeNVML.installed()`` points it at a fake.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
import threading
import time
import typing
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from carbontrack.hookspecs import hookimpl
from carbontrack.model import Device, Reading, Unavailable
from carbontrack.settings import Settings

__all__ = [
    "CUDA_PROBE_ENV",
    "MODULE_ENV",
    "discover",
    "parse_bus_id",
    "parse_visible_devices",
    "process_tree",
]

logger = logging.getLogger(__name__)

BACKEND = "nvml"
MODULE_ENV = "CARBONTRACK_NVML_MODULE"
#: A command printing the PCI bus ids of all GPUs in CUDA's FASTEST_FIRST order, one per line;
#: replaces the built-in probe (a Python child asking libcuda) for tests and odd set-ups.
CUDA_PROBE_ENV = "CARBONTRACK_CUDA_PROBE"
CUDA_PROBE_TIMEOUT_S = 30.0
#: With ``devices_by_pid`` and no tracked process on a GPU yet, the GPUs' process lists are
#: checked at most this often (seconds) while reading, to see where the processes start work.
PROCESS_CHECK_S = 2.0
_now = time.monotonic  # the clock of that throttle; tests replace it with a fake clock

# NVML return codes (nvml.h); compared with ``NVMLError.value`` so that any binding works.
_NOT_SUPPORTED = 3
_NO_PERMISSION = 4
_DRIVER_NOT_LOADED = 9
_LIBRARY_NOT_FOUND = 12
_NOT_FOUND = 6
_FUNCTION_NOT_FOUND = 13
_GPU_IS_LOST = 15
_MIG_ENABLE = 1
_TOTAL_POWER_SAMPLES = 0  # NVML_TOTAL_POWER_SAMPLES (nvmlSamplingType_t)
_ARCH_AMPERE = 7

#: The oldest nvidia-ml-py with the ``_v2`` process calls, which drivers without ``_v3`` (R470)
#: need (12.535.161 has neither ``_v2`` nor ``NVMLLibraryMismatchError``; 12.550.52 has both).
MIN_BINDING = "12.550.52"
#: The sample in flight at a read of the driver's power buffer is extrapolated from the latest
#: sample for at most this long (a buffer that stops filling is not extended further).
MAX_EXTRAPOLATE_S = 1.0
_wall_s = time.time  # the clock power samples are stamped on (µs); tests use the fake's

_INSTALL_FIX = "install the NVIDIA driver (nvidia-smi must work), then rerun"

# Asks the CUDA driver (in a child, so this process never initialises CUDA: a CUDA-initialised
# parent breaks CUDA in forked children) for the PCI bus id of each device in CUDA order.
_CUDA_PROBE = """
import ctypes, sys
lib = ctypes.CDLL("libcuda.so.1" if sys.platform != "win32" else "nvcuda.dll")
if lib.cuInit(0) != 0:
    sys.exit(3)
n = ctypes.c_int()
if lib.cuDeviceGetCount(ctypes.byref(n)) != 0:
    sys.exit(4)
for i in range(n.value):
    dev = ctypes.c_int()
    buf = ctypes.create_string_buffer(64)
    if lib.cuDeviceGet(ctypes.byref(dev), i) or lib.cuDeviceGetPCIBusId(buf, 64, dev):
        sys.exit(5)
    print(buf.value.decode())
"""


# -- pure helpers --------------------------------------------------------------------------


def parse_bus_id(text: str | bytes) -> tuple[int, int, int]:
    """``(domain, bus, device)`` of a PCI bus id in NVML (``00000000:1A:00.0``), CUDA/sysfs
    (``0000:1a:00.0``) or short (``1a:00.0``) form; raises ``ValueError`` otherwise."""
    if isinstance(text, bytes):
        text = text.decode()
    parts = text.strip().split(":")
    if len(parts) == 2:
        parts = ["0", *parts]
    if len(parts) != 3:
        raise ValueError(f"not a PCI bus id: {text!r}")
    domain, bus, rest = parts
    return int(domain, 16), int(bus, 16), int(rest.split(".")[0], 16)


def parse_visible_devices(value: str | None) -> list[str] | None:
    """The entries of ``CUDA_VISIBLE_DEVICES`` as CUDA reads them; ``None`` means all GPUs.

    An empty value means none; parsing stops at the first entry that is not a non-negative
    index, a ``GPU-`` UUID (prefix) or a ``MIG-`` id, so ``-1`` or ``NoDevFiles`` hide every GPU
    and ``0,2,-1,1`` exposes 0 and 2.
    """
    if value is None:
        return None
    entries: list[str] = []
    for raw in value.split(","):
        entry = raw.strip()
        if not (entry.isdigit() or entry.startswith(("GPU-", "MIG-"))):
            break
        entries.append(entry)
    return entries


def process_tree(pid: int, proc_root: Path = Path("/proc")) -> frozenset[int]:
    """``pid`` and all its descendants, from ``/proc/*/stat``; just ``pid`` without ``/proc``."""
    children: dict[int, list[int]] = {}
    try:
        names = os.listdir(proc_root)
    except OSError:
        return frozenset({pid})
    for name in names:
        if not name.isdigit():
            continue
        try:
            stat = (proc_root / name / "stat").read_text()
        except OSError:  # the process ended while we looked
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        fields = stat.rpartition(")")[2].split()
        if len(fields) >= 2 and fields[1].isdigit():
            children.setdefault(int(fields[1]), []).append(int(name))
    found = {pid}
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return frozenset(found)


def _text(value: Any) -> str:
    # Old bindings return bytes where nvidia-ml-py returns str.
    return value.decode() if isinstance(value, bytes) else str(value)


def _describe_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


# -- session and GPUs ----------------------------------------------------------------------


# The records below are plain slotted classes, not attrs classes: each attrs class costs about
# half a millisecond per process to generate, paid by every run that imports this backend even
# where no NVIDIA GPU exists (docs/performance.md, "Start-up").


class _Session:
    """One ``nvmlInit``; shut down exactly once, whatever happens."""

    __slots__ = ("_closed", "_lock", "nvml")

    def __init__(self, nvml: Any) -> None:
        self.nvml = nvml
        self._closed = False
        self._lock = threading.Lock()

    def shutdown(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self.nvml.nvmlShutdown()
        except Exception:  # closing must never raise into the run's end
            logger.debug("nvmlShutdown failed", exc_info=True)


class _Gpu:
    """A physical GPU as discovery saw it."""

    __slots__ = (
        "architecture",
        "bus",
        "bus_id",
        "c2c",
        "handle",
        "mig_enabled",
        "mig_handles",
        "mig_uuids",
        "model",
        "smi_index",
        "uuid",
    )

    def __init__(
        self,
        *,
        handle: Any,
        uuid: str,
        model: str,
        bus_id: str,
        bus: tuple[int, int, int],
        mig_enabled: bool,
        mig_uuids: tuple[str, ...],
        mig_handles: tuple[Any, ...],
        smi_index: int = -1,
        c2c: bool = False,  # a Grace superchip: the energy counter covers the whole module
        architecture: int | None = None,
    ) -> None:
        self.handle = handle
        self.uuid = uuid
        self.model = model
        self.bus_id = bus_id
        self.bus = bus
        self.mig_enabled = mig_enabled
        self.mig_uuids = mig_uuids
        self.mig_handles = mig_handles
        self.smi_index = smi_index
        self.c2c = c2c
        self.architecture = architecture

    def __repr__(self) -> str:
        return f"_Gpu(uuid={self.uuid!r}, model={self.model!r}, bus_id={self.bus_id!r})"


class _Handle:
    """What a Device carries: the session, the NVML handle and why reads stopped (if so)."""

    __slots__ = ("buffer", "handle", "label", "late", "lost", "session")

    def __init__(
        self,
        *,
        session: _Session,
        handle: Any,
        label: str,
        buffer: _PowerBuffer | None = None,
    ) -> None:
        self.session = session
        self.handle = handle
        self.label = label
        self.lost: str | None = None
        self.late: _Late | None = None
        self.buffer = buffer

    def __repr__(self) -> str:
        return f"_Handle(label={self.label!r}, lost={self.lost!r})"


class _PowerBuffer:
    """Energy of a power-only GPU from the driver's power sample buffer (nvmlDeviceGetSamples).

    The counter starts at the first read; samples are joined by the trapezoid rule, and the
    part after the latest sample counts at its power (``MAX_EXTRAPOLATE_S`` at most), so that
    an edge is not a sample late. What is reported never goes down.
    """

    __slots__ = ("energy_j", "reported_j", "samples", "seen_us", "t_us", "w")

    def __init__(self) -> None:
        self.t_us: int | None = None  # committed up to this time stamp
        self.w = 0.0  # the power there
        self.seen_us = 0  # the newest time stamp fetched
        self.energy_j = 0.0
        self.reported_j = 0.0
        self.samples = 0

    def update(self, nvml: Any, handle: Any) -> float:
        now_us = round(_wall_s() * 1e6)
        try:
            _kind, samples = nvml.nvmlDeviceGetSamples(handle, _TOTAL_POWER_SAMPLES, self.seen_us)
        except nvml.NVMLError as exc:
            if getattr(exc, "value", None) != _NOT_FOUND:  # NotFound: no sample since seen_us
                raise
            samples = []
        points = sorted((int(s.timeStamp), float(s.sampleValue.uiVal) / 1000.0) for s in samples)
        if points:
            self.seen_us = max(self.seen_us, points[-1][0])
        if self.t_us is None:  # the first read: the counter's zero is now
            if not points:
                self.w = float(nvml.nvmlDeviceGetPowerUsage(handle)) / 1000.0
            else:
                self.w = points[-1][1]
            self.t_us = now_us
            return 0.0
        for stamp, watts in points:
            if stamp <= self.t_us:
                continue  # from before the counter's zero, or already counted
            self.energy_j += (self.w + watts) / 2.0 * (stamp - self.t_us) / 1e6
            self.t_us, self.w = stamp, watts
            self.samples += 1
        flight_s = min(max(now_us - self.t_us, 0) / 1e6, MAX_EXTRAPOLATE_S)
        self.reported_j = max(self.reported_j, self.energy_j + self.w * flight_s)
        return self.reported_j


class _Late:
    """A GPU counted only from when the tracked processes first run on it (late attribution)."""

    __slots__ = ("counting", "frozen_j", "gpu", "last_raw_j", "offset_j", "watch")

    def __init__(self, watch: _Watch, gpu: _Gpu, *, frozen_j: float) -> None:
        self.watch = watch
        self.gpu = gpu
        # The counter at discovery (0 for a power-only GPU): reported while unused.
        self.frozen_j = frozen_j
        self.counting = False
        self.offset_j: float | None = None  # raw counter minus what is reported, once counting
        self.last_raw_j = 0.0


class _Watch:
    """Late attribution for ``devices_by_pid``: which GPUs the tracked processes have used.

    Discovery found the tracked processes on no GPU yet (``carbontrack run`` starts measuring
    before the command has initialised CUDA), so every visible GPU is a device, reported as a
    frozen counter (0 J) until the process tree is seen in its process list.
    """

    __slots__ = ("checked_at", "gave_up", "gpus", "pid", "proc_root", "session")

    def __init__(self, session: _Session, pid: int, proc_root: Path, *, checked_at: float) -> None:
        self.session = session
        self.pid = pid
        self.proc_root = proc_root
        self.checked_at = checked_at
        self.gpus: list[_Late] = []
        self.gave_up = False

    def update(self) -> None:
        """Check the unused GPUs' process lists (throttled); start counting where ours appear."""
        pending = [late for late in self.gpus if not late.counting]
        now = _now()
        if not pending or now - self.checked_at < PROCESS_CHECK_S:
            return
        self.checked_at = now
        nvml = self.session.nvml
        listed: dict[int, set[int]] = {}
        for k, late in enumerate(pending):
            found = _gpu_pids(nvml, late.gpu)
            if isinstance(found, str):
                # We cannot tell who uses the GPU. Counting nothing would report 0 J for a GPU
                # the job may use; count every watched GPU instead.
                logger.warning(
                    "carbontrack: devices_by_pid cannot list the processes on GPU %d: %s. "
                    "Measuring all %d watched GPUs instead: energy counters from the start, "
                    "power-only GPUs from now",
                    late.gpu.smi_index,
                    found,
                    len(self.gpus),
                )
                self._count_all(pending)
                return
            if found:
                listed[k] = found
        if not listed:
            return  # nothing computes on these GPUs: no need to walk /proc
        ours = process_tree(self.pid, self.proc_root)
        started = [pending[k] for k, pids in listed.items() if pids & ours]
        for late in started:
            late.counting = True  # the next read fixes the offset: counting starts there
            logger.info(
                "carbontrack: process %d (or a child) now computes on GPU %d (%s); counting "
                "its energy from here",
                self.pid,
                late.gpu.smi_index,
                late.gpu.uuid,
            )
        every_pid = set().union(*listed.values())
        if started or any((self.proc_root / str(p)).exists() for p in every_pid):
            return
        # NVML lists processes that do not exist here: a container without the host PID
        # namespace, where NVML's PIDs never match. As at discovery, measure the GPUs fully.
        logger.warning(
            "carbontrack: devices_by_pid cannot tell which GPUs process %d uses: NVML lists "
            "processes %s that this process cannot see (inside a container without the host "
            "PID namespace; run it with --pid=host). Measuring all %d watched GPUs instead: "
            "energy counters from the start, power-only GPUs from now",
            self.pid,
            sorted(every_pid),
            len(self.gpus),
        )
        self._count_all(pending)

    def _count_all(self, pending: list[_Late]) -> None:
        self.gave_up = True
        for late in pending:
            late.counting = True
            late.offset_j = 0.0  # report the raw counter: its energy since discovery counts
            late.last_raw_j = late.frozen_j


def _describe(nvml: Any, index: int) -> _Gpu:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    uuid = _text(nvml.nvmlDeviceGetUUID(handle))
    model = _text(nvml.nvmlDeviceGetName(handle))
    pci = nvml.nvmlDeviceGetPciInfo(handle)
    bus_id = _text(pci.busId)
    mig_enabled = False
    mig_uuids: list[str] = []
    mig_handles: list[Any] = []
    with contextlib.suppress(nvml.NVMLError):  # NotSupported: no MIG on this GPU
        mig_enabled = nvml.nvmlDeviceGetMigMode(handle)[0] == _MIG_ENABLE
    if mig_enabled:
        for slot in range(nvml.nvmlDeviceGetMaxMigDeviceCount(handle)):
            try:
                mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
            except nvml.NVMLError:  # empty slot (NotFound)
                continue
            mig_handles.append(mig)
            mig_uuids.append(_text(nvml.nvmlDeviceGetUUID(mig)))
    architecture: int | None = None
    with contextlib.suppress(nvml.NVMLError, AttributeError):
        architecture = int(nvml.nvmlDeviceGetArchitecture(handle))
    return _Gpu(
        handle=handle,
        uuid=uuid,
        model=model,
        bus_id=bus_id,
        bus=parse_bus_id(bus_id),
        mig_enabled=mig_enabled,
        mig_uuids=tuple(mig_uuids),
        mig_handles=tuple(mig_handles),
        c2c=_is_superchip(nvml, handle),
        architecture=architecture,
    )


def _is_superchip(nvml: Any, handle: Any) -> bool:
    """Whether the GPU sits in a Grace superchip (GH200, GB200): C2C mode, as Zeus checks it.

    There ``nvmlDeviceGetTotalEnergyConsumption`` covers the whole module (GPU, HBM, Grace CPU,
    LPDDR; Zeus PR #172). Bindings without ``nvmlDeviceGetC2cModeInfoV`` and GPUs without C2C
    (``NotSupported``) are not superchips.
    """
    call = getattr(nvml, "nvmlDeviceGetC2cModeInfoV", None)
    if call is None:
        return False
    try:
        return bool(call(handle).isC2cEnabled)
    except nvml.NVMLError as exc:
        if getattr(exc, "value", None) not in (_NOT_SUPPORTED, _FUNCTION_NOT_FOUND):
            logger.debug("nvmlDeviceGetC2cModeInfoV failed: %s", _describe_error(exc))
        return False


# -- which GPUs ----------------------------------------------------------------------------


class _Choice(typing.NamedTuple):
    gpus: tuple[_Gpu, ...]
    how: str
    unavailable: tuple[Unavailable, ...] = ()
    late: bool = False  # devices_by_pid found no process yet: count each GPU once it is used


def _match_uuid_prefix(gpus: Sequence[_Gpu], entry: str) -> _Gpu | None:
    wanted = entry.lower()
    hits = [g for g in gpus if g.uuid.lower().startswith(wanted)]
    return hits[0] if len(hits) == 1 else None


def _match_mig(gpus: Sequence[_Gpu], entry: str) -> _Gpu | None:
    if entry.startswith("MIG-GPU-"):  # legacy MIG-GPU-<uuid>/<gi>/<ci>: the parent is named
        return _match_uuid_prefix(gpus, entry.removeprefix("MIG-").split("/")[0])
    wanted = entry.lower()
    hits = [g for g in gpus if any(u.lower().startswith(wanted) for u in g.mig_uuids)]
    return hits[0] if len(hits) == 1 else None


def _resolve(
    gpus: Sequence[_Gpu], entries: Sequence[str], order: Sequence[_Gpu]
) -> tuple[list[_Gpu], list[str]]:
    """Map entries to GPUs; return the GPUs (parents once) and the entries that matched none."""
    chosen: list[_Gpu] = []
    unmatched: list[str] = []
    for entry in entries:
        gpu: _Gpu | None
        if entry.isdigit():
            k = int(entry)
            gpu = order[k] if k < len(order) else None
        elif entry.startswith("MIG-"):
            gpu = _match_mig(gpus, entry)
        elif entry.startswith("GPU-"):
            gpu = _match_uuid_prefix(gpus, entry)
        else:
            try:
                bus = parse_bus_id(entry)
            except ValueError:
                bus = None
            gpu = next((g for g in gpus if g.bus == bus), None)
        if gpu is None:
            unmatched.append(entry)
        elif gpu not in chosen:
            chosen.append(gpu)
    return chosen, unmatched


def _pci_order(gpus: Sequence[_Gpu]) -> list[_Gpu]:
    return sorted(gpus, key=lambda g: g.bus)


def _cuda_probe() -> list[tuple[int, int, int]] | None:
    command = os.environ.get(CUDA_PROBE_ENV, "").strip()
    import shlex  # the probe is rare: keep subprocess out of every start
    import subprocess

    argv = shlex.split(command) if command else [sys.executable, "-c", _CUDA_PROBE]
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env["CUDA_DEVICE_ORDER"] = "FASTEST_FIRST"
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            env=env,
            timeout=CUDA_PROBE_TIMEOUT_S,
            check=True,
        )
        return [parse_bus_id(line) for line in done.stdout.split() if line.strip()]
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        logger.debug("CUDA order probe %r failed: %s", argv[:2], exc)
        return None


def _cuda_order(gpus: Sequence[_Gpu], env: Mapping[str, str]) -> list[_Gpu]:
    """The GPUs in the order CUDA numbers them (what integer CUDA_VISIBLE_DEVICES entries mean)."""
    pci = _pci_order(gpus)
    if env.get("CUDA_DEVICE_ORDER", "").strip().upper() == "PCI_BUS_ID":
        return pci
    # FASTEST_FIRST (the default): identical GPUs come in PCI order; with different models only
    # CUDA knows its ranking, so ask it (in a child process).
    if len({g.model for g in gpus}) <= 1:
        return pci
    probed = _cuda_probe()
    by_bus = {g.bus: g for g in gpus}
    if probed is not None and set(probed) == set(by_bus) and len(probed) == len(by_bus):
        return [by_bus[b] for b in probed]
    logger.warning(
        "carbontrack: cannot tell which of these different GPUs CUDA numbers first "
        "(CUDA_DEVICE_ORDER=FASTEST_FIRST and the CUDA driver could not be asked); assuming PCI "
        "bus order. To be sure, set CUDA_DEVICE_ORDER=PCI_BUS_ID or list GPU UUIDs "
        "(nvidia-smi -L) in CUDA_VISIBLE_DEVICES"
    )
    return pci


def _visible(gpus: Sequence[_Gpu], env: Mapping[str, str]) -> _Choice:
    entries = parse_visible_devices(env.get("CUDA_VISIBLE_DEVICES"))
    if entries is None:
        return _Choice(tuple(_pci_order(gpus)), "all GPUs (CUDA_VISIBLE_DEVICES unset)")
    needs_order = any(e.isdigit() for e in entries)
    order = _cuda_order(gpus, env) if needs_order else []
    chosen: list[_Gpu] = []
    for i, entry in enumerate(entries):
        found, unmatched = _resolve(gpus, [entry], order)
        if unmatched:
            # CUDA stops at the first entry it cannot use; so do we, and say what was left out.
            logger.warning(
                "carbontrack: CUDA_VISIBLE_DEVICES entry %r matches no GPU here; like CUDA, "
                "ignoring it and the entries after it (%s)",
                entry,
                ",".join(entries[i + 1 :]) or "none",
            )
            break
        chosen.extend(g for g in found if g not in chosen)
    value = env.get("CUDA_VISIBLE_DEVICES", "")
    return _Choice(tuple(chosen), f"CUDA_VISIBLE_DEVICES={value}")


#: The process calls to try, newest first: the unversioned one (``_v3`` in current bindings),
#: then ``_v2`` for drivers without ``_v3`` (R470). A binding lacks ``_v2`` before 12.550.
_PROCESS_CALLS = (
    "nvmlDeviceGetComputeRunningProcesses",
    "nvmlDeviceGetComputeRunningProcesses_v2",
)


def _compute_pids(nvml: Any, handle: Any) -> list[int] | str:
    """PIDs computing on ``handle``, or why they cannot be listed (with the fix).

    nvidia-ml-py 13.x raises ``NVMLLibraryMismatchError`` (not an ``NVMLError``) from the
    unversioned call on a driver without ``_v3``; 12.535 raises ``NVMLError_FunctionNotFound``
    and has no ``_v2`` to fall back to. Either way the next call is tried. A list that cannot
    be had is never an empty list: that would read as "not used" and report 0 J.
    """
    mismatch = getattr(nvml, "NVMLLibraryMismatchError", ())
    for name in _PROCESS_CALLS:
        call = getattr(nvml, name, None)
        if call is None:
            continue
        try:
            procs = call(handle)
        except mismatch:
            continue
        except nvml.NVMLError as exc:
            if getattr(exc, "value", None) == _FUNCTION_NOT_FOUND:
                continue
            return (
                f"{name} failed ({_describe_error(exc)}); fix: check that `nvidia-smi` lists "
                "the GPU's processes for this user, or pass gpu_ids to name the GPUs"
            )
        return [int(p.pid) for p in procs]
    return _no_process_call(nvml)


def _gpu_pids(nvml: Any, gpu: _Gpu) -> set[int] | str:
    """The PIDs on a GPU and its MIG instances, or why they cannot be listed."""
    pids = _compute_pids(nvml, gpu.handle)
    if isinstance(pids, str):
        return pids
    found = set(pids)
    for mig in gpu.mig_handles:
        listed = _compute_pids(nvml, mig)
        if not isinstance(listed, str):  # the parent's list holds them anyway
            found.update(listed)
    return found


def _no_process_call(nvml: Any) -> str:
    """Why no process call works, and the fix."""
    version = getattr(nvml, "__version__", None) or "this nvidia-ml-py"
    try:
        driver = _text(nvml.nvmlSystemGetDriverVersion())
    except Exception:  # only for the message
        driver = "this"
    has_v2 = hasattr(nvml, "nvmlDeviceGetComputeRunningProcesses_v2")
    why = f"the NVIDIA driver ({driver}) lacks nvmlDeviceGetComputeRunningProcesses_v3 and " + (
        "_v2 as well"
        if has_v2
        else f"{version} has no _v2 call to fall back to (it came in {MIN_BINDING})"
    )
    fix = (
        "update the NVIDIA driver"
        if has_v2
        else f'pip install "nvidia-ml-py>={MIN_BINDING}", or update the NVIDIA driver'
    )
    return f"{why}; fix: {fix}, or pass gpu_ids to name the GPUs"


def _by_process(
    nvml: Any, gpus: Sequence[_Gpu], pid: int, proc_root: Path
) -> tuple[list[_Gpu], str, bool]:
    """GPUs on which ``pid`` or its descendants compute; when there are none, why, and whether
    the listed processes are invisible here (a container: their PIDs can never match)."""
    ours = process_tree(pid, proc_root)
    seen: set[int] = set()
    chosen: list[_Gpu] = []
    for gpu in _pci_order(gpus):
        pids = _gpu_pids(nvml, gpu)
        if isinstance(pids, str):
            # Unknown is not "unused": treated like the container case, every visible GPU is
            # measured and the warning says how to fix it.
            return [], f"NVML cannot list the processes on GPU {gpu.smi_index}: {pids}", True
        seen |= pids
        if pids & ours:
            chosen.append(gpu)
    if chosen:
        return chosen, "", False
    if not seen:
        why = (
            f"no process computes on any GPU yet (process {pid} has not used CUDA when the "
            "run started)"
        )
    elif not any((proc_root / str(p)).exists() for p in seen):
        why = (
            f"NVML lists processes {sorted(seen)} that this process cannot see: inside a "
            "container without the host PID namespace (run it with --pid=host) NVML's PIDs "
            "never match"
        )
        return [], why, True
    else:
        why = f"the processes on the GPUs {sorted(seen)} are not process {pid} or its children"
    return [], why, False


def _choose(nvml: Any, gpus: Sequence[_Gpu], settings: Settings, proc_root: Path) -> _Choice:
    if settings.gpu_ids is not None:
        chosen, unmatched = _resolve(gpus, settings.gpu_ids, _pci_order(gpus))
        known = ", ".join(f"{g.smi_index} ({g.uuid}, {g.bus_id})" for g in _pci_order(gpus))
        unavailable = tuple(
            Unavailable(
                backend=BACKEND,
                kind="gpu",
                reason=f"gpu_ids entry {entry!r} matches no GPU here; the GPUs are: {known}",
                fix="pass gpu_ids as nvidia-smi indices, GPU-/MIG- UUIDs (nvidia-smi -L) or PCI "
                "bus ids of the GPUs listed",
            )
            for entry in unmatched
        )
        return _Choice(tuple(chosen), f"gpu_ids={','.join(settings.gpu_ids)}", unavailable)
    if settings.devices_by_pid:
        pid = settings.tracked_pid
        chosen, why, invisible = _by_process(nvml, gpus, pid, proc_root)
        if chosen:
            return _Choice(tuple(chosen), f"devices_by_pid (process {pid})")
        visible = _visible(gpus, os.environ)
        if not invisible:
            # Not yet on a GPU (``carbontrack run`` measures before the command starts CUDA):
            # watch the visible GPUs and count each from when the processes first use it.
            logger.info(
                "carbontrack: devices_by_pid: %s; each visible GPU (%s) is counted from when "
                "process %d or a child first computes on it",
                why,
                visible.how,
                pid,
            )
            how = (
                f"devices_by_pid (process {pid}), counted only from when process {pid} or its "
                f"children first run on it ({why}; watching {visible.how})"
            )
            return _Choice(visible.gpus, how, late=True)
        logger.warning(
            "carbontrack: devices_by_pid found no GPU to measure: %s; measuring the visible "
            "GPUs instead (%s)",
            why,
            visible.how,
        )
        return _Choice(visible.gpus, f"{visible.how}; devices_by_pid found none: {why}")
    return _visible(gpus, os.environ)


# -- hooks ---------------------------------------------------------------------------------


#: Where the dynamic linker looks for ``libnvidia-ml.so.1`` besides ``LD_LIBRARY_PATH`` and its
#: cache (ld.so(8): the trusted default directories; WSL puts the driver's libraries in its own).
_LIBRARY = b"libnvidia-ml.so.1"
_DEFAULT_LIBRARY_DIRS = ("/lib", "/usr/lib", "/lib64", "/usr/lib64", "/usr/lib/wsl/lib")


def nvml_library_absent(
    env: Mapping[str, str] = os.environ,
    ld_cache: Path = Path("/etc/ld.so.cache"),
    default_dirs: Sequence[str] = _DEFAULT_LIBRARY_DIRS,
) -> bool:
    """True only when ``dlopen("libnvidia-ml.so.1")`` (what pynvml does) certainly fails.

    Importing pynvml (and ctypes) costs milliseconds at every start on the many machines with
    no NVIDIA driver. On Linux the linker finds the library through ``LD_LIBRARY_PATH``, its
    cache and a few default directories: when none of them has it, NVML would answer
    NVML_ERROR_LIBRARY_NOT_FOUND, which discovery turns into "nothing here" anyway. Elsewhere,
    or when the cache cannot be read, this says False and pynvml decides.
    """
    if not sys.platform.startswith("linux"):
        return False
    name = _LIBRARY.decode()
    dirs = [d for d in env.get("LD_LIBRARY_PATH", "").split(":") if d]
    if any(os.path.exists(os.path.join(d, name)) for d in (*dirs, *default_dirs)):
        return False
    try:
        return _LIBRARY not in ld_cache.read_bytes()
    except OSError:
        return False  # no cache to consult: let the real loader decide


def _no_driver() -> bool:
    # No driver library for the real binding: what nvmlInit would say, without importing it.
    name = os.environ.get(MODULE_ENV, "").strip() or "pynvml"
    return name == "pynvml" and name not in sys.modules and nvml_library_absent()


def needed_by(settings: Settings) -> bool:
    """Whether discovery could find anything for a run with ``settings``: it measures GPUs and
    an NVIDIA driver library may be here (the host calls this backend only then)."""
    return settings.wants("gpu") and not _no_driver()


def _load_module() -> Any | None:
    if _no_driver():
        return None
    name = os.environ.get(MODULE_ENV, "").strip() or "pynvml"
    try:
        with warnings.catch_warnings():
            # The deprecated ``pynvml`` shim package warns on import; that is not the user's
            # business while measuring.
            warnings.simplefilter("ignore", FutureWarning)
            return importlib.import_module(name)
    except ImportError:
        if name != "pynvml":
            logger.warning(
                "carbontrack: %s=%s names a module that cannot be imported; NVIDIA GPUs are not "
                "measured",
                MODULE_ENV,
                name,
            )
        return None


def _method(nvml: Any, gpu: _Gpu) -> str | Exception:
    """``counter`` or ``power``, or the error that makes the GPU unreadable."""
    try:
        nvml.nvmlDeviceGetTotalEnergyConsumption(gpu.handle)
        return "counter"
    except nvml.NVMLError as exc:
        if getattr(exc, "value", None) != _NOT_SUPPORTED:
            return typing.cast(Exception, exc)
    try:  # pre-Volta: no energy counter, sample power
        nvml.nvmlDeviceGetPowerUsage(gpu.handle)
        return "power"
    except nvml.NVMLError as exc:
        return typing.cast(Exception, exc)


def _device(session: _Session, gpu: _Gpu, how: str) -> Device | Unavailable:
    nvml = session.nvml
    label = f"GPU {gpu.smi_index} ({gpu.uuid})"
    method = _method(nvml, gpu)
    if isinstance(method, Exception):
        code = getattr(method, "value", None)
        if code == _NOT_SUPPORTED:
            fix = (
                "NVML cannot measure this GPU; leave it out with gpu_ids or CUDA_VISIBLE_DEVICES "
                "to silence this"
            )
        elif code == _NO_PERMISSION:
            fix = "run as a user allowed to query the GPU (check /dev/nvidia* permissions)"
        else:
            fix = "check the GPU with nvidia-smi; reset or reseat it if it reports errors"
        return Unavailable(
            backend=BACKEND,
            kind="gpu",
            reason=f"{label} {gpu.model} at {gpu.bus_id}: {_describe_error(method)}",
            fix=fix,
        )
    buffer = None
    if method == "counter":
        how_measured = "energy counter (nvmlDeviceGetTotalEnergyConsumption)"
    elif _has_power_buffer(nvml, gpu):
        buffer = _PowerBuffer()
        how_measured = (
            "no energy counter: the driver's power samples (nvmlDeviceGetSamples, "
            "NVML_TOTAL_POWER_SAMPLES) joined by the trapezoid rule between reads, the part "
            "after the latest sample at its power"
        )
    else:
        how_measured = (
            "no energy counter and no power sample buffer: power read every interval_s "
            "(nvmlDeviceGetPowerUsage), trapezoid rule; " + _power_usage_meaning(gpu)
        )
    detail = f"{gpu.uuid}, PCI {gpu.bus_id}, {how_measured}; selected by {how}"
    if gpu.mig_enabled:
        detail += "; MIG enabled: the whole GPU's energy, shared with its other MIG instances"
    kind = "gpu"
    name = f"GPU {gpu.smi_index} {gpu.model}"
    if gpu.c2c:
        # One figure for the module: the host leaves out CPU and memory devices (the estimate,
        # hwmon's Grace meters) so that the Grace CPU is counted once, inside this one.
        kind = "module"
        name += " module"
        detail += (
            "; a Grace superchip (C2C): NVML's figure covers the whole module, GPU + HBM + "
            "Grace CPU + LPDDR (Zeus PR #172), so CPU and memory devices (the estimate, "
            "hwmon's Grace meters) are left out of this run and counted here"
        )
    return Device(
        id=gpu.uuid,
        kind=kind,
        name=name,
        backend=BACKEND,
        method="counter" if method == "counter" else "power",
        shared=gpu.mig_enabled,
        detail=detail,
        handle=_Handle(session=session, handle=gpu.handle, label=label, buffer=buffer),
    )


def _has_power_buffer(nvml: Any, gpu: _Gpu) -> bool:
    call = getattr(nvml, "nvmlDeviceGetSamples", None)
    if call is None:
        return False
    try:
        call(gpu.handle, _TOTAL_POWER_SAMPLES, 0)
    except nvml.NVMLError as exc:
        return getattr(exc, "value", None) == _NOT_FOUND  # a buffer, empty for now
    return True


def _power_usage_meaning(gpu: _Gpu) -> str:
    # NVML docs (nvmlDeviceGetPowerUsage): Ampere (except GA100) and newer return a 1 s
    # average, GA100 and older the instantaneous power.
    if gpu.architecture is None:
        return (
            "that reading is a 1 s average on Ampere (except GA100) and newer, instantaneous "
            "power on older GPUs"
        )
    if gpu.architecture >= _ARCH_AMPERE and "A100" not in gpu.model:
        return "on this GPU (Ampere or newer, not GA100) that reading is a 1 s average"
    return "on this GPU that reading is the instantaneous power"


def _init_failure(exc: Exception) -> list[Device | Unavailable]:
    code = getattr(exc, "value", None)
    if code == _LIBRARY_NOT_FOUND:
        return []  # no NVIDIA driver here: nothing to measure, nothing to say
    if code == _DRIVER_NOT_LOADED:
        fix = "load the NVIDIA kernel driver (sudo modprobe nvidia) or reinstall the driver"
    elif code == _NO_PERMISSION:
        fix = "give this user access to /dev/nvidia* (the video group on many systems)"
    else:
        fix = "check that nvidia-smi works; a driver/library version mismatch needs a reboot"
    return [
        Unavailable(
            backend=BACKEND,
            kind="gpu",
            reason=f"nvmlInit failed: {_describe_error(exc)}",
            fix=fix,
        )
    ]


def discover(settings: Settings, proc_root: Path = Path("/proc")) -> list[Device | Unavailable]:
    """Find the GPUs to measure (see the module docstring); what the discovery hook returns."""
    if not settings.wants("gpu"):
        return []  # nothing to do, and no nvmlInit to undo
    nvml = _load_module()
    if nvml is None:
        return []
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        return _init_failure(exc)
    session = _Session(nvml)
    found: list[Device | Unavailable] = []
    try:
        found = _discover(session, settings, proc_root)
    finally:
        # Close now unless devices will be read (and closed by carbontrack_close_devices).
        if not any(isinstance(item, Device) for item in found):
            session.shutdown()
    return found


def _discover(session: _Session, settings: Settings, proc_root: Path) -> list[Device | Unavailable]:
    nvml = session.nvml
    found: list[Device | Unavailable] = []
    gpus: list[_Gpu] = []
    for index in range(nvml.nvmlDeviceGetCount()):
        try:
            gpus.append(_describe(nvml, index))
        except nvml.NVMLError as exc:
            found.append(
                Unavailable(
                    backend=BACKEND,
                    kind="gpu",
                    reason=f"GPU at NVML index {index}: {_describe_error(exc)}",
                    fix="check the GPU with nvidia-smi; reset or reseat it if it reports errors",
                )
            )
    for smi_index, gpu in enumerate(_pci_order(gpus)):
        gpu.smi_index = smi_index
    if not gpus:
        return found
    choice = _choose(nvml, gpus, settings, proc_root)
    found.extend(choice.unavailable)
    left = [g for g in gpus if g.c2c and g not in choice.gpus]
    if left and any(g.c2c for g in choice.gpus):
        logger.warning(
            "carbontrack: this run measures superchip module(s) %s, whose figure holds their "
            "Grace CPU, so CPU and memory devices are left out; module(s) %s are not measured "
            "here, and neither are their Grace CPUs. To count every CPU, measure all modules "
            "(gpu_ids or CUDA_VISIBLE_DEVICES listing them all)",
            ", ".join(str(g.smi_index) for g in choice.gpus if g.c2c),
            ", ".join(str(g.smi_index) for g in left),
        )
    made = [_device(session, gpu, choice.how) for gpu in choice.gpus]
    found.extend(made)
    if choice.late:
        watch = _Watch(session, settings.tracked_pid, proc_root, checked_at=_now())
        for gpu, item in zip(choice.gpus, made, strict=True):
            if isinstance(item, Device):
                item.handle.late = _Late(watch, gpu, frozen_j=_baseline_j(nvml, item))
                watch.gpus.append(item.handle.late)
    return found


def _baseline_j(nvml: Any, device: Device) -> float:
    """The counter at discovery (J), what a GPU not yet used reports; 0 for power-only GPUs."""
    if device.method != "counter":
        return 0.0
    try:
        return float(nvml.nvmlDeviceGetTotalEnergyConsumption(device.handle.handle)) / 1000.0
    except nvml.NVMLError:
        return 0.0  # any constant will do: only its differences count


@hookimpl
def carbontrack_discover_devices(settings: Settings) -> list[Device | Unavailable]:
    """Return the NVIDIA GPUs this job uses, each with its method (``counter`` or ``power``)."""
    return discover(settings)


def _read(device: Device) -> Reading:
    handle: _Handle = device.handle
    if handle.lost is not None:
        return Reading(device.id, error=handle.lost)
    late = handle.late
    if late is not None and not late.counting:
        # Not used by the tracked processes yet: a counter that does not move adds 0 J (a
        # power-only GPU too: a flat counter, never a made-up 0 W).
        return Reading(device.id, joules=late.frozen_j, wrap_j=None)
    nvml = handle.session.nvml
    if handle.buffer is not None:
        call = "nvmlDeviceGetSamples"
    elif device.method == "counter":
        call = "nvmlDeviceGetTotalEnergyConsumption"
    else:
        call = "nvmlDeviceGetPowerUsage"
    try:
        if handle.buffer is not None:
            joules = handle.buffer.update(nvml, handle.handle)
            if late is not None:
                joules = _late_counter(late, joules)
            return Reading(device.id, joules=joules, wrap_j=None)
        value = getattr(nvml, call)(handle.handle)
    except Exception as exc:  # one GPU's failure is that GPU's error, never the run's
        error = f"{call} for {handle.label} failed: {_describe_error(exc)}"
        if getattr(exc, "value", None) == _GPU_IS_LOST:
            # A lost GPU stays lost until a reset; don't keep asking the driver.
            handle.lost = error
        return Reading(device.id, error=error)
    if device.method == "counter":
        # mJ since the driver loaded; u64, never wraps in practice: a decrease is a reset.
        joules = value / 1000.0
        if late is not None:
            joules = _late_counter(late, joules)
        return Reading(device.id, joules=joules, wrap_j=None)
    return Reading(device.id, watts=value / 1000.0)


def _late_counter(late: _Late, raw_j: float) -> float:
    """What a late-attributed GPU's counter reports: shifted so that counting starts at the
    first read after its processes appeared, with a reset still seen as a decrease."""
    if late.offset_j is None:  # the first counted read: continue from the frozen value
        late.offset_j = raw_j - late.frozen_j
    elif raw_j < late.last_raw_j:  # a reset (driver reload): report 0, a decrease
        late.offset_j = raw_j
    late.last_raw_j = raw_j
    return max(raw_j - late.offset_j, 0.0)


@hookimpl
def carbontrack_read_energy(devices: Sequence[Device]) -> list[Reading]:
    """Read each GPU's energy counter (J) or power (W); a failing GPU gives an error reading.

    With late attribution (``devices_by_pid`` before the processes used a GPU), first check
    the process lists of the GPUs not yet used, at most every ``PROCESS_CHECK_S`` seconds.
    """
    watches = {id(w): w for d in devices if (w := _watch_of(d)) is not None}
    for watch in watches.values():
        try:
            watch.update()
        except Exception:  # a failed check leaves the GPUs as they were; reads go on
            logger.debug("devices_by_pid process check failed", exc_info=True)
    return [_read(d) for d in devices]


def _watch_of(device: Device) -> _Watch | None:
    handle = device.handle
    if isinstance(handle, _Handle) and handle.late is not None:
        return handle.late.watch
    return None


@hookimpl
def carbontrack_close_devices(devices: Sequence[Device]) -> None:
    """Shut NVML down once for the session these devices came from."""
    sessions = {id(d.handle.session): d.handle.session for d in devices if d.handle is not None}
    for session in sessions.values():
        session.shutdown()
