"""``carbontrack report``'s view of multi-process jobs: a job's per-rank run logs are one run.

Each rank of a job writes its own run log (named ``...-job-<id>-s<run>-rank<r>.jsonl``); this
module groups them, merges the ranks' own figures with the job ledger's rule (each device
once, node-wide hardware from node leaders only) and gives one row per job, or one per node or
rank with ``--by``. A job whose rank 0 wrote no job report (killed) is merged from what the
ranks' logs hold, and marked partial.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from carbontrack._ledger import merge_job, rank_entry_from_lines
from carbontrack.model import J_PER_KWH, JobInfo, RankEnergy, _structure
from carbontrack.writers.runlog import iter_run_log

__all__ = ["is_job_log", "read_jobs"]

_JOB_LOG = re.compile(r"-job-(?P<job>.+)-s(?P<seq>\d+)-rank(?P<rank>\d+)\.jsonl$")

BY = ("job", "node", "rank")


def is_job_log(path: Path) -> bool:
    """Whether ``path`` is the run log of one rank of a multi-process job."""
    return _JOB_LOG.search(path.name) is not None


def _job_info(header: Mapping[str, Any] | None) -> JobInfo | None:
    run = header.get("run") if header else None
    raw = run.get("job") if isinstance(run, Mapping) else None
    if not isinstance(raw, Mapping):
        return None
    try:
        return _structure(JobInfo, raw)
    except Exception:
        return None


def read_jobs(paths: Iterable[Path], warnings: list[str], summary_type: Any) -> list[Any]:
    """One summary per job found in ``paths`` (job run logs), each with its ``parts``.

    ``summary_type`` is ``RunSummary`` (passed in: it lives in the command's module).
    """
    groups: dict[tuple[str, str], dict[int, Path]] = {}
    for path in paths:
        m = _JOB_LOG.search(path.name)
        if m is None:
            continue
        key = (m.group("job"), m.group("seq"))
        rank = int(m.group("rank"))
        # Two files for one rank (a rerun with a fixed job_id): the newest, by name (UTC stamp).
        if rank not in groups.setdefault(key, {}) or path.name > groups[key][rank].name:
            groups[key][rank] = path
    out = []
    for files in groups.values():
        summary = _job_summary(files, warnings, summary_type)
        if summary is not None:
            out.append(summary)
    return out


@attrs.define
class _Group:
    job: JobInfo | None = None
    entries: dict[int, RankEnergy] = attrs.Factory(dict)
    rank0_report: Mapping[str, Any] | None = None
    rank0_final: bool = False
    planned: int | None = None


def _read_group(files: dict[int, Path], warnings: list[str]) -> _Group:
    g = _Group()
    for rank, path in sorted(files.items()):
        try:
            lines = [line for _, line in iter_run_log(path, warnings)]
        except OSError as exc:
            warnings.append(f"{path}: cannot read ({exc}); file skipped")
            continue
        header = next((ln for ln in lines if ln.get("type") == "header"), None)
        info = _job_info(header)
        if info is not None and (g.job is None or rank == 0):
            g.job = info
            run = header.get("run") if header else None
            epochs = run.get("epochs") if isinstance(run, Mapping) else None
            g.planned = epochs if isinstance(epochs, int) else g.planned
        entry = rank_entry_from_lines(lines, rank)
        if entry is not None:
            g.entries[rank] = entry
        if rank == 0:
            for line in reversed(lines):
                if line.get("type") in ("report", "checkpoint") and isinstance(
                    line.get("report"), Mapping
                ):
                    g.rank0_report = line["report"]
                    g.rank0_final = line["type"] == "report"
                    break
    # Figures that reached rank 0 through the torch.distributed store, for ranks whose own logs
    # are elsewhere (node-local log directories).
    ledger = g.rank0_report.get("job") if g.rank0_report else None
    if isinstance(ledger, Mapping):
        for raw in ledger.get("ranks") or ():
            try:
                entry = _structure(RankEnergy, raw)
            except Exception:
                continue
            have = g.entries.get(entry.rank)
            if have is None or (entry.final and not have.final):
                g.entries[entry.rank] = entry
    return g


def _job_summary(files: dict[int, Path], warnings: list[str], summary_type: Any) -> Any | None:
    g = _read_group(files, warnings)
    job, entries, rank0_report, rank0_final = g.job, g.entries, g.rank0_report, g.rank0_final
    if job is None:
        return None
    if not entries:
        return None
    merged, devices, epochs, facility_j, co2 = merge_job(job, entries, transport="log_dir")
    energy_j = sum(d.energy_j for d in devices)
    started = min(e.started_at for e in entries.values())
    ended = max(e.started_at + e.duration_s for e in entries.values())
    complete = rank0_final and not merged.partial
    nodes = len(merged.nodes)
    note = f"job {job.job_id}: {len(entries)} of {job.world_size} ranks on {nodes} node(s)"
    if not rank0_final:
        note += "; rank 0 wrote no final report (killed?)"
    if merged.missing:
        note += "; partial: " + "; ".join(merged.missing)
    predicted = None
    if rank0_report is not None:
        predictions = rank0_report.get("predictions")
        if isinstance(predictions, list) and predictions and isinstance(predictions[0], Mapping):
            value = predictions[0].get("co2eq_g")
            predicted = float(value) if isinstance(value, int | float) else None
    estimated = any(d.method == "model" for d in devices)
    common = {
        "path": str(files[min(files)].parent),
        "tool": "carbontrack",
        "started_at": started,
        "duration_s": ended - started,
        "job_id": job.job_id,
    }
    parts: list[Any] = []
    for n in merged.nodes:
        members = [entries[r] for r in n.ranks]
        pue = members[0].pue if members else 1.0
        parts.append(
            summary_type(
                **common,
                run_id=f"{job.job_id}@{n.node}",
                energy_kwh=n.energy_j / J_PER_KWH,
                facility_energy_kwh=n.energy_j * pue / J_PER_KWH,
                co2eq_g=n.co2eq_g,
                complete=all(e.final for e in members) and n.leader_rank is not None,
                estimated=False,
                node=n.node,
                ranks=len(n.ranks),
                note=f"node {n.node}: ranks {', '.join(map(str, n.ranks))}"
                + ("" if n.leader_rank is not None else "; node-wide figures missing"),
                part="node",
            )
        )
    for e in sorted(entries.values(), key=lambda e: e.rank):
        parts.append(
            summary_type(
                **common,
                run_id=f"{job.job_id}#{e.rank}",
                energy_kwh=e.energy_j / J_PER_KWH,
                facility_energy_kwh=e.energy_j * e.pue / J_PER_KWH,
                co2eq_g=e.co2eq_g,
                epochs=len(e.epochs),
                complete=e.final,
                node=e.node,
                rank=e.rank,
                note=("node leader" if e.leader else "GPUs it owns only")
                + ("" if e.final else "; no final figures (killed?): last checkpoint"),
                part="rank",
            )
        )
    return summary_type(
        **common,
        run_id=job.job_id,
        energy_kwh=energy_j / J_PER_KWH,
        facility_energy_kwh=facility_j / J_PER_KWH,
        co2eq_g=co2,
        epochs=len(epochs) if epochs else None,
        epochs_planned=g.planned,
        complete=complete,
        estimated=estimated,
        predicted_co2eq_g=predicted,
        note=note,
        ranks=len(entries),
        part="job",
        parts=tuple(parts),
    )


def expand(runs: Iterable[Any], by: str) -> list[Any]:
    """The rows to show: each job as itself (``by="job"``) or as its nodes or ranks."""
    rows = []
    for r in runs:
        parts = [p for p in r.parts if p.part == by] if by != "job" else []
        rows.extend(parts or [r])
    return rows
