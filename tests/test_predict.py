"""Prediction: the formulas, the t quantile, the interval's coverage, forecasts, the cleanest
start time, monitor_epochs, warm-up and budgets, and the console matching the run log."""

from __future__ import annotations

import json
import logging
import math
import random
import re
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carbontrack import (
    BudgetExceeded,
    Intensity,
    IntensityPoint,
    Location,
    Prediction,
    Tracker,
    hookimpl,
    make_settings,
)
from carbontrack.equivalents import EQUIVALENTS, format_equivalents
from carbontrack.model import J_PER_KWH, EpochRecord
from carbontrack.predict import best_start, interval_half_width, mean_intensity, predict, t_quantile
from carbontrack.settings import Settings
from carbontrack.testing import FakeClock, FakeDevice, FakeHardware
from carbontrack.writers.console import (
    format_co2,
    format_duration,
    format_energy,
    format_prediction,
)

T0 = 1_700_000_000.0  # a fixed wall-clock start, so forecasts line up with the run


def epochs_of(
    energies_j: Sequence[float],
    durations_s: Sequence[float] | None = None,
    g_per_kwh: float = 100.0,
    pue: float = 1.0,
) -> list[EpochRecord]:
    durations = durations_s or [10.0] * len(energies_j)
    out, t = [], T0
    for i, (e, d) in enumerate(zip(energies_j, durations, strict=True), start=1):
        out.append(EpochRecord(i, t, d, e, e * pue / J_PER_KWH * g_per_kwh))
        t += d
    return out


# -- Student's t ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("p", "df", "expected"),
    [  # two-sided 95 % / 99 % / 80 % rows of any t table
        (0.975, 1, 12.7062),
        (0.975, 2, 4.3027),
        (0.975, 5, 2.5706),
        (0.975, 10, 2.2281),
        (0.975, 30, 2.0423),
        (0.995, 3, 5.8409),
        (0.9, 4, 1.5332),
    ],
)
def test_t_quantile_matches_the_table(p: float, df: int, expected: float) -> None:
    assert t_quantile(p, df) == pytest.approx(expected, abs=5e-5)


@given(p=st.floats(min_value=0.501, max_value=0.9995))
def test_t_quantile_matches_closed_forms_for_one_and_two_degrees(p: float) -> None:
    assert t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-9)
    alpha = 4 * p * (1 - p)
    assert t_quantile(p, 2) == pytest.approx((2 * p - 1) * math.sqrt(2 / alpha), rel=1e-9)


@given(p=st.floats(min_value=0.001, max_value=0.999), df=st.integers(min_value=1, max_value=200))
def test_t_quantile_is_symmetric_and_approaches_the_normal(p: float, df: int) -> None:
    assert t_quantile(1 - p, df) == pytest.approx(-t_quantile(p, df), rel=1e-9, abs=1e-12)
    assert abs(t_quantile(0.975, df)) >= 1.959963  # heavier tails than the normal


@pytest.mark.parametrize(("p", "df"), [(0.0, 3), (1.0, 3), (0.5, 0), (0.9, -1)])
def test_t_quantile_rejects_bad_input(p: float, df: int) -> None:
    with pytest.raises(ValueError, match=r"p=|df="):
        t_quantile(p, df)


# -- the formulas -----------------------------------------------------------------------------


def test_one_epoch_gives_the_papers_point_estimate_and_no_interval() -> None:
    p = predict(epochs_of([1000.0], [10.0], pue=1.5), total_epochs=10, g_per_kwh=100.0, pue=1.5)
    assert p.energy_j == 10_000.0
    assert p.duration_s == 100.0
    assert p.co2eq_g == pytest.approx(10_000.0 * 1.5 / J_PER_KWH * 100.0)
    assert p.level is None
    assert p.energy_j_low is None
    assert p.co2eq_g_high is None


def test_interval_is_r_mean_plus_minus_t_s_sqrt_r_plus_r2_over_n() -> None:
    energies = [900.0, 1100.0]  # mean 1000, s = 141.4, n = 2: too few epochs for a trend
    p = predict(epochs_of(energies), total_epochs=10, g_per_kwh=100.0, pue=1.0)
    r, n, s = 8, 2, math.sqrt(2.0) * 100.0
    half = 12.706204736174698 * s * math.sqrt(r + r * r / n)  # t(0.975, 1)
    assert p.level == 0.95
    assert p.trend is None
    assert p.energy_j == 2000.0 + r * 1000.0
    assert p.energy_j_low == pytest.approx(max(2000.0 + r * 1000.0 - half, 2000.0))
    assert p.energy_j_high == pytest.approx(2000.0 + r * 1000.0 + half)
    assert p.co2eq_g_high == pytest.approx(p.energy_j_high / J_PER_KWH * 100.0)
    assert interval_half_width(s, n, r) == pytest.approx(half)


def test_with_3_epochs_the_interval_allows_for_a_trend_it_cannot_rule_out() -> None:
    # Energies 900, 1100, 1000: slope 50 J/epoch, residual s = 122.5 (df 1), not clear.
    energies = [900.0, 1100.0, 1000.0]
    p = predict(epochs_of(energies), total_epochs=10, g_per_kwh=100.0, pue=1.0)
    r, n, sxx, x_bar = 7, 3, 2.0, 2.0
    s = math.sqrt(1.5 * 100.0**2)  # residuals -25, 50, -25 (x 2)
    spread = sum(x - x_bar for x in range(4, 11))
    half = 12.706204736174698 * s * math.sqrt(r + r * r / n + spread**2 / sxx)
    assert p.trend == "allowed for"
    assert p.trend_j_per_epoch == pytest.approx(50.0)
    assert p.energy_j == pytest.approx(3000.0 + r * 1000.0)  # the mean: the slope is not clear
    line = r * 1000.0 + 50.0 * spread  # the fitted line's remaining epochs
    assert p.energy_j_high == pytest.approx(3000.0 + line + half)  # the line's interval
    assert p.energy_j_low == pytest.approx(max(3000.0 + line - half, 3000.0))


def test_a_clear_trend_is_extrapolated() -> None:
    energies = [1000.0, 1020.0, 1041.0, 1059.0, 1080.0, 1101.0]  # about +20 J per epoch
    p = predict(epochs_of(energies), total_epochs=20, g_per_kwh=1.0, pue=1.0)
    assert p.trend == "modelled"
    assert p.trend_j_per_epoch == pytest.approx(20.1, abs=0.2)
    expected_rest = sum(1000.0 - 20.1 + 20.1 * k for k in range(7, 21))
    assert p.energy_j == pytest.approx(sum(energies) + expected_rest, rel=0.003)
    assert p.energy_j_low <= sum(energies) + expected_rest <= p.energy_j_high  # type: ignore[operator]


def test_a_falling_trend_never_predicts_negative_epochs() -> None:
    energies = [1000.0, 800.0, 600.0, 400.0]
    p = predict(epochs_of(energies), total_epochs=20, g_per_kwh=1.0, pue=1.0)
    assert p.trend == "modelled"
    assert p.energy_j == pytest.approx(sum(energies) + 200.0)  # then 0 J per epoch


@pytest.mark.parametrize("slope", [0.005, 0.02, 0.04])
def test_trending_runs_keep_interval_coverage_near_nominal_after_5_epochs(slope: float) -> None:
    # Issue 19: under a steady trend the mean's interval covered 0 % of runs after 5 epochs.
    rng = random.Random(f"trend-{slope}")
    total, runs, covered = 40, 1000, 0
    for _ in range(runs):
        energies = [rng.gauss(1000.0 * (1 + slope * i), 50.0) for i in range(total)]
        p = predict(epochs_of(energies[:5]), total_epochs=total, g_per_kwh=1.0, pue=1.0)
        assert p.energy_j_low is not None
        assert p.energy_j_high is not None
        covered += p.energy_j_low <= sum(energies) <= p.energy_j_high
    assert abs(covered / runs - 0.95) <= 0.05


def test_level_is_stated_and_changes_the_width() -> None:
    records = epochs_of([900.0, 1000.0, 1100.0, 1050.0])
    p80 = predict(records, total_epochs=20, g_per_kwh=1.0, pue=1.0, level=0.8)
    p99 = predict(records, total_epochs=20, g_per_kwh=1.0, pue=1.0, level=0.99)
    assert (p80.level, p99.level) == (0.8, 0.99)
    assert p80.energy_j == p99.energy_j
    assert p99.energy_j_high - p99.energy_j_low > p80.energy_j_high - p80.energy_j_low  # type: ignore[operator]


def test_warmup_epochs_count_as_measured_but_not_in_the_mean() -> None:
    records = epochs_of([5000.0, 1000.0, 1000.0], [50.0, 10.0, 10.0])
    p = predict(records, total_epochs=10, g_per_kwh=100.0, pue=1.0, warmup_epochs=1)
    assert p.epochs_in_mean == 2
    assert p.energy_j == 7000.0 + 7 * 1000.0
    assert p.duration_s == 70.0 + 7 * 10.0
    assert p.energy_j_low == p.energy_j_high == p.energy_j  # two identical epochs: s = 0


def test_warmup_covering_every_epoch_is_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match="lower warmup_epochs"):
        predict(epochs_of([1.0]), total_epochs=5, g_per_kwh=1.0, pue=1.0, warmup_epochs=1)


def test_lower_bound_never_goes_below_what_was_measured() -> None:
    p = predict(epochs_of([10.0, 1000.0]), total_epochs=4, g_per_kwh=1.0, pue=1.0)
    assert p.energy_j_low == 1010.0
    assert p.duration_s_low is not None
    assert p.duration_s_low >= 20.0


def test_nothing_left_to_predict_collapses_the_interval() -> None:
    p = predict(epochs_of([900.0, 1100.0]), total_epochs=2, g_per_kwh=100.0, pue=1.0)
    assert p.energy_j_low == p.energy_j == p.energy_j_high == 2000.0


# -- coverage ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3, 5])
def test_95_percent_interval_covers_about_95_percent_of_noisy_runs(n: int) -> None:
    rng = random.Random(20200703 + n)
    total, runs, covered = 20, 2000, 0
    for _ in range(runs):
        energies = [max(rng.gauss(1000.0, 100.0), 0.0) for _ in range(total)]
        p = predict(epochs_of(energies[:n]), total_epochs=total, g_per_kwh=1.0, pue=1.0)
        assert p.energy_j_low is not None
        assert p.energy_j_high is not None
        covered += p.energy_j_low <= sum(energies) <= p.energy_j_high
    assert 0.93 <= covered / runs <= 0.97


# -- intensity forecasts and the cleanest start -----------------------------------------------


def hourly(values: Sequence[float], start: float = T0) -> tuple[IntensityPoint, ...]:
    return tuple(
        IntensityPoint(start + 3600 * i, start + 3600 * (i + 1), v) for i, v in enumerate(values)
    )


def test_mean_intensity_weights_time_and_fills_gaps_with_the_fallback() -> None:
    forecast = hourly([100.0, 300.0])
    assert mean_intensity(T0, T0 + 7200, forecast, 999.0) == (200.0, True)
    g, used = mean_intensity(T0 + 3600, T0 + 3 * 3600, forecast, 500.0)
    assert (g, used) == (400.0, True)
    assert mean_intensity(T0 + 9e5, T0 + 9e5 + 60, forecast, 42.0) == (42.0, False)


def test_remaining_epochs_use_the_forecast_over_the_predicted_window() -> None:
    records = epochs_of([3600.0], [3600.0], g_per_kwh=100.0)  # 1 kWh in the first hour
    forecast = hourly([100.0, 200.0, 400.0])  # the remaining 2 epochs run in hours 2 and 3
    p = predict(records, total_epochs=3, g_per_kwh=100.0, pue=1.0, forecast=forecast)
    assert p.forecast_used
    assert p.g_per_kwh == pytest.approx(300.0)
    assert p.co2eq_g == pytest.approx(3600 / J_PER_KWH * 100.0 + 7200 / J_PER_KWH * 300.0)


def test_best_start_finds_the_cleanest_window_and_its_saving() -> None:
    forecast = hourly([400.0, 400.0, 100.0, 100.0, 400.0])
    hint = best_start(2.0, 7200.0, forecast, T0, 300.0)
    assert hint is not None
    start, best_g, now_g = hint
    assert start == T0 + 7200
    assert best_g == pytest.approx(2.0 * 100.0)
    assert now_g == pytest.approx(2.0 * 400.0)


def test_best_start_is_none_when_the_run_outlasts_the_forecast() -> None:
    assert best_start(1.0, 3 * 3600.0, hourly([100.0, 200.0]), T0, 300.0) is None


def test_prediction_carries_the_start_hint_only_with_a_forecast() -> None:
    records = epochs_of([360.0], [60.0])
    plain = predict(records, total_epochs=10, g_per_kwh=300.0, pue=1.0)
    assert plain.best_start_ts is None
    assert not plain.forecast_used
    forecast = hourly([500.0, 50.0, 500.0])
    p = predict(records, total_epochs=10, g_per_kwh=300.0, pue=1.0, forecast=forecast)
    assert p.best_start_ts == T0 + 3600
    assert p.best_start_saving_g == pytest.approx(3600 / J_PER_KWH * (500.0 - 50.0))


# -- in a run: monitor_epochs, warm-up, budgets, forecasts ------------------------------------


class ForecastProvider:
    """An intensity provider with a forecast (a plugin, as a live API would be)."""

    def __init__(self, forecast: tuple[IntensityPoint, ...]) -> None:
        self.forecast = forecast
        self.calls: list[tuple[float, float]] = []

    @hookimpl
    def carbontrack_carbon_intensity(
        self, location: Location, start: float, end: float, settings: Settings
    ) -> Intensity:
        self.calls.append((start, end))
        return Intensity(300.0, source="test forecast", basis="lifecycle", forecast=self.forecast)


def fake_run(
    epochs: int,
    *,
    watts: Sequence[float] | None = None,
    extra: Sequence[object] = (),
    stop: bool = True,
    **options: object,
) -> tuple[Tracker, list[EpochRecord]]:
    clock = FakeClock()
    powers = list(watts or [100.0] * epochs)
    power = {"w": powers[0]}
    hw = FakeHardware([FakeDevice("pkg", watts=lambda _t: power["w"])], clock=clock)
    settings = make_settings(epochs=epochs, **{"verbose": 0, "write_log": False, **options})
    tracker = Tracker(
        settings, plugins=[hw, *extra], autoload=False, clock=clock, wall_clock=lambda: T0
    ).start()
    records = []
    for i in range(epochs):
        power["w"] = powers[i]
        tracker.epoch_start()
        clock.advance(10.0)
        records.append(tracker.epoch_end())
    if stop:
        tracker.stop()
    return tracker, records


@pytest.mark.parametrize(
    ("options", "after"),
    [
        ({}, [1]),
        ({"monitor_epochs": 3}, [1, 2, 3]),
        ({"monitor_epochs": -1}, [1, 2, 3, 4, 5]),
        ({"epochs_before_pred": 2, "monitor_epochs": 2}, [2, 3]),
        ({"warmup_epochs": 2}, [3]),
        ({"epochs_before_pred": 0, "monitor_epochs": -1}, []),
    ],
)
def test_when_predictions_are_made(options: dict[str, object], after: list[int]) -> None:
    tracker, _ = fake_run(6, **options)
    assert [p.after_epoch for p in tracker.report.predictions] == after


def test_prediction_in_a_run_asks_the_provider_about_the_predicted_window() -> None:
    provider = ForecastProvider(hourly([300.0] * 24))
    tracker, records = fake_run(4, extra=[provider])
    (p,) = tracker.report.predictions
    end_of_epoch_1 = records[0].started_at + records[0].duration_s
    assert (end_of_epoch_1, end_of_epoch_1 + 30.0) in [
        (pytest.approx(a), pytest.approx(b)) for a, b in provider.calls
    ]
    assert p.forecast_used
    assert p.intensity_source == "test forecast"
    assert p.best_start_ts is not None


def test_budget_warns_once_and_training_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    tracker, records = fake_run(5, monitor_epochs=-1, budget_kwh=1e-6, stop=False)
    # Warned when the prediction was made (not only in the final summary), once.
    logged = [r for r in caplog.records if "exceeds the budget" in r.getMessage()]
    assert len(logged) == 1
    assert logged[0].levelno == logging.WARNING
    tracker.stop()
    assert len(records) == 5
    budget_warnings = [w for w in tracker.report.warnings if "exceeds the budget" in w]
    assert len(budget_warnings) == 1
    assert "budget_kwh=1e-06" in budget_warnings[0]


def test_budget_message_gives_small_figures_in_significant_digits() -> None:
    # 1 W for 5 x 10 s: 2.17e-05 kWh and 0.01 g, which fixed decimals printed as 0.0000 and 0.0.
    tracker, _ = fake_run(5, watts=[1.0] * 5, budget_kwh=1e-6, budget_co2eq_g=1e-9)
    (message,) = [w for w in tracker.report.warnings if "exceeds the budget" in w]
    p = tracker.report.predictions[0]
    kwh = p.energy_j * tracker.settings.pue / J_PER_KWH
    assert f"{kwh:.3g} kWh (facility) against budget_kwh=1e-06" in message
    assert f"{p.co2eq_g:.3g} gCO2eq against budget_co2eq_g=1e-09" in message
    assert " 0.0000 kWh" not in message
    assert " 0.0 gCO2eq" not in message


def test_budget_raise_stops_the_user_at_the_epoch_boundary() -> None:
    clock = FakeClock()
    hw = FakeHardware([FakeDevice("pkg", watts=100.0)], clock=clock)
    settings = make_settings(
        epochs=10, verbose=0, write_log=False, budget_co2eq_g=1e-9, on_budget="raise"
    )
    epochs_run = 0
    run = Tracker(settings, plugins=[hw], autoload=False, clock=clock)
    # The whole training loop is inside on purpose: the point is where in it the error lands.
    with pytest.raises(BudgetExceeded, match=r"after 1 epoch\(s\).*budget_co2eq_g=1e-09"), run:  # noqa: PT012
        for _ in range(10):
            with run.epoch():
                clock.advance(10.0)
            epochs_run += 1
    assert epochs_run == 0  # raised as the first epoch ended, before the second began
    assert run.report.final  # leaving the block still wrote the report
    assert [p.after_epoch for p in run.report.predictions] == [1]


def test_an_error_in_the_epoch_is_not_hidden_by_the_budget_error() -> None:
    clock = FakeClock()
    hw = FakeHardware([FakeDevice("pkg", watts=100.0)], clock=clock)
    settings = make_settings(
        epochs=10, verbose=0, write_log=False, budget_co2eq_g=1e-9, on_budget="raise"
    )
    run = Tracker(settings, plugins=[hw], autoload=False, clock=clock)

    def epoch_with_a_bug() -> None:
        with run, run.epoch():
            clock.advance(10.0)
            _ = 1 / 0  # the user's own bug, in the epoch that first exceeds the budget

    with pytest.raises(ZeroDivisionError):
        epoch_with_a_bug()
    assert [p.after_epoch for p in run.report.predictions] == [1]  # the epoch still counted


def test_budget_callback_gets_the_prediction_once() -> None:
    seen: list[Prediction] = []
    tracker, _ = fake_run(5, monitor_epochs=-1, budget_co2eq_g=1e-9, on_budget=seen.append)
    assert len(seen) == 1
    assert seen[0] == tracker.report.predictions[0]


def test_prediction_under_budget_does_nothing() -> None:
    seen: list[Prediction] = []
    tracker, _ = fake_run(3, budget_kwh=1e6, on_budget=seen.append)
    assert seen == []
    assert not any("budget" in w for w in tracker.report.warnings)


def test_a_failing_budget_callback_never_reaches_training() -> None:
    def boom(_p: Prediction) -> None:
        raise RuntimeError("callback broke")

    _, records = fake_run(3, budget_kwh=1e-9, on_budget=boom)
    assert len(records) == 3


@pytest.mark.parametrize(
    "options",
    [
        {"budget_co2eq_g": -1.0},
        {"budget_kwh": -0.5},
        {"epochs": 3, "epochs_before_pred": 4},
    ],
)
def test_bad_prediction_options_raise_value_error(options: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=next(iter(options.keys() - {"epochs"}))):
        make_settings(**options)


# -- equivalents ------------------------------------------------------------------------------


def test_every_equivalent_is_sourced_and_dated() -> None:
    for e in EQUIVALENTS:
        assert e.g_per_unit > 0
        assert 2000 <= e.year <= 2030
        assert len(e.source) > 20
    assert "km by car" in [e.unit for e in EQUIVALENTS]
    assert format_equivalents(106.8 * 3).startswith("3.0 km by car")


# -- the console matches the run log ----------------------------------------------------------


def test_ten_epoch_run_prints_a_prediction_after_epoch_1_and_an_actual_block_matching_the_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = FakeClock()
    watts = [150.0, 100.0, 110.0, 90.0, 100.0, 105.0, 95.0, 100.0, 100.0, 100.0]
    power = {"w": watts[0]}
    hw = FakeHardware([FakeDevice("pkg", watts=lambda _t: power["w"])], clock=clock)
    settings = make_settings(epochs=10, log_dir=tmp_path, verbose=1, pue=1.5)
    with Tracker(settings, plugins=[hw], autoload=False, clock=clock) as run:
        for i in range(10):
            power["w"] = watts[i]
            with run.epoch():
                clock.advance(30.0)
            if i == 0:
                after_first = capsys.readouterr().err
    final = capsys.readouterr().err

    (log,) = tmp_path.glob("*.jsonl")
    lines = [json.loads(x) for x in log.read_text(encoding="utf-8").splitlines()]
    epoch_lines = [x for x in lines if x["type"] == "epoch"]
    logged = epoch_lines[0]["prediction"]
    report = next(x for x in lines if x["type"] == "report")["report"]

    # The prediction printed after epoch 1 is the one in the log, figure for figure.
    assert "predicted for all 10 epochs (after 1;" in after_first
    assert f"time    {format_duration(logged['duration_s'])}" in after_first
    assert f"energy  {format_energy(logged['energy_j'])} devices" in after_first
    assert f"-> {format_energy(logged['energy_j'] * 1.5)}" in after_first
    assert f"CO2eq   {format_co2(logged['co2eq_g'])}" in after_first
    assert logged["energy_j"] == pytest.approx(150.0 * 30.0 * 10)
    assert all(x["prediction"] is None for x in epoch_lines[1:])

    # The actual block is the final report of the log.
    head = re.search(
        r"carbontrack: actual \(measured\) (\S+), (.+?) \(PUE 1\.5 -> (.+?)\), (.+)", final
    )
    assert head is not None, final
    assert head.group(1) == format_duration(report["duration_s"])
    assert head.group(2) == format_energy(report["energy_j"])
    assert head.group(3) == format_energy(report["facility_energy_j"])
    assert head.group(4) == format_co2(report["co2eq_g"])
    assert report["energy_j"] == pytest.approx(sum(watts) * 30.0)
    assert "epochs 10 of 10" in final
    assert f"predicted after epoch 1: {format_co2(logged['co2eq_g'])} for 10 epochs" in final
    assert f"that is about {format_equivalents(report['co2eq_g'])}" in final


def test_short_epochs_do_not_flood_the_console(capsys: pytest.CaptureFixture[str]) -> None:
    clock = FakeClock()
    hw = FakeHardware([FakeDevice("pkg", watts=100.0)], clock=clock)
    settings = make_settings(epochs=200, monitor_epochs=-1, write_log=False, verbose=1)
    with Tracker(settings, plugins=[hw], autoload=False, clock=clock) as run:
        for _ in range(200):
            with run.epoch():
                clock.advance(1.0)
    err = capsys.readouterr().err
    assert len(run.report.predictions) == 199  # every prediction is kept in the report
    printed = err.count("carbontrack: predicted for")
    assert 2 <= printed <= 4  # first, then at most one per minute of a 200 s run


def test_prediction_block_states_interval_level_forecast_and_cleaner_start() -> None:
    records = epochs_of([3600.0, 3700.0, 3500.0], [600.0, 600.0, 600.0])
    forecast = hourly([500.0, 400.0, 50.0, 50.0, 50.0, 500.0])
    p = predict(records, total_epochs=6, g_per_kwh=300.0, pue=1.2, forecast=forecast)
    text = format_prediction(p, 1.2)
    assert p.co2eq_g_low is not None
    assert p.co2eq_g_high is not None
    assert p.best_start_ts is not None
    assert f"95% prediction interval: {format_co2(p.co2eq_g_low)} to " in text
    assert "forecast over the predicted window" in text
    assert "cleaner start: the whole run started at " in text
    assert time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(p.best_start_ts)) in text
