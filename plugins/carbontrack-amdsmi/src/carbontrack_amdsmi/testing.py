"""A fake ``amdsmi`` module, for this plugin's tests and for yours.

``FakeAmdSmi([FakeAmdGpu(...), ...])`` builds a module with the amdsmi functions the plugin
calls; ``with fake.installed():`` puts it in ``sys.modules["amdsmi"]``. Each GPU's energy
accumulator advances at its ``watts`` on a clock (``carbontrack.testing.FakeClock`` for exact
figures), so tests know the true energy. The figures are simulated, never measurements.
"""

from __future__ import annotations

import contextlib
import enum
import sys
import threading
import time
import types
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any

import attrs

__all__ = [
    "NOT_INIT",
    "NOT_SUPPORTED",
    "NO_PERM",
    "AmdSmiException",
    "AmdSmiLibraryException",
    "FakeAmdGpu",
    "FakeAmdSmi",
]

#: amdsmi status codes the fake raises, as ``AmdSmiLibraryException(code)``.
NOT_SUPPORTED, NO_PERM, NOT_INIT = 2, 10, 32


class AmdSmiException(Exception):
    """Base of the fake's errors, named like the real bindings' base class."""


class AmdSmiLibraryException(AmdSmiException):
    """A failed library call, with the status code the real bindings give."""

    def __init__(self, code: int) -> None:
        super().__init__(f"amdsmi error {code}")
        self.code = code

    def get_error_code(self) -> int:
        """The amdsmi status code (2 not supported, 10 no permission, 32 not initialised)."""
        return self.code


class AmdSmiInitFlags(enum.IntFlag):
    """The init flags of the real bindings (only the one the plugin uses matters)."""

    INIT_ALL_PROCESSORS = 0xFFFFFFFF
    INIT_AMD_CPUS = 1 << 0
    INIT_AMD_GPUS = 1 << 1


@attrs.define
class FakeAmdGpu:
    """One fake GPU.

    ``energy=False`` makes ``amdsmi_get_energy_count`` fail with NOT_SUPPORTED (as on a VM
    guest); ``power=False`` makes every power field ``"N/A"``. ``legacy_key`` returns the
    accumulator under ``"power"`` (ROCm before 6.2.1). ``hip_id``/``kfd_node`` give HIP's order
    when it differs from the handle (BDF) order. ``fail_reads`` numbers the calls of this GPU's
    energy and power functions (from 1, discovery's probes included) that raise an
    ``AmdSmiLibraryException``; ``no_permission`` makes every such call raise NO_PERM.
    """

    bdf: str
    uuid: str
    market_name: str = "AMD Instinct MI300X"
    watts: float = 300.0
    resolution_uj: float = 15.3
    start_accumulator: int = 0
    energy: bool = True
    power: bool = True
    legacy_key: bool = False
    hip_id: int | None = None
    kfd_node: int | None = None
    fail_reads: Collection[int] = ()
    no_permission: bool = False
    #: Energy drawn since ``amdsmi_init``, in joules (the truth to compare with).
    true_j: float = attrs.field(default=0.0, init=False)
    reads: int = attrs.field(default=0, init=False)


class _Handle:
    """An opaque processor handle, like the ctypes pointers of the real bindings."""

    def __init__(self, gpu: FakeAmdGpu) -> None:
        self.gpu = gpu

    def __repr__(self) -> str:
        return f"<fake amdsmi handle {self.gpu.bdf}>"


class FakeAmdSmi:
    """A fake ``amdsmi`` module serving ``gpus``; see ``installed()`` and ``module``.

    ``init_error`` makes ``amdsmi_init`` raise that status code; ``enumeration_info=False``
    removes ``amdsmi_get_gpu_enumeration_info`` (ROCm before 6.4). ``raise_in`` maps a function
    name to an exception it raises instead of working (to test a plugin bug's isolation).
    ``calls`` lists the functions called, in order.
    """

    def __init__(
        self,
        gpus: Sequence[FakeAmdGpu] = (),
        *,
        clock: Callable[[], float] = time.monotonic,
        init_error: int | None = None,
        enumeration_info: bool = True,
        raise_in: Mapping[str, BaseException] | None = None,
    ) -> None:
        self.gpus = list(gpus)
        self.clock = clock
        self.init_error = init_error
        self.raise_in = dict(raise_in or {})
        self.calls: list[str] = []
        self.initialised = False
        self._last_t: float | None = None
        self._lock = threading.Lock()
        self.module = self._build(enumeration_info)

    @contextlib.contextmanager
    def installed(self, name: str = "amdsmi") -> Iterator[FakeAmdSmi]:
        """Make ``import amdsmi`` (or ``name``) give this fake for the ``with`` block."""
        saved = sys.modules.get(name)
        sys.modules[name] = self.module
        try:
            yield self
        finally:
            if saved is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = saved

    @property
    def true_energy_j(self) -> float:
        """Energy all GPUs drew since ``amdsmi_init`` (up to the last call), in joules."""
        return sum(g.true_j for g in self.gpus)

    # -- the simulation --------------------------------------------------------------------

    def _advance(self) -> None:
        now = self.clock()
        if self._last_t is not None and now > self._last_t:
            for gpu in self.gpus:
                gpu.true_j += gpu.watts * (now - self._last_t)
        self._last_t = now

    def _enter(self, name: str, handle: Any = None) -> FakeAmdGpu | None:
        self.calls.append(name)
        if name in self.raise_in:
            raise self.raise_in[name]
        if name not in ("amdsmi_init",) and not self.initialised:
            raise AmdSmiLibraryException(NOT_INIT)
        if handle is None:
            return None
        if not isinstance(handle, _Handle):
            raise AmdSmiLibraryException(NOT_SUPPORTED)
        return handle.gpu

    def _read(self, name: str, handle: Any) -> FakeAmdGpu:
        with self._lock:
            gpu = self._enter(name, handle)
            assert gpu is not None
            self._advance()
            gpu.reads += 1
            if gpu.no_permission:
                raise AmdSmiLibraryException(NO_PERM)
            if gpu.reads in gpu.fail_reads:
                raise AmdSmiLibraryException(NOT_SUPPORTED)
            return gpu

    def _build(self, enumeration_info: bool) -> types.ModuleType:
        module = types.ModuleType("amdsmi", "A fake of AMD's amdsmi bindings (carbontrack).")
        fake = self

        def amdsmi_init(flags: int = AmdSmiInitFlags.INIT_AMD_GPUS) -> None:
            fake._enter("amdsmi_init")
            if fake.init_error is not None:
                raise AmdSmiLibraryException(fake.init_error)
            fake.initialised = True
            fake._last_t = fake.clock()

        def amdsmi_shut_down() -> None:
            fake._enter("amdsmi_shut_down")
            fake.initialised = False

        def amdsmi_get_processor_handles() -> list[_Handle]:
            fake._enter("amdsmi_get_processor_handles")
            return [_Handle(g) for g in fake.gpus]

        def amdsmi_get_gpu_device_bdf(handle: Any) -> str:
            gpu = fake._enter("amdsmi_get_gpu_device_bdf", handle)
            assert gpu is not None
            return gpu.bdf

        def amdsmi_get_gpu_device_uuid(handle: Any) -> str:
            gpu = fake._enter("amdsmi_get_gpu_device_uuid", handle)
            assert gpu is not None
            return gpu.uuid

        def amdsmi_get_gpu_asic_info(handle: Any) -> dict[str, Any]:
            gpu = fake._enter("amdsmi_get_gpu_asic_info", handle)
            assert gpu is not None
            return {"market_name": gpu.market_name, "vendor_id": "0x1002"}

        def amdsmi_get_gpu_kfd_info(handle: Any) -> dict[str, Any]:
            gpu = fake._enter("amdsmi_get_gpu_kfd_info", handle)
            assert gpu is not None
            node = gpu.kfd_node if gpu.kfd_node is not None else fake.gpus.index(gpu)
            return {"kfd_id": 1000 + node, "node_id": node}

        def amdsmi_get_gpu_enumeration_info(handle: Any) -> dict[str, Any]:
            gpu = fake._enter("amdsmi_get_gpu_enumeration_info", handle)
            assert gpu is not None
            hip = gpu.hip_id if gpu.hip_id is not None else fake.gpus.index(gpu)
            return {"hip_id": hip, "drm_card": hip, "drm_render": 128 + hip}

        def amdsmi_get_energy_count(handle: Any) -> dict[str, Any]:
            gpu = fake._read("amdsmi_get_energy_count", handle)
            if not gpu.energy:
                raise AmdSmiLibraryException(NOT_SUPPORTED)
            accumulator = gpu.start_accumulator + int(gpu.true_j * 1e6 / gpu.resolution_uj)
            key = "power" if gpu.legacy_key else "energy_accumulator"
            return {
                key: accumulator,
                "counter_resolution": gpu.resolution_uj,
                "timestamp": int(fake.clock() * 1e9),
            }

        def amdsmi_get_power_info(handle: Any) -> dict[str, Any]:
            gpu = fake._read("amdsmi_get_power_info", handle)
            watts: Any = round(gpu.watts) if gpu.power else "N/A"
            return {
                "current_socket_power": watts,
                "average_socket_power": watts,
                "socket_power": watts,
                "gfx_voltage": "N/A",
                "soc_voltage": "N/A",
                "mem_voltage": "N/A",
                "power_limit": 750_000_000,
            }

        functions: list[Callable[..., Any]] = [
            amdsmi_init,
            amdsmi_shut_down,
            amdsmi_get_processor_handles,
            amdsmi_get_gpu_device_bdf,
            amdsmi_get_gpu_device_uuid,
            amdsmi_get_gpu_asic_info,
            amdsmi_get_gpu_kfd_info,
            amdsmi_get_energy_count,
            amdsmi_get_power_info,
        ]
        if enumeration_info:
            functions.append(amdsmi_get_gpu_enumeration_info)
        for function in functions:
            setattr(module, function.__name__, function)
        module.AmdSmiInitFlags = AmdSmiInitFlags  # type: ignore[attr-defined]
        module.AmdSmiException = AmdSmiException  # type: ignore[attr-defined]
        module.AmdSmiLibraryException = AmdSmiLibraryException  # type: ignore[attr-defined]
        return module
