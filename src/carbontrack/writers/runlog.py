"""The run log: one JSON Lines file per run, flushed line by line.

Lines, each an object with a ``type``: ``header`` (devices, what could not be read, location,
options), ``epoch`` (one per epoch, with the prediction made after it), ``checkpoint`` (the
report so far, every ``checkpoint_s``) and ``report`` (the final report). A killed process
loses at most one checkpoint interval.
"""

from __future__ import annotations

# json is imported in the functions that use it: this module loads at every run's start and
# most runs never use it (about a millisecond; docs/performance.md, "Start-up").
import logging
import math
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from carbontrack._files import open_append
from carbontrack._redact import redact_argv
from carbontrack._version import __version__
from carbontrack.hookspecs import hookimpl
from carbontrack.model import SCHEMA_VERSION, Report, RunInfo, _unstructure
from carbontrack.paths import run_log_path
from carbontrack.settings import Settings

if TYPE_CHECKING:
    # Annotations only: a run without epochs never loads them (carbontrack._model_later).
    from carbontrack.model import EpochRecord, Prediction


def _hostname() -> str:
    import socket  # only where os.uname is missing (Windows): socket costs ms at start

    return socket.gethostname()


def _platform() -> str:
    # platform imports in milliseconds what the header needs once; load it only here.
    import platform

    return platform.platform()


__all__ = ["RunLogWriter", "iter_run_log", "read_run_log"]

logger = logging.getLogger(__name__)


def _finite(value: Any, path: str, replaced: list[str]) -> Any:
    """``value`` as strict JSON data: non-finite floats and other odd values become None, and
    their paths go into ``replaced``."""
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        replaced.append(path.lstrip("."))
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v, f"{path}.{k}", replaced) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v, f"{path}[{i}]", replaced) for i, v in enumerate(value)]
    replaced.append(path.lstrip("."))
    return None


class RunLogWriter:
    """Writes the run log of the runs of one plugin manager (one file per run id)."""

    @staticmethod
    def needed_by(settings: Settings) -> bool:
        """Whether a run with ``settings`` writes a run log (``write_log``)."""
        return settings.write_log

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[str, IO[str]] = {}

    def _write(self, run_id: str, line: dict[str, Any]) -> None:
        import json

        try:
            text = json.dumps(line, separators=(",", ":"), allow_nan=False)
        except (ValueError, TypeError):
            # One NaN, inf or odd object must not cost the line (and with it `carbontrack
            # report`'s view of the run): strict JSON with null in its place, and the fields
            # named in the line and in one warning.
            replaced: list[str] = []
            clean = _finite(line, "", replaced)
            clean["non_finite"] = replaced
            logger.warning(
                "carbontrack: run log %s line: %s not finite or not JSON; written as null",
                line.get("type"),
                ", ".join(replaced[:5]) + (" ..." if len(replaced) > 5 else ""),
            )
            text = json.dumps(clean, separators=(",", ":"), allow_nan=False)
        with self._lock:
            f = self._files.get(run_id)
            if f is None:
                return
            f.write(text + "\n")
            f.flush()

    @hookimpl
    def carbontrack_run_started(self, run: RunInfo, settings: Settings) -> None:
        """Open the run log and write the header line."""
        if not settings.write_log:
            return
        path = run_log_path(settings, run.run_id, run.started_at)
        if run.job is not None:
            from carbontrack._ledger import job_file_tag

            # Rank 0 finds the other ranks' logs of this job by name in the shared log dir.
            tag = job_file_tag(run.job.job_id, run.job_sequence, run.job.rank)
            path = path.with_name(f"{path.stem}-{tag}{path.suffix}")
        # Private to the user unless file_mode="shared": it holds the command line and host.
        with self._lock:
            self._files[run.run_id] = open_append(path, settings.file_mode)
        header = {
            "type": "header",
            "schema": SCHEMA_VERSION,
            "carbontrack_version": __version__,
            "run": _unstructure(run),
            "host": os.uname().nodename if hasattr(os, "uname") else _hostname(),
            "platform": _platform(),
            "python": sys.version.split()[0],
            # Secrets passed on the command line (``--hf-token=...``) never reach the file.
            "argv": redact_argv(sys.argv),
            "cwd": os.getcwd(),
            "options": {
                "epochs": settings.epochs,
                "components": sorted(settings.components),
                "interval_s": settings.interval_s,
                "pue": settings.pue,
                "location": settings.location,
            },
        }
        self._write(run.run_id, header)

    @hookimpl
    def carbontrack_epoch_ended(
        self, run: RunInfo, epoch: EpochRecord, prediction: Prediction | None
    ) -> None:
        """Append the epoch (and the prediction made after it)."""
        line = {"type": "epoch", "epoch": _unstructure(epoch)}
        line["prediction"] = _unstructure(prediction) if prediction is not None else None
        self._write(run.run_id, line)

    @hookimpl
    def carbontrack_checkpoint(self, report: Report) -> None:
        """Append the report so far."""
        self._write(report.run_id, {"type": "checkpoint", "report": report.to_dict()})

    @hookimpl
    def carbontrack_report_ready(self, report: Report) -> None:
        """Append the final report and close the file."""
        self._write(report.run_id, {"type": "report", "report": report.to_dict()})
        with self._lock:
            f = self._files.pop(report.run_id, None)
        if f is not None:
            f.close()


#: Longest line read whole: a final report with thousands of epochs is a few MB.
MAX_LINE_CHARS = 64 * 2**20
#: Bad lines described one by one per file; beyond this, one warning with the count.
MAX_LINE_PROBLEMS = 3


def _lines(f: IO[str]) -> Iterator[tuple[int, str | None]]:
    """``(number, text)`` per line, ``text`` ``None`` for a line longer than ``MAX_LINE_CHARS``
    (skipped in chunks, never held whole)."""
    number = 0
    while True:
        raw = f.readline(MAX_LINE_CHARS)
        if not raw:
            return
        number += 1
        if len(raw) >= MAX_LINE_CHARS and not raw.endswith("\n"):
            while (rest := f.readline(MAX_LINE_CHARS)) and not rest.endswith("\n"):
                pass
            yield number, None
            continue
        yield number, raw


def iter_run_log(
    path: str | os.PathLike[str], problems: list[str]
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, line)`` for each readable line of a run log; append a problem
    naming the file and line for each corrupt line, which is skipped. A file with more than
    ``MAX_LINE_PROBLEMS`` corrupt lines gets one problem with the count instead (100 MB of
    garbage is one warning, not 800,000)."""
    import json

    found: list[str] = []
    bad = 0
    with Path(path).open(encoding="utf-8", errors="replace") as f:
        for number, raw in _lines(f):
            if raw is None:
                why = f"longer than {MAX_LINE_CHARS:,} characters"
            elif not raw.strip():
                continue
            else:
                why = ""
                try:
                    value = json.loads(raw)
                except json.JSONDecodeError as exc:
                    # json's own message for some errors ends in "at", waiting for a position.
                    why = f"not JSON ({exc.msg.removesuffix(' at')} at column {exc.colno})"
                except RecursionError:
                    why = "not JSON (nested too deeply)"
                else:
                    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
                        why = "not a carbontrack log line"
            if why:
                bad += 1
                if bad <= MAX_LINE_PROBLEMS:
                    found.append(f"{path}:{number}: {why}; line skipped")
                continue
            yield number, value
    if bad > MAX_LINE_PROBLEMS:
        problems.append(
            f"{path}: {bad:,} corrupt lines skipped (not carbontrack log lines); the first: "
            + found[0].removeprefix(f"{path}:")
        )
    else:
        problems.extend(found)


def read_run_log(path: str | os.PathLike[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """Read a run log's lines; return ``(lines, problems)`` where corrupt lines are skipped
    and each problem names the file and line number."""
    problems: list[str] = []
    lines = [line for _, line in iter_run_log(path, problems)]
    return lines, problems
