"""``carbontrack report``'s entry point: the HTML page and the ``--epochs`` view, else the table.

The page and the epoch view read each run in full (its epochs, checkpoints and devices), with
the same totals and killed-run rules as the table (``_report.parse_run_log``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from carbontrack.cli import _report
from carbontrack.cli._report import configure_parser

__all__ = ["configure_parser", "detailed", "load_runs", "run"]


def load_runs(paths: Sequence[str | Path]) -> tuple[list[Any], list[str], int]:
    """Every run under ``paths`` as ``report_html.RunDetail``, the warnings, the files read."""
    from carbontrack.cli._report_jobs import is_job_log, read_jobs
    from carbontrack.report_html import RunDetail, read_run_detail

    logs, problems = _report.find_logs(paths)
    runs: list[RunDetail] = []
    # A multi-process job's per-rank logs are one run, as in the table: rank 0's report holds
    # the whole job, so drawing each rank as a run would count the job twice.
    job_logs = [p for p, kind in logs if kind == "carbontrack" and is_job_log(p)]
    try:
        jobs = read_jobs(job_logs, problems, _report.RunSummary)
    except Exception as exc:  # the single-process runs are still drawn
        problems.append(
            f"the logs of multi-process jobs cannot be read ({type(exc).__name__}: {exc}); "
            f"{len(job_logs)} file(s) skipped"
        )
        jobs = []
    runs.extend(RunDetail(summary=job, status="job") for job in jobs)
    grouped = set(job_logs)
    for path, kind in logs:
        if path in grouped:
            continue
        try:
            if kind == "carbontrack":
                summary = _report.parse_run_log(path, problems)
                if summary is not None:
                    runs.append(read_run_detail(path, summary, problems))
            else:
                summary = _report.parse_carbontracker_log(path, problems)
                if summary is not None:
                    runs.append(RunDetail(summary=summary, status="carbontracker"))
        except OSError as exc:
            problems.append(f"{path}: cannot read ({exc}); file skipped")
            continue
        if summary is None:
            problems.append(f"{path}: no measurement in this log; file skipped")
    return runs, problems, len(logs)


def detailed(paths: list[Any], fmt: str, target: str | None, *, out: TextIO, err: TextIO) -> int:
    """``--format html`` (the page) or ``--epochs`` (one run's epochs as bars)."""
    from carbontrack.report_html import format_epochs, render_page

    runs, warnings, files = load_runs(paths)
    for w in warnings:
        print(f"carbontrack report: warning: {w}", file=err)
    if not runs:
        return _report.no_runs(paths, files, err)
    if fmt == "html":
        return _report.emit(render_page(runs, warnings), target, out=out, err=err)
    if len(runs) != 1:
        names = ", ".join(r.summary.path for r in runs[:3]) + (", ..." if len(runs) > 3 else "")
        return _report.usage_error(
            err,
            f"--epochs shows one run, and {len(runs)} were found ({names}): give one run log "
            "file, e.g. carbontrack report --epochs LOG.jsonl",
        )
    encoding = (getattr(out, "encoding", None) or "").lower().replace("-", "").replace("_", "")
    text = format_epochs(runs[0], unicode=encoding == "utf8") + "\n"
    return _report.emit(text, target, out=out, err=err)


def run(args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run ``carbontrack report``: 0 on success, 1 when no log was found, 2 for bad options."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    fmt = getattr(args, "format", "text") or "text"
    epochs_view = bool(getattr(args, "epochs", False))
    if fmt != "html" and not epochs_view:
        return _report.run(args, out=out, err=err)
    target = getattr(args, "output", None)
    if epochs_view and fmt != "text":
        return _report.usage_error(
            err, f"--epochs is a terminal view: it goes with --format text, not --format {fmt}"
        )
    if not _report.check_output(target, err):
        return 2
    paths = list(args.paths) or [_report._default_log_dir()]
    return detailed(paths, fmt, target, out=out, err=err)
