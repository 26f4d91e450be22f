"""The console summary on stderr: predictions after epochs and the final report.

Silenced with ``verbose=0``. Every figure says whether it was measured or estimated.
"""

from __future__ import annotations

import sys
from typing import TextIO

from carbontrack.hookspecs import hookimpl
from carbontrack.model import Prediction, Report, RunInfo
from carbontrack.paths import run_log_path
from carbontrack.settings import Settings

__all__ = [
    "ConsoleWriter",
    "format_duration",
    "format_energy",
    "format_prediction",
    "format_report",
]

_METHOD_WORDS = {
    "counter": "measured (energy counter)",
    "power": "measured (sampled power)",
    "model": "ESTIMATED (model, not a measurement)",
}


def format_duration(seconds: float) -> str:
    """``3725.2`` → ``1:02:05``; under a minute → ``12.3 s``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def format_energy(joules: float) -> str:
    """Energy in Wh or kWh, whichever reads better."""
    wh = joules / 3600
    return f"{wh / 1000:.3f} kWh" if wh >= 1000 else f"{wh:.3f} Wh"


def format_co2(grams: float) -> str:
    """CO2eq in g or kg."""
    return f"{grams / 1000:.3f} kgCO2eq" if grams >= 1000 else f"{grams:.3f} gCO2eq"


def format_prediction(p: Prediction) -> str:
    """The prediction block printed after an epoch."""
    lines = [
        f"carbontrack: predicted for {p.epochs} epochs (after {p.after_epoch}):",
        f"  time    {format_duration(p.duration_s)}",
        f"  energy  {format_energy(p.energy_j)} (devices, before PUE)",
        f"  CO2eq   {format_co2(p.co2eq_g)} at {p.g_per_kwh:.1f} gCO2eq/kWh",
    ]
    if p.level is not None and p.co2eq_g_low is not None and p.co2eq_g_high is not None:
        lines.append(
            f"  {p.level:.0%} interval: {format_co2(p.co2eq_g_low)} to {format_co2(p.co2eq_g_high)}"
        )
    return "\n".join(lines)


def format_report(report: Report, log_path: str | None = None) -> str:
    """The final summary: totals, each component with its method, intensity and what to fix."""
    head = "carbontrack: measured" if not report.estimated else "carbontrack: measured/estimated"
    lines = [
        f"{head} {format_duration(report.duration_s)}, "
        f"{format_energy(report.energy_j)} (PUE {report.pue:g} -> "
        f"{format_energy(report.facility_energy_j)}), {format_co2(report.co2eq_g)}",
    ]
    for comp in report.components:
        words = ", ".join(_METHOD_WORDS[m] for m in comp.methods)
        partial = " [PARTIAL: some hardware not measured]" if comp.partial else ""
        lines.append(
            f"  {comp.component:<5} {format_energy(comp.energy_j):>12}  {words}, "
            f"{comp.devices} device(s){partial}"
        )
    if not report.components:
        lines.append("  no device measured: energy unknown (run `carbontrack devices`)")
    i = report.intensity
    where = report.location.region or report.location.country or "unknown location"
    year = f" {i.year}" if i.year else ""
    lines.append(f"  intensity {i.g_per_kwh:.1f} gCO2eq/kWh ({where}; {i.source}{year}, {i.basis})")
    if report.epochs:
        lines.append(
            f"  epochs {len(report.epochs)}"
            + (f" of {report.epochs_planned}" if report.epochs_planned else "")
        )
    for u in report.unavailable:
        lines.append(f"  not measured: {u.kind} ({u.backend}): {u.reason}. Fix: {u.fix}")
    for w in report.warnings:
        lines.append(f"  note: {w}")
    for f in report.failures:
        lines.append(f"  plugin {f.plugin} failed in {f.hook} ({f.count}x): {f.error}")
    if log_path:
        lines.append(f"  run log: {log_path}")
    return "\n".join(lines)


class ConsoleWriter:
    """Prints to ``stream`` (stderr by default, looked up at call time so capture works)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    def _print(self, text: str) -> None:
        stream = self._stream if self._stream is not None else sys.stderr
        print(text, file=stream, flush=True)

    @hookimpl
    def carbontrack_run_started(self, run: RunInfo, settings: Settings) -> None:
        """At ``verbose=2``, list what will be measured."""
        if settings.verbose < 2:
            return
        names = ", ".join(f"{d.name} [{d.method}]" for d in run.devices) or "nothing"
        self._print(f"carbontrack: measuring {names}")

    @hookimpl
    def carbontrack_epoch_ended(self, prediction: Prediction | None, settings: Settings) -> None:
        """Print a prediction when one was made."""
        if prediction is not None and settings.verbose >= 1:
            self._print(format_prediction(prediction))

    @hookimpl
    def carbontrack_report_ready(self, report: Report, settings: Settings) -> None:
        """Print the final summary."""
        if settings.verbose < 1:
            return
        log = None
        if settings.write_log:
            log = str(run_log_path(settings, report.run_id, report.started_at))
        self._print(format_report(report, log))
