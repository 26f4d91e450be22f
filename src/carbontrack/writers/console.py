"""The console summary on stderr: predictions after epochs and the final report.

Silenced with ``verbose=0``. Every figure says whether it was measured or estimated.
"""

from __future__ import annotations

import logging
import os
import sys
import textwrap
import time
from collections.abc import Container, Mapping
from typing import TYPE_CHECKING, TextIO

from carbontrack.hookspecs import hookimpl
from carbontrack.model import Report, RunInfo
from carbontrack.paths import run_log_path
from carbontrack.settings import Settings

if TYPE_CHECKING:
    # Annotations only: a run without epochs never loads them (carbontrack._model_later).
    from carbontrack.model import Command, EpochRecord, Prediction

__all__ = [
    "ConsoleWriter",
    "format_duration",
    "format_energy",
    "format_prediction",
    "format_report",
    "show_equivalents",
]

logger = logging.getLogger(__name__)

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
    if wh >= 1000:
        return f"{wh / 1000:.3f} kWh"
    # Small runs keep three significant figures instead of printing 0.000.
    return f"{wh:.3f} Wh" if wh >= 1 or wh == 0 else f"{wh:.3g} Wh"


def format_co2(grams: float) -> str:
    """CO2eq in g or kg."""
    if grams >= 1000:
        return f"{grams / 1000:.3f} kgCO2eq"
    return f"{grams:.3f} gCO2eq" if grams >= 1 or grams == 0 else f"{grams:.3g} gCO2eq"


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


def format_prediction(
    p: Prediction, pue: float = 1.0, *, equivalents: bool = True, methods: tuple[str, ...] = ()
) -> str:
    """The prediction block printed after an epoch: time, energy, CO2eq with its interval,
    the intensity used, equivalents (unless ``equivalents=False``) and, with a forecast, the
    cleanest start time. ``methods`` (of the devices measured) labels a prediction made from
    modelled energy as the estimate it is, as the summary labels the actual figures."""
    label = ""
    if methods == ("model",):
        label = " (ESTIMATED: from modelled energy, not a measurement)"
    elif "model" in methods:
        label = " (partly ESTIMATED: some energy is modelled)"
    lines = [
        f"carbontrack: predicted{label} for all {p.epochs} epochs (after {p.after_epoch}; "
        f"mean of {_count(p.epochs_in_mean, 'epoch')}):",
    ]
    ranged = p.level is not None
    if ranged and p.duration_s_low is not None and p.duration_s_high is not None:
        lines.append(
            f"  time    {format_duration(p.duration_s)} "
            f"({format_duration(p.duration_s_low)} to {format_duration(p.duration_s_high)})"
        )
    else:
        lines.append(f"  time    {format_duration(p.duration_s)}")
    lines.append(
        f"  energy  {format_energy(p.energy_j)} devices (PUE {pue:g} -> "
        f"{format_energy(p.energy_j * pue)})"
    )
    where = "forecast over the predicted window" if p.forecast_used else "current value"
    source = f"{p.intensity_source}, " if p.intensity_source else ""
    lines.append(
        f"  CO2eq   {format_co2(p.co2eq_g)} at {p.g_per_kwh:.1f} gCO2eq/kWh ({source}{where})"
    )
    if ranged and p.co2eq_g_low is not None and p.co2eq_g_high is not None:
        lines.append(
            f"  {p.level:.0%} prediction interval: {format_co2(p.co2eq_g_low)} to "
            f"{format_co2(p.co2eq_g_high)}"
        )
    else:
        lines.append("  interval: needs 2 epochs in the mean (a point estimate for now)")
    if p.trend == "modelled" and p.trend_j_per_epoch is not None:
        change = "grows" if p.trend_j_per_epoch > 0 else "falls"
        lines.append(
            f"  trend: epoch energy {change} by {format_energy(abs(p.trend_j_per_epoch))} per "
            "epoch; the remaining epochs follow it"
        )
    elif p.trend == "allowed for":
        lines.append(
            "  trend: none clear; the interval allows for one these epochs cannot rule out"
        )
    if equivalents:
        # Imported here: a run that prints nothing never needs the table of equivalents.
        from carbontrack.equivalents import format_equivalents

        lines.append(f"  that is about {format_equivalents(p.co2eq_g)}")
    if p.best_start_ts is not None and p.best_start_saving_g is not None:
        if p.best_start_saving_g > 0:
            lines.append(
                f"  cleaner start: the whole run started at {_utc(p.best_start_ts)} would emit "
                f"{format_co2(p.best_start_saving_g)} less (forecast)"
            )
        else:
            lines.append("  cleaner start: none in the forecast horizon; now is the best time")
    return "\n".join(lines)


def format_report(
    report: Report,
    log_path: str | None = None,
    *,
    equivalents: bool = True,
    brief: Container[str] = (),
    sources: Mapping[str, str] | None = None,
) -> str:
    """The final summary: totals, each component with its method, intensity and what to fix.

    Each estimate (``method="model"``) is printed once with its device's ``detail`` (how it was
    modelled, and why nothing was measured when no ``Unavailable`` says so); a detail in
    ``brief`` (already shown on this machine) is replaced by where to read it. ``sources``
    names the options that came from the environment or the config file.
    """
    head = "carbontrack: actual" if report.final else "carbontrack: so far"
    if not report.devices:
        head += " (nothing measured)"
    elif not report.estimated:
        head += " (measured)"
    else:
        head += " (ESTIMATED)" if report.methods == ("model",) else " (partly ESTIMATED)"
    lines = [
        f"{head} {format_duration(report.duration_s)}, "
        f"{format_energy(report.energy_j)} (PUE {report.pue:g} -> "
        f"{format_energy(report.facility_energy_j)}), {format_co2(report.co2eq_g)}",
    ]
    if report.command is not None:
        lines.append(f"  command {command_status(report.command)}: {_command_text(report.command)}")
    lines.extend(_job_lines(report))
    for comp in report.components:
        words = ", ".join(_METHOD_WORDS[m] for m in comp.methods)
        partial = " [PARTIAL: some hardware not measured]" if comp.partial else ""
        lines.append(
            f"  {comp.component:<5} {format_energy(comp.energy_j):>12}  {words}, "
            f"{comp.devices} device(s){partial}"
        )
    if not report.components and report.job is not None and report.job.measured_by:
        lines.append("  nothing read by this process: " + report.job.measured_by)
    elif not report.components:
        lines.append("  no device measured: energy unknown (run `carbontrack devices`)")
    for d in report.devices:
        if d.method == "model":
            if d.detail and d.detail in brief:
                lines.append(
                    f"  ESTIMATE {d.name}: modelled, not measured (how, and the fix: "
                    "`carbontrack devices`, or -v)"
                )
            else:
                lines.append(f"  ESTIMATE {d.name}: " + (d.detail or "modelled, not measured"))
        if d.shared:
            # A MIG slice's GPU (or other shared hardware) is counted whole: say so, not silently.
            lines.append(
                f"  SHARED {d.name}: the whole device's energy is counted, and other jobs or "
                "MIG instances share it" + (f" ({d.detail})" if d.detail else "")
            )
    i = report.intensity
    where = report.location.region or report.location.country or "unknown location"
    year = f" {i.year}" if i.year and str(i.year) not in i.source else ""
    lines.append(f"  intensity {i.g_per_kwh:.1f} gCO2eq/kWh ({where}; {i.source}{year}, {i.basis})")
    if report.epochs:
        lines.append(
            f"  epochs {len(report.epochs)}"
            + (f" of {report.epochs_planned}" if report.epochs_planned else "")
        )
    if equivalents:
        from carbontrack.equivalents import format_equivalents

        lines.append(f"  that is about {format_equivalents(report.co2eq_g)}")
    # The first prediction is the one the user acted on; the latest is the best informed.
    for p in dict.fromkeys(report.predictions[:1] + report.predictions[-1:]):
        lines.append(_prediction_check(p, report))
    for u in report.unavailable:
        lines.append(f"  not measured: {u.kind} ({u.backend}): {u.reason}. Fix: {u.fix}")
    for w in report.warnings:
        lines.append(f"  note: {w}")
    for f in report.failures:
        lines.append(f"  plugin {f.plugin} failed in {f.hook} ({f.count}x): {f.error}")
    if sources:
        given = ", ".join(f"{option} ({where})" for option, where in sorted(sources.items()))
        lines.append(f"  options set outside the command line: {given}")
    if log_path:
        lines.append(f"  run log: {log_path}")
    return "\n".join(lines)


def _job_lines(report: Report) -> list[str]:
    """A job's part of the summary: on rank 0 the job and its nodes, elsewhere this rank."""
    job = report.job
    if job is None:
        return []
    if job.scope != "job":
        role = "node leader" if not job.measured_by else "GPUs it owns only"
        return [
            f"  job {job.job_id}: rank {job.rank} of {job.world_size} on {job.node} ({role}); "
            "rank 0's report is the job's"
        ]
    lines = [
        f"  job {job.job_id}: {len(job.ranks)} of {job.world_size} ranks on "
        f"{len(job.nodes)} node(s)" + (" [PARTIAL]" if job.partial else "")
    ]
    intensities = {round(n.g_per_kwh, 1) for n in job.nodes}
    for n in job.nodes:
        leader = f"leader rank {n.leader_rank}" if n.leader_rank is not None else "NO LEADER"
        where = f", {n.g_per_kwh:.1f} gCO2eq/kWh" if len(intensities) > 1 else ""
        lines.append(
            f"    node {n.node}: {format_energy(n.energy_j)}, {format_co2(n.co2eq_g)}, "
            f"ranks {', '.join(map(str, n.ranks))} ({leader}){where}"
        )
    return lines


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def command_status(command: Command) -> str:
    """How the command ended: ``exited 0``, ``exited 3 (failed)``, ``killed by SIGKILL``."""
    if command.signal:
        return f"killed by {command.signal} (exit {command.exit_code})"
    if command.exit_code is None:
        return "still running"
    return f"exited {command.exit_code}" + (" (failed)" if command.exit_code else "")


#: Longer command lines are cut in the summary (the report and run log keep them whole).
COMMAND_CHARS = 160


def _command_text(command: Command) -> str:
    import shlex

    text = shlex.join(command.argv)
    return text if len(text) <= COMMAND_CHARS else text[: COMMAND_CHARS - 3] + "..."


def _prediction_check(p: Prediction, report: Report) -> str:
    # Epochs only: the prediction covers the epochs, the total also covers what ran between them.
    epochs_g = sum(e.co2eq_g for e in report.epochs)
    # Modelled energy was not measured: say what it is.
    how = "measured drew" if not report.estimated else "drew (ESTIMATED)"
    text = (
        f"  predicted after epoch {p.after_epoch}: {format_co2(p.co2eq_g)} for {p.epochs} "
        f"epochs; the {_count(len(report.epochs), 'epoch')} {how} {format_co2(epochs_g)}"
    )
    if len(report.epochs) != p.epochs:
        text += " (the run did not complete the epochs predicted)"
    elif p.co2eq_g_low is not None and p.co2eq_g_high is not None and p.level is not None:
        inside = p.co2eq_g_low <= epochs_g <= p.co2eq_g_high
        text += f" ({'inside' if inside else 'outside'} the {p.level:.0%} interval)"
    return text


def show_equivalents(settings: Settings) -> bool:
    """``plugin_options["console"]["equivalents"]`` (default true): print "that is about ...
    km by car" lines. ``carbontrack.compat`` sets it from carbontracker's ``interpretable``."""
    options = settings.plugin_options.get("console") or {}
    value = options.get("equivalents", True) if isinstance(options, Mapping) else True
    if not isinstance(value, bool):
        # Raising here would lose the whole summary at the end of a run; say so and print it.
        logger.warning(
            "plugin_options['console']['equivalents']=%r is not valid: expected True or False "
            "(False leaves out the equivalents); printing them",
            value,
        )
        return True
    return value


class ConsoleWriter:
    """Prints to ``stream`` (stderr by default, looked up at call time so capture works)."""

    #: Seconds of run time between two printed re-predictions.
    PREDICTION_EVERY_S = 60.0

    @staticmethod
    def needed_by(settings: Settings) -> bool:
        """Whether a run with ``settings`` prints anything here (``verbose`` 1 or more)."""
        return settings.verbose >= 1

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._printed_at: dict[str, float] = {}

    def _print(self, text: str) -> None:
        stream = self._stream if self._stream is not None else sys.stderr
        print(wrap_for(stream, text), file=stream, flush=True)

    @hookimpl
    def carbontrack_run_started(self, run: RunInfo, settings: Settings) -> None:
        """At ``verbose=2``, list what will be measured."""
        if settings.verbose < 2:
            return
        names = ", ".join(f"{d.name} [{d.method}]" for d in run.devices) or "nothing"
        self._print(f"carbontrack: measuring {names}")

    @hookimpl
    def carbontrack_epoch_ended(
        self, run: RunInfo, epoch: EpochRecord, prediction: Prediction | None, settings: Settings
    ) -> None:
        """Print a prediction when one was made: the first always, later ones (re-predictions
        with ``monitor_epochs``) at most once per ``PREDICTION_EVERY_S`` so short epochs do not
        flood the console."""
        if prediction is None or settings.verbose < 1:
            return
        now = epoch.started_at + epoch.duration_s
        last = self._printed_at.get(run.run_id)
        if last is not None and now - last < self.PREDICTION_EVERY_S:
            return
        self._printed_at[run.run_id] = now
        self._print(
            format_prediction(
                prediction,
                settings.pue,
                equivalents=show_equivalents(settings),
                methods=tuple(
                    m for m in ("counter", "power", "model") if m in {d.method for d in run.devices}
                ),
            )
        )

    @hookimpl
    def carbontrack_report_ready(self, report: Report, settings: Settings) -> None:
        """Print the final summary."""
        self._printed_at.pop(report.run_id, None)
        if settings.verbose < 1:
            return
        log = None
        if settings.write_log:
            path = run_log_path(settings, report.run_id, report.started_at)
            # A log that could not be written (the failure is listed) is not pointed to.
            log = str(path) if path.is_file() else None
        details = [d.detail for d in report.devices if d.method == "model" and d.detail]
        brief = set() if settings.verbose >= 2 else _shown_before(details, settings)
        self._print(
            format_report(
                report,
                log,
                equivalents=show_equivalents(settings),
                brief=brief,
                sources=settings.option_sources,
            )
        )


def wrap_for(stream: TextIO, text: str) -> str:
    """``text`` wrapped to the width of the terminal ``stream`` is (each long line broken at
    spaces, continued 4 columns further in); unchanged when ``stream`` is not a terminal, so
    that logs and pipes keep one line per item."""
    try:
        if not stream.isatty():
            return text
        width = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return text
    if width < 40:
        return text
    out = []
    for line in text.split("\n"):
        if len(line) < width:
            out.append(line)
            continue
        indent = " " * (len(line) - len(line.lstrip(" ")) + 4)
        out.append(
            textwrap.fill(
                line,
                width=width - 1,
                subsequent_indent=indent,
                break_on_hyphens=False,
                break_long_words=True,
            )
        )
    return "\n".join(out)


#: Per machine (in carbontrack's home), a digest of each estimate explanation already shown in
#: a summary: the long text is printed once, later summaries say where to read it.
SHOWN_FILE = "shown-estimates"


def _shown_before(details: list[str], settings: Settings) -> set[str]:
    """The ``details`` already shown on this machine; the others are recorded as shown now."""
    import hashlib

    from carbontrack import _files

    if not details:
        return set()
    path = _files.carbontrack_home() / SHOWN_FILE
    try:
        known = set(path.read_text(encoding="utf-8").split())
    except (OSError, UnicodeDecodeError):
        known = set()
    digests = {d: hashlib.sha256(d.encode()).hexdigest()[:16] for d in details}
    new = [h for h in digests.values() if h not in known]
    if new:
        try:
            _files.make_dirs(path.parent, settings.file_mode)
            with _files.open_append(path, settings.file_mode) as f:
                f.write("".join(h + "\n" for h in new))
        except OSError:
            pass  # not remembered: the explanation is printed again next time, no harm
    return {d for d, h in digests.items() if h in known}
