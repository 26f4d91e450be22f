"""Predicting the footprint of a whole training run from its first epochs (pure functions).

The method of Anthony et al. (2020), made trustworthy: what was measured plus the remaining
epochs times the mean epoch, a prediction interval from the spread of the epochs seen, the
intensity forecast over the predicted window, and the start time a forecast says is cleanest.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

from carbontrack.model import J_PER_KWH, EpochRecord, IntensityPoint, Prediction

__all__ = [
    "DEFAULT_LEVEL",
    "TREND_ALPHA",
    "best_start",
    "interval_half_width",
    "mean_intensity",
    "predict",
    "t_quantile",
]

#: The level of the prediction interval unless asked otherwise.
DEFAULT_LEVEL = 0.95
#: A slope of epoch energy on epoch index whose two-sided p-value is below this is a trend the
#: point prediction follows; otherwise it takes the mean. Strict, because extrapolating a
#: spurious slope over many epochs is a large error (at 0.05, 10 % noise after 5 epochs of 100
#: gave a 10 % mean error instead of 3 %, benchmarks/bench_prediction.py); the interval is the
#: fitted line's either way, so its coverage does not depend on this.
TREND_ALPHA = 0.01


# -- Student's t distribution (no scipy at run time) ----------------------------------------


def _betacf(a: float, b: float, x: float) -> float:
    # Continued fraction of the incomplete beta function (modified Lentz's method, as in
    # Numerical Recipes §6.4); converges fast for x < (a + 1) / (a + b + 2).
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = tiny if abs(d) < tiny else d
    d = 1.0 / d
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = tiny if abs(d) < tiny else d
        c = 1.0 + aa / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = tiny if abs(d) < tiny else d
        c = 1.0 + aa / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def _t_cdf(x: float, df: float) -> float:
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + x * x))
    return 1.0 - tail if x >= 0 else tail


@functools.lru_cache(maxsize=256)
def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t distribution with ``df`` degrees of freedom.

    Found by bisection on the CDF (through the regularised incomplete beta function) to about
    1e-12; ``t_quantile(0.975, 1)`` is 12.7062. Raises ``ValueError`` outside ``0 < p < 1`` or
    for ``df <= 0``.
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"p={p!r} is not a probability strictly between 0 and 1")
    if not df > 0 or not math.isfinite(df):
        raise ValueError(f"df={df!r} degrees of freedom: expected a finite number > 0")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while _t_cdf(hi, df) < p:
        lo, hi = hi, hi * 2.0
        if hi > 1e300:
            return math.inf
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def interval_half_width(s: float, n: int, remaining: int, level: float = DEFAULT_LEVEL) -> float:
    """Half-width of the prediction interval for the sum of ``remaining`` future epochs.

    Each epoch is taken to be like the ``n`` observed ones (sample standard deviation ``s``):
    the sum is ``R·mean ± t(n-1)·s·sqrt(R + R²/n)``, where ``R/√n·s`` is the uncertainty of the
    mean and ``√R·s`` the spread of the epochs still to come. Needs ``n >= 2``.
    """
    if n < 2:
        raise ValueError(f"an interval needs at least 2 epochs in the mean, got n={n}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level={level!r}: expected a probability strictly between 0 and 1")
    if remaining <= 0:
        return 0.0
    t = t_quantile(0.5 + level / 2.0, n - 1)
    return t * s * math.sqrt(remaining + remaining * remaining / n)


# -- intensity over a window ----------------------------------------------------------------


def mean_intensity(
    start_ts: float,
    end_ts: float,
    forecast: Sequence[IntensityPoint],
    fallback_g_per_kwh: float,
) -> tuple[float, bool]:
    """The time-averaged intensity over ``[start_ts, end_ts)`` and whether the forecast covered
    any of it. Parts the forecast does not cover count at ``fallback_g_per_kwh``.

    Averaging over time is averaging over energy here, because a prediction spreads the energy
    of the remaining epochs evenly over their time.
    """
    span = end_ts - start_ts
    if span <= 0:
        point = next((p for p in forecast if p.start_ts <= start_ts < p.end_ts), None)
        return (point.g_per_kwh, True) if point is not None else (fallback_g_per_kwh, False)
    weighted = covered = 0.0
    cursor = start_ts
    # Sorted and clipped to a moving cursor, so overlapping points (a careless provider) count
    # once, the earlier one winning.
    for p in sorted(forecast, key=lambda p: p.start_ts):
        lo, hi = max(cursor, p.start_ts), min(end_ts, p.end_ts)
        if hi > lo:
            weighted += (hi - lo) * p.g_per_kwh
            covered += hi - lo
            cursor = hi
    return (weighted + (span - covered) * fallback_g_per_kwh) / span, covered > 0


def best_start(
    energy_kwh: float,
    duration_s: float,
    forecast: Sequence[IntensityPoint],
    now_ts: float,
    fallback_g_per_kwh: float,
) -> tuple[float, float, float] | None:
    """The start time in the forecast horizon that minimises the CO2eq of a run drawing
    ``energy_kwh`` evenly over ``duration_s``.

    Returns ``(start_ts, co2eq_g if started then, co2eq_g if started at now_ts)``, or ``None``
    when no forecast reaches ``duration_s`` past ``now_ts``. For a piecewise-constant forecast
    the best window starts or ends at a point's edge, so only those starts are tried.
    """
    future = sorted((p for p in forecast if p.end_ts > now_ts), key=lambda p: p.start_ts)
    if not future or duration_s <= 0:
        return None
    horizon = max(p.end_ts for p in future)
    latest = horizon - duration_s
    if latest < now_ts:
        return None
    candidates = {now_ts, latest}
    for p in future:
        candidates.update((p.start_ts, p.end_ts - duration_s))

    def co2_at(start: float) -> float:
        g, _ = mean_intensity(start, start + duration_s, future, fallback_g_per_kwh)
        return energy_kwh * g

    at_now = co2_at(now_ts)
    best_ts, best_g = now_ts, at_now
    for start in sorted(c for c in candidates if now_ts <= c <= latest):
        co2 = co2_at(start)
        # Later starts must beat the current best clearly, so rounding never delays a run.
        if co2 < best_g * (1 - 1e-9):
            best_ts, best_g = start, co2
    return best_ts, best_g, at_now


# -- the prediction -------------------------------------------------------------------------


def _mean_sd(values: Sequence[float]) -> tuple[float, float]:
    n = len(values)
    mean = math.fsum(values) / n
    if n < 2:
        return mean, 0.0
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))


def _energy_rest(
    energies: Sequence[float], remaining: int, level: float
) -> tuple[float, float, float, str, float]:
    """``(energy of the remaining epochs, its low and high bounds, trend, slope)``, 3+ epochs.

    A line is fitted to epoch energy on epoch index; ``h = t(n-2)·s·sqrt(R + R²/n +
    (Σ(x_k - x̄))²/Sxx)`` is the half-width of the prediction interval of the remaining
    epochs' sum under it. The prediction follows the line where the slope is clear (p <
    ``TREND_ALPHA``: ``"modelled"``) and is the mean otherwise (``"allowed for"``); the interval
    is the line's (stretched to hold the prediction if the mean lies outside it), so a trend
    that a few epochs cannot rule out stays inside it whichever centre was chosen.
    """
    n = len(energies)
    xs = range(1, n + 1)
    x_bar = (n + 1) / 2.0
    y_bar = math.fsum(energies) / n
    sxx = math.fsum((x - x_bar) ** 2 for x in xs)
    slope = math.fsum((x - x_bar) * (y - y_bar) for x, y in zip(xs, energies, strict=True)) / sxx
    intercept = y_bar - slope * x_bar
    residuals = [y - (intercept + slope * x) for x, y in zip(xs, energies, strict=True)]
    s = math.sqrt(math.fsum(r * r for r in residuals) / (n - 2))
    if s > 0:
        clear = abs(slope) / (s / math.sqrt(sxx)) > t_quantile(1.0 - TREND_ALPHA / 2.0, n - 2)
    else:
        clear = slope != 0.0  # an exact line
    trend = "modelled" if clear else "allowed for"
    if remaining <= 0:
        return 0.0, 0.0, 0.0, trend, slope
    future = range(n + 1, n + remaining + 1)
    spread = math.fsum(x - x_bar for x in future)
    t = t_quantile(0.5 + level / 2.0, n - 2)
    half = t * s * math.sqrt(remaining + remaining * remaining / n + spread * spread / sxx)
    line = math.fsum(intercept + slope * x for x in future)
    # Epochs cannot draw negative energy: a falling line stops at zero.
    if clear:
        centre = math.fsum(max(intercept + slope * x, 0.0) for x in future)
    else:
        centre = remaining * y_bar
    # The line's interval, stretched to hold the prediction where the mean lies outside it.
    low, high = min(line - half, centre), max(line + half, centre)
    return centre, max(low, 0.0), high, trend, slope


def predict(
    epochs: Sequence[EpochRecord],
    *,
    total_epochs: int,
    g_per_kwh: float,
    pue: float,
    warmup_epochs: int = 0,
    intensity_source: str = "",
    level: float = DEFAULT_LEVEL,
    forecast: Sequence[IntensityPoint] = (),
    now_ts: float | None = None,
) -> Prediction:
    """Predict duration, energy and CO2eq of ``total_epochs`` from the measured ``epochs``.

    What was measured plus the remaining epochs times the mean of the epochs after
    ``warmup_epochs``; with 3 or more epochs in the mean, a linear trend in epoch energy is
    modelled where it is clear and allowed for in the interval where it is not (``trend``).
    ``energy_j`` is device (IT) energy; ``co2eq_g`` includes the PUE: the
    measured epochs count with their own ``co2eq_g``, the remaining ones at the ``forecast``
    averaged over the predicted window (from ``now_ts``, by default the end of the last epoch),
    or at ``g_per_kwh`` where there is no forecast. With two or more epochs in the mean, the
    ``*_low``/``*_high`` fields bound a prediction interval at ``level``. Raises ``ValueError``
    when no epoch is left for the mean after ``warmup_epochs``.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level={level!r}: expected a probability strictly between 0 and 1")
    sample = list(epochs[warmup_epochs:])
    if not sample:
        raise ValueError(
            f"cannot predict from {len(epochs)} epoch(s) with warmup_epochs={warmup_epochs}: "
            "no epoch left for the mean; predict after more epochs or lower warmup_epochs"
        )
    done = len(epochs)
    remaining = max(total_epochs - done, 0)
    mean_s, sd_s = _mean_sd([e.duration_s for e in sample])
    mean_j, sd_j = _mean_sd([e.energy_j for e in sample])
    measured_s = math.fsum(e.duration_s for e in epochs)
    measured_j = math.fsum(e.energy_j for e in epochs)
    measured_g = math.fsum(e.co2eq_g for e in epochs)

    if now_ts is None:
        last = epochs[-1]
        now_ts = last.started_at + last.duration_s
    rest_s = remaining * mean_s
    g_rest, forecast_used = mean_intensity(now_ts, now_ts + rest_s, forecast, g_per_kwh)
    if remaining == 0:
        g_rest, forecast_used = g_per_kwh, False

    def co2(rest_j: float) -> float:
        return measured_g + rest_j * pue / J_PER_KWH * g_rest

    rest_j = remaining * mean_j
    rest_j_low = rest_j_high = rest_j
    trend: str | None = None
    slope: float | None = None
    if len(sample) >= 3:
        rest_j, rest_j_low, rest_j_high, trend, slope = _energy_rest(
            [e.energy_j for e in sample], remaining, level
        )
    elif len(sample) == 2:
        hw_j = interval_half_width(sd_j, len(sample), remaining, level)
        # Epochs cannot take negative energy: the lower bound stops at what was measured.
        rest_j_low, rest_j_high = max(rest_j - hw_j, 0.0), rest_j + hw_j
    duration_s = measured_s + rest_s
    energy_j = measured_j + rest_j
    low_s = high_s = low_j = high_j = low_g = high_g = None
    stated_level: float | None = None
    if len(sample) >= 2:
        stated_level = level
        hw_s = interval_half_width(sd_s, len(sample), remaining, level)
        low_s, high_s = measured_s + max(rest_s - hw_s, 0.0), measured_s + rest_s + hw_s
        low_j, high_j = measured_j + rest_j_low, measured_j + rest_j_high
        low_g, high_g = co2(rest_j_low), co2(rest_j_high)

    hint = None
    if forecast:
        hint = best_start(energy_j * pue / J_PER_KWH, duration_s, forecast, now_ts, g_per_kwh)
    return Prediction(
        after_epoch=done,
        epochs=total_epochs,
        duration_s=duration_s,
        energy_j=energy_j,
        co2eq_g=co2(rest_j),
        g_per_kwh=g_rest,
        level=stated_level,
        epochs_in_mean=len(sample),
        intensity_source=intensity_source,
        forecast_used=forecast_used,
        best_start_ts=hint[0] if hint is not None else None,
        best_start_saving_g=hint[2] - hint[1] if hint is not None else None,
        duration_s_low=low_s,
        duration_s_high=high_s,
        energy_j_low=low_j,
        energy_j_high=high_j,
        co2eq_g_low=low_g,
        co2eq_g_high=high_g,
        trend=trend,
        trend_j_per_epoch=slope,
    )
