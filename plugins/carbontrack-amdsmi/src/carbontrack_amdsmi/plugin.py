"""The carbontrack hooks of the AMD GPU backend, over ROCm's ``amdsmi`` Python package.

carbontrack finds ``AmdSmiPlugin`` through the entry point
``amdsmi = "carbontrack_amdsmi.plugin:AmdSmiPlugin"`` and makes one per run, so the library
handle lives in that instance: initialised in discovery, shut down in ``close_devices``.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from carbontrack import Device, Reading, Settings, Unavailable, hookimpl

__all__ = [
    "BACKEND",
    "DRIVER_ENV",
    "MODULE_ENV",
    "AmdSmiPlugin",
    "Gpu",
    "visible_gpus",
]

logger = logging.getLogger(__name__)

#: The plugin's name: ``Device.backend`` of its devices and its entry-point name.
BACKEND = "amdsmi"
#: Import this module instead of ``amdsmi`` (tests; a vendored copy of the bindings).
MODULE_ENV = "CARBONTRACK_AMDSMI_MODULE"
#: The amdgpu kernel driver's directory: when present and amdsmi is missing, say how to fix it.
DRIVER_ENV = "CARBONTRACK_AMDGPU_DRIVER_DIR"
DEFAULT_DRIVER_DIR = "/sys/module/amdgpu"

# amdsmi status codes (AmdSmiLibraryException.get_error_code()).
NOT_SUPPORTED, NO_PERM = 2, 10

FIX_INSTALL = (
    "install the amdsmi bindings that match your ROCm: python -m pip install "
    "/opt/rocm/share/amd_smi (set ROCM_PATH when ROCm lives elsewhere)"
)
FIX_PERMISSION = (
    "add your user to the render and video groups (sudo usermod -aG render,video $USER), "
    "then log in again"
)


class Gpu:
    """What discovery learnt about one GPU; ``hip_id`` is its index in HIP's own order.

    A plain class, not attrs: the plugin loads with every carbontrack run, mostly where no AMD
    GPU exists, and generating an attrs class costs about half a millisecond per process.
    """

    __slots__ = ("bdf", "handle", "hip_id", "name", "uuid")

    def __init__(self, *, handle: Any, bdf: str, uuid: str, name: str, hip_id: int) -> None:
        self.handle = handle
        self.bdf = bdf
        self.uuid = uuid
        self.name = name
        self.hip_id = hip_id

    def __repr__(self) -> str:
        return (
            f"Gpu(bdf={self.bdf!r}, uuid={self.uuid!r}, name={self.name!r}, hip_id={self.hip_id})"
        )

    def __eq__(self, other: object) -> bool:
        # The handle is the library's pointer, not part of what the GPU is.
        if not isinstance(other, Gpu):
            return NotImplemented
        return (self.bdf, self.uuid, self.name, self.hip_id) == (
            other.bdf,
            other.uuid,
            other.name,
            other.hip_id,
        )

    def __hash__(self) -> int:
        return hash((self.bdf, self.uuid, self.name, self.hip_id))


def _load() -> ModuleType:
    return importlib.import_module(os.environ.get(MODULE_ENV) or "amdsmi")


def _error_code(exc: BaseException) -> int | None:
    get = getattr(exc, "get_error_code", None)
    return int(get()) if callable(get) else None


def _hip_ids(
    smi: ModuleType, handles: Sequence[Any], errors: tuple[type[Exception], ...]
) -> list[int]:
    """HIP's index of each handle; HIP's order can differ from amd-smi's (BDF) order."""
    # AttributeError: older bindings lack the function; the rest: odd or missing answers.
    missing: tuple[type[Exception], ...] = (
        AttributeError,
        KeyError,
        TypeError,
        ValueError,
        *errors,
    )
    try:  # ROCm 6.4+
        return [int(smi.amdsmi_get_gpu_enumeration_info(h)["hip_id"]) for h in handles]
    except missing:
        pass
    try:  # ROCm 6.3: HIP counts GPUs in KFD node order
        nodes = [int(smi.amdsmi_get_gpu_kfd_info(h)["node_id"]) for h in handles]
    except missing:
        return list(range(len(handles)))
    ranks = sorted(range(len(handles)), key=lambda i: nodes[i])
    hip = [0] * len(handles)
    for rank, i in enumerate(ranks):
        hip[i] = rank
    return hip


def _matches(entry: str, index: int, gpu: Gpu) -> bool:
    entry = entry.strip()
    if entry.isdigit():
        return int(entry) == index
    wanted = entry.lower().removeprefix("gpu-").replace("-", "")
    return bool(wanted) and wanted in gpu.uuid.lower().replace("-", "")


def _select(gpus: list[Gpu], spec: Sequence[str], variable: str) -> list[Gpu]:
    chosen: list[Gpu] = []
    for entry in spec:
        hit = [g for i, g in enumerate(gpus) if _matches(entry, i, g)]
        if not hit:
            logger.warning("amdsmi: %s entry %r matches no GPU; ignored", variable, entry)
        chosen.extend(g for g in hit if g not in chosen)
    return chosen


def visible_gpus(
    gpus: Sequence[Gpu], environ: Mapping[str, str], gpu_ids: Sequence[str] | None
) -> list[tuple[int, Gpu]]:
    """The GPUs this process uses, with their index as the process sees them.

    ``ROCR_VISIBLE_DEVICES`` picks from all GPUs (in HIP order, by index or UUID);
    ``HIP_VISIBLE_DEVICES`` (else ``CUDA_VISIBLE_DEVICES``, which HIP honours too) picks from
    what is left; ``gpu_ids`` (carbontrack's option) picks from that, as the process numbers them.
    """
    chosen = sorted(gpus, key=lambda g: g.hip_id)
    for variable in ("ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES"):
        if variable == "CUDA_VISIBLE_DEVICES" and "HIP_VISIBLE_DEVICES" in environ:
            continue
        if variable in environ:
            chosen = _select(chosen, environ[variable].split(","), variable)
    indexed = list(enumerate(chosen))
    if gpu_ids is not None:
        picked = _select(chosen, gpu_ids, "gpu_ids")
        indexed = [(i, g) for i, g in indexed if g in picked]
    return indexed


def _energy_j(smi: ModuleType, handle: Any) -> tuple[float, float]:
    """The energy counter in joules and its range (the accumulator is 64-bit)."""
    info = smi.amdsmi_get_energy_count(handle)
    # Before ROCm 6.2.1 the accumulator was returned under the key "power".
    accumulator = info["energy_accumulator"] if "energy_accumulator" in info else info["power"]
    resolution_uj = float(info["counter_resolution"])
    return float(accumulator) * resolution_uj / 1e6, 2.0**64 * resolution_uj / 1e6


def _power_w(smi: ModuleType, handle: Any) -> float | None:
    """Socket power in watts, or ``None`` when the GPU reports none ("N/A")."""
    info = smi.amdsmi_get_power_info(handle)
    for key in ("current_socket_power", "average_socket_power", "socket_power"):
        value = info.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


class AmdSmiPlugin:
    """AMD GPUs: the energy counter where the GPU has one, else sampled socket power."""

    def __init__(self) -> None:
        self._smi: ModuleType | None = None
        self._errors: tuple[type[Exception], ...] = ()

    def _unavailable(self, reason: str, fix: str) -> list[Device | Unavailable]:
        return [Unavailable(backend=BACKEND, kind="gpu", reason=reason, fix=fix)]

    @hookimpl
    def carbontrack_discover_devices(self, settings: Settings) -> list[Device | Unavailable]:
        """The visible AMD GPUs; ``Unavailable`` when they exist but amdsmi cannot read them."""
        if not settings.wants("gpu"):
            return []  # no library to load, nothing to shut down
        driver_loaded = Path(os.environ.get(DRIVER_ENV) or DEFAULT_DRIVER_DIR).is_dir()
        try:
            smi = _load()
        except (ImportError, OSError) as exc:  # OSError: libamd_smi.so itself failed to load
            if driver_loaded:
                return self._unavailable(
                    f"the amdsmi package cannot be loaded ({exc})", FIX_INSTALL
                )
            return []  # no amdgpu driver: no AMD GPU here
        # Only amdsmi's own errors mean "cannot read"; anything else is a bug the host isolates.
        errors: tuple[type[Exception], ...] = (
            getattr(smi, "AmdSmiException", None) or smi.AmdSmiLibraryException,
        )
        try:
            smi.amdsmi_init(smi.AmdSmiInitFlags.INIT_AMD_GPUS)
        except errors as exc:
            if not driver_loaded:
                return []  # amdsmi installed (a ROCm image) where there is no AMD GPU
            fix = FIX_PERMISSION if _error_code(exc) == NO_PERM else FIX_INSTALL
            return self._unavailable(f"amdsmi_init failed: {exc}", fix)
        self._smi, self._errors = smi, errors
        try:
            found = self._devices(smi, settings)
        except errors as exc:
            self._shut_down()
            return self._unavailable(f"amdsmi could not list the GPUs: {exc}", FIX_INSTALL)
        except BaseException:
            self._shut_down()
            raise
        if not any(isinstance(item, Device) for item in found):
            self._shut_down()  # the host only closes plugins that have devices
        return found

    def _devices(self, smi: ModuleType, settings: Settings) -> list[Device | Unavailable]:
        handles = list(smi.amdsmi_get_processor_handles())
        hip = _hip_ids(smi, handles, self._errors)
        gpus = [
            Gpu(
                handle=h,
                bdf=str(smi.amdsmi_get_gpu_device_bdf(h)),
                uuid=str(smi.amdsmi_get_gpu_device_uuid(h)),
                name=self._market_name(smi, h),
                hip_id=hip[i],
            )
            for i, h in enumerate(handles)
        ]
        found: list[Device | Unavailable] = []
        for index, gpu in visible_gpus(gpus, os.environ, settings.gpu_ids):
            method = self._probe(smi, gpu)
            if method == "no-permission":
                found += self._unavailable(
                    f"{gpu.name} ({gpu.bdf}): permission denied", FIX_PERMISSION
                )
            elif method is None and "MI250" in gpu.name:
                # On MI250/MI250X only the even die reports, and its figure covers both.
                logger.info("amdsmi: %s (%s) is covered by its partner die", gpu.name, gpu.bdf)
            elif method is None:
                found += self._unavailable(
                    f"{gpu.name} ({gpu.bdf}) reports neither an energy counter nor power "
                    "(the energy counter is not supported on virtual machine guests)",
                    "measure on the host, or let the estimate backend stand in",
                )
            else:
                found.append(
                    Device(
                        id=f"gpu{index}",
                        kind="gpu",
                        name=f"{gpu.name} ({gpu.bdf})",
                        backend=BACKEND,
                        method=method,
                        detail=f"bdf {gpu.bdf}, uuid {gpu.uuid}, HIP id {gpu.hip_id}",
                        handle=gpu.handle,
                    )
                )
        return found

    def _market_name(self, smi: ModuleType, handle: Any) -> str:
        try:
            return str(smi.amdsmi_get_gpu_asic_info(handle).get("market_name") or "AMD GPU")
        except self._errors:
            return "AMD GPU"  # a name is nice to have; the energy is what matters

    def _probe(
        self, smi: ModuleType, gpu: Gpu
    ) -> Literal["counter", "power", "no-permission"] | None:
        """``"counter"``, ``"power"``, ``"no-permission"`` or ``None`` (nothing to read)."""
        try:
            _energy_j(smi, gpu.handle)
            return "counter"
        except self._errors as exc:
            if _error_code(exc) == NO_PERM:
                return "no-permission"
        try:
            return "power" if _power_w(smi, gpu.handle) is not None else None
        except self._errors as exc:
            return "no-permission" if _error_code(exc) == NO_PERM else None

    def _read(self, smi: ModuleType, device: Device) -> Reading:
        try:
            if device.method == "counter":
                joules, wrap_j = _energy_j(smi, device.handle)
                return Reading(device.id, joules=joules, wrap_j=wrap_j)
            watts = _power_w(smi, device.handle)
        except self._errors as exc:
            call = (
                "amdsmi_get_energy_count" if device.method == "counter" else "amdsmi_get_power_info"
            )
            return Reading(device.id, error=f"{call} for {device.name}: {exc}")
        if watts is None:
            return Reading(device.id, error=f"amdsmi_get_power_info for {device.name}: N/A")
        return Reading(device.id, watts=watts)

    @hookimpl
    def carbontrack_read_energy(self, devices: Sequence[Device]) -> list[Reading]:
        """One amdsmi call per GPU: the counter (µJ times its resolution) or the socket power."""
        smi = self._smi
        if smi is None:
            return [Reading(d.id, error="amdsmi is not initialised") for d in devices]
        return [self._read(smi, device) for device in devices]

    @hookimpl
    def carbontrack_close_devices(self, devices: Sequence[Device]) -> None:
        """Shut the amdsmi library down."""
        self._shut_down()

    def _shut_down(self) -> None:
        smi, self._smi = self._smi, None
        if smi is not None:
            smi.amdsmi_shut_down()
