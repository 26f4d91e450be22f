"""What the framework callbacks cost per epoch boundary beyond what ``track()`` itself costs.

Each framework trains a tiny model on CPU for many short epochs with its ``CarbonTrackCallback``.
The callback's hooks and the tracker's ``epoch_start``/``epoch_end`` are timed where they run;
at each epoch boundary (one epoch ending, the next starting) the callback's extra cost is the
time in its hooks less the time in the tracker's epoch calls, which is what a hand-written loop
with ``with run.epoch():`` pays too. For Lightning it also counts the work Lightning does after
the hooks with the figures they logged (the epoch's values computed, the row handed to the
logger). Target: median <= 1 ms per boundary. Per-step hooks (which do nothing when training is
counted in epochs) are reported as well.

    python benchmarks/bench_callbacks.py [epochs]
"""

from __future__ import annotations

import functools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from carbontrack._tracker import Tracker
from carbontrack.testing import FakeDevice, FakeHardware

TARGET_MS = 1.0


class Timings:
    """Seconds spent in each timed call, in call order, per name.

    ``clock`` is ``time.thread_time`` (CPU time of the calling thread: what the hook costs,
    whatever else the machine runs) or ``time.perf_counter`` (wall time, which on a shared
    machine also counts the time the thread waited for a core).
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self.calls: list[tuple[str, float]] = []
        self.clock = clock

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        clock = self.clock

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                self.calls.append((name, clock() - start))

        return timed


def _hardware() -> FakeHardware:
    return FakeHardware(
        [FakeDevice(f"package-{i}", kind="cpu", watts=60.0) for i in range(2)]
        + [FakeDevice(f"gpu{i}", kind="gpu", method="power", watts=250.0) for i in range(4)]
    )


def _instrument(callback: Any, hooks: tuple[str, ...], timings: Timings) -> None:
    # The frameworks look hooks up on the instance, so an instance attribute is what they call.
    for hook in hooks:
        setattr(callback, hook, timings.wrap(hook, getattr(callback, hook)))


def _boundaries(timings: Timings, begin: str, end_hooks: tuple[str, ...]) -> list[float]:
    """Per boundary: (hook time - tracker epoch time) from one epoch's end to the next start."""
    extra: list[float] = []
    hooks = tracker = 0.0
    seen_end = False
    for name, seconds in timings.calls:
        if name in ("Tracker.epoch_start", "Tracker.epoch_end"):
            tracker += seconds
        elif name in end_hooks:
            hooks += seconds
            seen_end = seen_end or name == end_hooks[0]
        elif name == begin:
            hooks += seconds
            if seen_end:
                extra.append(hooks - tracker)
            hooks = tracker = 0.0
            seen_end = False
    return extra


def _tracker_boundary(timings: Timings) -> list[float]:
    starts = [s for n, s in timings.calls if n == "Tracker.epoch_start"][1:]
    ends = [s for n, s in timings.calls if n == "Tracker.epoch_end"][:-1]
    return [a + b for a, b in zip(starts, ends, strict=False)]


def _per_boundary_sum(timings: Timings, name: str, closing: str) -> list[float]:
    """Time in ``name`` calls made within each ``closing`` hook (the hook's nested calls)."""
    sums: list[float] = []
    current = 0.0
    for n, seconds in timings.calls:
        if n == name:
            current += seconds
        elif n == closing:
            sums.append(current)
            current = 0.0
    return sums


def _after_hooks(timings: Timings, names: tuple[str, ...], closing: str) -> list[float]:
    """Time in the ``names`` calls between one ``closing`` call and the next."""
    sums: list[float] = []
    current = 0.0
    for n, seconds in timings.calls:
        if n in names:
            current += seconds
        elif n == closing:
            sums.append(current)
            current = 0.0
    return sums[1:]  # before the first epoch starts, nothing was logged


def _count_per_boundary(timings: Timings, name: str, closing: str) -> list[float]:
    counts: list[float] = []
    current = 0
    for n, _ in timings.calls:
        if n == name:
            current += 1
        elif n == closing:
            counts.append(current)
            current = 0
    return counts


def _per_step(timings: Timings, name: str) -> list[float]:
    return [s for n, s in timings.calls if n == name]


def keras_run(epochs: int, timings: Timings) -> dict[str, list[float]]:
    import keras
    import numpy as np

    from carbontrack.integrations.keras import CarbonTrackCallback

    callback = CarbonTrackCallback(plugins=[_hardware()], verbose=0, write_log=False)
    _instrument(callback, ("on_epoch_begin", "on_epoch_end", "on_train_batch_end"), timings)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.ones((8, 4), dtype="float32")
    model.fit(x, x[:, :1], epochs=epochs, batch_size=8, callbacks=[callback], verbose=0)
    return {
        "boundary": _boundaries(timings, "on_epoch_begin", ("on_epoch_end",)),
        "step": _per_step(timings, "on_train_batch_end"),
    }


def lightning_run(epochs: int, timings: Timings) -> dict[str, list[float]]:
    import lightning.pytorch as pl
    import torch
    from lightning.pytorch.loggers import CSVLogger
    from torch.utils.data import DataLoader, TensorDataset

    from carbontrack.integrations.lightning import CarbonTrackCallback

    class Tiny(pl.LightningModule):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, y = batch
            return torch.nn.functional.mse_loss(self.layer(x), y)

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.01)

    callback = CarbonTrackCallback(plugins=[_hardware()], verbose=0, write_log=False)
    hooks = ("on_train_epoch_start", "on_train_epoch_end", "on_train_batch_end")
    _instrument(callback, hooks, timings)
    x = torch.ones(8, 4)
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        callbacks=[callback],
        logger=CSVLogger(tempfile.mkdtemp()),  # pl_module.log's path into a real logger
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    module = Tiny()
    # The module logs nothing itself: every self.log call timed here is the callback's, and so
    # is the work Lightning does with the logged figures after the epoch's hooks (computing the
    # epoch's values, handing them to the logger: private methods, wrapped here only to time
    # them). Without the figures, that work costs about 15 us an epoch.
    module.log = timings.wrap("LightningModule.log", module.log)
    connector = trainer._logger_connector
    after = ("Lightning.on_epoch_end", "Lightning.update_train_epoch_metrics")
    connector.on_epoch_end = timings.wrap(after[0], connector.on_epoch_end)
    connector.update_train_epoch_metrics = timings.wrap(
        after[1], connector.update_train_epoch_metrics
    )
    trainer.fit(module, DataLoader(TensorDataset(x, x[:, :1]), batch_size=8))
    log_calls = [s for n, s in timings.calls if n == "LightningModule.log"]
    return {
        "boundary": _boundaries(timings, "on_train_epoch_start", ("on_train_epoch_end", *after)),
        "step": _per_step(timings, "on_train_batch_end"),
        "framework_log": _per_boundary_sum(timings, "LightningModule.log", "on_train_epoch_end"),
        "framework_after": _after_hooks(timings, after, "on_train_epoch_start"),
        "log_call": log_calls[6:],  # past the first epochs' one-off costs (a new name's first log)
        "log_calls": _count_per_boundary(timings, "LightningModule.log", "on_train_epoch_end"),
    }


def transformers_run(epochs: int, timings: Timings) -> dict[str, list[float]]:
    import torch
    import transformers

    from carbontrack.integrations.transformers import CarbonTrackCallback

    class Data(torch.utils.data.Dataset):  # type: ignore[misc]
        def __len__(self) -> int:
            return 8

        def __getitem__(self, i: int) -> dict[str, Any]:
            ids = torch.arange(8) % 16
            return {"input_ids": ids, "labels": ids}

    callback = CarbonTrackCallback(plugins=[_hardware()], verbose=0, write_log=False)
    hooks = ("on_epoch_begin", "on_step_end", "on_log", "on_epoch_end")
    _instrument(callback, hooks, timings)
    config = transformers.GPT2Config(vocab_size=16, n_positions=8, n_embd=8, n_layer=1, n_head=2)
    args = transformers.TrainingArguments(
        output_dir=tempfile.mkdtemp(),
        num_train_epochs=epochs,
        per_device_train_batch_size=4,  # two steps an epoch: one inside it, one at its end
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        logging_steps=10**9,
    )
    trainer = transformers.Trainer(
        model=transformers.GPT2LMHeadModel(config),
        args=args,
        train_dataset=Data(),
        callbacks=[callback],
    )
    trainer.train()
    # A boundary: the last step's on_step_end (which ends the epoch), on_log with the figures,
    # on_epoch_end, then the next on_epoch_begin. Steps inside an epoch only pay on_step_end.
    steps = _per_step(timings, "on_step_end")
    return {
        "boundary": _boundaries(
            timings, "on_epoch_begin", ("on_step_end", "on_log", "on_epoch_end")
        ),
        "step": steps[0::2],
    }


RUNS = {"keras": keras_run, "lightning": lightning_run, "transformers": transformers_run}


def main() -> int:
    epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 60
    original = Tracker.epoch_start, Tracker.epoch_end
    worst = 0.0
    print(f"callbacks: {epochs} epochs each, tiny models on CPU, 6 fake devices; medians")
    for framework, run in RUNS.items():
        for clock_name, clock in (("cpu", time.thread_time), ("wall", time.perf_counter)):
            timings = Timings(clock)
            Tracker.epoch_start = timings.wrap("Tracker.epoch_start", original[0])  # type: ignore[method-assign]
            Tracker.epoch_end = timings.wrap("Tracker.epoch_end", original[1])  # type: ignore[method-assign]
            try:
                found = run(epochs, timings)
            finally:
                Tracker.epoch_start, Tracker.epoch_end = original  # type: ignore[method-assign]
            # The first boundaries pay one-off costs (the frameworks' first log of a new name).
            boundary = found["boundary"][2:]
            extra_ms = statistics.median(boundary) * 1000
            track_ms = statistics.median(_tracker_boundary(timings)) * 1000
            step_us = statistics.median(found["step"]) * 1e6 if found["step"] else 0.0
            if clock_name == "cpu":
                worst = max(worst, extra_ms)
            if "framework_log" in found:
                log_ms = statistics.median(found["framework_log"][2:]) * 1000
                after_ms = statistics.median(found["framework_after"][2:]) * 1000
                call_ms = statistics.median(found["log_call"]) * 1000
                calls = statistics.median(found["log_calls"][2:])
                extra_ms_note = (
                    f" (of which {framework}'s own self.log: {log_ms:.3f} ms, {calls:g} calls of "
                    f"{call_ms:.3f} ms; its epoch-end handling of the figures: {after_ms:.3f} ms)"
                )
            else:
                extra_ms_note = ""
            print(
                f"  {framework:12s} {clock_name:4s} extra per epoch boundary {extra_ms:.3f} ms"
                f"{extra_ms_note} (p90 {statistics.quantiles(boundary, n=10)[-1] * 1000:.3f}, "
                f"{len(boundary)} boundaries); track()'s epoch_end+epoch_start "
                f"{track_ms:.3f} ms; per-step hook {step_us:.1f} us"
            )
    verdict = "OK" if worst <= TARGET_MS else "OVER TARGET"
    print(
        f"worst median extra CPU time: {worst:.3f} ms per boundary (target <= {TARGET_MS} ms): "
        f"{verdict}"
    )
    return 0 if worst <= TARGET_MS else 1


if __name__ == "__main__":
    raise SystemExit(main())
