"""One rank of a test job: tracks a few epochs and writes its report as JSON.

Run by tests/test_job_*.py under real ``torchrun`` (``--torch``: gloo process group, an
all-reduce per epoch as DDP does) or as a plain process with launcher variables in its
environment. Options come from the command line so one script serves every scenario.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--log-dir", required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--epoch-s", type=float, default=0.4)
    parser.add_argument("--torch", action="store_true")
    parser.add_argument("--track-ranks", default="all", help="'all' or comma-separated ranks")
    parser.add_argument("--die-rank", type=int, default=-1, help="this rank dies mid-run")
    # Long by default: the tests that expect every rank must not fail on a loaded machine where
    # a rank starts seconds late; rank 0 stops waiting as soon as all have arrived.
    parser.add_argument("--wait-s", type=float, default=15.0)
    parser.add_argument("--checkpoint-s", type=float, default=60.0)
    parser.add_argument("--no-collectives", action="store_true")
    args = parser.parse_args()

    rank = int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")))
    if args.torch:
        import torch
        import torch.distributed as dist

        dist.init_process_group("gloo")
    tracks = args.track_ranks == "all" or str(rank) in args.track_ranks.split(",")

    from carbontrack import track

    def train_epoch() -> None:
        deadline = time.monotonic() + args.epoch_s
        while time.monotonic() < deadline:
            time.sleep(0.02)
        if args.torch and not args.no_collectives:
            t = torch.ones(4)
            dist.all_reduce(t)

    if not tracks:
        for _ in range(args.epochs):
            train_epoch()
    else:
        with track(
            epochs=args.epochs,
            components="cpu",
            log_dir=args.log_dir,
            location="DK",
            pue=1.0,
            verbose=0,
            job_wait_s=args.wait_s,
            checkpoint_s=args.checkpoint_s,
            interval_s=min(1.0, args.checkpoint_s),
        ) as run:
            for epoch in range(args.epochs):
                if rank == args.die_rank and epoch == 1:
                    os._exit(3)  # killed: no final report, no goodbye
                with run.epoch():
                    train_epoch()
            stopping = time.monotonic()
        stop_s = time.monotonic() - stopping
        args.out.mkdir(parents=True, exist_ok=True)
        result = {"report": run.report.to_dict(), "stop_s": stop_s}
        (args.out / f"rank{rank}.json").write_text(json.dumps(result))
    if args.torch and args.die_rank < 0 and not args.no_collectives:
        dist.destroy_process_group()
    sys.exit(0)


if __name__ == "__main__":
    main()
