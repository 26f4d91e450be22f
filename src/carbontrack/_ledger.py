"""The job ledger: every rank's own figures reach rank 0, which writes the job's report.

Two transports, both things the job already has: the key-value store of torch.distributed's
rendezvous (when this process initialized torch.distributed) and the per-rank run logs in the
job's shared log directory. Nothing here calls a collective, imports torch, or waits without a
bound: store calls run on one daemon thread and the caller waits for them with a timeout.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from carbontrack.model import (
    J_PER_KWH,
    DeviceEnergy,
    EpochRecord,
    JobInfo,
    JobReport,
    NodeEnergy,
    RankEnergy,
    _structure,
    _unstructure,
)

__all__ = [
    "Ledger",
    "default_store",
    "find_rank_logs",
    "job_file_tag",
    "merge_job",
    "rank_entry_from_lines",
]

logger = logging.getLogger(__name__)

STORE_PREFIX = "carbontrack"

# How often rank 0 looks again for the other ranks' figures while it waits at the end.
_POLL_S = 0.02

# A run log of this job that started this long before rank 0 is an earlier job that reused the
# id (a rerun of the same script with a fixed job_id=), not a rank of this one.
_STALE_S = 600.0

_UNSAFE = re.compile(r"[^A-Za-z0-9_.@+=-]")

# Tracked runs per job id in this process: rank 0's n-th run pairs with the n-th run of every
# other rank (a script that tracks twice gets two ledgers, not one mixed one).
_sequence_lock = threading.Lock()
_sequence: dict[tuple[str, int], int] = {}


def next_sequence(job_id: str, rank: int) -> int:
    """The number of the next tracked run of ``rank`` in job ``job_id`` (1, 2, ...)."""
    with _sequence_lock:
        key = (job_id, rank)
        _sequence[key] = _sequence.get(key, 0) + 1
        return _sequence[key]


def job_file_tag(job_id: str, sequence: int, rank: int) -> str:
    """The part of a run log's name that says which job, run and rank it belongs to."""
    return f"job-{_UNSAFE.sub('_', job_id)}-s{sequence}-rank{rank}"


def default_store() -> Any | None:
    """torch.distributed's default store if this process initialized it, else ``None``.

    Never imports torch: a process that did not import it has no process group to share.
    """
    dist = sys.modules.get("torch.distributed")
    if dist is None:
        return None
    try:
        if not dist.is_available() or not dist.is_initialized():
            return None
        # The store the default process group was built on (a PrefixStore over the
        # rendezvous's TCPStore); torch has no public accessor for it.
        return dist.distributed_c10d._get_default_store()
    except Exception:
        logger.debug("carbontrack: no torch.distributed store", exc_info=True)
        return None


class _Worker:
    """One daemon thread that runs store calls in order; callers wait with a timeout.

    A store whose server hangs blocks this thread, never the training loop.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._queue: queue.SimpleQueue[tuple[Callable[[], Any], _Result] | None] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, fn: Callable[[], Any]) -> _Result:
        result = _Result()
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
        self._queue.put((fn, result))
        return result

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            fn, result = item
            try:
                result.value = fn()
            except Exception as exc:  # a store error is data: the caller decides
                result.error = exc
            result.done.set()

    def close(self) -> None:
        with self._lock:
            if self._thread is not None:
                self._queue.put(None)


class _Result:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: Exception | None = None

    def wait(self, timeout: float) -> Any:
        if not self.done.wait(max(timeout, 0.0)):
            raise TimeoutError(f"no answer within {timeout:.3g} s")
        if self.error is not None:
            raise self.error
        return self.value


class Ledger:
    """One rank's side of the job's ledger for one tracked run.

    Every rank publishes its epochs and its final figures; rank 0 also collects the others'
    (``collect``) and, while running, the epochs that have arrived (``poll_epochs``).
    """

    def __init__(
        self,
        job: JobInfo,
        *,
        run_id: str,
        started_at: float,
        log_dir: Path | None,
        wait_s: float,
        store_finder: Callable[[], Any | None] = default_store,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # ``clock`` bounds the waits: a real clock (a test's fake clock would never run out).
        self.job = job
        self.sequence = next_sequence(job.job_id, job.rank)
        self.started_at = started_at
        self.log_dir = log_dir
        self.wait_s = wait_s
        self._store_finder = store_finder
        self._clock = clock
        self._worker = _Worker(f"carbontrack-ledger-{run_id}")
        self._store_problem: str | None = None
        self._used_store = False
        self._lock = threading.Lock()
        self._peer_epochs: dict[int, dict[int, EpochRecord]] = {}
        self._peers_started: set[int] = set()
        self._polling: _Result | None = None
        # When the last finished poll began: an epoch that ended before it is complete in it.
        self._polled_through = float("-inf")
        self._log_offsets: dict[Path, int] = {}
        self._log_rank: dict[Path, int] = {}

    # -- the store ---------------------------------------------------------------------------

    def _key(self, *parts: object) -> str:
        return "/".join([STORE_PREFIX, self.job.job_id, f"s{self.sequence}", *map(str, parts)])

    def _store(self) -> Any | None:
        if self._store_problem is not None:
            return None
        return self._store_finder()

    def _store_failed(self, what: str, exc: BaseException) -> None:
        if self._store_problem is None:
            self._store_problem = f"the torch.distributed store failed while {what}: {exc}"
            logger.info("carbontrack: %s; using the run logs only", self._store_problem)

    def _store_call(self, what: str, fn: Callable[[Any], Any], timeout: float) -> Any:
        """Run ``fn(store)`` on the worker; ``None`` when there is no store or it failed."""
        store = self._store()
        if store is None:
            return None
        try:
            value = self._worker.submit(lambda: fn(store)).wait(timeout)
        except Exception as exc:
            self._store_failed(what, exc)
            return None
        self._used_store = True
        return value

    def _store_send(self, what: str, fn: Callable[[Any], Any]) -> _Result | None:
        store = self._store()
        if store is None:
            return None
        return self._worker.submit(lambda: fn(store))

    def announce(self) -> None:
        """Say, without waiting, that this rank tracks (rank 0 then expects its figures)."""
        self._store_send("announcing", lambda s: s.set(self._key("start", self.job.rank), "1"))

    def publish_epoch(self, record: EpochRecord) -> None:
        """Send this rank's own epoch record, without waiting."""
        if self.job.is_rank_zero:
            return
        data = json.dumps(_unstructure(record), separators=(",", ":"))
        self._store_send(
            "sending an epoch",
            lambda s: s.set(self._key("epoch", record.index, self.job.rank), data),
        )

    def publish_final(self, entry: RankEnergy) -> None:
        """Send this rank's final figures; wait for the store at most ``wait_s``."""
        if self.job.is_rank_zero:
            return
        data = json.dumps(_unstructure(entry), separators=(",", ":"))

        def send(store: Any) -> None:
            store.set(self._key("final", self.job.rank), data)
            store.add(self._key("finals"), 1)

        self._store_call("sending the final figures", send, self.wait_s)

    # -- rank 0 ------------------------------------------------------------------------------

    def poll_epochs(self) -> None:
        """Fetch, in the background, the other ranks' epochs that have arrived since last time."""
        if not self.job.is_rank_zero or self.job.world_size < 2:
            return
        with self._lock:
            if self._polling is not None and not self._polling.done.is_set():
                return  # the last poll is still running (a slow store): never queue up
            self._polling = self._worker.submit(self._poll_once)

    def _poll_once(self) -> None:
        began = time.monotonic()
        store = self._store()
        found: dict[int, dict[int, EpochRecord]] = {}
        started: set[int] = set()
        if store is not None:
            try:
                for rank in range(1, self.job.world_size):
                    if rank not in self._peers_started and store.check([self._key("start", rank)]):
                        started.add(rank)
                    known = self._peer_epochs.get(rank, {})
                    index = max(known, default=0) + 1
                    while store.check([self._key("epoch", index, rank)]):
                        raw = store.get(self._key("epoch", index, rank))
                        record = _structure(EpochRecord, json.loads(_text(raw)))
                        found.setdefault(rank, {})[index] = record
                        index += 1
            except Exception as exc:
                self._store_failed("reading epochs", exc)
        for rank, lines in self._read_peer_logs().items():
            started.add(rank)
            for line in lines:
                if line.get("type") == "epoch":
                    with contextlib.suppress(Exception):
                        record = _structure(EpochRecord, line["epoch"])
                        found.setdefault(rank, {})[record.index] = record
        with self._lock:
            self._peers_started |= started
            for rank, records in found.items():
                self._peer_epochs.setdefault(rank, {}).update(records)
            self._polled_through = max(self._polled_through, began)

    def job_epoch(self, own: EpochRecord, ended_at: float) -> EpochRecord | None:
        """The job's epoch ``own.index``: rank 0's record plus every started peer's, or ``None``
        until a poll begun after the epoch ended (``time.monotonic()`` at ``ended_at``) has
        seen it from every peer that tracks."""
        with self._lock:
            if self._polled_through < ended_at:
                return None  # who tracks is not known yet for this epoch
            peers = sorted(self._peers_started | set(self._peer_epochs))
            records = [own]
            for rank in peers:
                record = self._peer_epochs.get(rank, {}).get(own.index)
                if record is None:
                    return None
                records.append(record)
        return sum_epochs(records)

    def collect(self, own: RankEnergy) -> tuple[dict[int, RankEnergy], list[str], str]:
        """Rank 0: every rank's figures that arrive within ``wait_s``.

        Returns ``(entries by rank, notes on what is missing, transports used)``; never waits
        longer than ``wait_s`` plus one store call's timeout.
        """
        entries: dict[int, RankEnergy] = {own.rank: own}
        notes: list[str] = []
        want = set(range(self.job.world_size)) - {own.rank}
        deadline = self._clock() + self.wait_s
        used_logs = False
        while want - entries.keys():
            left = deadline - self._clock()
            missing = want - entries.keys()
            count = self._store_call(
                "counting final figures",
                lambda s: s.add(self._key("finals"), 0),
                max(left, _POLL_S),
            )
            if count is not None and (count >= len(want) or left <= 0):
                entries.update(self._store_finals(missing, max(left, _POLL_S)))
            for rank, entry in self._log_finals(want - entries.keys(), final_only=True).items():
                entries[rank] = entry
                used_logs = True
            if not want - entries.keys() or left <= 0:
                break
            time.sleep(min(_POLL_S, max(left, 0.0)))
        # What never sent final figures may still have left a checkpoint in its run log.
        for rank, entry in self._log_finals(want - entries.keys(), final_only=False).items():
            entries[rank] = entry
            used_logs = True
        transports = [
            t for t, used in (("store", self._used_store), ("log_dir", used_logs)) if used
        ]
        if self._store_problem:
            notes.append(self._store_problem)
        return entries, notes, "+".join(transports) or "none"

    def _store_finals(self, ranks: Iterable[int], timeout: float) -> dict[int, RankEnergy]:
        def fetch(store: Any) -> dict[int, RankEnergy]:
            out = {}
            for rank in ranks:
                key = self._key("final", rank)
                if store.check([key]):
                    out[rank] = _structure(RankEnergy, json.loads(_text(store.get(key))))
            return out

        return self._store_call("reading final figures", fetch, timeout) or {}

    # -- the run logs ------------------------------------------------------------------------

    def _read_peer_logs(self) -> dict[int, list[dict[str, Any]]]:
        """New lines of the other ranks' run logs of this job since the last read."""
        out: dict[int, list[dict[str, Any]]] = {}
        if self.log_dir is None:
            return out
        for rank, path in find_rank_logs(self.log_dir, self.job.job_id, self.sequence).items():
            if rank == self.job.rank:
                continue
            offset = self._log_offsets.get(path, 0)
            try:
                with path.open("rb") as f:
                    f.seek(offset)
                    data = f.read()
            except OSError:
                continue
            # Only whole lines: a rank may be writing the last one now.
            end = data.rfind(b"\n") + 1
            self._log_offsets[path] = offset + end
            lines = out.setdefault(rank, [])
            for raw in data[:end].splitlines():
                with contextlib.suppress(ValueError):
                    value = json.loads(raw)
                    if isinstance(value, dict):
                        lines.append(value)
        return out

    def _log_finals(self, ranks: set[int], *, final_only: bool) -> dict[int, RankEnergy]:
        if not ranks or self.log_dir is None:
            return {}
        out = {}
        logs = find_rank_logs(self.log_dir, self.job.job_id, self.sequence)
        for rank in ranks:
            path = logs.get(rank)
            if path is None:
                continue
            try:
                lines = _read_lines(path)
            except OSError:
                continue
            entry = rank_entry_from_lines(lines, rank)
            if entry is None or (final_only and not entry.final):
                continue
            header = next((ln for ln in lines if ln.get("type") == "header"), None)
            started = _header_started(header)
            if started is not None and started < self.started_at - _STALE_S:
                continue
            out[rank] = entry
        return out

    def seen_ranks(self) -> set[int]:
        """Ranks known to track (announced in the store or with a run log)."""
        with self._lock:
            seen = set(self._peers_started)
        if self.log_dir is not None:
            seen |= set(find_rank_logs(self.log_dir, self.job.job_id, self.sequence))
        return seen

    def announced(self, rank: int, timeout: float) -> bool:
        """Whether ``rank`` said in the store that it tracks."""
        value = self._store_call(
            "looking for a rank", lambda s: s.check([self._key("start", rank)]), timeout
        )
        return bool(value)

    def close(self) -> None:
        """Let the worker thread end once its queue is done."""
        self._worker.close()


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes | bytearray) else str(raw)


def _read_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    with path.open(encoding="utf-8", errors="replace") as f:
        for raw in f:
            with contextlib.suppress(ValueError):
                value = json.loads(raw)
                if isinstance(value, dict):
                    lines.append(value)
    return lines


def _header_started(header: Mapping[str, Any] | None) -> float | None:
    if header is None:
        return None
    run = header.get("run")
    value = run.get("started_at") if isinstance(run, Mapping) else None
    return float(value) if isinstance(value, int | float) else None


_RANK_LOG = re.compile(r"-job-(?P<job>.+)-s(?P<seq>\d+)-rank(?P<rank>\d+)\.jsonl$")


def find_rank_logs(log_dir: Path, job_id: str, sequence: int) -> dict[int, Path]:
    """This job's run logs in ``log_dir`` by rank (the newest file when a rank has several)."""
    tag = job_file_tag(job_id, sequence, 0).removesuffix("-rank0")
    out: dict[int, Path] = {}
    try:
        paths = sorted(log_dir.glob(f"*-{tag}-rank*.jsonl"))
    except OSError:
        return out
    for path in paths:
        m = _RANK_LOG.search(path.name)
        if m is not None:
            out[int(m.group("rank"))] = path  # sorted by name: the UTC stamp, newest last
    return out


def rank_entry_from_lines(lines: list[dict[str, Any]], rank: int) -> RankEnergy | None:
    """A rank's own figures from its run log: the final report's, else the last checkpoint's."""
    for line in reversed(lines):
        kind = line.get("type")
        if kind not in ("report", "checkpoint"):
            continue
        report = line.get("report")
        job = report.get("job") if isinstance(report, Mapping) else None
        if not isinstance(job, Mapping):
            continue
        for raw in job.get("ranks") or ():
            if isinstance(raw, Mapping) and raw.get("rank") == rank:
                try:
                    entry = _structure(RankEnergy, raw)
                except Exception:
                    return None
                if kind == "checkpoint" and entry.final:
                    entry = _evolve_final(entry, final=False)
                return entry
    return None


def _evolve_final(entry: RankEnergy, *, final: bool) -> RankEnergy:
    import attrs

    return attrs.evolve(entry, final=final)


def sum_epochs(records: list[EpochRecord]) -> EpochRecord:
    """One job epoch from the ranks' records of it: energies summed, rank 0's timing."""
    first = records[0]
    by: dict[str, float] = {}
    for r in records:
        for k, v in r.energy_by_component_j.items():
            by[k] = by.get(k, 0.0) + v
    return EpochRecord(
        index=first.index,
        started_at=first.started_at,
        duration_s=first.duration_s,
        energy_j=sum(r.energy_j for r in records),
        co2eq_g=sum(r.co2eq_g for r in records),
        energy_by_component_j=by,
    )


def merge_job(
    job: JobInfo,
    entries: Mapping[int, RankEnergy],
    *,
    notes: Iterable[str] = (),
    transport: str = "",
) -> tuple[JobReport, tuple[DeviceEnergy, ...], tuple[EpochRecord, ...], float, float]:
    """Merge the ranks' figures into the job's ledger.

    Returns ``(job report, the job's devices, the job's epochs, facility energy, CO2eq)``.
    A device that two ranks of one node both read (one GPU visible to several ranks) counts
    once, from the lowest rank; each node's node-wide figures come from its leader only.
    """
    missing_text = list(notes)
    by_node: dict[str, list[RankEnergy]] = {}
    for rank in sorted(entries):
        by_node.setdefault(entries[rank].node, []).append(entries[rank])
    multi_node = len(by_node) > 1 or bool(job.nodes and len(job.nodes) > 1)
    devices: list[DeviceEnergy] = []
    nodes: list[NodeEnergy] = []
    facility = 0.0
    co2 = 0.0
    for node, members in by_node.items():
        seen: dict[str, int] = {}
        node_j = 0.0
        node_co2 = 0.0
        names = []
        for entry in members:
            for d in entry.devices:
                if d.id in seen:
                    missing_text.append(
                        f"{d.name} on {node} was read by ranks {seen[d.id]} and {entry.rank}; "
                        "counted once"
                    )
                    continue
                seen[d.id] = entry.rank
                share = d.energy_j / entry.energy_j if entry.energy_j > 0 else 0.0
                device_co2 = (
                    entry.co2eq_g * share
                    if entry.energy_j > 0
                    else d.energy_j * entry.pue / J_PER_KWH * entry.g_per_kwh
                )
                node_j += d.energy_j
                node_co2 += device_co2
                facility += d.energy_j * entry.pue
                names.append(d.name)
                devices.append(
                    _on_node(d, node) if multi_node else d,
                )
        co2 += node_co2
        leaders = [e.rank for e in members if e.leader]
        head = members[0]
        nodes.append(
            NodeEnergy(
                node=node,
                energy_j=node_j,
                co2eq_g=node_co2,
                ranks=tuple(e.rank for e in members),
                leader_rank=leaders[0] if leaders else None,
                devices=tuple(names),
                g_per_kwh=head.g_per_kwh,
                location=head.location,
            )
        )
        if not leaders:
            missing_text.append(
                f"node {node}: its node leader (local rank 0) sent no figures, so its "
                "CPU, memory and other node-wide energy is missing"
            )
        unfinished = [e.rank for e in members if not e.final]
        if unfinished:
            missing_text.append(
                f"node {node}: rank(s) {_ranks(unfinished)} sent no final figures (killed, or "
                "still running when rank 0 stopped): counted up to their last checkpoint"
            )
    missing_ranks = tuple(r for r in range(job.world_size) if r not in entries)
    seen_nodes = set(by_node)
    missing_nodes = tuple(n for n in job.nodes if n not in seen_nodes)
    if missing_ranks:
        missing_text.append(
            f"rank(s) {_ranks(missing_ranks)} of {job.world_size} sent nothing within the wait "
            "(not tracking, killed before their first checkpoint, or their run logs are not in "
            "this log directory)"
        )
    if missing_nodes:
        missing_text.append(
            f"node(s) {', '.join(missing_nodes)} could not be seen: no figures from any of "
            "their ranks (is log_dir on a filesystem shared by every node?)"
        )
    epochs = _job_epochs(entries)
    partial = (
        bool(missing_ranks or missing_nodes)
        or any(not e.final for e in entries.values())
        or any(n.leader_rank is None for n in nodes)
    )
    report = JobReport(
        job_id=job.job_id,
        rank=job.rank,
        world_size=job.world_size,
        node=job.node,
        local_rank=job.local_rank,
        source=job.source,
        scope="job",
        ranks=tuple(entries[r] for r in sorted(entries)),
        nodes=tuple(nodes),
        missing_ranks=missing_ranks,
        missing_nodes=missing_nodes,
        missing=tuple(missing_text),
        partial=partial,
        transport=transport,
    )
    return report, tuple(devices), epochs, facility, co2


def _on_node(d: DeviceEnergy, node: str) -> DeviceEnergy:
    import attrs

    # Two nodes have an "intel-rapl:0" each: the node keeps them apart in the job's list.
    return attrs.evolve(d, id=f"{node}/{d.id}", name=f"{d.name} on {node}")


def _job_epochs(entries: Mapping[int, RankEnergy]) -> tuple[EpochRecord, ...]:
    first = entries.get(min(entries)) if entries else None
    if first is None:
        return ()
    out = []
    for own in first.epochs:
        records = [own]
        for rank in sorted(entries):
            if rank == first.rank:
                continue
            match = next((e for e in entries[rank].epochs if e.index == own.index), None)
            if match is not None:
                records.append(match)
        out.append(sum_epochs(records))
    return tuple(out)


def _ranks(ranks: Iterable[int]) -> str:
    return ", ".join(str(r) for r in ranks)


def elect_node_leader(job: JobInfo) -> tuple[bool, Any]:
    """Without a local rank from the launcher, the first process of the job on this node to
    take a lock in the node's temporary directory leads. Returns ``(leader, lock to hold)``."""
    import fcntl
    import tempfile

    path = Path(tempfile.gettempdir()) / (
        f"carbontrack-{os.getuid()}-{_UNSAFE.sub('_', job.job_id)}.leader"
    )
    try:
        handle = path.open("a")
    except OSError:
        return job.rank == 0, None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return False, None
    return True, handle
