"""What job mode adds at an epoch boundary, per rank, in a 16-rank job (simulated ranks).

Target (issue 14): at most 5 ms per rank per epoch boundary. Sixteen real processes play the
ranks of one job (2 "nodes" x 8, explicit rank options, fake hardware); each times
``epoch_end()`` + ``epoch_start()`` over 40 epochs of 20 ms, once as a rank of the job and once
alone (``distributed=False``), and prints the medians. Two transports: the shared log
directory, and a torch.distributed TCPStore (served by this process, as torchrun's agent does)
when torch is installed.

    python benchmarks/bench_job.py            # both transports
    python benchmarks/bench_job.py --ranks 4  # a smaller job
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EPOCHS = 40
EPOCH_S = 0.02


def _boundaries(**options: object) -> list[float]:
    from carbontrack import track
    from carbontrack.testing import FakeDevice, FakeHardware

    hw = FakeHardware(
        [FakeDevice("package-0", watts=100.0), FakeDevice("GPU-0", kind="gpu", watts=200.0)]
    )
    times = []
    with track(
        plugins=[hw], autoload=False, verbose=0, pue=1.0, location="DK", epochs=EPOCHS, **options
    ) as run:
        run.epoch_start()
        for _ in range(EPOCHS - 1):
            time.sleep(EPOCH_S)
            start = time.perf_counter()
            run.epoch_end()
            run.epoch_start()
            times.append(time.perf_counter() - start)
        time.sleep(EPOCH_S)
        run.epoch_end()
    return times


def worker(args: argparse.Namespace) -> None:
    """One simulated rank: time its boundaries in the job, then alone."""
    if args.store_port:
        from datetime import timedelta

        import torch.distributed as dist

        from carbontrack import Tracker

        store = dist.TCPStore(
            "127.0.0.1", args.store_port, is_master=False, timeout=timedelta(seconds=30)
        )
        # Stands in for torch.distributed's default store (init_process_group with 16 real
        # ranks would measure gloo's start-up, not carbontrack).
        Tracker._store_finder = staticmethod(lambda: store)
    per_node = max(1, args.ranks // 2)
    job = _boundaries(
        rank=args.rank,
        world_size=args.ranks,
        local_rank=args.rank % per_node,
        node_name=f"node{args.rank // per_node}",
        job_id=args.job_id,
        log_dir=args.log_dir,
        job_wait_s=5.0,
    )
    alone = _boundaries(distributed=False, log_dir=args.log_dir + "-alone")
    print(json.dumps({"rank": args.rank, "job": job, "alone": alone}))


def run_job(ranks: int, *, store: bool) -> dict[int, dict[str, list[float]]]:
    with tempfile.TemporaryDirectory() as tmp:
        server = None
        port = 0
        if store:
            from datetime import timedelta

            import torch.distributed as dist

            server = dist.TCPStore(
                "127.0.0.1",
                0,
                is_master=True,
                wait_for_workers=False,
                timeout=timedelta(seconds=30),
            )
            port = server.port
        cmd = [sys.executable, __file__, "--worker", "--ranks", str(ranks)]
        cmd += ["--log-dir", str(Path(tmp) / "logs"), "--job-id", f"bench-{time.time_ns()}"]
        cmd += ["--store-port", str(port)]
        procs = [
            subprocess.Popen([*cmd, "--rank", str(r)], stdout=subprocess.PIPE, text=True)
            for r in range(ranks)
        ]
        results = {}
        for p in procs:
            out, _ = p.communicate(timeout=600)
            data = json.loads(out.strip().splitlines()[-1])
            results[data["rank"]] = data
        del server
    return results


def report(name: str, results: dict[int, dict[str, list[float]]]) -> None:
    added = {}
    for rank, data in sorted(results.items()):
        added[rank] = (statistics.median(data["job"]) - statistics.median(data["alone"])) * 1e3
    worst = max(added, key=lambda r: added[r])
    job_ms = statistics.median([statistics.median(d["job"]) for d in results.values()]) * 1e3
    alone_ms = statistics.median([statistics.median(d["alone"]) for d in results.values()]) * 1e3
    print(f"{name}: {len(results)} ranks, {EPOCHS - 1} boundaries each")
    print(f"  boundary median (median over ranks): job {job_ms:.3f} ms, alone {alone_ms:.3f} ms")
    print(f"  added by job mode, rank 0: {added[0]:.3f} ms")
    print(f"  added by job mode, worst rank ({worst}): {added[worst]:.3f} ms (target <= 5 ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=16)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rank", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--log-dir", default="", help=argparse.SUPPRESS)
    parser.add_argument("--job-id", default="", help=argparse.SUPPRESS)
    parser.add_argument("--store-port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    report("log-dir transport", run_job(args.ranks, store=False))
    try:
        import torch.distributed  # noqa: F401
    except ImportError:
        print("torch not installed: store transport skipped")
        return
    report("torch.distributed store transport", run_job(args.ranks, store=True))


if __name__ == "__main__":
    main()
