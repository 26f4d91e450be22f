"""A fake ``pynvml`` (nvidia-ml-py) module: NVIDIA GPUs that follow a script, for tests.

``FakeNVML`` has the functions, constants, units and exception classes of nvidia-ml-py
(``nvmlDeviceGetTotalEnergyConsumption`` in mJ, ``nvmlDeviceGetPowerUsage`` in mW,
``NVMLError_GpuIsLost``...), so code written against it runs unchanged on real NVML. Install
it with ``with fake.installed():`` (it sets ``CARBONTRACK_NVML_MODULE``, the seam through which
carbontrack's NVML backend finds its module). Figures from this fake are simulated, never
measurements.
"""

from __future__ import annotations

import bisect
import contextlib
import ctypes
import itertools
import math
import os
import string
import sys
import threading
import time
import types
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import attrs

__all__ = [
    "FakeGpu",
    "FakeMigInstance",
    "FakeNVML",
    "NVMLError",
    "NVMLLibraryMismatchError",
    "PowerTrace",
]

NVML_MODULE_ENV = "CARBONTRACK_NVML_MODULE"

# Return codes exactly as nvidia-ml-py 13.615 defines them (``NVML_ERROR_*``).
ERROR_CODES: dict[str, int] = {
    "NVML_ERROR_UNINITIALIZED": 1,
    "NVML_ERROR_INVALID_ARGUMENT": 2,
    "NVML_ERROR_NOT_SUPPORTED": 3,
    "NVML_ERROR_NO_PERMISSION": 4,
    "NVML_ERROR_ALREADY_INITIALIZED": 5,
    "NVML_ERROR_NOT_FOUND": 6,
    "NVML_ERROR_INSUFFICIENT_SIZE": 7,
    "NVML_ERROR_INSUFFICIENT_POWER": 8,
    "NVML_ERROR_DRIVER_NOT_LOADED": 9,
    "NVML_ERROR_TIMEOUT": 10,
    "NVML_ERROR_IRQ_ISSUE": 11,
    "NVML_ERROR_LIBRARY_NOT_FOUND": 12,
    "NVML_ERROR_FUNCTION_NOT_FOUND": 13,
    "NVML_ERROR_CORRUPTED_INFOROM": 14,
    "NVML_ERROR_GPU_IS_LOST": 15,
    "NVML_ERROR_RESET_REQUIRED": 16,
    "NVML_ERROR_OPERATING_SYSTEM": 17,
    "NVML_ERROR_LIB_RM_VERSION_MISMATCH": 18,
    "NVML_ERROR_IN_USE": 19,
    "NVML_ERROR_MEMORY": 20,
    "NVML_ERROR_NO_DATA": 21,
    "NVML_ERROR_VGPU_ECC_NOT_SUPPORTED": 22,
    "NVML_ERROR_INSUFFICIENT_RESOURCES": 23,
    "NVML_ERROR_FREQ_NOT_SUPPORTED": 24,
    "NVML_ERROR_ARGUMENT_VERSION_MISMATCH": 25,
    "NVML_ERROR_DEPRECATED": 26,
    "NVML_ERROR_NOT_READY": 27,
    "NVML_ERROR_GPU_NOT_FOUND": 28,
    "NVML_ERROR_INVALID_STATE": 29,
    "NVML_ERROR_RESET_TYPE_NOT_SUPPORTED": 30,
    "NVML_ERROR_UNKNOWN": 999,
}

CONSTANTS: dict[str, int] = {
    "NVML_SUCCESS": 0,
    **ERROR_CODES,
    "NVML_INIT_FLAG_NO_GPUS": 1,
    "NVML_DEVICE_MIG_DISABLE": 0,
    "NVML_DEVICE_MIG_ENABLE": 1,
    "NVML_DEVICE_ARCH_KEPLER": 2,
    "NVML_DEVICE_ARCH_MAXWELL": 3,
    "NVML_DEVICE_ARCH_PASCAL": 4,
    "NVML_DEVICE_ARCH_VOLTA": 5,
    "NVML_DEVICE_ARCH_TURING": 6,
    "NVML_DEVICE_ARCH_AMPERE": 7,
    "NVML_DEVICE_ARCH_ADA": 8,
    "NVML_DEVICE_ARCH_HOPPER": 9,
    "NVML_DEVICE_ARCH_BLACKWELL": 10,
    "NVML_TOTAL_POWER_SAMPLES": 0,
    "NVML_VALUE_TYPE_UNSIGNED_INT": 1,
}

#: nvidia-ml-py releases whose API the fake can take (``FakeNVML(binding=...)``): ``13.615``
#: (current: the unversioned process calls go to ``_v3`` and raise ``NVMLLibraryMismatchError``
#: where the driver lacks it; ``_v2`` exists) and ``12.535`` (the oldest release carbontrack
#: once allowed: no ``_v2`` process calls and no ``NVMLLibraryMismatchError``; the plain call
#: goes to ``_v3`` and raises ``NVMLError_FunctionNotFound`` on a driver without it). Read in
#: the released ``pynvml.py`` files of nvidia-ml-py 12.535.161 and 13.615.71.
BINDINGS = ("13.615", "12.535")
_MISSING_IN_12535 = frozenset(
    {
        "NVMLLibraryMismatchError",
        "nvmlDeviceGetComputeRunningProcesses_v2",
        "nvmlDeviceGetC2cModeInfoV",
    }
)

# The messages nvidia-ml-py prints for the codes it knows; others read "NVML Error with code N"
# (its ``nvmlErrorString`` fallback when the library cannot answer).
_MESSAGES = {
    1: "Uninitialized",
    2: "Invalid Argument",
    3: "Not Supported",
    4: "Insufficient Permissions",
    5: "Already Initialized",
    6: "Not Found",
    7: "Insufficient Size",
    8: "Insufficient External Power",
    9: "Driver Not Loaded",
    10: "Timeout",
    11: "Interrupt Request Issue",
    12: "NVML Shared Library Not Found",
    13: "Function Not Found",
    14: "Corrupted infoROM",
    15: "GPU is lost",
    16: "GPU requires restart",
    17: "The operating system has blocked the request.",
    18: "RM has detected an NVML/RM version mismatch.",
    20: "Insufficient Memory",
    999: "Unknown Error",
}


class NVMLLibraryMismatchError(Exception):
    """Raised by nvidia-ml-py's unversioned calls when the driver lacks the versioned function.

    Like the real one, it is a plain ``Exception``, not an ``NVMLError``.
    """


class NVMLError(Exception):
    """Base of the NVML errors; ``NVMLError(code)`` builds the subclass for ``code``.

    ``value`` is the NVML return code, as in nvidia-ml-py.
    """

    value: int
    _by_code: dict[int, type[NVMLError]] = {}  # noqa: RUF012 (class-level registry, as upstream)

    def __new__(cls, value: int) -> NVMLError:
        target = NVMLError._by_code.get(value, cls) if cls is NVMLError else cls
        obj = Exception.__new__(target)
        obj.value = value
        return obj

    def __init__(self, value: int | None = None) -> None:
        super().__init__(self.value)

    def __str__(self) -> str:
        return _MESSAGES.get(self.value, f"NVML Error with code {self.value}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NVMLError) and self.value == other.value

    def __hash__(self) -> int:
        return hash(self.value)


def _class_name(constant: str) -> str:
    # The same rule as nvidia-ml-py: NVML_ERROR_GPU_IS_LOST -> NVMLError_GpuIsLost.
    words = string.capwords(constant.removeprefix("NVML_ERROR_"), "_")
    return "NVMLError_" + words.replace("_", "")


def _make_error_class(name: str, code: int) -> type[NVMLError]:
    def new(cls: type[NVMLError], *_args: object) -> NVMLError:
        return NVMLError.__new__(cls, code)

    cls = type(name, (NVMLError,), {"__new__": new, "__module__": __name__})
    NVMLError._by_code[code] = cls
    return cls


#: Every ``NVMLError_*`` class by name, as nvidia-ml-py generates them.
ERROR_CLASSES: dict[str, type[NVMLError]] = {
    _class_name(const): _make_error_class(_class_name(const), code)
    for const, code in ERROR_CODES.items()
}
globals().update(ERROR_CLASSES)


@attrs.frozen
class PowerTrace:
    """Piecewise-constant power: ``watts[i]`` from ``starts_s[i]`` until the next start.

    Before the first start the power is ``watts[0]``; after the last it stays at ``watts[-1]``.
    ``energy_j(t)`` is exact, so a trace is the truth that measurements are compared with.
    """

    starts_s: tuple[float, ...]
    watts: tuple[float, ...]
    _cumulative_j: tuple[float, ...] = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if not self.starts_s or len(self.starts_s) != len(self.watts):
            raise ValueError("PowerTrace needs as many starts_s as watts, at least one")
        if any(b <= a for a, b in itertools.pairwise(self.starts_s)):
            raise ValueError("PowerTrace starts_s must increase")
        cumulative = [0.0]
        for i in range(1, len(self.starts_s)):
            span = self.starts_s[i] - self.starts_s[i - 1]
            cumulative.append(cumulative[-1] + self.watts[i - 1] * span)
        object.__setattr__(self, "_cumulative_j", tuple(cumulative))

    @classmethod
    def constant(cls, watts: float) -> PowerTrace:
        """A trace at ``watts`` forever."""
        return cls((0.0,), (float(watts),))

    @classmethod
    def from_steps(cls, steps: Sequence[tuple[float, float]]) -> PowerTrace:
        """A trace from ``(duration_s, watts)`` steps starting at 0."""
        starts, watts, t = [], [], 0.0
        for duration, w in steps:
            starts.append(t)
            watts.append(float(w))
            t += duration
        return cls(tuple(starts), tuple(watts))

    def power_w(self, t: float) -> float:
        """Power at ``t`` seconds."""
        i = max(0, bisect.bisect_right(self.starts_s, t) - 1)
        return self.watts[i]

    def energy_j(self, t: float) -> float:
        """Exact energy from 0 to ``t`` seconds (negative before 0)."""
        if t <= self.starts_s[0]:
            return self.watts[0] * (t - self.starts_s[0])
        i = bisect.bisect_right(self.starts_s, t) - 1
        return self._cumulative_j[i] + self.watts[i] * (t - self.starts_s[i])


def _as_trace(power: float | PowerTrace) -> PowerTrace:
    return power if isinstance(power, PowerTrace) else PowerTrace.constant(power)


@attrs.define
class FakeMigInstance:
    """One MIG instance of a fake GPU: its ``MIG-`` UUID and the PIDs computing on it."""

    uuid: str
    gpu_instance_id: int = 0
    compute_instance_id: int = 0
    processes: list[int] = attrs.field(factory=list)


@attrs.define
class FakeGpu:
    """One scripted NVIDIA GPU.

    ``power`` is watts (constant) or a ``PowerTrace`` over seconds since the fake was created.
    ``energy_counter=False`` makes ``nvmlDeviceGetTotalEnergyConsumption`` raise
    ``NVMLError_NotSupported`` (pre-Volta GPUs); ``power_sensor=False`` does the same for power.
    ``power_average_s`` > 0 makes power readings a trailing average over that many seconds
    (Ampere and newer, except GA100, average over 1 s); 0 reads instantaneous power.
    ``energy_update_s`` is how often the counter moves (20-100 ms on real GPUs). ``errors`` maps
    a function name to the NVML error code it raises for this GPU; ``lost=True`` makes every
    call raise ``NVMLError_GpuIsLost``. ``mig`` lists MIG instances (MIG mode enabled when not
    empty); ``mig_capable=False`` makes ``nvmlDeviceGetMigMode`` unsupported.

    ``power_samples=True`` gives the driver's power sample buffer (``nvmlDeviceGetSamples`` with
    ``NVML_TOTAL_POWER_SAMPLES``): the instantaneous power every ``sample_period_s`` seconds,
    the last ``sample_buffer`` of them, time-stamped in microseconds of the wall clock;
    otherwise that call raises ``NotSupported``. (The real buffer's period and length vary by
    product and are not documented; these are assumptions.) ``c2c=True`` makes the GPU a
    Grace Hopper/Blackwell superchip (``nvmlDeviceGetC2cModeInfoV`` reports C2C enabled), whose
    energy counter covers the whole module: GPU, HBM, Grace CPU and LPDDR (Zeus PR #172); its
    ``power`` is then the module's. ``None`` (the default) makes that call ``NotSupported``, as
    on GPUs without C2C.
    """

    uuid: str
    pci_bus_id: str
    name: str = "NVIDIA A100-SXM4-80GB"
    architecture: int = 7
    power: float | PowerTrace = 250.0
    energy_counter: bool = True
    power_sensor: bool = True
    power_average_s: float = 0.0
    energy_update_s: float = 0.0
    start_mj: int = 73_215_448_117
    processes: list[int] = attrs.field(factory=list)
    graphics_processes: list[int] = attrs.field(factory=list)
    mig: list[FakeMigInstance] = attrs.field(factory=list)
    mig_capable: bool = True
    max_mig_devices: int = 7
    errors: dict[str, int] = attrs.field(factory=dict)
    lost: bool = False
    power_samples: bool = False
    sample_period_s: float = 0.02
    sample_buffer: int = 200
    c2c: bool | None = None
    _reset_at_s: float | None = attrs.field(default=None, init=False)

    @property
    def trace(self) -> PowerTrace:
        """The GPU's power as a trace."""
        return _as_trace(self.power)

    def bus_tuple(self) -> tuple[int, int, int]:
        """``(domain, bus, device)`` parsed from ``pci_bus_id``."""
        domain, bus, rest = self.pci_bus_id.split(":")
        return int(domain, 16), int(bus, 16), int(rest.split(".")[0], 16)


@attrs.frozen(eq=False)
class _Handle:
    gpu: FakeGpu
    mig: FakeMigInstance | None = None


@attrs.frozen
class _PciInfo:
    # nvidia-ml-py returns a ctypes struct whose char arrays read as bytes.
    busIdLegacy: bytes
    domain: int
    bus: int
    device: int
    pciDeviceId: int
    pciSubSystemId: int
    busId: bytes


class _ProcessInfo:
    # nvidia-ml-py's ``nvmlFriendlyObject``: plain attributes.
    def __init__(self, pid: int, gpu_instance_id: int, compute_instance_id: int) -> None:
        self.pid = pid
        self.usedGpuMemory: int | None = 1 << 30
        self.gpuInstanceId = gpu_instance_id
        self.computeInstanceId = compute_instance_id


class _Value(ctypes.Union):
    # nvidia-ml-py's c_nvmlValue_t.
    _fields_ = [
        ("dVal", ctypes.c_double),
        ("uiVal", ctypes.c_uint),
        ("ulVal", ctypes.c_ulong),
        ("ullVal", ctypes.c_ulonglong),
        ("sllVal", ctypes.c_longlong),
        ("siVal", ctypes.c_int),
        ("usVal", ctypes.c_ushort),
    ]


class _Sample(ctypes.Structure):
    # nvidia-ml-py's c_nvmlSample_t: timeStamp is a CPU time stamp in microseconds.
    _fields_ = [
        ("timeStamp", ctypes.c_ulonglong),
        ("sampleValue", _Value),
    ]


class _C2cModeInfo(ctypes.Structure):
    # nvidia-ml-py's c_nvmlC2cModeInfo_v1_t.
    _fields_ = [("isC2cEnabled", ctypes.c_uint)]


class FakeNVML(types.ModuleType):
    """A stand-in for the ``pynvml`` module, serving ``gpus`` (in NVML index order).

    ``clock`` drives power and energy (pass ``carbontrack.testing.FakeClock`` to run hours in
    milliseconds); time 0 is when the fake is created. ``init_error`` (an NVML error code) makes
    ``nvmlInit`` fail (``NVML_ERROR_LIBRARY_NOT_FOUND`` as on a host without the driver,
    ``NVML_ERROR_NO_PERMISSION``...). ``binding`` picks the nvidia-ml-py API (``BINDINGS``);
    ``driver_has_v3=False`` is a driver without ``nvmlDeviceGetComputeRunningProcesses_v3``
    (R470 and older), ``driver_has_v2=False`` one without ``_v2`` either; a missing driver
    function raises ``NVMLError_FunctionNotFound`` from the versioned call, and the
    unversioned call raises what that binding raises (``versioned_processes_only=True`` is
    ``driver_has_v3=False``). Power sample time stamps follow ``wall_clock`` (seconds) from
    when the fake is created: ``wall_s()`` is the fake's wall clock. ``calls`` counts
    every call by function name; ``init_count``/``shutdown_count`` count init and shutdown.
    """

    NVMLError = NVMLError
    NVMLLibraryMismatchError = NVMLLibraryMismatchError

    def __init__(
        self,
        gpus: Sequence[FakeGpu] = (),
        *,
        clock: Callable[[], float] = time.monotonic,
        init_error: int | None = None,
        driver_version: str = "550.54.15",
        versioned_processes_only: bool = False,
        binding: str = "13.615",
        driver_has_v3: bool = True,
        driver_has_v2: bool = True,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(f"carbontrack_fake_nvml_{id(self):x}", "A fake pynvml (carbontrack).")
        if binding not in BINDINGS:
            raise ValueError(f"binding={binding!r} is not valid: expected one of {BINDINGS}")
        self._hidden = _MISSING_IN_12535 if binding == "12.535" else frozenset()
        self.binding = binding
        self.driver_has_v3 = driver_has_v3 and not versioned_processes_only
        self.driver_has_v2 = driver_has_v2
        self.gpus = list(gpus)
        self.clock = clock
        self.init_error = init_error
        self.driver_version = driver_version
        self.versioned_processes_only = versioned_processes_only
        self.calls: Counter[str] = Counter()
        self.init_count = 0
        self.shutdown_count = 0
        self._refcount = 0
        self._lock = threading.Lock()
        self._t0 = clock()
        self._wall0 = wall_clock()
        for name, cls in ERROR_CLASSES.items():
            setattr(self, name, cls)
        for name, value in CONSTANTS.items():
            setattr(self, name, value)

    # -- test helpers ------------------------------------------------------------------------

    @property
    def initialized(self) -> bool:
        """Whether more inits than shutdowns were made."""
        return self._refcount > 0

    def elapsed_s(self) -> float:
        """Seconds since the fake was created, on its clock."""
        return self.clock() - self._t0

    def wall_s(self) -> float:
        """The fake's wall clock (seconds since the epoch), which power samples are stamped on."""
        return self._wall0 + self.elapsed_s()

    def __getattribute__(self, name: str) -> Any:
        # An older binding simply lacks some names: hasattr() and getattr() say so, as there.
        if name in object.__getattribute__(self, "__dict__").get("_hidden", ()):
            raise AttributeError(f"module has no attribute {name!r} (nvidia-ml-py 12.535)")
        return super().__getattribute__(name)

    def true_energy_j(self, gpu: FakeGpu, start_s: float, end_s: float) -> float:
        """The exact energy ``gpu`` drew between two of the fake's times (the truth)."""
        return gpu.trace.energy_j(end_s) - gpu.trace.energy_j(start_s)

    def reset_energy(self, gpu: FakeGpu) -> None:
        """Restart ``gpu``'s energy counter from 0 now, as a driver reload does."""
        gpu._reset_at_s = self.elapsed_s()

    @contextlib.contextmanager
    def installed(self) -> Iterator[FakeNVML]:
        """Make carbontrack's NVML backend use this fake inside the ``with`` block.

        Registers the fake in ``sys.modules`` and points ``CARBONTRACK_NVML_MODULE`` at it;
        both are restored on exit.
        """
        previous = os.environ.get(NVML_MODULE_ENV)
        sys.modules[self.__name__] = self
        os.environ[NVML_MODULE_ENV] = self.__name__
        try:
            yield self
        finally:
            sys.modules.pop(self.__name__, None)
            if previous is None:
                os.environ.pop(NVML_MODULE_ENV, None)
            else:
                os.environ[NVML_MODULE_ENV] = previous

    # -- plumbing ----------------------------------------------------------------------------

    def _enter(self, function: str, handle: object = None) -> _Handle | None:
        self.calls[function] += 1
        if self._refcount <= 0:
            raise NVMLError(CONSTANTS["NVML_ERROR_UNINITIALIZED"])
        if handle is None:
            return None
        if not isinstance(handle, _Handle):
            raise NVMLError(CONSTANTS["NVML_ERROR_INVALID_ARGUMENT"])
        gpu = handle.gpu
        if gpu.lost:
            raise NVMLError(CONSTANTS["NVML_ERROR_GPU_IS_LOST"])
        if function in gpu.errors:
            raise NVMLError(gpu.errors[function])
        return handle

    def _physical(self, function: str, handle: object) -> FakeGpu:
        h = self._enter(function, handle)
        assert h is not None
        return h.gpu

    # -- init and system ---------------------------------------------------------------------

    def nvmlInitWithFlags(self, flags: int) -> None:
        """Initialise NVML (reference counted)."""
        self.calls["nvmlInitWithFlags"] += 1
        if self.init_error is not None:
            raise NVMLError(self.init_error)
        with self._lock:
            self._refcount += 1
            self.init_count += 1

    def nvmlInit(self) -> None:
        """Initialise NVML (reference counted)."""
        self.nvmlInitWithFlags(0)

    def nvmlShutdown(self) -> None:
        """Release one reference taken by ``nvmlInit``."""
        self._enter("nvmlShutdown")
        with self._lock:
            self._refcount -= 1
            self.shutdown_count += 1

    def nvmlSystemGetDriverVersion(self) -> str:
        """The driver version string."""
        self._enter("nvmlSystemGetDriverVersion")
        return self.driver_version

    def nvmlErrorString(self, result: int) -> str:
        """The message for an NVML return code."""
        return _MESSAGES.get(result, "Unknown Error")

    # -- devices -----------------------------------------------------------------------------

    def nvmlDeviceGetCount(self) -> int:
        """Number of physical GPUs (MIG instances are not counted)."""
        self._enter("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> _Handle:
        """Handle of the GPU at NVML ``index``."""
        self._enter("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self.gpus):
            raise NVMLError(CONSTANTS["NVML_ERROR_INVALID_ARGUMENT"])
        return _Handle(self.gpus[index])

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> _Handle:
        """Handle of the GPU or MIG instance with exactly this UUID."""
        self._enter("nvmlDeviceGetHandleByUUID")
        for gpu in self.gpus:
            if gpu.uuid == uuid:
                return _Handle(gpu)
            for mig in gpu.mig:
                if mig.uuid == uuid:
                    return _Handle(gpu, mig)
        raise NVMLError(CONSTANTS["NVML_ERROR_NOT_FOUND"])

    def nvmlDeviceGetHandleByPciBusId(self, pciBusId: str) -> _Handle:
        """Handle of the GPU at a PCI bus id (``domain:bus:device.function`` and short forms)."""
        self._enter("nvmlDeviceGetHandleByPciBusId")
        wanted = _parse_bus(pciBusId)
        for gpu in self.gpus:
            if gpu.bus_tuple() == wanted:
                return _Handle(gpu)
        raise NVMLError(CONSTANTS["NVML_ERROR_NOT_FOUND"])

    def nvmlDeviceGetName(self, handle: object) -> str:
        """The product name."""
        return self._physical("nvmlDeviceGetName", handle).name

    def nvmlDeviceGetUUID(self, handle: object) -> str:
        """``GPU-…`` for a GPU, ``MIG-…`` for a MIG instance."""
        h = self._enter("nvmlDeviceGetUUID", handle)
        assert h is not None
        return h.mig.uuid if h.mig is not None else h.gpu.uuid

    def nvmlDeviceGetIndex(self, handle: object) -> int:
        """NVML's index of the GPU."""
        return self.gpus.index(self._physical("nvmlDeviceGetIndex", handle))

    def nvmlDeviceGetPciInfo(self, handle: object) -> _PciInfo:
        """PCI location; ``busId`` is bytes like ``b"00000000:1A:00.0"``, as in nvidia-ml-py."""
        gpu = self._physical("nvmlDeviceGetPciInfo", handle)
        domain, bus, device = gpu.bus_tuple()
        legacy = f"{domain:04X}:{bus:02X}:{device:02X}.0".encode()
        return _PciInfo(
            busIdLegacy=legacy,
            domain=domain,
            bus=bus,
            device=device,
            pciDeviceId=0x20B010DE,
            pciSubSystemId=0x134F10DE,
            busId=f"{domain:08X}:{bus:02X}:{device:02X}.0".encode(),
        )

    def nvmlDeviceGetArchitecture(self, device: object) -> int:
        """``NVML_DEVICE_ARCH_*`` of the GPU."""
        return self._physical("nvmlDeviceGetArchitecture", device).architecture

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: object) -> int:
        """Energy since the driver loaded, in mJ (Volta and newer)."""
        h = self._enter("nvmlDeviceGetTotalEnergyConsumption", handle)
        assert h is not None
        gpu = h.gpu
        if not gpu.energy_counter or h.mig is not None:
            raise NVMLError(CONSTANTS["NVML_ERROR_NOT_SUPPORTED"])
        t = self.elapsed_s()
        if gpu.energy_update_s > 0:
            t = math.floor(t / gpu.energy_update_s) * gpu.energy_update_s
        if gpu._reset_at_s is not None:
            drawn = gpu.trace.energy_j(t) - gpu.trace.energy_j(gpu._reset_at_s)
            return int(max(drawn, 0.0) * 1000)
        return gpu.start_mj + int(gpu.trace.energy_j(t) * 1000)

    def nvmlDeviceGetPowerUsage(self, handle: object) -> int:
        """Board power in mW: instantaneous, or a trailing average (``power_average_s``)."""
        h = self._enter("nvmlDeviceGetPowerUsage", handle)
        assert h is not None
        gpu = h.gpu
        if not gpu.power_sensor or h.mig is not None:
            raise NVMLError(CONSTANTS["NVML_ERROR_NOT_SUPPORTED"])
        t = self.elapsed_s()
        if gpu.power_average_s > 0:
            span = gpu.power_average_s
            watts = (gpu.trace.energy_j(t) - gpu.trace.energy_j(t - span)) / span
        else:
            watts = gpu.trace.power_w(t)
        return round(watts * 1000)

    def nvmlDeviceGetSamples(
        self, device: object, sampling_type: int, timeStamp: int
    ) -> tuple[int, list[_Sample]]:
        """``(value type, samples newer than timeStamp)`` from the driver's buffer.

        Only ``NVML_TOTAL_POWER_SAMPLES`` (mW, ``uiVal``); ``NVMLError_NotFound`` when there is
        no newer sample, ``NotSupported`` without a buffer (NVML docs: nvmlDeviceGetSamples).
        """
        gpu = self._physical("nvmlDeviceGetSamples", device)
        if not gpu.power_samples or sampling_type != CONSTANTS["NVML_TOTAL_POWER_SAMPLES"]:
            raise NVMLError(CONSTANTS["NVML_ERROR_NOT_SUPPORTED"])
        now = self.elapsed_s()
        period = gpu.sample_period_s
        last = math.floor(now / period)
        first = max(0, last - gpu.sample_buffer + 1)
        samples = []
        for k in range(first, last + 1):
            stamp = round((self._wall0 + k * period) * 1e6)
            if stamp <= timeStamp:
                continue
            sample = _Sample()
            sample.timeStamp = stamp
            sample.sampleValue.uiVal = round(gpu.trace.power_w(k * period) * 1000)
            samples.append(sample)
        if not samples:
            raise NVMLError(CONSTANTS["NVML_ERROR_NOT_FOUND"])
        return CONSTANTS["NVML_VALUE_TYPE_UNSIGNED_INT"], samples

    def nvmlDeviceGetC2cModeInfoV(self, handle: object) -> _C2cModeInfo:
        """C2C mode (Grace Hopper/Blackwell superchips); ``NotSupported`` on other GPUs."""
        gpu = self._physical("nvmlDeviceGetC2cModeInfoV", handle)
        if gpu.c2c is None:
            raise NVMLError(CONSTANTS["NVML_ERROR_NOT_SUPPORTED"])
        return _C2cModeInfo(isC2cEnabled=1 if gpu.c2c else 0)

    def _processes(self, function: str, handle: object, graphics: bool) -> list[_ProcessInfo]:
        h = self._enter(function, handle)
        assert h is not None
        if h.mig is not None:
            mig = h.mig
            return [
                _ProcessInfo(p, mig.gpu_instance_id, mig.compute_instance_id) for p in mig.processes
            ]
        pids = list(h.gpu.graphics_processes if graphics else h.gpu.processes)
        if not graphics:
            # On a MIG-enabled GPU the parent handle sees the processes of every instance.
            for mig in h.gpu.mig:
                pids.extend(mig.processes)
        return [_ProcessInfo(p, 0xFFFFFFFF, 0xFFFFFFFF) for p in pids]

    def nvmlDeviceGetComputeRunningProcesses(self, handle: object) -> list[_ProcessInfo]:
        """Processes with a compute context (``pid``, ``usedGpuMemory``...): the ``_v3`` call.

        On a driver without ``_v3``: ``NVMLLibraryMismatchError`` (13.615, its
        ``throwOnVersionMismatch``) or ``NVMLError_FunctionNotFound`` (12.535).
        """
        if not self.driver_has_v3:
            self.calls["nvmlDeviceGetComputeRunningProcesses"] += 1
            if "NVMLLibraryMismatchError" in self._hidden:
                raise NVMLError(CONSTANTS["NVML_ERROR_FUNCTION_NOT_FOUND"])
            raise NVMLLibraryMismatchError(
                "Unversioned function called and the pyNVML version does not match the NVML "
                "lib version. Either use matching pyNVML and NVML lib versions or use a "
                "versioned function such as nvmlDeviceGetComputeRunningProcesses_v2"
            )
        return self._processes("nvmlDeviceGetComputeRunningProcesses", handle, graphics=False)

    def nvmlDeviceGetComputeRunningProcesses_v3(self, handle: object) -> list[_ProcessInfo]:
        """The ``_v3`` variant; ``NVMLError_FunctionNotFound`` on a driver without it."""
        if not self.driver_has_v3:
            self.calls["nvmlDeviceGetComputeRunningProcesses_v3"] += 1
            raise NVMLError(CONSTANTS["NVML_ERROR_FUNCTION_NOT_FOUND"])
        return self._processes("nvmlDeviceGetComputeRunningProcesses_v3", handle, graphics=False)

    def nvmlDeviceGetComputeRunningProcesses_v2(self, handle: object) -> list[_ProcessInfo]:
        """The ``_v2`` variant, for drivers without ``_v3`` (absent from nvidia-ml-py 12.535)."""
        if not self.driver_has_v2:
            self.calls["nvmlDeviceGetComputeRunningProcesses_v2"] += 1
            raise NVMLError(CONSTANTS["NVML_ERROR_FUNCTION_NOT_FOUND"])
        return self._processes("nvmlDeviceGetComputeRunningProcesses_v2", handle, graphics=False)

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: object) -> list[_ProcessInfo]:
        """Processes with a graphics context."""
        return self._processes("nvmlDeviceGetGraphicsRunningProcesses", handle, graphics=True)

    # -- MIG ---------------------------------------------------------------------------------

    def nvmlDeviceGetMigMode(self, device: object) -> list[int]:
        """``[current, pending]`` MIG mode; ``NotSupported`` on GPUs without MIG."""
        gpu = self._physical("nvmlDeviceGetMigMode", device)
        if not gpu.mig_capable:
            raise NVMLError(CONSTANTS["NVML_ERROR_NOT_SUPPORTED"])
        mode = CONSTANTS["NVML_DEVICE_MIG_ENABLE"] if gpu.mig else 0
        return [mode, mode]

    def nvmlDeviceGetMaxMigDeviceCount(self, device: object) -> int:
        """How many MIG slots the GPU has (empty slots raise ``NotFound`` when opened)."""
        gpu = self._physical("nvmlDeviceGetMaxMigDeviceCount", device)
        return gpu.max_mig_devices if gpu.mig_capable else 0

    def nvmlDeviceGetMigDeviceHandleByIndex(self, device: object, index: int) -> _Handle:
        """Handle of MIG slot ``index``; ``NVMLError_NotFound`` for an empty slot."""
        gpu = self._physical("nvmlDeviceGetMigDeviceHandleByIndex", device)
        if not 0 <= index < len(gpu.mig):
            raise NVMLError(CONSTANTS["NVML_ERROR_NOT_FOUND"])
        return _Handle(gpu, gpu.mig[index])

    def nvmlDeviceIsMigDeviceHandle(self, device: object) -> ctypes.c_uint:
        """Whether the handle is a MIG instance (a ``c_uint``, as nvidia-ml-py returns it)."""
        h = self._enter("nvmlDeviceIsMigDeviceHandle", device)
        assert h is not None
        return ctypes.c_uint(1 if h.mig is not None else 0)

    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, migDevice: object) -> _Handle:
        """The parent GPU of a MIG instance."""
        h = self._enter("nvmlDeviceGetDeviceHandleFromMigDeviceHandle", migDevice)
        assert h is not None
        if h.mig is None:
            raise NVMLError(CONSTANTS["NVML_ERROR_INVALID_ARGUMENT"])
        return _Handle(h.gpu)

    def __repr__(self) -> str:
        return f"FakeNVML(gpus={[g.uuid for g in self.gpus]!r})"


def _parse_bus(text: str) -> tuple[int, int, int]:
    parts = text.strip().split(":")
    if len(parts) == 2:  # bus:device.function
        parts = ["0", *parts]
    domain, bus, rest = parts
    return int(domain, 16), int(bus, 16), int(rest.split(".")[0], 16)


#: The NVML functions this fake provides; a test compares their signatures with nvidia-ml-py's.
FUNCTIONS: tuple[str, ...] = tuple(
    name for name in vars(FakeNVML) if name.startswith("nvml") and callable(vars(FakeNVML)[name])
)
