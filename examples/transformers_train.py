"""Hugging Face Trainer measured by carbontrack: python examples/transformers_train.py

Needs Transformers (pip install "carbontrack[transformers]"). Builds a small GPT-2 from a
config (nothing is downloaded) and trains it on CPU in seconds; set EPOCHS to train longer.
"""

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import transformers

from carbontrack.integrations.transformers import CarbonTrackCallback


class RandomTokens(torch.utils.data.Dataset):
    def __init__(self, n=128, length=16):
        self.ids = torch.randint(0, 256, (n, length), generator=torch.Generator().manual_seed(0))

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


config = transformers.GPT2Config(vocab_size=256, n_positions=16, n_embd=32, n_layer=2, n_head=4)
carbon = CarbonTrackCallback(pue="none")  # track()'s options; epochs come from num_train_epochs
args = transformers.TrainingArguments(
    output_dir=tempfile.mkdtemp(),
    num_train_epochs=int(os.environ.get("EPOCHS", "3")),
    per_device_train_batch_size=32,
    report_to="none",
    save_strategy="no",
    use_cpu=True,
    disable_tqdm=True,
)
trainer = transformers.Trainer(
    model=transformers.GPT2LMHeadModel(config),
    args=args,
    train_dataset=RandomTokens(),
    callbacks=[carbon],
)
with carbon:  # ends the run even if train() raises (the Trainer has no hook for that)
    trainer.train()

# The figures are in the Trainer's own log history, one entry per epoch.
history = trainer.state.log_history
print([row["carbontrack/energy_kwh"] for row in history if "carbontrack/energy_kwh" in row])
print(f"{carbon.report.energy_kwh:.3g} kWh, {carbon.report.co2eq_g:.3g} gCO2eq")
