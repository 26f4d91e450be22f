"""The plugin inside a tracked run: energy in the report, faults that drop one sensor only."""

from __future__ import annotations

import pytest
from carbontrack import track

from carbontrack_hwmon import plugin
from carbontrack_hwmon.testing import FakeHwmonTree


def test_a_tracked_run_reports_counter_energy_exactly(tree: FakeHwmonTree) -> None:
    chip = tree.add_amd_energy(sockets=2, cores_per_socket=2, socket_w=90.0)
    with track(plugins=[plugin], autoload=False, write_log=False, verbose=0) as run:
        tree.advance(3.0)
    truth = sum(s.true_j for s in chip.sensors[-2:])  # the two Esocket counters come last
    report = run.report
    assert report.energy_j == pytest.approx(truth, abs=1e-5)
    assert report.methods == ("counter",)
    assert [c.component for c in report.components] == ["cpu"]


def test_power_sensors_are_labelled_as_sampled_power(tree: FakeHwmonTree) -> None:
    tree.add_grace(sockets=1, grace_w=200.0)
    with track(plugins=[plugin], autoload=False, write_log=False, verbose=0) as run:
        tree.advance(1.0)
    (device,) = run.report.devices
    assert (device.method, device.backend) == ("power", "hwmon")
    # The trapezoid over the real time elapsed at a constant 200 W.
    assert device.energy_j == pytest.approx(200.0 * run.report.duration_s, rel=1e-6)


def test_a_sensor_that_breaks_mid_run_is_dropped_and_the_others_keep_measuring(
    tree: FakeHwmonTree,
) -> None:
    chip = tree.add_amd_energy(sockets=2, cores_per_socket=1, socket_w=50.0)
    socket0, socket1 = chip.sensors[-2:]
    with track(plugins=[plugin], autoload=False, write_log=False, verbose=0) as run:
        tree.advance(1.0)
        run.snapshot()
        socket0.write_raw("garbage\n")
        for _ in range(3):  # three failed reads in a row drop a device
            run.snapshot()
        tree.advance(1.0)
    by_name = {d.name: d for d in run.report.devices}
    broken, healthy = by_name["amd_energy Esocket0"], by_name["amd_energy Esocket1"]
    assert broken.dropped is not None
    assert str(socket0.path) in broken.dropped
    assert broken.energy_j == pytest.approx(50.0, abs=1e-5)
    assert healthy.dropped is None
    assert healthy.energy_j == pytest.approx(socket1.true_j, abs=1e-5)
    assert run.report.partial
