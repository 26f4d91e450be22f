"""``carbontrack report --epochs``: one run's epochs as compact bars in a terminal."""

from __future__ import annotations

import math

from carbontrack.model import EpochRecord
from carbontrack.report_html._data import RunDetail
from carbontrack.report_html._svg import energy_unit, fmt

__all__ = ["MAX_ROWS", "format_epochs"]

#: Rows at most: a longer run shows groups of consecutive epochs (their mean per epoch).
MAX_ROWS = 40
BAR_WIDTH = 40
_EIGHTHS = " ▏▎▍▌▋▊▉"


def _bar(value: float, peak: float, *, unicode: bool) -> str:
    if peak <= 0:
        return ""
    cells = value / peak * BAR_WIDTH
    if not unicode:
        return "#" * round(cells)
    whole = math.floor(cells)
    part = round((cells - whole) * 8)
    if part == 8:
        whole, part = whole + 1, 0
    return "█" * whole + (_EIGHTHS[part] if part else "")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _groups(epochs: tuple[EpochRecord, ...]) -> list[tuple[str, float, float, float]]:
    """``(label, mean energy, mean duration, mean CO2eq)`` per row."""
    size = max(1, math.ceil(len(epochs) / MAX_ROWS))
    rows = []
    for i in range(0, len(epochs), size):
        group = epochs[i : i + size]
        label = str(group[0].index) if len(group) == 1 else f"{group[0].index}-{group[-1].index}"
        n = len(group)
        rows.append(
            (
                label,
                sum(e.energy_j for e in group) / n,
                sum(e.duration_s for e in group) / n,
                sum(e.co2eq_g for e in group) / n,
            )
        )
    return rows


def format_epochs(run: RunDetail, *, unicode: bool = True) -> str:
    """The epoch view of ``run``: a bar of device energy per epoch (or per group of epochs,
    their mean, for runs longer than ``MAX_ROWS``), and the latest prediction."""
    s = run.summary
    status = {"complete": "complete", "killed": "killed: no final report"}.get(
        run.status, run.status
    )
    planned = f" of {run.epochs_planned}" if run.epochs_planned else ""
    lines = [f"run {s.run_id} ({status}): {len(run.epochs)} epoch(s){planned}"]
    if not run.epochs:
        lines.append(
            "  no epoch in this log"
            + (" (a carbontracker log gives totals only)" if run.status == "carbontracker" else "")
        )
        return "\n".join(lines)
    rows = _groups(run.epochs)
    peak = max(r[1] for r in rows)
    div, unit = energy_unit(peak)
    grouped = len(rows) < len(run.epochs)
    if grouped:
        lines.append(f"  each row: the mean of {math.ceil(len(run.epochs) / MAX_ROWS)} epochs")
    width = max(len(r[0]) for r in [*rows, ("epoch", 0, 0, 0)])
    lines.append(
        f"  {'epoch':>{width}}  {'time':>8}  {'energy (' + unit + ')':>12}  "
        f"{'':<{BAR_WIDTH}}  {'CO2eq (g)':>10}"
    )
    for label, energy, duration, co2 in rows:
        lines.append(
            f"  {label:>{width}}  {_duration(duration):>8}  {fmt(energy / div):>12}  "
            f"{_bar(energy, peak, unicode=unicode):<{BAR_WIDTH}}  {fmt(co2):>10}"
        )
    total = sum(e.energy_j for e in run.epochs)
    lines.append(
        f"  total {fmt(total / div)} {unit} of device energy in {len(run.epochs)} epoch(s), "
        f"{fmt(sum(e.co2eq_g for e in run.epochs))} gCO2eq"
    )
    p = run.prediction
    if p is not None:
        pdiv, punit = energy_unit(p.energy_j)
        text = (
            f"  predicted after epoch {p.after_epoch} for {p.epochs} epochs: "
            f"{fmt(p.energy_j / pdiv)} {punit}, {fmt(p.co2eq_g)} gCO2eq"
        )
        if p.co2eq_g_low is not None and p.co2eq_g_high is not None and p.level is not None:
            text += f" ({p.level:.0%} interval {fmt(p.co2eq_g_low)} to {fmt(p.co2eq_g_high)} g)"
        lines.append(text)
    if run.status == "killed":
        lines.append(
            "  the run ended without its final report: epochs after the last line are lost"
        )
    return "\n".join(lines)
