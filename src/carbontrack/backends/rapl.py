"""CPU package and DRAM energy on Linux through the powercap (RAPL) interface, Intel and AMD.

Each ``package-N`` zone becomes a ``cpu`` device and its ``dram`` sub-zone a ``dram`` device,
read from cumulative ``energy_uj`` counters that wrap at ``max_energy_range_uj``.
"""

from __future__ import annotations

import logging
import os
import re
import typing
from collections.abc import Iterable, Sequence
from pathlib import Path

from carbontrack.hookspecs import hookimpl
from carbontrack.model import Device, Reading, Unavailable
from carbontrack.settings import Settings

__all__ = [
    "BACKEND",
    "DEFAULT_POWERCAP_ROOT",
    "POWERCAP_ROOT_ENV",
    "UDEV_RULE",
    "UDEV_RULES_FILE",
    "Zone",
    "carbontrack_discover_devices",
    "carbontrack_read_energy",
    "find_zones",
    "permission_fix",
    "powercap_root",
]

logger = logging.getLogger(__name__)

BACKEND = "rapl"
POWERCAP_ROOT_ENV = "CARBONTRACK_POWERCAP_ROOT"
DEFAULT_POWERCAP_ROOT = "/sys/class/powercap"

#: The persistent fix for the root-only ``energy_uj`` files (kernels since the 2020 security fix).
UDEV_RULES_FILE = "/etc/udev/rules.d/powercap.rules"
UDEV_RULE = (
    'ACTION=="add|change", SUBSYSTEM=="powercap", KERNEL=="intel-rapl:*", '
    'RUN+="/bin/chmod og+r %S%p/energy_uj"'
)
UDEV_APPLY = "sudo udevadm control --reload && sudo udevadm trigger --subsystem-match=powercap"

# Zone directories: ``intel-rapl:<hex id>`` at the top, ``intel-rapl:<hex>:<hex>`` below.
# ``intel-rapl-mmio:*`` duplicates the package counters and never matches.
# Patterns, not compiled patterns: ``re`` compiles and caches each on first use, so a machine
# without RAPL never pays for them (docs/performance.md, "Start-up").
_ZONE_DIR = r"intel-rapl(?::[0-9a-f]+){1,2}"
_PACKAGE = r"package-(\d+)(-die-\d+)?"
_PSYS = r"psys(-\d+)?"
_COUNTER = rb"\s*(\d{1,20})\s*"


class Zone(typing.NamedTuple):
    """One powercap zone as found: ``zone_id`` (``intel-rapl:0:0``), ``name`` and directory."""

    zone_id: str
    name: str
    path: Path

    @property
    def top_id(self) -> str:
        """The id of the top-level zone this zone belongs to (itself when top-level)."""
        return ":".join(self.zone_id.split(":")[:2])

    @property
    def is_top(self) -> bool:
        """Whether the zone is a top-level zone (a package or psys)."""
        return self.zone_id.count(":") == 1

    @property
    def energy_file(self) -> Path:
        """The zone's cumulative counter file."""
        return self.path / "energy_uj"


class _Counter(typing.NamedTuple):
    # The Device.handle of a RAPL device: the file read at every tick and its wrap range.
    energy_file: str
    wrap_j: float | None


def powercap_root() -> Path:
    """The powercap directory: ``$CARBONTRACK_POWERCAP_ROOT`` or ``/sys/class/powercap``."""
    return Path(os.environ.get(POWERCAP_ROOT_ENV) or DEFAULT_POWERCAP_ROOT)


def _hex_key(zone_id: str) -> tuple[int, ...]:
    return tuple(int(part, 16) for part in zone_id.split(":")[1:])


def _zone_dirs(directory: Path) -> list[Path]:
    try:
        entries = sorted(os.listdir(directory))
    except OSError:
        return []
    return [directory / e for e in entries if re.fullmatch(_ZONE_DIR, e)]


def _candidates(root: Path) -> Iterable[Path]:
    # The flat symlinks first (their paths are the ones users know and chmod), then zones
    # nested in them and in the control-type directory, for roots that point at
    # /sys/devices/virtual/powercap or trees without flat links for sub-zones.
    flat = _zone_dirs(root)
    yield from flat
    for top in [*flat, *_zone_dirs(root / "intel-rapl")]:
        yield top
        yield from _zone_dirs(top)


def find_zones(root: Path | None = None) -> list[Zone]:
    """Every readable-by-name RAPL zone under ``root``, each once, ordered by id.

    Zones are deduplicated by their real path (the flat symlinks and the nested directories are
    the same zones). A zone whose ``name`` cannot be read (a dangling symlink in a container
    that masks ``/sys/devices/virtual/powercap``) is left out.
    """
    root = powercap_root() if root is None else root
    seen: set[str] = set()
    zones: list[Zone] = []
    for path in _candidates(root):
        real = os.path.realpath(path)
        if real in seen:
            continue
        seen.add(real)
        try:
            name = (path / "name").read_text().strip()
        except OSError as exc:
            logger.debug("rapl: skipping %s: %s", path, exc)
            continue
        zones.append(Zone(zone_id=path.name, name=name, path=path))
    return sorted(zones, key=lambda z: _hex_key(z.zone_id))


class _Wanted(typing.NamedTuple):
    zone: Zone
    device_id: str
    kind: str
    label: str


def _select(zones: Sequence[Zone], *, psys: bool) -> list[_Wanted]:
    packages: dict[str, Zone] = {}
    platforms: dict[str, Zone] = {}
    drams: dict[str, Zone] = {}
    for zone in zones:
        if zone.is_top and re.fullmatch(_PACKAGE, zone.name):
            packages.setdefault(zone.name, zone)  # one zone per name: duplicates are one counter
        elif zone.is_top and re.fullmatch(_PSYS, zone.name):
            platforms.setdefault(zone.name, zone)
        elif not zone.is_top and zone.name == "dram":
            drams.setdefault(zone.top_id, zone)
        # core/uncore lie inside their package; anything else is not an energy we sum.
    if psys and platforms:
        return [
            _Wanted(zone, name, "psys", f"platform ({name}, covers the CPU packages and DRAM)")
            for name, zone in platforms.items()
        ]
    if psys:
        logger.warning(
            "carbontrack: rapl_psys=True but this machine has no psys zone; measuring the CPU "
            "packages and DRAM instead"
        )
    wanted = []
    for name, zone in packages.items():
        socket = name.removeprefix("package-")
        wanted.append(_Wanted(zone, name, "cpu", f"CPU package {socket}"))
        dram = drams.get(zone.top_id)
        if dram is not None:
            wanted.append(_Wanted(dram, f"dram-{socket}", "dram", f"DRAM of package {socket}"))
    return wanted


def _read_counter_uj(path: Path | str) -> int:
    """Read a counter file; raises ``OSError`` or ``ValueError`` (naming the file) on failure."""
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.read(fd, 64)
    finally:
        os.close(fd)
    match = re.fullmatch(_COUNTER, data)
    if match is None:
        raise ValueError(f"{path} holds {data[:40]!r}, not a counter in µJ")
    return int(match.group(1))


def _drop_die_mirrors(wanted: list[_Wanted]) -> list[_Wanted]:
    # AMD multi-die parts show package-N-die-M zones that all read one socket counter (summing
    # them counts the socket several times): Zen 1/2 Threadripper/EPYC, and since kernel 6.10
    # (per-CCD dies from CPUID 0x80000026, upstream 26096aed255f) Zen 4 too, each die zone with
    # a ``core`` sub-zone ``:0`` of its own, which lies inside the package and is never summed.
    # Intel dies (Cascade Lake-AP) have counters of their own.
    # Mirrors read the same value when read back to back: a, b, a again catches an update
    # that lands between the reads (the hardware updates every ~1 ms).
    kept: list[_Wanted] = []
    for item in wanted:
        die = re.fullmatch(_PACKAGE, item.zone.name)
        if item.kind != "cpu" or die is None or die.group(2) is None:
            kept.append(item)
            continue
        socket = die.group(1)
        mirror_of = None
        for other in kept:
            other_die = re.fullmatch(_PACKAGE, other.zone.name)
            if other_die is None or other_die.group(1) != socket or other.kind != "cpu":
                continue
            try:
                a1 = _read_counter_uj(other.zone.energy_file)
                b = _read_counter_uj(item.zone.energy_file)
                a2 = _read_counter_uj(other.zone.energy_file)
            except (OSError, ValueError):
                continue
            if b in (a1, a2):
                mirror_of = other
                break
        if mirror_of is None:
            kept.append(item)
        else:
            logger.info(
                "rapl: %s mirrors %s (one socket counter shown per die); counted once",
                item.zone.name,
                mirror_of.zone.name,
            )
    return kept


def _counts_whole_joules(zone: Zone) -> bool:
    """Whether the zone counts in 1 J units (psys on Sapphire/Emerald Rapids reads values such
    as 60293987000000 µJ, intel/powertelemetry#3): its range and value are whole joules.

    The ranges of 15-61 µJ counters ((2^32 - 1) units, e.g. 262143328850) are not whole joules.
    """
    try:
        value = _read_counter_uj(zone.energy_file)
        range_uj = _read_counter_uj(zone.path / "max_energy_range_uj")
    except (OSError, ValueError):
        return False
    return range_uj > 0 and range_uj % 1_000_000 == 0 and value % 1_000_000 == 0


def _wrap_j(zone: Zone) -> float | None:
    path = zone.path / "max_energy_range_uj"
    try:
        range_uj = _read_counter_uj(path)
    except (OSError, ValueError) as exc:
        # Without the range a wrap looks like a reset: that interval is lost, nothing worse.
        logger.warning(
            "carbontrack: cannot read %s (%s); a wrap of %s will count as a reset",
            path,
            exc,
            zone.name,
        )
        return None
    if range_uj <= 0:
        # Seen on some firmware: a zero range would make every wrap "plausible" (or none).
        logger.warning(
            "carbontrack: %s reads %d, not a counter range; a wrap of %s will count as a reset "
            "(that interval measures nothing)",
            path,
            range_uj,
            zone.name,
        )
        return None
    return range_uj / 1e6


def permission_fix(files: Sequence[Path | str]) -> str:
    """The words a user needs to make ``files`` (``energy_uj`` counters) readable."""
    lines = ["Allow reading the RAPL counters until the next reboot:"]
    lines += [f"  sudo chmod +r {f}" for f in files]
    lines += [
        f"or for good, put this line in {UDEV_RULES_FILE}:",
        f"  {UDEV_RULE}",
        f"and apply it now: {UDEV_APPLY}",
    ]
    return "\n".join(lines)


def needed_by(settings: Settings) -> bool:
    """Whether discovery could find anything for a run with ``settings``: it measures the CPU
    or DRAM and the powercap tree has a RAPL zone (the host calls this backend only then)."""
    if not (settings.wants("cpu") or settings.wants("dram")):
        return False
    return next(iter(_candidates(powercap_root())), None) is not None


@hookimpl
def carbontrack_discover_devices(settings: Settings) -> list[Device | Unavailable]:
    """One ``cpu`` device per CPU package and one ``dram`` device per DRAM zone (or ``psys``).

    Returns ``[]`` when there is no powercap tree (VMs, containers, macOS) or when the run does
    not measure the CPU; an ``Unavailable`` with the fix when counters exist but are root-only.
    """
    if not (settings.wants("cpu") or settings.wants("dram")):
        return []
    root = powercap_root()
    wanted = [
        w for w in _select(find_zones(root), psys=settings.rapl_psys) if settings.wants(w.kind)
    ]
    devices: list[Device] = []
    denied: list[_Wanted] = []
    readable: list[_Wanted] = []
    for item in wanted:
        try:
            _read_counter_uj(item.zone.energy_file)
        except PermissionError:
            denied.append(item)
            continue
        except (OSError, ValueError) as exc:
            logger.warning("carbontrack: RAPL zone %s is not measured: %s", item.zone.name, exc)
            continue
        readable.append(item)
    for item in _drop_die_mirrors(readable):
        wrap_j = _wrap_j(item.zone)
        detail = f"{item.zone.zone_id} ({item.zone.path})"
        if wrap_j is not None:
            detail += f", wraps every {wrap_j:,.0f} J"
        else:
            detail += ", no usable max_energy_range_uj: a wrap counts as a reset"
        if _counts_whole_joules(item.zone):
            detail += (
                "; counts in whole joules (1 J units, as psys on Sapphire/Emerald Rapids): a "
                "window is up to 1 J off at each edge"
            )
        devices.append(
            Device(
                id=item.device_id,
                kind=item.kind,
                name=f"{item.label} (RAPL)",
                backend=BACKEND,
                method="counter",
                detail=detail,
                handle=_Counter(str(item.zone.energy_file), wrap_j),
            )
        )
    found: list[Device | Unavailable] = [*devices]
    if denied:
        files = [item.zone.energy_file for item in denied]
        names = ", ".join(item.label for item in denied)
        found.append(
            Unavailable(
                backend=BACKEND,
                kind="dram" if all(item.kind == "dram" for item in denied) else "cpu",
                reason=(
                    f"RAPL energy counters exist ({names}) but this user may not read them: "
                    "since the 2020 security fix (CVE-2020-8694) energy_uj is readable by "
                    "root only"
                ),
                fix=permission_fix(files),
            )
        )
    return found


@hookimpl
def carbontrack_read_energy(devices: Sequence[Device]) -> list[Reading]:
    """Read every device's ``energy_uj`` once; a failed read names its file in ``error``."""
    readings = []
    for device in devices:
        counter: _Counter = device.handle
        path = counter.energy_file
        try:
            uj = _read_counter_uj(path)
        except FileNotFoundError:
            readings.append(Reading(device.id, error=f"{path} vanished (zone removed?)"))
        except PermissionError:
            readings.append(Reading(device.id, error=f"{path} is no longer readable"))
        except OSError as exc:
            readings.append(Reading(device.id, error=f"{path}: {exc.strerror or exc}"))
        except ValueError as exc:
            readings.append(Reading(device.id, error=str(exc)))
        else:
            if counter.wrap_j is not None and uj / 1e6 > counter.wrap_j:
                # The kernel wraps energy_uj at max_energy_range_uj: a larger value is garbage.
                readings.append(
                    Reading(
                        device.id,
                        error=f"{path} reads {uj}, above max_energy_range_uj "
                        f"({counter.wrap_j * 1e6:.0f})",
                    )
                )
                continue
            readings.append(Reading(device.id, joules=uj / 1e6, wrap_j=counter.wrap_j))
    return readings
