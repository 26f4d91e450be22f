"""What the HTML report shows, read from run logs: power over time, epochs, devices.

A run's totals (``Summary``) come from ``carbontrack report``'s own reader, so that the page and
the table never disagree; this module adds what only the page shows. Power over time comes from
the energy of each device at successive checkpoints (and the final report): the mean power of
each interval, which is exact for the energy drawn in it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import attrs

from carbontrack.model import EpochRecord, Prediction, Report, _structure

__all__ = ["MAX_POWER_STEPS", "DeviceInfo", "PowerStep", "RunDetail", "Summary", "read_run_detail"]

#: Power steps kept per run: a 24-hour run checkpointed every minute has 1,440; merging
#: neighbours (energy-preserving) keeps the page small while a screen shows no more anyway.
MAX_POWER_STEPS = 720

#: Provenance words the page uses for each method.
PROVENANCE = {"counter": "measured", "power": "sampled", "model": "estimated"}


class Summary(Protocol):
    """A run's totals as ``carbontrack report`` reads them (its ``RunSummary``)."""

    @property
    def path(self) -> str: ...
    @property
    def tool(self) -> str: ...
    @property
    def run_id(self) -> str: ...
    @property
    def started_at(self) -> float | None: ...
    @property
    def duration_s(self) -> float: ...
    @property
    def energy_kwh(self) -> float: ...
    @property
    def facility_energy_kwh(self) -> float: ...
    @property
    def co2eq_g(self) -> float | None: ...
    @property
    def epochs(self) -> int | None: ...
    @property
    def epochs_planned(self) -> int | None: ...
    @property
    def complete(self) -> bool: ...
    @property
    def estimated(self) -> bool: ...
    @property
    def predicted_co2eq_g(self) -> float | None: ...
    @property
    def note(self) -> str: ...


@attrs.frozen
class DeviceInfo:
    """One device of a run: what it is, how it was read, what it drew."""

    key: str
    id: str
    name: str
    kind: str
    backend: str
    method: str
    energy_j: float | None

    @property
    def provenance(self) -> str:
        """``measured`` (counter), ``sampled`` (power) or ``estimated`` (model)."""
        return PROVENANCE.get(self.method, self.method)


@attrs.frozen
class PowerStep:
    """Mean power of each device over ``[start_s, end_s]`` (seconds since the run started)."""

    start_s: float
    end_s: float
    watts: Mapping[str, float]


@attrs.frozen
class RunDetail:
    """One run as the page shows it."""

    summary: Summary
    status: str  # "complete", "killed", "carbontracker" or "job" (totals only)
    report: Report | None = None
    devices: tuple[DeviceInfo, ...] = ()
    steps: tuple[PowerStep, ...] = ()
    epochs: tuple[EpochRecord, ...] = ()
    predictions: tuple[Prediction, ...] = ()
    epochs_planned: int | None = None
    warnings: tuple[str, ...] = ()

    @property
    def prediction(self) -> Prediction | None:
        """The latest prediction made during the run."""
        return self.predictions[-1] if self.predictions else None


def _key(device: Mapping[str, Any]) -> str:
    return f"{device.get('backend', '?')}:{device.get('id', '?')}"


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _merge(steps: Sequence[PowerStep], limit: int) -> tuple[PowerStep, ...]:
    """At most ``limit`` steps, each merging neighbours with the energy they hold."""
    if len(steps) <= limit:
        return tuple(steps)
    size = math.ceil(len(steps) / limit)
    merged = []
    for i in range(0, len(steps), size):
        group = steps[i : i + size]
        start, end = group[0].start_s, group[-1].end_s
        span = end - start
        keys = {k for s in group for k in s.watts}
        watts = {
            k: sum(s.watts.get(k, 0.0) * (s.end_s - s.start_s) for s in group) / span for k in keys
        }
        merged.append(PowerStep(start, end, watts))
    return tuple(merged)


def _lines(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8", errors="replace") as f:
        for raw in f:
            if raw.strip():
                yield raw


#: Where a checkpoint's report leaves what the power chart needs (duration, devices) behind:
#: ``Report.to_dict()`` keeps field order, and the epochs that follow grow with the run.
_CUT = ',"components":'


def _parse(raw: str, *, whole: bool = False) -> dict[str, Any] | None:
    """One log line as an object, or ``None``. A checkpoint is parsed up to its devices only
    (a day-long run's checkpoints hold every epoch so far: 140 MB of mostly repeated epochs),
    falling back to the whole line when that part is not valid JSON on its own."""
    if not whole and raw.startswith('{"type":"checkpoint"'):
        cut = raw.find(_CUT)
        if cut > 0:
            head: Any = None
            with contextlib.suppress(ValueError):
                head = json.loads(raw[:cut] + "}}")
            if isinstance(head, dict):
                report = head.get("report")
                if isinstance(report, dict) and "devices" in report:
                    return head
    value: Any = None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        return None
    return value


class _LogReader:
    """Collects, line by line, what the page needs from one of our run logs."""

    def __init__(self) -> None:
        self.devices: dict[str, dict[str, Any]] = {}
        self.points: list[tuple[float, dict[str, float]]] = [(0.0, {})]
        self.last_report: Mapping[str, Any] | None = None
        self.final = False
        self.epochs: list[EpochRecord] = []
        self.predictions: list[Prediction] = []
        self.planned: int | None = None

    def header(self, line: Mapping[str, Any]) -> None:
        run = line.get("run")
        if not isinstance(run, Mapping):
            return
        for d in run.get("devices") or ():
            if isinstance(d, Mapping):
                self.devices.setdefault(_key(d), dict(d))
        if isinstance(run.get("epochs"), int):
            self.planned = run["epochs"]

    def report(self, line: Mapping[str, Any], *, final: bool) -> None:
        data = line.get("report")
        if not isinstance(data, Mapping):
            return
        duration = _finite(data.get("duration_s"))
        listed = data.get("devices")
        if duration is None or not isinstance(listed, list):
            return
        energy = {}
        for d in listed:
            if isinstance(d, Mapping) and _finite(d.get("energy_j")) is not None:
                energy[_key(d)] = float(d["energy_j"])
                self.devices[_key(d)] = dict(d)
        if duration > self.points[-1][0]:
            self.points.append((duration, energy))
        self.last_report = data
        self.final = final

    def epoch(self, line: Mapping[str, Any]) -> None:
        try:
            self.epochs.append(_structure(EpochRecord, line["epoch"]))
        except (KeyError, TypeError, ValueError):
            return
        p = line.get("prediction")
        if isinstance(p, Mapping):
            with contextlib.suppress(KeyError, TypeError, ValueError):
                self.predictions.append(_structure(Prediction, p))

    def steps(self) -> list[PowerStep]:
        out = []
        for (t0, e0), (t1, e1) in itertools.pairwise(self.points):
            watts = {k: max(e1[k] - e0.get(k, 0.0), 0.0) / (t1 - t0) for k in e1}
            out.append(PowerStep(t0, t1, watts))
        return out


def read_run_detail(path: Path, summary: Summary, problems: list[str]) -> RunDetail:
    """What the page shows of one of our run logs, beside its ``summary``; a problem is
    appended when its last report cannot be read."""
    log = _LogReader()
    last_raw: str | None = None
    for raw in _lines(path):
        line = _parse(raw)
        if line is None:
            continue  # parse_run_log already warned about each bad line
        kind = line["type"]
        if kind == "header":
            log.header(line)
        elif kind in ("checkpoint", "report"):
            log.report(line, final=kind == "report")
            if log.last_report is line.get("report"):
                last_raw = raw
        elif kind == "epoch":
            log.epoch(line)
    if last_raw is not None:
        # The last report in full: only its devices and duration were read so far.
        full = _parse(last_raw, whole=True)
        log.last_report = full.get("report") if full is not None else None
    report = None
    if log.last_report is not None:
        try:
            report = Report.from_dict(log.last_report)
        except (KeyError, TypeError, ValueError) as exc:
            problems.append(
                f"{path}: the last report cannot be read ({exc}); device table left out"
            )
    epochs, predictions, planned = log.epochs, log.predictions, log.planned
    if report is not None:
        # The report's own epochs and predictions win: a killed run's epoch lines after its
        # last checkpoint are added (they are in no report).
        known = {e.index for e in report.epochs}
        epochs = list(report.epochs) + [e for e in epochs if e.index not in known]
        if report.predictions and len(report.predictions) >= len(predictions):
            predictions = list(report.predictions)
        planned = report.epochs_planned if report.epochs_planned is not None else planned
    energies = log.points[-1][1]
    infos = tuple(
        DeviceInfo(
            key=key,
            id=str(d.get("id", "?")),
            name=str(d.get("name", d.get("id", "?"))),
            kind=str(d.get("kind", "?")),
            backend=str(d.get("backend", "?")),
            method=str(d.get("method", "?")),
            energy_j=energies.get(key),
        )
        for key, d in log.devices.items()
    )
    return RunDetail(
        summary=summary,
        status="complete" if log.final else "killed",
        report=report,
        devices=infos,
        steps=_merge(log.steps(), MAX_POWER_STEPS),
        epochs=tuple(sorted(epochs, key=lambda e: e.index)),
        predictions=tuple(predictions),
        epochs_planned=planned,
        warnings=tuple(report.warnings) if report is not None else (),
    )
