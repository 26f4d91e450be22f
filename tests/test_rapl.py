"""The RAPL backend against fake powercap trees: discovery, permissions, wraps and faults."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carbontrack import Tracker, Unavailable, make_settings, track
from carbontrack._plugins import PluginHost, make_plugin_manager
from carbontrack._sampler import Sampler
from carbontrack.backends import rapl
from carbontrack.model import Device
from carbontrack.testing import FakeClock, FakeDevice, FakeHardware
from carbontrack.testing.powercap import (
    AMD_RANGE_UJ,
    DRAM_RANGE_UJ,
    FakePowercap,
    amd_zen,
    laptop_with_psys,
    two_socket_server,
)

NOBODY = 65534


@pytest.fixture(autouse=True)
def _rapl_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    # conftest disables every real backend; these tests exercise rapl (on fake trees only).
    monkeypatch.setenv("CARBONTRACK_DISABLE_PLUGINS", "nvml,powermetrics,estimate")
    monkeypatch.setenv(rapl.POWERCAP_ROOT_ENV, "/nonexistent/powercap")


def point_at(monkeypatch: pytest.MonkeyPatch, tree: FakePowercap) -> None:
    monkeypatch.setenv(rapl.POWERCAP_ROOT_ENV, str(tree.root))


def discover(**options: object) -> list[Device | Unavailable]:
    return list(rapl.carbontrack_discover_devices(make_settings(**options)))


def devices_of(found: list[Device | Unavailable]) -> dict[str, Device]:
    return {d.id: d for d in found if isinstance(d, Device)}


def unavailable_of(found: list[Device | Unavailable]) -> list[Unavailable]:
    return [u for u in found if isinstance(u, Unavailable)]


def sampler_for(clock: FakeClock, interval_s: float = 1.0) -> Sampler:
    """The real sampler over the rapl plugin's discovered devices, on a fake clock."""
    host = PluginHost(make_plugin_manager(autoload=False))
    devices = [d for d in discover() if isinstance(d, Device)]
    return Sampler(host, {"rapl": devices}, interval_s=interval_s, clock=clock)


def energy_by_id(sampler: Sampler) -> dict[str, float]:
    return {t.device.id: t.energy_j for t in sampler.totals()}


@pytest.fixture
def unprivileged(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory, and the test running as a user without root's override of file modes.

    RAPL counters are root-only on current kernels; as root (CI containers) every file is
    readable, so the test body runs with the effective uid of ``nobody``. Its carbontrack home
    lives in the directory, which that user can reach.
    """
    if os.geteuid() != 0:
        base = Path(tempfile.mkdtemp(prefix="carbontrack-rapl-"))
        monkeypatch.setenv("CARBONTRACK_HOME", str(base / "home"))
        yield base
        shutil.rmtree(base, ignore_errors=True)
        return
    # Load every module a run needs now: the interpreter's own files may be unreadable to nobody.
    with track(plugins=[FakeHardware([FakeDevice("warm")])], verbose=0, write_log=False):
        pass
    base = Path(tempfile.mkdtemp(prefix="carbontrack-rapl-"))
    base.chmod(0o777)
    monkeypatch.setenv("CARBONTRACK_HOME", str(base / "home"))
    try:
        os.seteuid(NOBODY)
    except OSError as exc:  # a sandbox without CAP_SETUID
        shutil.rmtree(base)
        pytest.skip(f"cannot drop root privileges here ({exc})")
    try:
        yield base
    finally:
        os.seteuid(0)
        shutil.rmtree(base, ignore_errors=True)


# -- discovery ------------------------------------------------------------------------------


def test_two_socket_server_reports_every_package_and_dram(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    point_at(monkeypatch, two_socket_server(tmp_path))
    found = devices_of(discover())
    assert {i: d.kind for i, d in found.items()} == {
        "package-0": "cpu",
        "dram-0": "dram",
        "package-1": "cpu",
        "dram-1": "dram",
    }
    assert all(d.method == "counter" and d.backend == "rapl" for d in found.values())


def test_readings_are_joules_with_the_zone_range_as_wrap(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    tree = two_socket_server(tmp_path)
    point_at(monkeypatch, tree)
    found = devices_of(discover())
    readings = {r.device_id: r for r in rapl.carbontrack_read_energy(list(found.values()))}
    assert readings["package-0"].joules == tree.zone("package-0").counter_uj / 1e6
    assert readings["dram-1"].wrap_j == DRAM_RANGE_UJ / 1e6


def test_two_socket_server_energy_is_the_sum_of_every_socket_and_dram(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clock = FakeClock()
    tree = two_socket_server(tmp_path, clock=clock, watts=(120.0, 80.0), dram_watts=(10.0, 6.0))
    point_at(monkeypatch, tree)
    sampler = sampler_for(clock)
    sampler.read()
    for _ in range(30):
        tree.advance(1.0)
        sampler.read()
    energy = energy_by_id(sampler)
    assert energy["package-0"] == pytest.approx(3600.0)
    assert energy["package-1"] == pytest.approx(2400.0)
    assert energy["dram-0"] + energy["dram-1"] == pytest.approx(480.0)
    assert sampler.total_j() == pytest.approx(6480.0)


def test_zones_are_classified_by_name_not_by_index(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Sapphire Rapids: psys can take an index between packages, so intel-rapl:1 is not socket 1.
    tree = FakePowercap(tmp_path)
    tree.add_package(0, 100.0, dram_watts=8.0)
    tree.add_psys(300.0)
    tree.add_package(1, 100.0, dram_watts=8.0)
    point_at(monkeypatch, tree)
    found = devices_of(discover())
    assert sorted(found) == ["dram-0", "dram-1", "package-0", "package-1"]
    assert "intel-rapl:2 " in found["package-1"].detail


def test_zone_ids_are_hexadecimal(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    tree = FakePowercap(tmp_path)
    for socket in range(12):
        tree.add_package(socket, 10.0)
    point_at(monkeypatch, tree)
    found = devices_of(discover())
    assert len(found) == 12
    assert "intel-rapl:b " in found["package-11"].detail


def test_core_and_uncore_are_never_added_to_the_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    tree = FakePowercap(tmp_path)
    tree.add_package(0, 40.0, core_watts=25.0, uncore_watts=5.0, dram_watts=3.0)
    point_at(monkeypatch, tree)
    assert sorted(devices_of(discover())) == ["dram-0", "package-0"]


def test_laptop_measures_the_package_once_without_psys_core_uncore_or_mmio(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clock = FakeClock()
    tree = laptop_with_psys(tmp_path, clock=clock)
    point_at(monkeypatch, tree)
    sampler = sampler_for(clock)
    sampler.read()
    tree.advance(10.0)
    sampler.read()
    assert list(energy_by_id(sampler)) == ["package-0"]
    # 3.8 W of package, not the 14.4 W that summing every zone reports.
    assert sampler.total_j() == pytest.approx(38.0)


def test_psys_on_request_replaces_package_and_dram(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clock = FakeClock()
    tree = laptop_with_psys(tmp_path, clock=clock, psys_watts=9.6)
    tree.add_zone("dram", watts=1.0, parent=tree.zone("package-0"))
    point_at(monkeypatch, tree)
    found = devices_of(discover(rapl_psys=True))
    assert list(found) == ["psys"]
    assert found["psys"].kind == "psys"  # counted under the cpu component
    assert found["psys"].name.startswith("platform (psys")
    host = PluginHost(make_plugin_manager(autoload=False))
    sampler = Sampler(host, {"rapl": list(found.values())}, interval_s=1.0, clock=clock)
    sampler.read()
    tree.advance(10.0)
    sampler.read()
    assert sampler.total_j() == pytest.approx(96.0)  # psys alone, nothing added on top


def test_psys_requested_on_a_machine_without_it_measures_packages_and_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    point_at(monkeypatch, two_socket_server(tmp_path))
    found = devices_of(discover(rapl_psys=True))
    assert sorted(found) == ["dram-0", "dram-1", "package-0", "package-1"]
    assert "no psys zone" in caplog.text


def test_per_socket_psys_zones_are_all_measured(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    tree = FakePowercap(tmp_path)
    tree.add_package(0, 100.0)
    tree.add_psys(150.0, name="psys-0")
    tree.add_package(1, 100.0)
    tree.add_psys(150.0, name="psys-1")
    point_at(monkeypatch, tree)
    assert sorted(devices_of(discover(rapl_psys=True))) == ["psys-0", "psys-1"]


def test_amd_machine_has_a_package_and_no_dram(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clock = FakeClock()
    tree = amd_zen(tmp_path, clock=clock, watts=95.0)
    point_at(monkeypatch, tree)
    found = devices_of(discover())
    assert list(found) == ["package-0"]
    sampler = sampler_for(clock)
    sampler.read()
    tree.advance(60.0)
    sampler.read()
    assert sampler.total_j() == pytest.approx(95.0 * 60)
    assert f"wraps every {AMD_RANGE_UJ / 1e6:,.0f} J" in found["package-0"].detail


def test_amd_die_mirrors_of_one_socket_counter_are_counted_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clock = FakeClock()
    tree = amd_zen(tmp_path, clock=clock, watts=68.0, die_mirrors=1)
    point_at(monkeypatch, tree)
    assert list(devices_of(discover())) == ["package-0-die-0"]
    sampler = sampler_for(clock)
    sampler.read()
    tree.advance(10.0)
    sampler.read()
    assert sampler.total_j() == pytest.approx(680.0)


def test_intel_dies_with_their_own_counters_are_summed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    tree = FakePowercap(tmp_path)
    tree.add_package(0, 100.0, die=0)
    tree.add_package(0, 90.0, die=1, start_uj=5_000_000)
    point_at(monkeypatch, tree)
    assert sorted(devices_of(discover())) == ["package-0-die-0", "package-0-die-1"]


def test_a_root_pointing_at_the_devices_tree_finds_the_same_zones(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Containers bind-mount /sys/devices/virtual/powercap elsewhere (zeus uses /zeus_sys).
    tree = two_socket_server(tmp_path)
    monkeypatch.setenv(rapl.POWERCAP_ROOT_ENV, str(tree.devices_dir))
    assert sorted(devices_of(discover())) == ["dram-0", "dram-1", "package-0", "package-1"]


def test_no_powercap_tree_gives_no_devices_and_no_noise(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    assert discover() == []
    assert not caplog.records


def test_masked_tree_in_a_container_gives_no_devices_and_no_noise(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tree = two_socket_server(tmp_path)
    tree.mask()  # the flat symlinks now dangle
    point_at(monkeypatch, tree)
    caplog.set_level(logging.INFO)
    assert discover() == []
    assert not caplog.records


def test_cpu_component_covers_packages_and_dram(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    point_at(monkeypatch, two_socket_server(tmp_path))
    assert sorted(devices_of(discover(components="cpu"))) == [
        "dram-0",
        "dram-1",
        "package-0",
        "package-1",
    ]


def test_gpu_only_run_skips_the_cpu_entirely(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    point_at(monkeypatch, two_socket_server(tmp_path))
    assert discover(components="gpu") == []


# -- permissions ------------------------------------------------------------------------------


def test_permission_denied_gives_the_chmod_for_every_zone_and_the_udev_rule(
    monkeypatch: pytest.MonkeyPatch, unprivileged: Path
) -> None:
    tree = two_socket_server(unprivileged)
    for zone in tree:
        zone.unreadable()
    point_at(monkeypatch, tree)
    found = discover()
    assert devices_of(found) == {}
    [entry] = unavailable_of(found)
    assert entry.backend == "rapl"
    assert entry.kind == "cpu"
    assert "CVE-2020-8694" in entry.reason
    for zone_id in ("intel-rapl:0", "intel-rapl:0:0", "intel-rapl:1", "intel-rapl:1:0"):
        assert f"sudo chmod +r {tree.root}/{zone_id}/energy_uj\n" in entry.fix
    assert (
        'ACTION=="add|change", SUBSYSTEM=="powercap", KERNEL=="intel-rapl:*", '
        'RUN+="/bin/chmod og+r %S%p/energy_uj"'
    ) in entry.fix
    assert "/etc/udev/rules.d/powercap.rules" in entry.fix
    assert entry.fix.endswith(
        "sudo udevadm control --reload && sudo udevadm trigger --subsystem-match=powercap"
    )


def test_partly_readable_counters_measure_what_they_can_and_name_the_rest(
    monkeypatch: pytest.MonkeyPatch, unprivileged: Path
) -> None:
    tree = two_socket_server(unprivileged)
    tree.zone("package-1").unreadable()
    point_at(monkeypatch, tree)
    found = discover()
    assert sorted(devices_of(found)) == ["dram-0", "dram-1", "package-0"]
    [entry] = unavailable_of(found)
    assert "intel-rapl:1/energy_uj" in entry.fix
    assert "intel-rapl:0/energy_uj" not in entry.fix


def test_permission_denied_run_goes_on_with_other_components(
    monkeypatch: pytest.MonkeyPatch, unprivileged: Path
) -> None:
    tree = two_socket_server(unprivileged)
    for zone in tree:
        zone.unreadable()
    point_at(monkeypatch, tree)
    gpu = FakeHardware([FakeDevice("gpu0", kind="gpu", watts=250.0, method="power")])
    with track(plugins=[gpu], verbose=0, write_log=False) as run:
        pass
    report = run.report
    assert [d.kind for d in report.devices] == ["gpu"]
    assert [u.backend for u in report.unavailable] == ["rapl"]
    assert report.partial


def test_gpu_only_run_says_nothing_about_unreadable_rapl(
    monkeypatch: pytest.MonkeyPatch, unprivileged: Path
) -> None:
    tree = two_socket_server(unprivileged)
    for zone in tree:
        zone.unreadable()
    point_at(monkeypatch, tree)
    gpu = FakeHardware([FakeDevice("gpu0", kind="gpu", watts=250.0, method="power")])
    with track(plugins=[gpu], components="gpu", verbose=0, write_log=False) as run:
        pass
    assert run.report.unavailable == ()
    assert not run.report.partial


def test_counter_that_becomes_unreadable_mid_run_is_an_error_naming_the_file(
    monkeypatch: pytest.MonkeyPatch, unprivileged: Path
) -> None:
    tree = two_socket_server(unprivileged)
    point_at(monkeypatch, tree)
    found = devices_of(discover())
    tree.zone("package-0").unreadable()
    readings = {r.device_id: r for r in rapl.carbontrack_read_energy(list(found.values()))}
    assert readings["package-0"].error is not None
    assert str(tree.zone("package-0").energy_file) in readings["package-0"].error
    assert readings["package-1"].joules is not None


# -- faults -----------------------------------------------------------------------------------


def test_vanished_counter_is_an_error_naming_the_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    tree = two_socket_server(tmp_path)
    point_at(monkeypatch, tree)
    found = devices_of(discover())
    tree.zone("package-1").vanish()
    readings = {r.device_id: r for r in rapl.carbontrack_read_energy(list(found.values()))}
    error = readings["package-1"].error
    assert error is not None
    assert str(tree.zone("package-1").energy_file) in error
    assert readings["package-0"].joules is not None


@pytest.mark.parametrize("text", ["", "garbage\n", "-5\n", "12 34\n", "\x00\x00"])
def test_garbage_in_a_counter_is_an_error_naming_the_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text: str
) -> None:
    tree = two_socket_server(tmp_path)
    point_at(monkeypatch, tree)
    found = devices_of(discover())
    tree.zone("package-0").garble(text)
    [reading] = rapl.carbontrack_read_energy([found["package-0"]])
    assert reading.error is not None
    assert str(tree.zone("package-0").energy_file) in reading.error


def test_garbage_at_discovery_leaves_the_zone_out_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tree = two_socket_server(tmp_path)
    tree.zone("package-1").garble("oops\n")
    point_at(monkeypatch, tree)
    assert sorted(devices_of(discover())) == ["dram-0", "dram-1", "package-0"]
    assert "intel-rapl:1/energy_uj" in caplog.text


@pytest.mark.parametrize("fault", ["vanish", "garble"])
def test_mid_run_fault_drops_that_device_with_one_warning_and_marks_cpu_partial(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture, fault: str
) -> None:
    clock = FakeClock()
    tree = two_socket_server(tmp_path, clock=clock, watts=(100.0, 100.0), dram_watts=(10.0, 10.0))
    point_at(monkeypatch, tree)
    # A long interval: reads happen only at the edges and snapshots, on this thread.
    run = Tracker(make_settings(interval_s=3600.0, verbose=0), clock=clock)
    run.start()
    tree.advance(10.0)
    run.snapshot()
    broken = tree.zone("package-1")
    getattr(broken, fault)()
    for _ in range(3):
        tree.advance(10.0)
        run.snapshot()
    tree.advance(10.0)
    report = run.stop()
    energy = {d.id: d for d in report.devices}
    assert energy["package-1"].dropped is not None
    assert energy["package-1"].energy_j == pytest.approx(1000.0)  # what it measured before
    assert energy["package-0"].energy_j == pytest.approx(5000.0)
    assert energy["dram-1"].energy_j == pytest.approx(500.0)
    [cpu] = [c for c in report.components if c.component == "cpu"]
    assert cpu.partial
    assert report.partial
    warnings = [
        r
        for r in caplog.records
        if r.levelno >= logging.WARNING and str(broken.energy_file) in r.getMessage()
    ]
    assert len(warnings) == 1


def test_counter_going_back_without_a_plausible_wrap_is_a_reset_not_negative_energy(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clock = FakeClock()
    tree = FakePowercap(tmp_path, clock=clock)
    package = tree.add_package(0, 50.0, start_uj=100_000_000_000).package
    point_at(monkeypatch, tree)
    sampler = sampler_for(clock)
    sampler.read()
    tree.advance(10.0)
    sampler.read()
    package.reset()  # 100.5 kJ -> 0 on a 262 kJ counter: a wrap would mean 162 kJ in 10 s
    tree.advance(10.0)
    sampler.read()
    tree.advance(10.0)
    sampler.read()
    [total] = sampler.totals()
    assert total.resets == 1
    assert total.energy_j == pytest.approx(1000.0)  # the reset interval counts nothing


# -- wraps ------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    range_uj=st.integers(min_value=1_000_000, max_value=DRAM_RANGE_UJ),
    start_fraction=st.floats(min_value=0.0, max_value=1.0),
    # Power between 0.05 and 0.49 of the range per read: within the 10x of the highest power
    # seen that the sampler accepts for a wrap (larger jumps across a wrap count as resets).
    fractions=st.lists(st.floats(min_value=0.05, max_value=0.49), min_size=1, max_size=40),
)
def test_wrapped_counter_sequences_sum_to_the_true_energy(
    range_uj: int, start_fraction: float, fractions: list[float]
) -> None:
    # Each read sees the counter advanced by less than half its range (what the sampler's
    # interval guarantees), wrapping as often as the sequence makes it.
    with tempfile.TemporaryDirectory() as base, pytest.MonkeyPatch.context() as mp:
        clock = FakeClock()
        tree = FakePowercap(base, clock=clock)
        zone = tree.add_package(0, 0.0, range_uj=range_uj).package
        zone.start_at(int(start_fraction * range_uj))
        point_at(mp, tree)
        sampler = sampler_for(clock)
        sampler.read()
        for fraction in fractions:
            # The share of the range drawn at a plausible 500 W (a counter that advances faster
            # than its device could draw is a reset, not energy).
            zone.watts = 500.0
            tree.advance(fraction * range_uj / 1e6 / 500.0)
            sampler.read()
        [total] = sampler.totals()
        assert total.resets == 0
        # Counters hold whole µJ: at most 1 µJ of rounding per read and per wrap.
        assert total.energy_j == pytest.approx(zone.true_j, abs=2e-6 * (len(fractions) + 1))


def test_sampler_tightens_its_interval_so_no_wrap_is_missed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clock = FakeClock()
    tree = FakePowercap(tmp_path, clock=clock)
    tree.add_package(0, 200.0, range_uj=100_000_000)  # 100 J range: a wrap every 0.5 s
    point_at(monkeypatch, tree)
    sampler = sampler_for(clock, interval_s=0.1)
    sampler.read()
    elapsed = 0.0
    while elapsed < 30.0:
        step = sampler.next_interval()
        tree.advance(step)
        elapsed += step
        sampler.read()
    assert sampler.next_interval() <= 0.125
    assert sampler.total_j() == pytest.approx(200.0 * elapsed, rel=1e-6)


def test_a_long_interval_never_lets_a_counter_wrap_unseen(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # interval_s=600 on an AMD package at 250 W is 150 kJ per interval, more than two wraps of
    # its 65.5 kJ range, and the sampler has seen no power yet to shorten the interval by.
    clock = FakeClock()
    tree = amd_zen(tmp_path, clock=clock, watts=250.0)
    point_at(monkeypatch, tree)
    zone = tree.zone("package-0")
    sampler = sampler_for(clock, interval_s=600.0)
    sampler.read()
    before = zone.true_j
    for _ in range(20):
        tree.advance(sampler.next_interval())
        sampler.read()
    [total] = sampler.totals()
    assert total.resets == 0
    assert total.energy_j == pytest.approx(zone.true_j - before, rel=1e-6)


# -- end to end -------------------------------------------------------------------------------


def test_track_measures_a_two_socket_server_through_rapl(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    tree = two_socket_server(tmp_path, watts=(100.0, 90.0), dram_watts=(8.0, 7.0))
    point_at(monkeypatch, tree)
    before = sum(z.true_j for z in tree)
    with track(verbose=0) as run:
        tree.advance(60.0)
    report = run.report
    assert sorted((d.id, d.kind, d.method) for d in report.devices) == [
        ("dram-0", "dram", "counter"),
        ("dram-1", "dram", "counter"),
        ("package-0", "cpu", "counter"),
        ("package-1", "cpu", "counter"),
    ]
    assert report.energy_j == pytest.approx(sum(z.true_j for z in tree) - before)
    assert report.energy_j == pytest.approx(205.0 * 60)
    [cpu] = report.components
    assert (cpu.component, cpu.devices, cpu.methods, cpu.partial) == ("cpu", 4, ("counter",), False)
    assert not report.partial


def test_track_through_a_wrap_of_every_counter(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    tree = FakePowercap(tmp_path)
    package = tree.add_package(0, 100.0, dram_watts=10.0, dram_range_uj=DRAM_RANGE_UJ)
    package.package.start_at(package.package.range_uj - 500_000_000)  # 500 J before the top
    assert package.dram is not None
    package.dram.start_at(DRAM_RANGE_UJ - 50_000_000)
    point_at(monkeypatch, tree)
    with track(verbose=0) as run:
        tree.advance(10.0)  # 1000 J and 100 J: both wrap
    energy = {d.id: d.energy_j for d in run.report.devices}
    assert energy == pytest.approx({"package-0": 1000.0, "dram-0": 100.0})
    assert all(d.resets == 0 for d in run.report.devices)


# -- issue 19: Zen 4 per-CCD zones (kernel 6.10) and whole-joule psys --------------------------


@pytest.mark.parametrize("sockets", [1, 2])
def test_zen4_per_ccd_die_zones_with_core_subzones_count_each_socket_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sockets: int
) -> None:
    # Kernel 6.10 registers a zone per CCD on Zen 4 (package-S-die-D, upstream 26096aed255f),
    # all showing the socket counter, each with its own core sub-zone :0 (inside the package).
    clock = FakeClock()
    tree = amd_zen(tmp_path, clock=clock, watts=150.0, core_watts=6.0, ccds=4, sockets=sockets)
    point_at(monkeypatch, tree)
    assert sum(1 for z in tree if z.name == "core") == 4 * sockets
    found = devices_of(discover())
    assert sorted(found) == [f"package-{s}-die-0" for s in range(sockets)]
    assert {d.kind for d in found.values()} == {"cpu"}
    sampler = sampler_for(clock)
    sampler.read()
    tree.advance(10.0)
    sampler.read()
    assert sampler.total_j() == pytest.approx(150.0 * 10.0 * sockets)


def test_whole_joule_psys_is_measured_and_says_how_coarse_it_is(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from carbontrack.testing.powercap import PSYS_1J_RANGE_UJ, sapphire_rapids

    clock = FakeClock()
    tree = sapphire_rapids(tmp_path, clock=clock, psys_watts=420.0)
    point_at(monkeypatch, tree)
    psys = tree.zone("psys")
    assert psys.counter_uj % 1_000_000 == 0
    tree.advance(0.4)  # 168 J: the file shows whole joules only
    assert psys.counter_uj % 1_000_000 == 0
    with caplog.at_level(logging.WARNING):
        found = devices_of(discover(rapl_psys=True))
        assert list(found) == ["psys"]
        assert "counts in whole joules" in found["psys"].detail
        assert f"wraps every {PSYS_1J_RANGE_UJ / 1e6:,.0f} J" in found["psys"].detail
        host = PluginHost(make_plugin_manager(autoload=False))
        sampler = Sampler(host, {"rapl": list(found.values())}, interval_s=1.0, clock=clock)
        sampler.read()
        # Reads a few ms apart straddle 1 J steps (an implied kW for a moment): all counted.
        for _ in range(50):
            tree.advance(0.005)
            sampler.read()
        tree.advance(9.75)
        sampler.read()
    assert sampler.total_j() == pytest.approx(420.0 * 10.0, abs=2.0)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_packages_next_to_a_whole_joule_psys_keep_their_fine_units(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from carbontrack.testing.powercap import sapphire_rapids

    tree = sapphire_rapids(tmp_path)
    point_at(monkeypatch, tree)
    found = devices_of(discover())
    assert sorted(found) == ["dram-0", "dram-1", "package-0", "package-1"]
    assert not any("whole joules" in d.detail for d in found.values())
