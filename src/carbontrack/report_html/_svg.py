"""Inline SVG charts for the HTML report: no JavaScript, colours from the page's CSS.

Each chart is one ``<svg role="img">`` with a ``<title>`` and a ``<desc>`` that says in words
what it shows (screen readers read them; the page adds the numbers as a table). Series take
their colours from CSS classes (``s0``...``s7``), so dark and light modes and print restyle
them without touching the SVG.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from html import escape

from carbontrack.model import EpochRecord, Prediction

__all__ = [
    "co2_per_run_chart",
    "cumulative_energy_chart",
    "energy_per_epoch_chart",
    "energy_unit",
    "fmt",
    "power_chart",
    "time_unit",
]

W, H = 720.0, 300.0
LEFT, RIGHT, TOP, BOTTOM = 64.0, 16.0, 16.0, 44.0
SERIES = 8

_ids = itertools.count(1)


def fmt(value: float) -> str:
    """A short, readable number: 3 significant digits, no exponent for everyday sizes."""
    if value == 0 or not math.isfinite(value):
        return "0" if value == 0 else str(value)
    magnitude = abs(value)
    if magnitude >= 1e6 or magnitude < 1e-3:
        return f"{value:.3g}"
    digits = max(0, 2 - math.floor(math.log10(magnitude)))
    return f"{value:,.{digits}f}"


def energy_unit(max_j: float) -> tuple[float, str]:
    """Divisor and unit for energies up to ``max_j``: J, Wh or kWh."""
    if max_j < 3600.0:
        return 1.0, "J"
    if max_j < 3.6e6:
        return 3600.0, "Wh"
    return 3.6e6, "kWh"


def time_unit(max_s: float) -> tuple[float, str]:
    """Divisor and unit for durations up to ``max_s``: s, min or h."""
    if max_s <= 120:
        return 1.0, "s"
    if max_s <= 3 * 3600:
        return 60.0, "min"
    return 3600.0, "h"


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values from ``lo`` up to the first one at or above ``hi``."""
    if not hi > lo:
        hi = lo + 1.0
    raw = (hi - lo) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [first + i * step for i in range(math.ceil((hi - first) / step - 1e-9) + 1)]


def _tick_label(value: float, ticks: Sequence[float]) -> str:
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step > 0 else 0
    if step > 0 and abs(step * 2 - round(step * 2)) < 1e-9 and step < 1:
        decimals = max(decimals, 1)
    if abs(step - 2.5 * 10 ** math.floor(math.log10(step))) < 1e-9 * step:
        decimals += 1 if step < 10 else 0
    return f"{value:,.{decimals}f}"


class _Frame:
    """The plot area of a chart and its scales."""

    def __init__(self, x_max: float, y_max: float, *, x_min: float = 0.0) -> None:
        self.x_min = x_min
        self.x_ticks = _ticks(x_min, x_max)
        self.y_ticks = _ticks(0.0, y_max)
        # Time and epoch axes end at the data; the last tick may not be shown.
        self.x_max = x_max if x_max > x_min else x_min + 1.0
        self.y_max = self.y_ticks[-1] if self.y_ticks[-1] > 0 else 1.0

    def x(self, value: float) -> float:
        span = self.x_max - self.x_min
        return LEFT + (value - self.x_min) / span * (W - LEFT - RIGHT)

    def y(self, value: float) -> float:
        return H - BOTTOM - value / self.y_max * (H - TOP - BOTTOM)

    def axes(self, x_label: str, y_label: str, *, x_format: str = "number") -> str:
        parts = ['<g class="axis">']
        for t in self.y_ticks:
            y = self.y(t)
            parts.append(
                f'<line class="grid" x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
                f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
                f"{_tick_label(t, self.y_ticks)}</text>"
            )
        for t in self.x_ticks:
            if t > self.x_max + 1e-9:
                continue
            x = self.x(t)
            label = str(round(t)) if x_format == "int" else _tick_label(t, self.x_ticks)
            parts.append(
                f'<line class="tick" x1="{x:.1f}" x2="{x:.1f}" y1="{H - BOTTOM}" '
                f'y2="{H - BOTTOM + 4}"/>'
                f'<text x="{x:.1f}" y="{H - BOTTOM + 17}" text-anchor="middle">{label}</text>'
            )
        parts.append(
            f'<line class="frame" x1="{LEFT}" x2="{W - RIGHT}" y1="{H - BOTTOM}" '
            f'y2="{H - BOTTOM}"/>'
            f'<line class="frame" x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{H - BOTTOM}"/>'
            f'<text class="label" x="{(LEFT + W - RIGHT) / 2}" y="{H - 6}" '
            f'text-anchor="middle">{escape(x_label)}</text>'
            f'<text class="label" transform="translate(14 {(TOP + H - BOTTOM) / 2}) rotate(-90)" '
            f'text-anchor="middle">{escape(y_label)}</text></g>'
        )
        return "".join(parts)


def _svg(title: str, desc: str, body: str, *, height: float = H, kind: str = "") -> str:
    n = next(_ids)
    return (
        f'<svg class="chart {kind}" viewBox="0 0 {W:g} {height:g}" role="img" '
        f'aria-labelledby="chart{n}-title chart{n}-desc" xmlns="http://www.w3.org/2000/svg">'
        f'<title id="chart{n}-title">{escape(title)}</title>'
        f'<desc id="chart{n}-desc">{escape(desc)}</desc>{body}</svg>'
    )


def _legend(labels: Sequence[str]) -> str:
    items = "".join(
        f'<li><span class="key s{i % SERIES}" aria-hidden="true"></span>{escape(label)}</li>'
        for i, label in enumerate(labels)
    )
    return f'<ul class="legend">{items}</ul>'


def power_chart(
    title: str,
    steps: Sequence[tuple[float, float, Sequence[float]]],
    labels: Sequence[str],
) -> str:
    """Step lines of each device's mean power per interval; ``steps`` are ``(start_s, end_s,
    watts per device in the order of labels)``."""
    if not steps:
        return ""
    end = steps[-1][1]
    div, unit = time_unit(end)
    peak = max((w for s in steps for w in s[2]), default=0.0)
    frame = _Frame(end / div, peak * 1.08)
    paths = []
    for i, label in enumerate(labels):
        d = []
        for j, (t0, t1, watts) in enumerate(steps):
            y = f"{frame.y(watts[i]):.1f}"
            if j == 0:
                d.append(f"M{frame.x(t0 / div):.1f} {y}")
            else:
                d.append(f"V{y}")
            d.append(f"H{frame.x(t1 / div):.1f}")
        paths.append(
            f'<path class="line s{i % SERIES}" d="{"".join(d)}">'
            f"<title>{escape(label)}</title></path>"
        )
    means = ", ".join(
        f"{label}: {fmt(_mean(steps, i))} W on average, peak {fmt(max(s[2][i] for s in steps))} W"
        for i, label in enumerate(labels)
    )
    desc = (
        f"Mean power of each of {len(labels)} device(s) per interval over {fmt(end / div)} "
        f"{unit}: {means}."
    )
    body = frame.axes(f"time since start ({unit})", "power (W)") + "".join(paths)
    return _svg(title, desc, body, kind="power") + _legend(labels)


def _mean(steps: Sequence[tuple[float, float, Sequence[float]]], i: int) -> float:
    span = steps[-1][1] - steps[0][0]
    if span <= 0:
        return 0.0
    return sum(s[2][i] * (s[1] - s[0]) for s in steps) / span


def energy_per_epoch_chart(title: str, epochs: Sequence[EpochRecord]) -> str:
    """One bar per epoch: the energy the devices drew in it (IT energy, before PUE)."""
    if not epochs:
        return ""
    peak = max(e.energy_j for e in epochs)
    div, unit = energy_unit(peak)
    first, last = epochs[0].index, epochs[-1].index
    frame = _Frame(last + 0.5, peak / div * 1.08, x_min=first - 0.5)
    width = max((frame.x(1) - frame.x(0)) * 0.8, 0.6)
    bars = "".join(
        f'<rect class="bar" x="{frame.x(e.index) - width / 2:.1f}" '
        f'y="{frame.y(e.energy_j / div):.1f}" width="{width:.2f}" '
        f'height="{frame.y(0) - frame.y(e.energy_j / div):.1f}"/>'
        for e in epochs
    )
    mean = sum(e.energy_j for e in epochs) / len(epochs)
    desc = (
        f"{len(epochs)} epochs; energy per epoch from {fmt(min(e.energy_j for e in epochs) / div)}"
        f" to {fmt(peak / div)} {unit}, mean {fmt(mean / div)} {unit}."
    )
    body = frame.axes("epoch", f"energy per epoch ({unit})", x_format="int") + bars
    return _svg(title, desc, body, kind="epochs")


def cumulative_energy_chart(
    title: str, epochs: Sequence[EpochRecord], prediction: Prediction | None
) -> str:
    """Energy summed over the epochs measured, and the prediction for all epochs with its
    interval (a whisker at the last epoch, a fan from the epoch it was made after)."""
    if not epochs:
        return ""
    cumulative = list(itertools.accumulate(e.energy_j for e in epochs))
    top = cumulative[-1]
    last_x = float(epochs[-1].index)
    if prediction is not None:
        top = max(top, prediction.energy_j_high or prediction.energy_j, prediction.energy_j)
        last_x = max(last_x, float(prediction.epochs))
    div, unit = energy_unit(top)
    frame = _Frame(last_x, top / div * 1.08)
    points = " ".join(
        f"{frame.x(e.index):.1f},{frame.y(c / div):.1f}"
        for e, c in zip(epochs, cumulative, strict=True)
    )
    body = frame.axes("epoch", f"energy so far ({unit})", x_format="int")
    body += f'<polyline class="line s0 measured" points="{points}"/>'
    desc = f"Energy after {len(epochs)} epochs: {fmt(cumulative[-1] / div)} {unit}."
    if prediction is not None:
        after = min(prediction.after_epoch, len(cumulative))
        x0 = frame.x(epochs[after - 1].index) if after >= 1 else frame.x(0)
        y0 = frame.y(cumulative[after - 1] / div) if after >= 1 else frame.y(0)
        x1 = frame.x(prediction.epochs)
        y1 = frame.y(prediction.energy_j / div)
        if prediction.energy_j_low is not None and prediction.energy_j_high is not None:
            lo, hi = frame.y(prediction.energy_j_low / div), frame.y(prediction.energy_j_high / div)
            body += (
                f'<polygon class="band" points="{x0:.1f},{y0:.1f} {x1:.1f},{lo:.1f} '
                f'{x1:.1f},{hi:.1f}"/>'
                f'<line class="whisker" x1="{x1:.1f}" x2="{x1:.1f}" y1="{lo:.1f}" y2="{hi:.1f}"/>'
                f'<line class="whisker" x1="{x1 - 5:.1f}" x2="{x1 + 5:.1f}" y1="{lo:.1f}" '
                f'y2="{lo:.1f}"/><line class="whisker" x1="{x1 - 5:.1f}" x2="{x1 + 5:.1f}" '
                f'y1="{hi:.1f}" y2="{hi:.1f}"/>'
            )
            level = f"{prediction.level:.0%}" if prediction.level is not None else "the"
            desc += (
                f" Predicted after epoch {prediction.after_epoch} for all {prediction.epochs} "
                f"epochs: {fmt(prediction.energy_j / div)} {unit}, {level} prediction interval "
                f"{fmt(prediction.energy_j_low / div)} to {fmt(prediction.energy_j_high / div)} "
                f"{unit}."
            )
        else:
            desc += (
                f" Predicted after epoch {prediction.after_epoch} for all {prediction.epochs} "
                f"epochs: {fmt(prediction.energy_j / div)} {unit} (no interval from one epoch)."
            )
        body += (
            f'<line class="predicted" x1="{x0:.1f}" y1="{y0:.1f}" x2="{x1:.1f}" y2="{y1:.1f}"/>'
            f'<circle class="predicted-point" cx="{x1:.1f}" cy="{y1:.1f}" r="4"/>'
        )
    return _svg(title, desc, body, kind="cumulative") + _legend_prediction(prediction)


def _legend_prediction(prediction: Prediction | None) -> str:
    items = '<li><span class="key s0" aria-hidden="true"></span>measured</li>'
    if prediction is not None:
        items += '<li><span class="key predicted" aria-hidden="true"></span>predicted total</li>'
        if prediction.energy_j_low is not None:
            items += '<li><span class="key band" aria-hidden="true"></span>prediction interval</li>'
    return f'<ul class="legend">{items}</ul>'


def co2_per_run_chart(
    title: str, runs: Sequence[tuple[str, float | None, float | None, str]]
) -> str:
    """Horizontal bars: each run's CO2eq (``None``: unknown) with its prediction as a tick;
    ``runs`` are ``(label, co2eq_g, predicted_co2eq_g, css class)``."""
    if not runs:
        return ""
    row = 26.0
    height = TOP + row * len(runs) + BOTTOM
    left = 190.0
    values = [v for _, c, p, _ in runs for v in (c, p) if v is not None]
    peak = max(values, default=1.0) * 1.08 or 1.0
    ticks = _ticks(0.0, peak)
    peak = ticks[-1] if ticks[-1] > 0 else 1.0

    def x(v: float) -> float:
        return left + v / peak * (W - left - RIGHT)

    parts = ['<g class="axis">']
    for t in ticks:
        parts.append(
            f'<line class="grid" x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{TOP}" '
            f'y2="{height - BOTTOM}"/><text x="{x(t):.1f}" y="{height - BOTTOM + 17}" '
            f'text-anchor="middle">{_tick_label(t, ticks)}</text>'
        )
    parts.append(
        f'<text class="label" x="{(left + W - RIGHT) / 2}" y="{height - 6}" '
        f'text-anchor="middle">CO2eq (g)</text></g>'
    )
    said = []
    for i, (label, co2, predicted, css) in enumerate(runs):
        y = TOP + i * row
        parts.append(
            f'<text class="runlabel" x="{left - 8}" y="{y + row * 0.62:.1f}" '
            f'text-anchor="end">{escape(label)}</text>'
        )
        if co2 is None:
            parts.append(
                f'<text class="unknown" x="{left + 6}" y="{y + row * 0.62:.1f}">'
                "CO2eq unknown (not in the log)</text>"
            )
            said.append(f"{label}: unknown")
        else:
            parts.append(
                f'<rect class="bar {css}" x="{left}" y="{y + 4:.1f}" '
                f'width="{max(x(co2) - left, 0.5):.1f}" height="{row - 8:.1f}"/>'
            )
            said.append(f"{label}: {fmt(co2)} g")
        if predicted is not None:
            parts.append(
                f'<line class="predicted" x1="{x(predicted):.1f}" x2="{x(predicted):.1f}" '
                f'y1="{y + 1:.1f}" y2="{y + row - 1:.1f}"/>'
            )
    desc = f"CO2eq of {len(runs)} runs: " + "; ".join(said) + "."
    return _svg(title, desc, "".join(parts), height=height, kind="runs")
