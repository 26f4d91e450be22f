"""Counter arithmetic and integration: the numbers everything else stands on."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carbontrack._plugins import PluginHost, make_plugin_manager
from carbontrack._sampler import Sampler, counter_delta, trapezoid_j
from carbontrack.model import Device
from carbontrack.testing import FakeClock, FakeDevice, FakeHardware


def test_counter_delta_without_wrap_is_the_difference() -> None:
    assert counter_delta(10.0, 25.5, None) == (15.5, False)


def test_counter_that_goes_down_with_a_range_has_wrapped() -> None:
    assert counter_delta(90.0, 5.0, 100.0) == (15.0, False)


def test_counter_that_goes_down_without_a_range_was_reset() -> None:
    assert counter_delta(90.0, 5.0, None) == (0.0, True)


def test_implausible_wrap_is_a_reset() -> None:
    # Going from 10 to 5 on a 100 J counter would mean 95 J in one read: a reset, not a wrap.
    assert counter_delta(10.0, 5.0, 100.0) == (0.0, True)


def test_trapezoid_of_a_ramp() -> None:
    assert trapezoid_j(100.0, 300.0, 2.0) == 400.0


@given(
    wrap=st.floats(min_value=1.0, max_value=1e6),
    start_fraction=st.floats(min_value=0.0, max_value=0.999),
    fractions=st.lists(st.floats(min_value=0.0, max_value=0.49), min_size=1, max_size=60),
)
def test_wrapped_counter_sequence_reconstructs_the_true_sum(
    wrap: float, start_fraction: float, fractions: list[float]
) -> None:
    # Any sequence of true increments under half the range, observed modulo the range, sums back.
    true_total = 0.0
    raw = start_fraction * wrap
    measured = 0.0
    for f in fractions:
        step = f * wrap
        true_total += step
        new_raw = (raw + step) % wrap
        delta, reset = counter_delta(raw, new_raw, wrap)
        assert not reset
        measured += delta
        raw = new_raw
    assert measured == pytest.approx(true_total, rel=1e-9, abs=1e-6 * wrap)


@given(values=st.lists(st.floats(min_value=0, max_value=1e9), min_size=2, max_size=50))
def test_counter_delta_is_never_negative(values: list[float]) -> None:
    for a, b in itertools.pairwise(values):
        delta, _ = counter_delta(a, b, None)
        assert delta >= 0


def _sampler(hw: FakeHardware, clock: FakeClock, interval_s: float = 1.0) -> Sampler:
    pm = make_plugin_manager(autoload=False, extra_plugins=[hw])
    host = PluginHost(pm)
    devices = [
        Device(id=d.id, kind=d.kind, name=d.id, backend=hw.name, method=d.method)
        for d in hw.devices.values()
    ]
    return Sampler(host, {hw.name: devices}, interval_s=interval_s, clock=clock)


@given(
    watts=st.floats(min_value=1.0, max_value=500.0),
    steps=st.lists(st.floats(min_value=0.01, max_value=5.0), min_size=1, max_size=40),
)
def test_sampler_counts_a_wrapping_counter_exactly(watts: float, steps: list[float]) -> None:
    clock = FakeClock()
    # A small range wraps many times; reads stay under half of it per interval.
    wrap = watts * 11.0
    hw = FakeHardware(
        [FakeDevice("pkg", watts=watts, wrap_j=wrap, start_j=wrap * 0.9)], clock=clock
    )
    sampler = _sampler(hw, clock)
    sampler.read()
    for dt in steps:
        clock.advance(dt)
        sampler.read()
    assert sampler.total_j() == pytest.approx(hw.true_energy_j, rel=1e-9, abs=1e-6)


def test_reset_counts_nothing_for_that_interval_and_is_reported() -> None:
    clock = FakeClock()
    hw = FakeHardware([FakeDevice("gpu", kind="gpu", watts=100.0, reset_at={3})], clock=clock)
    sampler = _sampler(hw, clock)
    for _ in range(5):
        sampler.read()
        clock.advance(1.0)
    sampler.read()
    (total,) = sampler.totals()
    # Reads 1..6 at 1 s apart: 5 intervals of 100 J, the one ending at the reset counts 0.
    assert total.energy_j == pytest.approx(400.0)
    assert total.resets == 1


def test_power_is_integrated_with_the_trapezoid_rule() -> None:
    clock = FakeClock()
    hw = FakeHardware(
        [FakeDevice("gpu", kind="gpu", method="power", readings=[100.0, 300.0, 300.0])], clock=clock
    )
    sampler = _sampler(hw, clock)
    sampler.read()
    clock.advance(2.0)
    sampler.read()
    clock.advance(1.0)
    sampler.read()
    assert sampler.total_j() == pytest.approx(400.0 + 300.0)


def test_devices_are_summed_not_averaged() -> None:
    clock = FakeClock()
    hw = FakeHardware(
        [FakeDevice("gpu0", kind="gpu", watts=100.0), FakeDevice("gpu1", kind="gpu", watts=300.0)],
        clock=clock,
    )
    sampler = _sampler(hw, clock)
    sampler.read()
    clock.advance(10.0)
    sampler.read()
    assert sampler.total_j() == pytest.approx(4000.0)


def test_interval_tightens_so_no_wrap_is_missed() -> None:
    clock = FakeClock()
    hw = FakeHardware([FakeDevice("pkg", watts=100.0, wrap_j=200.0)], clock=clock)
    sampler = _sampler(hw, clock, interval_s=1.0)
    sampler.read()
    clock.advance(0.5)
    sampler.read()
    # 200 J range at 100 W: a quarter of the range takes 0.5 s.
    assert sampler.next_interval() == pytest.approx(0.5)


def test_device_is_dropped_after_repeated_failures_and_keeps_what_it_measured() -> None:
    clock = FakeClock()
    hw = FakeHardware(
        [
            FakeDevice("pkg", watts=10.0, fail_at={3, 4, 5}),
            FakeDevice("dram", kind="dram", watts=2.0),
        ],
        clock=clock,
    )
    sampler = _sampler(hw, clock)
    for _ in range(7):
        sampler.read()
        clock.advance(1.0)
    totals = {t.device.id: t for t in sampler.totals()}
    assert totals["pkg"].dropped is not None
    assert "read 5" in totals["pkg"].dropped
    assert totals["pkg"].energy_j == pytest.approx(10.0)  # reads 1-2 only
    assert totals["dram"].dropped is None
    assert totals["dram"].energy_j == pytest.approx(12.0)  # 6 intervals at 2 W


def test_single_failed_read_is_forgiven() -> None:
    clock = FakeClock()
    hw = FakeHardware([FakeDevice("pkg", watts=10.0, fail_at={2})], clock=clock)
    sampler = _sampler(hw, clock)
    for _ in range(4):
        sampler.read()
        clock.advance(1.0)
    (total,) = sampler.totals()
    assert total.dropped is None
    assert total.energy_j == pytest.approx(30.0)


def test_plugin_raising_while_reading_is_recorded_and_does_not_raise() -> None:
    clock = FakeClock()
    hw = FakeHardware([FakeDevice("pkg", watts=10.0)], clock=clock, read_error_at={2})
    sampler = _sampler(hw, clock)
    for _ in range(3):
        sampler.read()
        clock.advance(1.0)
    assert sampler.total_j() == pytest.approx(20.0)
    failures = sampler._host.failures
    assert [(f.plugin, f.hook) for f in failures] == [("fake", "carbontrack_read_energy")]
    assert "fake read error at read 2" in failures[0].error


def test_wrap_implying_implausible_power_is_a_reset() -> None:
    # 100 J in one second on a device never seen above 5 W: a reload, not a wrap.
    assert counter_delta(950.0, 50.0, 1000.0, max_advance_j=50.0) == (0.0, True)
    assert counter_delta(990.0, 5.0, 1000.0, max_advance_j=50.0) == (15.0, False)


def test_reset_from_above_half_the_range_is_not_counted_as_a_wrap() -> None:
    clock = FakeClock()
    wrap = 1000.0
    hw = FakeHardware(
        [FakeDevice("pkg", watts=5.0, wrap_j=wrap, start_j=900.0, reset_at={4})], clock=clock
    )
    sampler = _sampler(hw, clock)
    for _ in range(6):
        sampler.read()
        clock.advance(1.0)
    (total,) = sampler.totals()
    # Five intervals at 5 W; the one ending in the reset counts nothing (not ~100 J of "wrap").
    assert total.resets == 1
    assert total.energy_j == pytest.approx(20.0)


def test_devices_dropped_for_one_cause_give_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    hw = FakeHardware(
        [FakeDevice(k, kind=k, watts=5.0) for k in ("cpu", "gpu", "ane")],
        clock=clock,
        read_error_at=set(range(2, 100)),
    )
    sampler = _sampler(hw, clock)
    for _ in range(6):
        sampler.read()
        clock.advance(1.0)
    assert all(t.dropped for t in sampler.totals())
    (warning,) = [r for r in caplog.records if "stopped measuring" in r.getMessage()]
    assert "cpu, gpu, ane" in warning.getMessage()
