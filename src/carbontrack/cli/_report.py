"""``carbontrack report PATH...``: aggregate run logs (ours and carbontracker's) into one table.

Reads our JSON Lines run logs (a killed run is summed from its last checkpoint, and says so) and
carbontracker's text logs, so that a user's history counts too. Corrupt lines become warnings
that name the file and line; they never stop the report.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import math
import re
import shlex
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

import attrs

from carbontrack._redact import redact_argv
from carbontrack.model import J_PER_KWH
from carbontrack.writers.csv import iso_utc
from carbontrack.writers.runlog import MAX_LINE_PROBLEMS, iter_run_log

__all__ = [
    "CARBONTRACKER_PUE",
    "RunSummary",
    "aggregate",
    "configure_parser",
    "find_logs",
    "parse_carbontracker_log",
    "parse_run_log",
    "run",
]

#: carbontracker 2.x multiplies its predicted and actual energy by this PUE (Uptime Institute
#: 2023 survey, its ``constants.PUE_2023``); used only when the standard log does not state it.
CARBONTRACKER_PUE = 1.58

_OUR_SUFFIX = ".jsonl"
_CT_OUTPUT_SUFFIX = "carbontracker_output.log"
_CT_STANDARD_SUFFIX = "carbontracker.log"


@attrs.frozen
class RunSummary:
    """One run found in a log: its totals and where they come from.

    ``energy_kwh`` is device (IT) energy, ``facility_energy_kwh`` includes the PUE; ``co2eq_g``
    is ``None`` when the log does not say (a killed carbontracker run).
    """

    path: str
    tool: str
    run_id: str
    started_at: float | None
    duration_s: float
    energy_kwh: float
    facility_energy_kwh: float
    co2eq_g: float | None
    epochs: int | None = None
    epochs_planned: int | None = None
    complete: bool = True
    estimated: bool = False
    predicted_co2eq_g: float | None = None
    #: What ran: ``carbontrack run``'s command, else the script's command line (secrets masked).
    command: str = ""
    #: How the command ended (``carbontrack run`` only): its exit code, the signal that killed it.
    exit_code: int | None = None
    signal: str | None = None
    note: str = ""
    # A multi-process job (see _report_jobs): its id, and for a node's or a rank's row of it
    # (``--by node`` / ``--by rank``) the node and rank; ``ranks`` counts the ranks seen.
    job_id: str = ""
    node: str = ""
    rank: int | None = None
    ranks: int | None = None
    part: str = ""
    parts: tuple[RunSummary, ...] = attrs.field(default=(), eq=False, repr=False)

    @property
    def status(self) -> str:
        """How the run ended, in a word or two: ``ok``, ``exit 3``, ``SIGKILL``, ``killed?``."""
        if self.signal:
            return self.signal
        if self.exit_code is not None:
            return "ok" if self.exit_code == 0 else f"exit {self.exit_code}"
        return "-" if self.complete else "killed?"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible data."""
        return attrs.asdict(self, filter=lambda a, _v: a.name != "parts")


# -- our JSON Lines run logs -------------------------------------------------------------------


#: Largest values a run's figures may have; a line beyond them is corrupt, not a record: ten
#: years of run time, 10 PJ (2.8 TWh, a hundred of the largest training runs), 100 kt CO2eq.
#: They keep sums finite, so a line saying duration_s=1.5e308 cannot break the totals.
_LIMITS = {
    "duration_s": 3.2e8,
    "energy_j": 1e16,
    "facility_energy_j": 1e17,
    "co2eq_g": 1e11,
    "started_at": 1e10,
}
#: Start times outside this range (Unix seconds; 1970 to 2286) are shown as unknown.
_LAST_TIME = 1e10


def _number(data: Mapping[str, Any], key: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"field {key!r} is {value!r}, not a finite number")
    limit = _LIMITS.get(key, math.inf)
    if not 0 <= value <= limit:
        raise ValueError(f"field {key!r} is {value!r}, not a number from 0 to {limit:g}")
    return float(value)


def _time(value: Any) -> float | None:
    """A start time, or ``None`` when it is not a plausible Unix time (NaN, 1e20, a string)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and 0 <= value <= _LAST_TIME else None


def _summary_from_report(path: str, data: Any, *, complete: bool, note: str = "") -> RunSummary:
    if not isinstance(data, Mapping):
        raise ValueError(f"the report is {type(data).__name__}, not an object")
    energy_j = _number(data, "energy_j")
    facility_j = _number(data, "facility_energy_j")
    devices = data.get("devices") or []
    estimated = isinstance(devices, list) and any(
        isinstance(d, Mapping) and d.get("method") == "model" for d in devices
    )
    epochs = data.get("epochs")
    planned = data.get("epochs_planned")
    started = data.get("started_at")
    predictions = data.get("predictions")
    command = data.get("command")
    command = command if isinstance(command, Mapping) else {}
    argv = command.get("argv")
    exit_code = command.get("exit_code")
    signal_name = command.get("signal")
    predicted = None
    if isinstance(predictions, list) and predictions and isinstance(predictions[0], Mapping):
        with contextlib.suppress(ValueError):
            predicted = _number(predictions[0], "co2eq_g")
    return RunSummary(
        path=path,
        tool="carbontrack",
        run_id=str(data.get("run_id", "")),
        started_at=_time(started),
        duration_s=_number(data, "duration_s"),
        energy_kwh=energy_j / J_PER_KWH,
        facility_energy_kwh=facility_j / J_PER_KWH,
        co2eq_g=_number(data, "co2eq_g"),
        epochs=len(epochs) if isinstance(epochs, list) else None,
        epochs_planned=planned if isinstance(planned, int) else None,
        complete=complete,
        estimated=estimated,
        predicted_co2eq_g=predicted,
        command=_command_line(argv),
        exit_code=exit_code
        if isinstance(exit_code, int) and not isinstance(exit_code, bool)
        else None,
        signal=signal_name if isinstance(signal_name, str) else None,
        note=note,
    )


def _command_line(argv: Any) -> str:
    # Written redacted; masked again, so that a log from an older version leaks nothing here.
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv) or not argv:
        return ""
    return shlex.join(redact_argv(argv))


def parse_run_log(path: Path, warnings: list[str]) -> RunSummary | None:
    """Summarise one carbontrack run log; append a warning (naming file and line) for each
    line skipped. Returns ``None`` when the log holds no measurement at all."""
    final: RunSummary | None = None
    checkpoint: RunSummary | None = None
    checkpoint_line = 0
    header: Mapping[str, Any] | None = None
    epochs: list[tuple[int, Mapping[str, Any]]] = []
    killed = "no final report (killed?): figures from the last checkpoint"
    for number, line in iter_run_log(path, warnings):
        kind = line["type"]
        if kind in {"report", "checkpoint"}:
            # Each report line is checked as it comes, so that a corrupt last line leaves
            # the last readable one in charge.
            try:
                summary = _summary_from_report(
                    str(path),
                    line.get("report"),
                    complete=kind == "report",
                    note="" if kind == "report" else killed,
                )
            except ValueError as exc:
                warnings.append(f"{path}:{number}: unreadable {kind} ({exc}); line skipped")
                continue
            if kind == "report":
                final = summary
            else:
                checkpoint, checkpoint_line = summary, number
        elif kind == "header":
            header = line
        elif kind == "epoch" and isinstance(line.get("epoch"), Mapping):
            epochs.append((number, line["epoch"]))
    found: RunSummary | None = final
    if found is None and checkpoint is not None:
        later = [(n, e) for n, e in epochs if n > checkpoint_line]
        found = _checkpoint_and_later_epochs(path, checkpoint, later, warnings)
    if found is None:
        found = _summary_from_epochs(path, header, epochs, warnings)
    if found is not None and not found.command and header is not None:
        # A library run: the script that ran it (the header's argv) tells runs apart.
        found = attrs.evolve(found, command=_command_line(header.get("argv")))
    return found


def _checkpoint_and_later_epochs(
    path: Path,
    checkpoint: RunSummary,
    later: list[tuple[int, Mapping[str, Any]]],
    warnings: list[str],
) -> RunSummary:
    # A killed run: the last checkpoint, plus the part of each epoch logged after it that ran
    # past the checkpoint's time (power taken as constant within an epoch). Time between
    # those epochs is not in any line, so the figure is a lower bound, as the note says.
    if not later or checkpoint.started_at is None:
        return checkpoint
    checkpoint_end = checkpoint.started_at + checkpoint.duration_s
    pue = checkpoint.facility_energy_kwh / checkpoint.energy_kwh if checkpoint.energy_kwh else None
    end = checkpoint_end
    energy_j = co2 = 0.0
    counted = 0
    for number, e in later:
        try:
            started, duration = _number(e, "started_at"), _number(e, "duration_s")
            e_j, e_g = _number(e, "energy_j"), _number(e, "co2eq_g")
        except ValueError as exc:
            warnings.append(f"{path}:{number}: unreadable epoch ({exc}); line skipped")
            continue
        after = started + duration - max(started, checkpoint_end)
        if after <= 0:
            continue
        share = after / duration if duration > 0 else 1.0
        energy_j += e_j * share
        co2 += e_g * share
        end = max(end, started + duration)
        counted += 1
    if not counted or pue is None:
        return checkpoint
    return attrs.evolve(
        checkpoint,
        duration_s=end - checkpoint.started_at,
        energy_kwh=checkpoint.energy_kwh + energy_j / J_PER_KWH,
        facility_energy_kwh=checkpoint.facility_energy_kwh + energy_j * pue / J_PER_KWH,
        co2eq_g=None if checkpoint.co2eq_g is None else checkpoint.co2eq_g + co2,
        epochs=(checkpoint.epochs or 0) + counted,
        note=f"no final report (killed?): the last checkpoint and the {counted} epoch line(s) "
        "after it",
    )


def _summary_from_epochs(
    path: Path,
    header: Mapping[str, Any] | None,
    epochs: list[tuple[int, Mapping[str, Any]]],
    warnings: list[str],
) -> RunSummary | None:
    duration = energy = co2 = 0.0
    counted = 0
    for number, e in epochs:
        try:
            duration += _number(e, "duration_s")
            energy += _number(e, "energy_j")
            co2 += _number(e, "co2eq_g")
            counted += 1
        except ValueError as exc:
            warnings.append(f"{path}:{number}: unreadable epoch ({exc}); line skipped")
    if not counted:
        return None
    run = header.get("run") if header else None
    run = run if isinstance(run, Mapping) else {}
    options = header.get("options") if header else None
    pue = options.get("pue") if isinstance(options, Mapping) else None
    pue = float(pue) if isinstance(pue, int | float) and not isinstance(pue, bool) else 1.0
    started = run.get("started_at")
    # The epochs carry no methods: the header's devices say whether any energy was modelled.
    devices = run.get("devices")
    estimated = isinstance(devices, list) and any(
        isinstance(d, Mapping) and d.get("method") == "model" for d in devices
    )
    return RunSummary(
        path=str(path),
        tool="carbontrack",
        run_id=str(run.get("run_id", "")),
        started_at=_time(started),
        duration_s=duration,
        energy_kwh=energy / J_PER_KWH,
        facility_energy_kwh=energy * pue / J_PER_KWH,
        co2eq_g=co2,
        epochs=counted,
        epochs_planned=run.get("epochs") if isinstance(run.get("epochs"), int) else None,
        complete=False,
        estimated=estimated,
        note=f"no report or checkpoint (killed?): sum of {counted} epoch line(s)",
    )


# -- carbontracker's text logs -----------------------------------------------------------------

_NUM = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf)"
_TS = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?:,\d+)? - ")
_BLOCK = re.compile(r"(Predicted|Actual) consumption(?: for (\d+) epoch\(s\))?:\s*$")
_FIELD = re.compile(r"^\s*(Time|Energy|CO2eq):\s*(.*?)\s*$")
_PUE = re.compile(r"PUE coefficient of " + _NUM)
_INTERRUPTED = "Training was interrupted"
_EPOCH = re.compile(r"Epoch (\d+):\s*$")
_DURATION = re.compile(r"Duration: ((?:\d+ days?, )?\d+:\d\d:\d\d(?:\.\d+)?)\s*$")
_POWER = re.compile(r"Average power usage \(W\) for (\w+): (.*?)\s*$")


def _hms(text: str) -> float:
    m = re.fullmatch(r"(?:(\d+) days?, )?(\d+):(\d\d):(\d\d(?:\.\d+)?)", text)
    if m is None:
        raise ValueError(f"time {text!r} is not H:MM:SS")
    days = int(m.group(1) or 0)
    return days * 86400 + int(m.group(2)) * 3600 + int(m.group(3)) * 60 + float(m.group(4))


def _value(text: str, unit: str) -> float:
    m = re.fullmatch(_NUM + r"\s*" + re.escape(unit), text)
    if m is None:
        raise ValueError(f"{text!r} is not a number in {unit}")
    return float(m.group(1))


@attrs.frozen
class _Block:
    kind: str
    epochs: int | None
    duration_s: float
    energy_kwh: float
    co2eq_g: float
    line: int


def _blocks(path: Path, lines: list[str], warnings: list[str]) -> Iterator[_Block]:
    i = 0
    while i < len(lines):
        m = _BLOCK.search(lines[i])
        if m is None:
            i += 1
            continue
        start = i + 1
        fields: dict[str, tuple[int, str]] = {}
        i += 1
        while i < len(lines) and len(fields) < 3:
            f = _FIELD.match(lines[i])
            if f is None:
                break
            fields[f.group(1)] = (i + 1, f.group(2))
            i += 1
        if len(fields) < 3:
            warnings.append(
                f"{path}:{start}: {m.group(1).lower()} consumption block is truncated "
                f"(missing {', '.join(k for k in ('Time', 'Energy', 'CO2eq') if k not in fields)})"
                "; block skipped"
            )
            continue
        try:
            number, text = fields["Time"]
            duration = _hms(text)
            number, text = fields["Energy"]
            energy = _value(text, "kWh")
            number, text = fields["CO2eq"]
            co2 = _value(text, "g")
            if not (math.isfinite(duration) and math.isfinite(energy) and energy >= 0):
                raise ValueError(f"energy {energy!r} kWh is not a finite number >= 0")
        except ValueError as exc:
            warnings.append(f"{path}:{number}: {exc}; {m.group(1).lower()} block skipped")
            continue
        epochs = int(m.group(2)) if m.group(2) else None
        yield _Block(m.group(1), epochs, duration, energy, co2, start)


def _standard_log_for(output: Path) -> Path:
    return output.with_name(output.name[: -len(_CT_OUTPUT_SUFFIX)] + _CT_STANDARD_SUFFIX)


def _read_lines(path: Path) -> list[str]:
    with path.open(encoding="utf-8", errors="replace") as f:
        return f.read().splitlines()


def parse_carbontracker_log(path: Path, warnings: list[str]) -> RunSummary | None:
    """Summarise one carbontracker run from its ``*_carbontracker_output.log`` (and the standard
    log beside it, for the PUE and for runs killed before their "Actual" block)."""
    lines = _read_lines(path)
    standard = _standard_log_for(path) if path.name.endswith(_CT_OUTPUT_SUFFIX) else None
    std_lines = _read_lines(standard) if standard is not None and standard.is_file() else []
    pue = CARBONTRACKER_PUE
    for text in std_lines:
        m = _PUE.search(text)
        if m is not None and math.isfinite(float(m.group(1))) and float(m.group(1)) > 0:
            pue = float(m.group(1))
            break
    started = None
    for text in lines:
        ts = _TS.match(text)
        if ts is not None:
            try:
                started = time.mktime(time.strptime(ts.group(1), "%Y-%m-%d %H:%M:%S"))
            except ValueError:
                started = None
            break
    interrupted = any(_INTERRUPTED in t for t in std_lines + lines)
    blocks = list(_blocks(path, lines, warnings))
    actual = [b for b in blocks if b.kind == "Actual"]
    predicted = [b for b in blocks if b.kind == "Predicted"]
    run_id = path.name[: -len(_CT_OUTPUT_SUFFIX)].rstrip("_") or path.name
    note = "carbontracker log; energy includes its PUE"
    if interrupted:
        note += "; training was interrupted"
    if actual:
        b = actual[-1]
        # carbontracker's own parser never reads the actual epoch count (it always finds 1),
        # so it reports predictions for finished runs; we read the count it printed.
        planned = predicted[-1].epochs if predicted else None
        return RunSummary(
            path=str(path),
            tool="carbontracker",
            run_id=run_id,
            started_at=started,
            duration_s=b.duration_s,
            energy_kwh=b.energy_kwh / pue,
            facility_energy_kwh=b.energy_kwh,
            co2eq_g=b.co2eq_g if math.isfinite(b.co2eq_g) else None,
            epochs=b.epochs,
            epochs_planned=planned,
            complete=not interrupted,
            predicted_co2eq_g=predicted[-1].co2eq_g if predicted else None,
            note=note,
        )
    return _carbontracker_epochs(path, run_id, started, std_lines, pue, predicted, warnings)


def _carbontracker_epochs(  # noqa: PLR0917 (a private helper of one caller)
    path: Path,
    run_id: str,
    started: float | None,
    std_lines: list[str],
    pue: float,
    predicted: list[_Block],
    warnings: list[str],
) -> RunSummary | None:
    # No "Actual" block: the run was killed. Sum the epochs of the standard log (power x time,
    # as carbontracker computes them) and say so; its CO2eq is unknown without the intensity.
    duration = energy_j = 0.0
    epochs = 0
    current: float | None = None
    for text in std_lines:
        if _EPOCH.search(text):
            current = None
            continue
        d = _DURATION.search(text)
        if d is not None:
            current = _hms(d.group(1))
            duration += current
            epochs += 1
            continue
        p = _POWER.search(text)
        if p is not None and current is not None:
            try:
                watts = float(p.group(2)) if p.group(2) != "None" else 0.0
            except ValueError:
                warnings.append(f"{path}: power {p.group(2)!r} unreadable; value skipped")
                continue
            if math.isfinite(watts):
                energy_j += watts * current
    if not epochs:
        if not predicted:
            return None
        warnings.append(f"{path}: only a prediction, no measured epoch; run skipped")
        return None
    return RunSummary(
        path=str(path),
        tool="carbontracker",
        run_id=run_id,
        started_at=started,
        duration_s=duration,
        energy_kwh=energy_j / J_PER_KWH,
        facility_energy_kwh=energy_j * pue / J_PER_KWH,
        co2eq_g=None,
        epochs=epochs,
        epochs_planned=predicted[-1].epochs if predicted else None,
        complete=False,
        note=f"carbontracker log without an actual block (killed?): {epochs} epoch(s) from "
        "the standard log; CO2eq unknown",
    )


# -- finding and aggregating ---------------------------------------------------------------------


def _kind_of(path: Path) -> str | None:
    if path.name.endswith(_OUR_SUFFIX):
        return "carbontrack"
    if path.name.endswith(_CT_OUTPUT_SUFFIX):
        return "carbontracker"
    return None


def find_logs(paths: Iterable[str | Path]) -> tuple[list[tuple[Path, str]], list[str]]:
    """The log files under ``paths`` (files or directories, searched recursively) and the
    problems found (a path that does not exist, a file of unknown kind)."""
    found: list[tuple[Path, str]] = []
    problems: list[str] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for child in sorted(p.rglob("*")):
                kind = _kind_of(child) if child.is_file() else None
                if kind is not None and child.stat().st_size > 0:
                    found.append((child, kind))
        elif p.is_file():
            kind = _kind_of(p)
            if kind is None:
                problems.append(
                    f"{p}: not a run log (expected *.jsonl from carbontrack or "
                    "*_carbontracker_output.log from carbontracker); skipped"
                )
            else:
                found.append((p, kind))
        else:
            problems.append(f"{p}: no such file or directory")
    return found, problems


def aggregate(runs: list[RunSummary]) -> dict[str, Any]:
    """Totals over ``runs``: energy, facility energy, CO2eq (of the runs that state it), time."""
    known = [r.co2eq_g for r in runs if r.co2eq_g is not None]
    return {
        "runs": len(runs),
        "duration_s": sum(r.duration_s for r in runs),
        "energy_kwh": sum(r.energy_kwh for r in runs),
        "facility_energy_kwh": sum(r.facility_energy_kwh for r in runs),
        "co2eq_g": sum(known),
        "runs_without_co2eq": len(runs) - len(known),
        "incomplete_runs": sum(not r.complete for r in runs),
        "estimated_runs": sum(r.estimated for r in runs),
    }


def read_runs(paths: Iterable[str | Path]) -> tuple[list[RunSummary], list[str], int]:
    """Every run in the logs under ``paths``, the warnings, and how many log files were read.

    The per-rank logs of one multi-process job are one run (``RunSummary.parts`` holds its
    nodes and ranks), so that totals count each job once.
    """
    from carbontrack.cli._report_jobs import is_job_log, read_jobs

    logs, warnings = find_logs(paths)
    job_logs = [p for p, kind in logs if kind == "carbontrack" and is_job_log(p)]
    try:
        runs: list[RunSummary] = read_jobs(job_logs, warnings, RunSummary)
    except Exception as exc:  # the single-process runs are still shown
        warnings.append(
            f"the logs of multi-process jobs cannot be read ({type(exc).__name__}: {exc}); "
            f"{len(job_logs)} file(s) skipped"
        )
        runs = []
    grouped = set(job_logs)
    for path, kind in logs:
        if path in grouped:
            continue
        told: list[str] = []
        try:
            if kind == "carbontrack":
                summary = parse_run_log(path, told)
            else:
                summary = parse_carbontracker_log(path, told)
        except OSError as exc:
            warnings.extend(_per_file(path, told))
            warnings.append(f"{path}: cannot read ({exc}); file skipped")
            continue
        except Exception as exc:  # one bad file never hides the others' runs
            warnings.extend(_per_file(path, told))
            warnings.append(f"{path}: cannot be read ({type(exc).__name__}: {exc}); file skipped")
            continue
        told = _per_file(path, told)
        if summary is None:
            skipped = f"{path}: no measurement in this log; file skipped"
            if len(told) == 1 and told[0].startswith(f"{path}: "):  # a count: one warning
                told, skipped = [], f"{skipped} ({told[0].removeprefix(f'{path}: ')})"
            warnings.extend(told)
            warnings.append(skipped)
        else:
            warnings.extend(told)
            runs.append(summary)
    return runs, warnings, len(logs)


def _per_file(path: Path, told: list[str]) -> list[str]:
    """``told`` (the warnings about one file), or one warning with their count when there are
    more than ``MAX_LINE_PROBLEMS``: a ruined file is one line on the terminal."""
    if len(told) <= MAX_LINE_PROBLEMS:
        return told
    return [f"{path}: {len(told):,} problems, lines skipped; the first: {told[0]}"]


# -- output ------------------------------------------------------------------------------------


def _when(ts: float | None) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts is not None else "?"
    except (ValueError, OverflowError, OSError):  # a time the platform cannot show
        return "?"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _duration(seconds: float) -> str:
    from carbontrack.writers.console import format_duration

    if not math.isfinite(seconds):
        return "?"
    return format_duration(seconds)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _short_command(command: str) -> str:
    # The program's name without its directory (`/opt/venv/bin/python` -> `python`).
    head, sep, rest = command.partition(" ")
    return head.rsplit("/", 1)[-1] + sep + rest


#: The command column's width at most: longer command lines end in "..." (JSON has them whole).
COMMAND_WIDTH = 40


def format_text(runs: list[RunSummary], total: Mapping[str, Any]) -> str:
    """A table of runs and the total, readable in a terminal.

    Energy and CO2eq take the unit that keeps three significant figures (Wh or kWh, g or kg),
    as the run summary does; run ids are never cut; ``status`` says how the command ended.
    """
    from carbontrack.writers.console import format_co2, format_energy

    def co2(g: float | None, missing: str) -> str:
        return missing if g is None else format_co2(g).replace("CO2eq", "")

    rows = []
    for r in runs:
        epochs = "" if not r.epochs else str(r.epochs)
        if r.epochs_planned and r.epochs is not None:
            epochs = f"{r.epochs}/{r.epochs_planned}"
        rows.append(
            [
                r.run_id,
                r.tool,
                _when(r.started_at),
                r.status,
                epochs,
                _duration(r.duration_s),
                format_energy(r.energy_kwh * J_PER_KWH),
                format_energy(r.facility_energy_kwh * J_PER_KWH),
                co2(r.co2eq_g, "unknown"),
                co2(r.predicted_co2eq_g, "-"),
                _cut(_short_command(r.command), COMMAND_WIDTH),
            ]
        )
    names = ["run", "tool", "started", "status", "epochs", "time", "energy", "facility"]
    names += ["CO2eq", "predicted", "command"]
    total_row = [
        f"total ({_plural(total['runs'], 'run')})",
        "",
        "",
        "",
        "",
        _duration(total["duration_s"]),
        format_energy(total["energy_kwh"] * J_PER_KWH),
        format_energy(total["facility_energy_kwh"] * J_PER_KWH),
        co2(total["co2eq_g"], "unknown"),
        "",
        "",
    ]
    widths = [max(len(row[i]) for row in [names, *rows, total_row]) for i in range(len(names))]
    left = {0, 1, 2, 3, 10}  # text columns; figures are right-aligned

    def line(cells: list[str]) -> str:
        return " ".join(
            c.ljust(w) if i in left else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "-" * len(line(names))
    lines = [line(names), rule]
    for r, cells in zip(runs, rows, strict=True):
        lines.append(line(cells))
        if r.estimated:
            lines.append("    ESTIMATED: some energy is a model estimate, not a measurement")
        if r.note:
            lines.append(f"    {r.note}")
    lines.append(rule)
    lines.append(line(total_row))
    if total["runs_without_co2eq"]:
        lines.append(
            f"  CO2eq total leaves out {_plural(total['runs_without_co2eq'], 'run')} whose log "
            "does not state it"
        )
    return "\n".join(lines)


def format_csv(runs: list[RunSummary], total: Mapping[str, Any] | None = None) -> str:
    """One row per run, and nothing else: no total row, which a spreadsheet or pandas would
    sum with the runs (``--format text`` and ``json`` give the totals)."""
    del total  # accepted for the callers of the old signature; deliberately not written
    out = io.StringIO()
    fields = [f.name for f in attrs.fields(RunSummary) if f.name != "parts"]
    fields.insert(fields.index("exit_code"), "status")
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in runs:
        row = r.to_dict()
        row["status"] = r.status
        # ISO 8601 UTC, as in the CSV files runs write (a spreadsheet reads it as a date).
        row["started_at"] = iso_utc(r.started_at) if r.started_at is not None else ""
        writer.writerow(row)
    return out.getvalue()


def _default_log_dir() -> Path:
    from carbontrack.paths import log_dir
    from carbontrack.settings import make_settings

    return log_dir(make_settings())


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Add the arguments of ``carbontrack report`` to ``p``."""
    p.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="run log files or directories (searched recursively): carbontrack *.jsonl run logs "
        "and carbontracker *_carbontracker_output.log files (default: carbontrack's log "
        "directory)",
    )
    p.add_argument(
        "--format",
        choices=("text", "json", "csv", "html"),
        default="text",
        help="output format (default text); html is one self-contained page with charts "
        "(power per device, energy per epoch and the prediction, CO2eq per run)",
    )
    p.add_argument(
        "--json", action="store_const", const="json", dest="format", help="--format json"
    )
    p.add_argument(
        "--by",
        choices=("job", "node", "rank"),
        default="job",
        help="a multi-process job (torchrun, srun, mpirun) as one row (default), or one row "
        "per node or per rank; totals count each job once either way",
    )
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write to FILE instead of stdout (e.g. -o report.html with --format html)",
    )
    p.add_argument(
        "--epochs",
        action="store_true",
        help="one bar per epoch (grouped for long runs) for a single run, with its prediction",
    )


def usage_error(err: TextIO, message: str) -> int:
    print(f"carbontrack report: error: {message}", file=err)
    return 2


def _write_output(target: str, text: str) -> None:
    # Written next to the target and renamed: a reader never sees half a page. The runs it
    # lists say where and what ran: the logs' file mode ($CARBONTRACK_FILE_MODE, the config
    # file's file_mode, else private) holds for it too.
    from carbontrack import _files
    from carbontrack.errors import InvalidOption
    from carbontrack.settings import default_file_mode

    try:
        mode = default_file_mode()
    except InvalidOption:  # a broken setting never costs the report: private is the safe side
        mode = "private"
    _files.write_bytes(Path(target).expanduser(), text.encode("utf-8"), mode)


def check_output(target: str | None, err: TextIO) -> bool:
    """Whether ``-o`` names a file that can be written (an error is printed when not)."""
    if target is None or target == "-":
        return True
    where = Path(target).expanduser()
    if where.is_dir():
        usage_error(
            err,
            f"-o {target} is a directory: expected a file name, e.g. -o {where / 'report.html'}",
        )
        return False
    if not where.parent.is_dir():
        usage_error(err, f"-o {target}: directory {where.parent} does not exist")
        return False
    return True


def run(args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run ``carbontrack report`` as a table (text, JSON, CSV): 0 on success, 1 when no log was
    found, 2 for bad options. The HTML page and ``--epochs`` are ``_report_view.run``'s."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    paths = list(args.paths) or [_default_log_dir()]
    fmt = getattr(args, "format", "text") or "text"
    target = getattr(args, "output", None)
    if fmt == "html" or getattr(args, "epochs", False):
        return usage_error(
            err, "--format html and --epochs are drawn by carbontrack.cli._report_view"
        )
    if not check_output(target, err):
        return 2
    runs, warnings, files = read_runs(paths)
    for w in warnings:
        print(f"carbontrack report: warning: {w}", file=err)
    if not runs:
        return no_runs(paths, files, err)
    # Totals over whole jobs; the rows shown may break a job down by node or rank.
    total = aggregate(runs)
    from carbontrack.cli._report_jobs import expand

    runs = expand(runs, getattr(args, "by", "job") or "job")
    if fmt == "json":
        data = {
            "runs": [{**r.to_dict(), "status": r.status} for r in runs],
            "total": total,
            "warnings": warnings,
        }
        text = json.dumps(data, indent=2, allow_nan=False) + "\n"
    elif fmt == "csv":
        text = format_csv(runs, total)
    else:
        text = format_text(runs, total) + "\n"
    return emit(text, target, out=out, err=err)


def emit(text: str, target: str | None, *, out: TextIO, err: TextIO) -> int:
    if target is None or target == "-":
        out.write(text)
        return 0
    try:
        _write_output(target, text)
    except OSError as exc:
        print(f"carbontrack report: cannot write {target}: {exc}", file=err)
        return 1
    print(f"carbontrack report: wrote {target}", file=err)
    return 0


def no_runs(paths: list[Any], files: int, err: TextIO) -> int:
    where = ", ".join(str(p) for p in paths)
    why = f"{files} log file(s) found but none holds a measurement" if files else "no log"
    print(
        f"carbontrack report: no runs in {where}: {why} (looked for carbontrack *.jsonl run "
        "logs and carbontracker *_carbontracker_output.log files)",
        file=err,
    )
    return 1
