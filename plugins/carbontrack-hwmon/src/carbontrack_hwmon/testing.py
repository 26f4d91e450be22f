"""A fake hwmon sysfs tree, for this plugin's tests and for yours.

``FakeHwmonTree(tmp_path)`` writes ``hwmonN`` directories with ``name``, ``*_label``,
``energyN_input`` (µJ) and ``powerN_average``/``powerN_input`` (µW) files, and ``advance()``
moves every sensor forward at its watts, so tests know the exact energy drawn. Point the plugin
at it with ``tree.environ`` (``$CARBONTRACK_HWMON_ROOT``). The figures are simulated: they must
never be reported as measurements of a real machine.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from carbontrack_hwmon._sensors import POWERCAP_ENV, ROOT_ENV

__all__ = ["FakeChip", "FakeHwmonTree", "FakeSensor"]


class FakeSensor:
    """One fake sensor file: an energy counter (µJ) or a power reading (µW) at ``watts``."""

    def __init__(self, path: Path, *, energy: bool, watts: float, start_uj: int = 0) -> None:
        self.path = path
        self.energy = energy
        self.watts = watts
        #: The energy this sensor's hardware drew since the tree was built, in joules.
        self.true_j = 0.0
        self._uj = start_uj
        self._write()

    def _write(self) -> None:
        value = self._uj if self.energy else round(self.watts * 1e6)
        self.path.write_text(f"{value}\n")

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass at ``watts``: counters grow, power files show ``watts``."""
        self.true_j += self.watts * seconds
        self._uj += round(self.watts * seconds * 1e6)
        self._write()

    def reset(self) -> None:
        """Restart the counter from zero, as after a driver reload."""
        self._uj = 0
        self._write()

    def write_raw(self, text: str) -> None:
        """Put arbitrary content in the file (garbage, an empty string) to test faults."""
        self.path.write_text(text)

    def remove(self) -> None:
        """Delete the file, as when a device disappears mid-run."""
        self.path.unlink()

    def make_unreadable(self) -> None:
        """Remove every read permission (has no effect for root, who reads anyway)."""
        self.path.chmod(0)


class FakeChip:
    """One ``hwmonN`` directory; sensors go in it or, with ``in_device``, in ``device/``."""

    def __init__(self, path: Path, driver: str, *, in_device: bool = False) -> None:
        self.path = path
        self.driver = driver
        self.sensors: list[FakeSensor] = []
        self._attrs = path / "device" if in_device else path
        self._attrs.mkdir(parents=True, exist_ok=True)
        (path / "name").write_text(f"{driver}\n")

    def _extra(self, name: str, value: str | None) -> None:
        if value is not None:
            (self._attrs / name).write_text(f"{value}\n")

    def energy(
        self, index: int, watts: float, *, label: str | None = None, start_uj: int = 0
    ) -> FakeSensor:
        """Add ``energy<index>_input``, a µJ counter advancing at ``watts``."""
        self._extra(f"energy{index}_label", label)
        sensor = FakeSensor(
            self._attrs / f"energy{index}_input", energy=True, watts=watts, start_uj=start_uj
        )
        self.sensors.append(sensor)
        return sensor

    def power(
        self,
        index: int,
        watts: float,
        *,
        label: str | None = None,
        oem_info: str | None = None,
        average: bool = True,
    ) -> FakeSensor:
        """Add ``power<index>_average`` (or ``_input``) showing ``watts`` in µW."""
        self._extra(f"power{index}_label", label)
        self._extra(f"power{index}_oem_info", oem_info)
        flavour = "average" if average else "input"
        sensor = FakeSensor(self._attrs / f"power{index}_{flavour}", energy=False, watts=watts)
        self.sensors.append(sensor)
        return sensor


class FakeHwmonTree:
    """A fake ``/sys/class/hwmon`` under ``root``, with builders for common machines."""

    def __init__(self, root: str | os.PathLike[str], *, powercap_root: Path | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        #: The powercap tree the plugin checks for RAPL counters (which ``amd_energy``
        #: duplicates): by default an empty folder beside ``root``, so there are none; pass
        #: ``carbontrack.testing.powercap.FakePowercap(...).root`` to test both together.
        self.powercap_root = powercap_root or self.root.parent / "powercap"
        self.chips: list[FakeChip] = []

    @property
    def environ(self) -> dict[str, str]:
        """The variables that point the plugin at this tree and at ``powercap_root``."""
        return {ROOT_ENV: str(self.root), POWERCAP_ENV: str(self.powercap_root)}

    @contextlib.contextmanager
    def activated(self) -> Iterator[FakeHwmonTree]:
        """Set ``environ`` in ``os.environ`` for the ``with`` block (tests: use monkeypatch)."""
        saved = {k: os.environ.get(k) for k in self.environ}
        os.environ.update(self.environ)
        try:
            yield self
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def add_chip(self, driver: str, *, in_device: bool = False) -> FakeChip:
        """Add ``hwmon<N>`` for ``driver`` (N counts up from 0)."""
        chip = FakeChip(self.root / f"hwmon{len(self.chips)}", driver, in_device=in_device)
        self.chips.append(chip)
        return chip

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass on every sensor of every chip."""
        for chip in self.chips:
            for sensor in chip.sensors:
                sensor.advance(seconds)

    # -- machines --------------------------------------------------------------------------

    def add_amd_energy(
        self, sockets: int = 1, cores_per_socket: int = 2, socket_w: float = 80.0
    ) -> FakeChip:
        """An ``amd_energy`` chip: per-core counters (``Ecore000``...) and, after them, one
        counter per socket (``Esocket0``...) that already contains its cores."""
        chip = self.add_chip("amd_energy")
        cores = sockets * cores_per_socket
        for core in range(cores):
            chip.energy(core + 1, socket_w / cores_per_socket / 2, label=f"Ecore{core:03d}")
        for socket in range(sockets):
            chip.energy(cores + socket + 1, socket_w, label=f"Esocket{socket}")
        return chip

    def add_grace(
        self,
        sockets: int = 1,
        *,
        module_w: float | None = 600.0,
        grace_w: float | None = 250.0,
        cpu_w: float = 180.0,
        sysio_w: float = 40.0,
    ) -> list[FakeChip]:
        """NVIDIA Grace / GH200 ACPI power meters, one chip each, attributes under ``device/``
        as on real machines: Module ⊇ Grace ⊇ CPU + SysIO per socket (``None`` leaves one out).
        """
        parts = {"Module": module_w, "Grace": grace_w, "CPU": cpu_w, "SysIO": sysio_w}
        chips = []
        for socket in range(sockets):
            for part, watts in parts.items():
                if watts is None:
                    continue
                chip = self.add_chip("power_meter", in_device=True)
                chip.power(1, watts, oem_info=f"{part} Power Socket {socket}")
                chips.append(chip)
        return chips

    def add_psu(self, pin_w: float = 450.0, pout_w: float = 410.0) -> FakeChip:
        """A PMBus power supply: input (``pin``) and output (``pout1``) power."""
        chip = self.add_chip("pmbus")
        chip.power(1, pin_w, label="pin", average=False)
        chip.power(2, pout_w, label="pout1", average=False)
        return chip

    def add_amdgpu(self, watts: float = 120.0) -> FakeChip:
        """An ``amdgpu`` chip with ``power1_average``."""
        chip = self.add_chip("amdgpu")
        chip.power(1, watts)
        return chip

    def add_rapl_package(self) -> Path:
        """A readable RAPL package counter in ``powercap_root`` (just enough for the check)."""
        zone = self.powercap_root / "intel-rapl:0"
        zone.mkdir(parents=True, exist_ok=True)
        (zone / "energy_uj").write_text("0\n")
        return zone / "energy_uj"
