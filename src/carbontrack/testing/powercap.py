"""A fake Linux powercap (RAPL) sysfs tree in a directory, for tests of the ``rapl`` backend.

``FakePowercap`` lays out zones as the kernel does (flat ``class/powercap/intel-rapl:N``
symlinks into ``devices/virtual/powercap``) and writes ``energy_uj`` counters that advance at
given watts against a clock the test controls, wrap at ``max_energy_range_uj``, and can be made
unreadable, garbled, reset or removed mid-run. Point ``$CARBONTRACK_POWERCAP_ROOT`` at ``.root``.
Its figures are simulated: never report them as measured.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import attrs

from carbontrack.testing import integrate_j

__all__ = [
    "AMD_RANGE_UJ",
    "DRAM_RANGE_UJ",
    "PACKAGE_RANGE_UJ",
    "PSYS_1J_RANGE_UJ",
    "FakePackage",
    "FakePowercap",
    "FakeZone",
    "amd_zen",
    "laptop_with_psys",
    "sapphire_rapids",
    "two_socket_server",
]

#: ``max_energy_range_uj`` values seen on real machines (reference: hardware notes, section 1.5):
#: an Intel package with the 61 µJ energy unit, Intel server DRAM (fixed 15.3 µJ unit), and the
#: 15.26 µJ unit of AMD packages.
PACKAGE_RANGE_UJ = 262_143_328_850
#: Intel server DRAM's ``max_energy_range_uj`` (see ``PACKAGE_RANGE_UJ``).
DRAM_RANGE_UJ = 65_712_999_613
#: An AMD package's ``max_energy_range_uj`` (see ``PACKAGE_RANGE_UJ``).
AMD_RANGE_UJ = 65_532_610_987
#: psys on Sapphire/Emerald Rapids counts in 1 J units (a real reading: 60293987000000 µJ,
#: intel/powertelemetry#3): a 32-bit counter of 1 J steps.
PSYS_1J_RANGE_UJ = (2**32 - 1) * 1_000_000

# File modes as upstream kernels create them; ``energy_uj`` is 0400 root since the 2020 fix.
# The fake's default (0444) is what a machine looks like after the udev rule; ``unreadable()``
# sets 000, which denies every user but root (a root-owned 0400 file would not deny its owner
# when tests run as an ordinary user).
_READABLE = 0o444
_UNREADABLE = 0o000

Watts = float | Callable[[float], float]


class _Clock(Protocol):
    def __call__(self) -> float: ...


class _AdvancingClock(_Clock, Protocol):
    def advance(self, seconds: float) -> None: ...


@attrs.define(eq=False)
class FakeZone:
    """One powercap zone: its directory, name, power draw and counter state.

    ``watts`` is constant power or a function of the seconds since the tree was made.
    ``true_j`` is the exact energy drawn so far (the truth to compare a measurement with).
    ``mirror_of`` makes this zone show another zone's counter (MMIO duplicates, AMD die mirrors);
    such a zone draws nothing of its own.
    """

    tree: FakePowercap = attrs.field(repr=False)
    zone_id: str
    name: str
    directory: Path
    watts: Watts = 0.0
    range_uj: int = PACKAGE_RANGE_UJ
    mirror_of: FakeZone | None = attrs.field(default=None, repr=False)
    unit_uj: int = 1
    true_j: float = attrs.field(default=0.0, init=False)
    _counter_j: float = attrs.field(default=0.0, init=False)
    _start_uj: int = attrs.field(default=0, init=False)
    _state: str = attrs.field(default="ok", init=False)
    _garbage: str = attrs.field(default="", init=False)
    _fixed_uj: int | None = attrs.field(default=None, init=False)

    @property
    def energy_file(self) -> Path:
        """The zone's ``energy_uj`` file, through the flat ``class/powercap`` symlink."""
        return self.tree.root / self.zone_id / "energy_uj"

    @property
    def counter_uj(self) -> int:
        """The value the ``energy_uj`` file shows now (wrapped into ``[0, range_uj]``)."""
        if self.mirror_of is not None:
            return self.mirror_of.counter_uj
        if self._fixed_uj is not None:
            return self._fixed_uj
        # Hardware counts in energy units and wraps after range + one unit. 1 µJ stands in for
        # the small units (15-61 µJ); a coarse unit (psys: 1 J) shows as steps of that size.
        raw = int(self._start_uj + self._counter_j * 1e6)
        raw -= raw % self.unit_uj
        return raw % (self.range_uj + self.unit_uj)

    def power_at(self, elapsed_s: float) -> float:
        """The zone's power ``elapsed_s`` seconds after the tree was made."""
        return float(self.watts(elapsed_s)) if callable(self.watts) else float(self.watts)

    def start_at(self, counter_uj: int) -> None:
        """Make the counter show ``counter_uj`` now (counters start anywhere)."""
        self._start_uj = counter_uj
        self._counter_j = 0.0
        self._write()

    def set_counter(self, counter_uj: int | None) -> None:
        """Pin the file to a raw value (a scripted sequence); ``None`` returns to the physics."""
        self._fixed_uj = counter_uj
        self._write()

    def reset(self) -> None:
        """Restart the counter from 0, as after a driver reload (the energy drawn goes on)."""
        self.start_at(0)

    def unreadable(self) -> None:
        """Make ``energy_uj`` unreadable (permission denied for every user but root).

        Root reads any file whatever its mode: a test running as root must drop privileges
        (``os.seteuid`` to an unprivileged uid) around the reads to see the denial.
        """
        self._state = "unreadable"
        self._write()

    def readable(self) -> None:
        """Make ``energy_uj`` readable again and up to date."""
        self._state = "ok"
        self._write()

    def garble(self, text: str = "\x00\x00garbage\n") -> None:
        """Put ``text`` instead of a number in ``energy_uj`` (until ``readable()``)."""
        self._state = "garbage"
        self._garbage = text
        self._write()

    def vanish(self) -> None:
        """Remove ``energy_uj``, as when a zone is unregistered mid-run."""
        self._state = "vanished"
        (self.directory / "energy_uj").unlink(missing_ok=True)

    def _advance(self, t0: float, t1: float) -> None:
        if self.mirror_of is not None:
            return
        energy = integrate_j(self.watts, t0, t1)
        self.true_j += energy
        self._counter_j += energy

    def _write(self) -> None:
        if self._state == "vanished":
            return
        text = self._garbage if self._state == "garbage" else f"{self.counter_uj}\n"
        mode = _UNREADABLE if self._state == "unreadable" else _READABLE
        _atomic_write(self.directory / "energy_uj", text, mode)


@attrs.frozen
class FakePackage:
    """A socket: its ``package`` zone and the sub-zones it was given (``None`` when absent)."""

    package: FakeZone
    dram: FakeZone | None = None
    core: FakeZone | None = None
    uncore: FakeZone | None = None

    @property
    def zones(self) -> tuple[FakeZone, ...]:
        """The package zone and its sub-zones."""
        return tuple(z for z in (self.package, self.core, self.uncore, self.dram) if z)


class FakePowercap:
    """A powercap tree under ``base`` whose counters follow ``clock``.

    ``root`` (``base/class/powercap``) is what ``$CARBONTRACK_POWERCAP_ROOT`` points at.
    ``advance(seconds)`` moves the clock (a ``FakeClock`` is made when none is given) and
    rewrites every counter; with another clock call ``sync()`` before the reads that matter.
    Zones get ids in registration order, printed in hex as the kernel does.
    """

    def __init__(self, base: str | os.PathLike[str], *, clock: _Clock | None = None) -> None:
        if clock is None:
            from carbontrack.testing import FakeClock

            clock = FakeClock()
        self.clock = clock
        self.base = Path(base)
        self.root = self.base / "class" / "powercap"
        self.devices_dir = self.base / "devices" / "virtual" / "powercap"
        self.root.mkdir(parents=True, exist_ok=True)
        self.zones: list[FakeZone] = []
        self._next_top: dict[str, int] = {}
        self._next_sub: dict[str, int] = {}
        self._t0 = clock()
        self._last_t = self._t0
        #: The longest time between two syncs while ``live()`` ran: a counter read then was at
        #: most this old (plus one file write). A test's tolerance for a reader's energy over a
        #: window can add ``watts * max_staleness_s`` (one edge may be stale, the other not).
        self.max_staleness_s = 0.0

    # -- building ----------------------------------------------------------------------------

    def _control_dir(self, control: str) -> Path:
        directory = self.devices_dir / control
        if not directory.is_dir():
            directory.mkdir(parents=True)
            (directory / "enabled").write_text("1\n")
            _symlink(self.root / control, directory)
        return directory

    def add_zone(
        self,
        name: str,
        *,
        watts: Watts = 0.0,
        parent: FakeZone | None = None,
        control: str = "intel-rapl",
        range_uj: int = PACKAGE_RANGE_UJ,
        start_uj: int = 0,
        mirror_of: FakeZone | None = None,
        limits: bool = True,
        unit_uj: int = 1,
    ) -> FakeZone:
        """Register one zone (top-level, or a sub-zone of ``parent``) and write its files."""
        if parent is None:
            index = self._next_top.get(control, 0)
            self._next_top[control] = index + 1
            zone_id = f"{control}:{index:x}"
            directory = self._control_dir(control) / zone_id
        else:
            index = self._next_sub.get(parent.zone_id, 0)
            self._next_sub[parent.zone_id] = index + 1
            zone_id = f"{parent.zone_id}:{index:x}"
            directory = parent.directory / zone_id
        directory.mkdir()
        _symlink(self.root / zone_id, directory)
        (directory / "name").write_text(f"{name}\n")
        (directory / "max_energy_range_uj").write_text(f"{range_uj}\n")
        (directory / "enabled").write_text("1\n")
        if limits:  # Intel zones have power limits; AMD's have none
            (directory / "constraint_0_name").write_text("long_term\n")
            (directory / "constraint_0_power_limit_uw").write_text("125000000\n")
            (directory / "constraint_0_time_window_us").write_text("27983872\n")
        zone = FakeZone(
            tree=self,
            zone_id=zone_id,
            name=name,
            directory=directory,
            watts=watts,
            range_uj=range_uj,
            mirror_of=mirror_of,
            unit_uj=unit_uj,
        )
        self.zones.append(zone)
        zone.start_at(start_uj)
        return zone

    def add_package(
        self,
        socket: int,
        watts: Watts,
        *,
        dram_watts: Watts | None = None,
        core_watts: Watts | None = None,
        uncore_watts: Watts | None = None,
        die: int | None = None,
        range_uj: int = PACKAGE_RANGE_UJ,
        dram_range_uj: int = DRAM_RANGE_UJ,
        start_uj: int = 0,
        limits: bool = True,
    ) -> FakePackage:
        """Register ``package-<socket>`` (``-die-<die>``) and its sub-zones, kernel order.

        Sub-zones are made only for the watts given: ``core`` then ``uncore`` then ``dram``.
        ``core``/``uncore`` lie inside the package (their watts are part of ``watts``).
        """
        name = f"package-{socket}" if die is None else f"package-{socket}-die-{die}"
        package = self.add_zone(
            name, watts=watts, range_uj=range_uj, start_uj=start_uj, limits=limits
        )
        sub: dict[str, FakeZone] = {}
        for sub_name, sub_watts, sub_range in (
            ("core", core_watts, range_uj),
            ("uncore", uncore_watts, range_uj),
            ("dram", dram_watts, dram_range_uj),
        ):
            if sub_watts is not None:
                sub[sub_name] = self.add_zone(
                    sub_name, watts=sub_watts, parent=package, range_uj=sub_range, limits=limits
                )
        return FakePackage(package=package, **sub)

    def add_psys(
        self,
        watts: Watts,
        *,
        name: str = "psys",
        range_uj: int = PACKAGE_RANGE_UJ,
        unit_uj: int = 1,
        start_uj: int = 0,
    ) -> FakeZone:
        """Register a platform (``psys``) zone: a separate top-level zone covering the SoC.

        ``unit_uj=1_000_000`` (with ``range_uj=PSYS_1J_RANGE_UJ``) is Sapphire/Emerald
        Rapids' psys, which counts whole joules.
        """
        return self.add_zone(
            name, watts=watts, range_uj=range_uj, unit_uj=unit_uj, start_uj=start_uj
        )

    def add_mmio_duplicate(self, of: FakeZone) -> FakeZone:
        """Register ``intel-rapl-mmio:N`` showing ``of``'s counter, as recent Intel laptops do."""
        return self.add_zone(of.name, control="intel-rapl-mmio", range_uj=of.range_uj, mirror_of=of)

    # -- running -----------------------------------------------------------------------------

    def sync(self, *, write: bool = True) -> None:
        """Advance every counter to the clock's current time and rewrite the files.

        ``write=False`` moves the counters in memory only: several power steps between two
        reads cost one write per file.
        """
        now = self.clock()
        for zone in self.zones:
            zone._advance(self._last_t - self._t0, now - self._t0)
        self._last_t = now
        if write:
            for zone in self.zones:
                zone._write()

    def advance(self, seconds: float, *, write: bool = True) -> None:
        """Move the clock forward by ``seconds`` (it must have ``advance``) and sync."""
        clock: _AdvancingClock = self.clock  # type: ignore[assignment]
        clock.advance(seconds)
        self.sync(write=write)

    @contextlib.contextmanager
    def live(self, interval_s: float = 0.002) -> Iterator[FakePowercap]:
        """Advance the counters in real time while the block runs, as the kernel does.

        For tests where other processes read the tree: a thread calls ``sync()`` every
        ``interval_s`` (the tree's clock must be a real one, such as ``time.monotonic``), so a
        reader sees energy at most ``interval_s`` old.
        """
        stop = threading.Event()
        # When the files last held the counters' current values (a sync's writes completed).
        written = [0.0]

        def run() -> None:
            _raise_priority()
            while not stop.wait(interval_s):
                self.sync()
                self.max_staleness_s = max(self.max_staleness_s, self._last_t - written[0])
                written[0] = self._last_t

        self.sync()
        written[0] = self._last_t
        thread = threading.Thread(target=run, name="fake-powercap-live", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            # The readers' last reads came before this point: a sync that stalled then (a write
            # held up by the disk, a starved thread) left them counters this old, although the
            # loop never gets to record it (CI saw a counter 1.1 s stale under heavy I/O).
            self.max_staleness_s = max(self.max_staleness_s, self.clock() - written[0])
            stop.set()
            thread.join(5)
            self.sync()

    def mask(self) -> None:
        """Hide ``devices/virtual/powercap`` as container runtimes do: the symlinks dangle."""
        shutil.rmtree(self.devices_dir)
        self.zones.clear()

    def zone(self, name: str) -> FakeZone:
        """The first zone called ``name`` (``package-0``, ``psys``...)."""
        for zone in self.zones:
            if zone.name == name:
                return zone
        raise KeyError(f"no zone named {name!r}; zones: {[z.name for z in self.zones]}")

    def __iter__(self) -> Iterator[FakeZone]:
        return iter(self.zones)

    def __repr__(self) -> str:
        return f"FakePowercap({str(self.root)!r}, zones={[z.zone_id for z in self.zones]!r})"


def _raise_priority() -> None:
    # The kernel's counters are never stale; a fake's thread starved by a busy machine would be
    # (tens of ms, a few % of a short test run). Ask for real-time scheduling for this thread
    # where allowed (root on Linux), else a better nice value, else carry on as is.
    tid = threading.get_native_id()
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(1))
        return
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, tid, -10)


def _symlink(link: Path, target: Path) -> None:
    link.symlink_to(os.path.relpath(target, link.parent))


def _atomic_write(path: Path, text: str, mode: int) -> None:
    # Readers (the sampler thread) must see the old or the new value, never a half-written file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".energy_uj.")
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


# -- machines ----------------------------------------------------------------------------------


def two_socket_server(
    base: str | os.PathLike[str],
    *,
    clock: _Clock | None = None,
    watts: tuple[Watts, Watts] = (120.0, 110.0),
    dram_watts: tuple[Watts, Watts] = (14.0, 12.0),
) -> FakePowercap:
    """A two-socket Xeon: ``intel-rapl:N`` = ``package-N`` with ``intel-rapl:N:0`` = ``dram``."""
    tree = FakePowercap(base, clock=clock)
    for socket in (0, 1):
        tree.add_package(
            socket,
            watts[socket],
            dram_watts=dram_watts[socket],
            start_uj=48_213_377_291 + 7_000_000_000 * socket,
        )
    return tree


def laptop_with_psys(
    base: str | os.PathLike[str],
    *,
    clock: _Clock | None = None,
    package_watts: Watts = 3.8,
    core_watts: Watts = 0.8,
    uncore_watts: Watts = 0.2,
    psys_watts: Watts = 9.6,
) -> FakePowercap:
    """An Intel laptop: package-0 (core, uncore), psys, and an ``intel-rapl-mmio`` duplicate.

    The default watts are the real case where summing every zone gave 14.4 W for ~9.6 W.
    """
    tree = FakePowercap(base, clock=clock)
    package = tree.add_package(
        0, package_watts, core_watts=core_watts, uncore_watts=uncore_watts, start_uj=1_234_567
    )
    tree.add_psys(psys_watts)
    tree.add_mmio_duplicate(package.package)
    return tree


def amd_zen(
    base: str | os.PathLike[str],
    *,
    clock: _Clock | None = None,
    watts: Watts = 95.0,
    core_watts: Watts = 4.0,
    die_mirrors: int = 0,
    ccds: int = 0,
    sockets: int = 1,
) -> FakePowercap:
    """An AMD Zen machine: ``package-0`` with a ``core`` sub-zone; no dram, psys or limits.

    ``die_mirrors > 0`` lays out Zen 1/2 Threadripper/EPYC zones ``package-0-die-0``,
    ``package-0-die-1``... that all show the one socket counter. ``ccds > 0`` lays out what
    kernel 6.10 shows on Zen 4 (per-CCD dies from CPUID 0x80000026; RAPL registers a zone per
    die, upstream 26096aed255f): ``package-S-die-D`` for each CCD of each of ``sockets``, all
    showing their socket's counter, each with its own ``core`` sub-zone (``intel-rapl:N:0``)
    read on that die's first core (``core_watts`` each, inside the package's ``watts``).
    """
    tree = FakePowercap(base, clock=clock)
    if ccds:
        for socket in range(sockets):
            first: FakeZone | None = None
            for die in range(ccds):
                name = f"package-{socket}-die-{die}"
                if first is None:
                    zone = tree.add_zone(name, watts=watts, range_uj=AMD_RANGE_UJ, limits=False)
                    zone.start_at(1_234_567_890 * (socket + 1))
                    first = zone
                else:
                    zone = tree.add_zone(name, range_uj=AMD_RANGE_UJ, mirror_of=first, limits=False)
                tree.add_zone(
                    "core", watts=core_watts, parent=zone, range_uj=AMD_RANGE_UJ, limits=False
                )
        return tree
    if not die_mirrors:
        tree.add_package(0, watts, core_watts=core_watts, range_uj=AMD_RANGE_UJ, limits=False)
        return tree
    first_die = tree.add_package(0, watts, die=0, range_uj=AMD_RANGE_UJ, limits=False).package
    first_die.start_at(9_876_543_210)
    for die in range(1, die_mirrors + 1):
        tree.add_zone(
            f"package-0-die-{die}", range_uj=AMD_RANGE_UJ, mirror_of=first_die, limits=False
        )
    return tree


def sapphire_rapids(
    base: str | os.PathLike[str],
    *,
    clock: _Clock | None = None,
    package_watts: Watts = 180.0,
    dram_watts: Watts = 20.0,
    psys_watts: Watts = 420.0,
) -> FakePowercap:
    """A two-socket Sapphire/Emerald Rapids server: psys registered between the packages
    (``intel-rapl:1``, intel/powertelemetry#3) and counting in 1 J units."""
    tree = FakePowercap(base, clock=clock)
    tree.add_package(0, package_watts, dram_watts=dram_watts)
    tree.add_psys(
        psys_watts, range_uj=PSYS_1J_RANGE_UJ, unit_uj=1_000_000, start_uj=60_293_987_000_000
    )
    tree.add_package(1, package_watts, dram_watts=dram_watts)
    return tree
