"""One process of a real Lightning DDP job on CPU (gloo), with carbontrack's callback.

Run by tests/test_integrations_lightning_ddp.py as ``python lightning_ddp_worker.py OUT LOGS``;
Lightning's own DDP launcher starts the second process by running this script again. Each
process writes its report, its rank and the carbontrack figures Lightning logged, as JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from carbontrack.integrations.lightning import CarbonTrackCallback
from integration_helpers import linear_regression

Tiny = linear_regression(pl.LightningModule)


def main() -> None:
    out, logs = Path(sys.argv[1]), sys.argv[2]
    callback = CarbonTrackCallback(verbose=0, interval_s=0.05, log_dir=logs, job_wait_s=30.0)
    trainer = pl.Trainer(
        strategy="ddp",
        accelerator="cpu",
        devices=2,
        max_epochs=3,
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    x = torch.ones(64, 4)
    trainer.fit(Tiny(), DataLoader(TensorDataset(x, x[:, :1]), batch_size=8))
    report = callback.report
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rank{trainer.global_rank}.json").write_text(
        json.dumps(
            {
                "report": report.to_dict() if report is not None else None,
                "logged": sorted(k for k in trainer.logged_metrics if k.startswith("carbontrack/")),
            }
        )
    )


if __name__ == "__main__":
    main()
