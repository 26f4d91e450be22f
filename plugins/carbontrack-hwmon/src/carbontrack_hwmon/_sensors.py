"""Finding hwmon energy and power sensors, and choosing a set that counts no watt twice.

Every hwmon chip is ``<root>/hwmonN`` with a ``name`` (the driver) and attribute files there or
under ``hwmonN/device/``. Units: ``energyN_input`` µJ (a counter), ``powerN_input`` and
``powerN_average`` µW (instantaneous or averaged power).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from typing import Literal, NamedTuple

__all__ = [
    "DEFAULT_ROOT",
    "INCLUDE_ENV",
    "POWERCAP_ENV",
    "PSU_DRIVERS",
    "ROOT_ENV",
    "Chip",
    "Sensor",
    "choose_sensors",
    "hwmon_root",
    "scan",
]

logger = logging.getLogger(__name__)

DEFAULT_ROOT = "/sys/class/hwmon"
#: Points the plugin at another hwmon tree (a fake one in tests).
ROOT_ENV = "CARBONTRACK_HWMON_ROOT"
#: Comma list of opt-in sensor groups: ``system`` (whole-machine meters), ``amdgpu``, or the
#: name of any other driver; the same as ``plugin_options={"hwmon": {"include": [...]}}``.
INCLUDE_ENV = "CARBONTRACK_HWMON_INCLUDE"
#: Where the RAPL counters are, to know whether ``amd_energy`` would duplicate them.
POWERCAP_ENV = "CARBONTRACK_POWERCAP_ROOT"
DEFAULT_POWERCAP_ROOT = "/sys/class/powercap"
#: carbontrack's block list: a disabled ``rapl`` backend measures nothing that amd_energy repeats.
DISABLE_ENV = "CARBONTRACK_DISABLE_PLUGINS"

_PSU_NAMES = ("pmbus", "dps920ab", "ibm-cffps", "fsp-3y", "bel-pfe", "ipsps", "acbel-fsg032")
#: Power-supply drivers (PMBus family) whose ``pin`` sensor is the PSU's input power; newer
#: kernels write hwmon names with ``_`` where the driver's name has ``-``, so both are listed.
PSU_DRIVERS = frozenset(n for name in _PSU_NAMES for n in (name, name.replace("-", "_")))

#: carbontrack's built-in backends that measure (or estimate) parts of the machine.
_INSIDE_THE_MACHINE = ("rapl", "nvml", "powermetrics", "estimate")

# Patterns, not compiled patterns, and named tuples below, not attrs classes: the plugin loads
# with every carbontrack run, mostly on machines without these sensors, where compiling and
# generating classes at import would be most of its start-up cost.
_ATTR = r"^(energy|power)(\d+)_(input|average)$"
_GRACE = r"^(Module|Grace|CPU|SysIO) Power Socket (\d+)$"

Method = Literal["counter", "power"]


def hwmon_root() -> Path:
    """The hwmon class directory: ``$CARBONTRACK_HWMON_ROOT`` or ``/sys/class/hwmon``."""
    return Path(os.environ.get(ROOT_ENV) or DEFAULT_ROOT)


class Chip(NamedTuple):
    """One ``hwmonN`` directory: its driver name and its attribute files by name."""

    path: Path
    driver: str
    files: dict[str, Path]

    def text(self, name: str) -> str | None:
        """The stripped content of attribute ``name``, or ``None`` when absent or unreadable."""
        path = self.files.get(name)
        if path is None:
            return None
        try:
            return path.read_text().strip()
        except OSError:
            return None


class Sensor(NamedTuple):
    """A sensor chosen for measuring: the file to read and what it measures."""

    id: str
    kind: str
    name: str
    method: Method
    path: Path
    driver: str


def scan(root: Path) -> list[Chip]:
    """Every chip under ``root``, in name order; attributes in ``chip/`` win over ``device/``."""
    if not root.is_dir():
        return []
    chips = []
    for chip_dir in sorted(root.iterdir(), key=lambda p: p.name):
        files: dict[str, Path] = {}
        for folder in (chip_dir / "device", chip_dir):
            if folder.is_dir():
                files.update({p.name: p for p in folder.iterdir() if p.is_file()})
        name_file = files.get("name")
        try:
            driver = name_file.read_text().strip() if name_file else ""
        except OSError:
            driver = ""
        chips.append(Chip(path=chip_dir, driver=driver, files=files))
    return chips


def _indexed(chip: Chip, family: str) -> dict[int, Path]:
    """``{N: file}`` of a chip's energy or power inputs; ``powerN_average`` beats ``_input``."""
    found: dict[int, tuple[str, Path]] = {}
    for name, path in chip.files.items():
        m = re.match(_ATTR, name)
        if m is None or m.group(1) != family:
            continue
        index, flavour = int(m.group(2)), m.group(3)
        # An averaged power is smoother to integrate than one instantaneous value.
        if index not in found or flavour == "average":
            found[index] = (flavour, path)
    return {i: p for i, (_f, p) in sorted(found.items())}


def _sensor(chip: Chip, family: str, path: Path, kind: str, label: str) -> Sensor:
    method: Method = "counter" if family == "energy" else "power"
    return Sensor(
        id=f"{chip.path.name}-{path.name.removesuffix('_input').removesuffix('_average')}",
        kind=kind,
        name=f"{chip.driver} {label}".strip(),
        method=method,
        path=path,
        driver=chip.driver,
    )


def _label(chip: Chip, family: str, index: int) -> str:
    return chip.text(f"{family}{index}_label") or f"{family}{index}"


def _disabled() -> frozenset[str]:
    """The plugins blocked by carbontrack's ``CARBONTRACK_DISABLE_PLUGINS``."""
    return frozenset(n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip())


def _rapl_measures() -> bool:
    """Whether carbontrack's ``rapl`` backend reads the package counters in this run."""
    if "rapl" in _disabled():
        return False  # readable counters that nobody reads measure nothing
    root = Path(os.environ.get(POWERCAP_ENV) or DEFAULT_POWERCAP_ROOT)
    if not root.is_dir():
        return False
    return any(os.access(p, os.R_OK) for p in root.glob("intel-rapl:*/energy_uj"))


def _amd_energy(chip: Chip) -> Iterator[Sensor]:
    # Per-core counters (Ecore000...) lie inside the socket counters (Esocket0...).
    for index, path in _indexed(chip, "energy").items():
        label = _label(chip, "energy", index)
        if label.startswith("Esocket"):
            yield _sensor(chip, "energy", path, "cpu", label)


def _grace(chips: Iterable[Chip]) -> Iterator[Sensor]:
    """NVIDIA Grace ACPI power meters: per socket, Grace if present, else CPU + SysIO.

    Module ⊇ Grace ⊇ CPU + SysIO. The Module meter also covers the Hopper GPU and its HBM,
    which the GPU backend measures, so it is never taken.
    """
    by_socket: dict[int, dict[str, Sensor]] = {}
    for chip in chips:
        for index, path in _indexed(chip, "power").items():
            m = re.match(_GRACE, chip.text(f"power{index}_oem_info") or "")
            if m is None:
                continue
            part, socket = m.group(1), int(m.group(2))
            sensor = _sensor(chip, "power", path, "cpu", m.group(0))
            by_socket.setdefault(socket, {})[part] = sensor
    for _socket, parts in sorted(by_socket.items()):
        if "Grace" in parts:
            yield parts["Grace"]
        else:
            yield from (parts[p] for p in ("CPU", "SysIO") if p in parts)


def _is_grace(chip: Chip) -> bool:
    return any(name.endswith("_oem_info") for name in chip.files)


def _system(chips: list[Chip]) -> Iterator[Sensor]:
    """Whole-machine meters: every PSU's input power, else the ACPI platform power meters."""
    psus = [c for c in chips if c.driver in PSU_DRIVERS]
    for chip in psus:
        for index, path in _indexed(chip, "power").items():
            label = _label(chip, "power", index)
            if label == "pin":  # the PSU's input; "pout" is inside it
                yield _sensor(chip, "power", path, "system", label)
    if psus:
        return
    for chip in chips:
        if chip.driver == "power_meter" and not _is_grace(chip):
            for index, path in _indexed(chip, "power").items():
                yield _sensor(chip, "power", path, "system", _label(chip, "power", index))


def _generic(chip: Chip, kind: str) -> Iterator[Sensor]:
    # A driver's energy counters beat its power sensors; taking both would count twice.
    energy = _indexed(chip, "energy")
    family, found = ("energy", energy) if energy else ("power", _indexed(chip, "power"))
    for index, path in found.items():
        yield _sensor(chip, family, path, kind, _label(chip, family, index))


def choose_sensors(chips: list[Chip], include: Collection[str] = ()) -> list[Sensor]:
    """The sensors to measure, disjoint from each other and from the built-in backends.

    By default: ``amd_energy`` socket counters (only when the RAPL package counters, which
    hold the same figure, cannot be read or the ``rapl`` backend is disabled) and NVIDIA Grace
    power meters. ``include`` adds ``amd_energy`` anyway (with a warning while ``rapl`` counts
    the sockets too), ``amdgpu`` (GPU power; the APU figure contains the CPU), any other driver
    by name, or
    ``system``: whole-machine meters (PSU inputs, ACPI power meters), which then replace
    everything else this plugin would report, since they contain it.
    """
    if "system" in include:
        meters = list(_system(chips))
        active = [name for name in _INSIDE_THE_MACHINE if name not in _disabled()]
        if meters and active:
            logger.warning(
                "hwmon: the whole-machine meters hold what %s also report%s, so that energy "
                "counts twice; measure with the meters alone: "
                "CARBONTRACK_DISABLE_PLUGINS=rapl,nvml,powermetrics,estimate,amdsmi",
                ", ".join(active),
                "s" if len(active) == 1 else "",
            )
        return meters
    chosen: list[Sensor] = []
    if any(c.driver == "amd_energy" for c in chips):
        rapl = _rapl_measures()
        if "amd_energy" in include and rapl:
            logger.warning(
                "hwmon: amd_energy is included although the rapl backend measures the same "
                "sockets, so the CPU counts twice; set CARBONTRACK_DISABLE_PLUGINS=rapl to "
                "measure through amd_energy alone"
            )
        if "amd_energy" in include or not rapl:
            for chip in chips:
                if chip.driver == "amd_energy":
                    chosen.extend(_amd_energy(chip))
        else:
            logger.info("hwmon: amd_energy skipped, the RAPL counters measure the same sockets")
    chosen.extend(_grace(c for c in chips if c.driver == "power_meter" and _is_grace(c)))
    for chip in chips:
        if chip.driver == "amdgpu" and "amdgpu" in include:
            chosen.extend(_generic(chip, "gpu"))
        elif chip.driver not in {"amd_energy", "power_meter", "amdgpu"} and chip.driver in include:
            chosen.extend(_generic(chip, "other"))
    return chosen
