"""Issue 21, counters: jumps, values beyond the range and wraps missed early are never counted
as energy, and every lost interval shows in the report (warnings, partial)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from carbontrack import make_settings, track
from carbontrack._plugins import PluginHost, make_plugin_manager
from carbontrack._sampler import Sampler
from carbontrack.backends import rapl
from carbontrack.model import Device
from carbontrack.testing import FakeClock, FakeDevice, FakeHardware
from carbontrack.testing.powercap import FakePowercap

QUIET = {"verbose": 0, "write_log": False}


@pytest.fixture
def rapl_tree(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakePowercap:
    monkeypatch.setenv("CARBONTRACK_DISABLE_PLUGINS", "nvml,powermetrics,estimate")
    tree = FakePowercap(tmp_path, clock=FakeClock())
    monkeypatch.setenv(rapl.POWERCAP_ROOT_ENV, str(tree.root))
    return tree


def _rapl_sampler(clock: FakeClock) -> Sampler:
    host = PluginHost(make_plugin_manager(autoload=False))
    found = rapl.carbontrack_discover_devices(make_settings())
    devices = [d for d in found if isinstance(d, Device)]
    return Sampler(host, {"rapl": devices}, interval_s=1.0, clock=clock)


def test_a_counter_that_jumps_forward_is_a_reset_not_energy(rapl_tree: FakePowercap) -> None:
    # The attack: package-0 set to 250 kJ mid-run was counted (202,027 J instead of 361 J).
    clock = rapl_tree.clock
    assert isinstance(clock, FakeClock)
    package = rapl_tree.add_package(0, 36.0, start_uj=48_000_000_000).package
    sampler = _rapl_sampler(clock)
    sampler.read()
    for step in range(10):
        rapl_tree.advance(1.0)
        if step == 4:
            package.start_at(250_000_000_000)  # a reload that leaves the counter high
        sampler.read()
    [total] = sampler.totals()
    assert total.resets == 1
    assert total.energy_j == pytest.approx(36.0 * 9)  # the reset second counts nothing


def test_a_value_above_the_declared_range_is_an_error_not_energy(
    rapl_tree: FakePowercap,
) -> None:
    # The attack: 9,999,999,951,758 J counted from one out-of-range value.
    clock = rapl_tree.clock
    assert isinstance(clock, FakeClock)
    package = rapl_tree.add_package(0, 20.0).package
    sampler = _rapl_sampler(clock)
    sampler.read()
    rapl_tree.advance(1.0)
    sampler.read()
    package.set_counter(9_999_999_999_999_999_999)
    rapl_tree.advance(1.0)
    sampler.read()
    package.set_counter(None)
    rapl_tree.advance(1.0)
    sampler.read()
    [total] = sampler.totals()
    assert total.energy_j < 100.0
    assert total.dropped is None  # one bad read is forgiven
    assert total.energy_j == pytest.approx(60.0)  # counters catch up after the bad read


def test_a_zero_range_is_a_warning_naming_the_file(
    rapl_tree: FakePowercap, caplog: pytest.LogCaptureFixture
) -> None:
    package = rapl_tree.add_zone("package-0", watts=10.0, range_uj=0)
    found = rapl.carbontrack_discover_devices(make_settings())
    [device] = [d for d in found if isinstance(d, Device)]
    assert "max_energy_range_uj" in device.detail
    range_file = str(package.directory / "max_energy_range_uj")
    warned = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any(
        "max_energy_range_uj" in r.getMessage() and "reads 0" in r.getMessage() for r in warned
    )
    assert any(range_file.rsplit("/", 2)[-2] in r.getMessage() for r in warned)


def test_resets_go_into_the_reports_warnings_and_mark_it_partial() -> None:
    # Before: resets were on stderr only; report.partial stayed false.
    hw = FakeHardware([FakeDevice("pkg", watts=10.0, readings=[5.0, 10.0, 1.0, 3.0])])
    with track(plugins=[hw], interval_s=0.01, **QUIET) as run:
        deadline = time.monotonic() + 5
        while hw.reads < 4 and time.monotonic() < deadline:
            time.sleep(0.005)
    report = run.report
    (pkg,) = report.devices
    assert pkg.resets >= 1
    assert report.partial
    assert any("counter reset" in w and "lower bound" in w for w in report.warnings)
    assert report.components[0].partial


def test_wraps_in_the_first_interval_are_seen_with_a_long_interval() -> None:
    # The attack: interval_s=15 on a fast-wrapping counter missed six wraps (-98 %): no power
    # was known until the first background read, 15 s in. A read 0.1 s in learns it.
    hw = FakeHardware([FakeDevice("pkg", watts=100.0, wrap_j=60.0)])
    with track(plugins=[hw], interval_s=15.0, **QUIET) as run:
        time.sleep(2.0)
    (pkg,) = run.report.devices
    truth = 100.0 * run.report.duration_s
    assert pkg.energy_j == pytest.approx(truth, rel=0.02)
    assert pkg.resets == 0
