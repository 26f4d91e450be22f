"""PyTorch Lightning training measured by carbontrack: python examples/lightning_train.py

Needs Lightning (pip install "carbontrack[lightning]"). Runs on CPU in seconds; set EPOCHS in
the environment to train longer.
"""

import csv
import os
import tempfile

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

from carbontrack.integrations.lightning import CarbonTrackCallback


class Classifier(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1)
        )

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.binary_cross_entropy_with_logits(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters())


torch.manual_seed(0)
x = torch.randn(2048, 16)
y = (x.sum(dim=1, keepdim=True) > 0).float()

carbon = CarbonTrackCallback(pue="none")  # track()'s options; epochs come from max_epochs
trainer = pl.Trainer(
    max_epochs=int(os.environ.get("EPOCHS", "3")),
    accelerator="cpu",
    callbacks=[carbon],
    logger=CSVLogger(tempfile.mkdtemp()),
    enable_checkpointing=False,
    enable_progress_bar=False,
)
trainer.fit(Classifier(), DataLoader(TensorDataset(x, y), batch_size=64))

# The figures reach every logger: here the CSV file, one row per epoch.
with open(os.path.join(trainer.logger.log_dir, "metrics.csv")) as f:
    rows = [row for row in csv.DictReader(f) if row["carbontrack/energy_kwh"]]
print([float(row["carbontrack/energy_kwh"]) for row in rows])
print(f"{carbon.report.energy_kwh:.3g} kWh, {carbon.report.co2eq_g:.3g} gCO2eq")
