"""Carbon intensity in whole runs: labelled fallbacks, the offline table, time-resolved CO2eq."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

from carbontrack import track
from carbontrack._tracker import Tracker
from carbontrack.errors import InvalidOption
from carbontrack.hookspecs import hookimpl
from carbontrack.model import J_PER_KWH, Device, Reading
from carbontrack.settings import make_settings
from carbontrack.testing import FakeClock, FakeDevice, FakeHardware
from carbontrack.testing.intensity import FakeElectricityMaps

HOUR = 3600.0
# A wall clock 25 minutes past an hour, so that runs cross hour boundaries mid-step.
WALL0 = math.floor(1_760_000_000 / HOUR) * HOUR + 1500.0


def _quiet(**options: object) -> dict[str, object]:
    return {"verbose": 0, "write_log": False, **options}


def test_a_run_without_location_uses_the_world_average_labelled_as_such() -> None:
    with track(plugins=[FakeHardware([FakeDevice("pkg")])], **_quiet()) as run:
        pass
    report = run.report
    assert report.intensity.is_fallback
    assert report.intensity.zone == "World"
    assert report.intensity.g_per_kwh == 472.94
    assert report.location.country is None
    assert any("location unknown" in w and "CARBONTRACK_LOCATION" in w for w in report.warnings)


def test_a_run_in_denmark_without_network_uses_the_table_value() -> None:
    with track(plugins=[FakeHardware([FakeDevice("pkg")])], **_quiet(location="DK")) as run:
        pass
    intensity = run.report.intensity
    assert (intensity.g_per_kwh, intensity.year, intensity.basis) == (143.30, 2024, "lifecycle")
    assert not intensity.is_fallback
    assert "Denmark" in intensity.source
    assert run.report.location.country == "DK"


def test_an_unknown_location_raises_before_any_device_is_touched() -> None:
    hw = FakeHardware([FakeDevice("pkg")])
    with pytest.raises(ValueError, match=r"'Denmrak'.*Did you mean: DK \(Denmark\)"):
        track(plugins=[hw], **_quiet(location="Denmrak")).new_tracker().start()
    assert hw.reads == 0


def test_an_unknown_location_in_the_config_file_raises_at_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text('location = "Germnay"\n', encoding="utf-8")
    monkeypatch.setenv("CARBONTRACK_CONFIG", str(config))
    with pytest.raises(InvalidOption, match=r"Germnay.*config.toml.*DE \(Germany\)"):
        track(plugins=[FakeHardware([FakeDevice("pkg")])], **_quiet()).new_tracker().start()


def _power(elapsed_s: float) -> float:
    # Power that changes every 15 minutes, so energy-weighting differs from time-weighting.
    return 160.0 if (elapsed_s // 900) % 2 == 0 else 40.0


def _energy_j(elapsed_s: float) -> float:
    full = int(elapsed_s // 900)
    return sum(_power(900.0 * k) * 900.0 for k in range(full)) + _power(elapsed_s) * (
        elapsed_s - 900.0 * full
    )


class _SteppedCounter:
    """An energy counter with that power, exact at any read time (a fast FakeDevice)."""

    name = "stepped"

    def __init__(self, clock: FakeClock) -> None:
        self._clock = clock
        self._t0: float | None = None

    @hookimpl
    def carbontrack_discover_devices(self) -> list[Device]:
        return [Device(id="pkg", kind="cpu", name="stepped", backend="stepped", method="counter")]

    @hookimpl
    def carbontrack_read_energy(self) -> list[Reading]:
        now = self._clock()
        if self._t0 is None:
            self._t0 = now
        return [Reading("pkg", joules=_energy_j(now - self._t0))]


def _hourly(ts: float) -> float:
    return 100.0 + 300.0 * ((ts // HOUR) % 3)


@pytest.mark.parametrize("step_s", [13.0, 30.0, 47.0])
def test_co2eq_equals_the_energy_weighted_sum_over_a_changing_intensity(step_s: float) -> None:
    clock = FakeClock(start=0.0)
    now = lambda: WALL0 + clock()  # noqa: E731 - the same wall time for tracker and server
    duration = 2 * HOUR + 17.0
    with FakeElectricityMaps(_hourly, now=now) as em:
        settings = make_settings(
            location="DE",
            api_keys={"electricitymaps": em.key},
            plugin_options=em.plugin_options(),
            pue=1.5,
            **_quiet(),
        )
        hw = _SteppedCounter(clock)
        tracker = Tracker(settings, plugins=[hw], autoload=False, clock=clock, wall_clock=now)
        tracker.start()
        elapsed = 0.0
        while elapsed < duration:
            dt = min(step_s, duration - elapsed)
            clock.advance(dt)
            elapsed += dt
            tracker.snapshot()
        report = tracker.stop()

    # The truth: the energy of each hour (1 s steps, exact for this power) at that hour's value.
    expected_g = 0.0
    for second in range(int(duration)):
        wall = WALL0 + second + 0.5
        expected_g += (
            _power(second + 0.5) * 1.5 / J_PER_KWH * _hourly(math.floor(wall / HOUR) * HOUR)
        )
    assert report.intensity.points, "the history should cover the run"
    assert report.co2eq_g == pytest.approx(expected_g, rel=1e-3)
    # Not the plain mean of the fetched values: that would be off by far more than 0.1 %.
    plain = (
        report.facility_energy_j
        / J_PER_KWH
        * (sum(p.g_per_kwh for p in report.intensity.points) / len(report.intensity.points))
    )
    assert abs(plain - expected_g) / expected_g > 0.01


def test_predictions_use_the_forecast_of_a_live_provider() -> None:
    # Real clocks: the tracker asks about the predicted remainder, which lies in the future.
    with FakeElectricityMaps(lambda ts: 100.0 + 50.0 * ((ts // HOUR) % 2)) as em:
        hw = FakeHardware([FakeDevice("pkg", watts=50.0)])
        options = _quiet(
            location="DE",
            epochs=1000,
            api_keys={"electricitymaps": em.key},
            plugin_options=em.plugin_options(),
        )
        with track(plugins=[hw], **options) as run:
            with run.epoch():
                time.sleep(0.05)
            run.epoch_start()
            run.epoch_end()
            assert "/carbon-intensity/forecast" in em.paths()
    prediction = run.report.predictions[0]
    assert prediction.forecast_used
    assert "forecast" in prediction.intensity_source


def test_a_failing_live_provider_is_named_in_the_report_not_only_in_the_log() -> None:
    with FakeElectricityMaps() as em:
        em.fail("401", times=5)
        options = _quiet(
            location="DE",
            api_keys={"electricitymaps": em.key},
            plugin_options=em.plugin_options(),
        )
        with track(plugins=[FakeHardware([FakeDevice("pkg")])], **options) as run:
            pass
    report = run.report
    assert "offline table" in report.intensity.source
    assert report.intensity.g_per_kwh == 344.14
    assert "Electricity Maps gave no carbon intensity (HTTP 401" in report.intensity.note
    assert any("Electricity Maps" in w and "HTTP 401" in w for w in report.warnings)
    assert em.key not in str(report.to_dict())


def test_a_provider_note_does_not_leak_into_the_next_lookup() -> None:
    from carbontrack.intensity._resolve import current_intensity

    with FakeElectricityMaps() as em:
        em.fail("500", times=2)
        settings = make_settings(
            location="DE", api_keys={"electricitymaps": em.key}, plugin_options=em.plugin_options()
        )
        _, failed = current_intensity(settings, autoload=False)
        _, ok = current_intensity(settings, autoload=False)
    assert "HTTP 500" in failed.note
    assert "Electricity Maps" in ok.source
    assert ok.note == ""
    _, table = current_intensity(make_settings(location="DE"), autoload=False)
    assert table.note == ""
