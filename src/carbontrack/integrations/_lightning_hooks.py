"""The Lightning hooks, shared by the ``lightning.pytorch`` and ``pytorch_lightning`` callbacks.

Nothing here imports Lightning: the two public modules mix these hooks into their package's
``Callback`` (the two packages hold distinct ``Callback`` classes, and a ``Trainer`` accepts
only its own).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from carbontrack.integrations._core import CallbackMixin, Place, TrainingRun


class LightningHooks(CallbackMixin):
    """Measure a ``Trainer.fit()``: one carbontrack epoch per training epoch, figures logged.

    Takes ``track()``'s options (validated now, with ``track()``'s errors); ``epochs`` defaults
    to the trainer's ``max_epochs``. With ``max_steps`` ending training before ``max_epochs``
    would, the run is measured whole and predicted from the steps done. ``report`` holds the
    final ``Report`` after ``fit()``, also when it raised (``on_exception``).
    """

    def __init__(self, *, plugins: Sequence[object] = (), autoload: bool = True, **options: Any):
        super().__init__()
        self._carbontrack = TrainingRun("Lightning", options, plugins, autoload)
        self._first_step = 0
        self._last_logged_step = -1

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        """Start measuring (after the sanity check, which is left out of the run)."""
        max_epochs = trainer.max_epochs
        max_steps = trainer.max_steps
        done_epochs = int(trainer.current_epoch)
        self._first_step = int(trainer.global_step)
        self._last_logged_step = -1
        epochs = max_epochs - done_epochs if max_epochs is not None and max_epochs > 0 else None
        steps_total = None
        if max_steps is not None and max_steps > 0:
            # max_steps drives the run when there is no epoch limit, or when it ends training
            # before max_epochs would (Lightning stops at whichever limit comes first).
            per_epoch = _steps_per_epoch(trainer)
            if epochs is None or per_epoch is None or max_steps < per_epoch * max_epochs:
                steps_total = max_steps - self._first_step
        limit = f"max_epochs={max_epochs}" + (f", max_steps={max_steps}" if steps_total else "")
        self._carbontrack.start(
            epochs=epochs,
            place=Place(
                rank=int(trainer.global_rank),
                local_rank=int(trainer.local_rank),
                world_size=int(trainer.world_size),
            ),
            steps_total=steps_total,
            limit=limit,
        )

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        """A training epoch starts."""
        self._carbontrack.epoch_start()

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        """Record the epoch and log carbontrack's figures through ``pl_module.log``."""
        run = self._carbontrack
        figures = run.epoch_end()
        if run.steps_total:
            figures = run.progress_figures(int(trainer.global_step) - self._first_step)
        _log(trainer, pl_module, figures, on_step=False)

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Step-driven training: log the figures every ``log_every_n_steps`` steps."""
        run = self._carbontrack
        if not run.steps_total or not run.place.logs:
            return
        step = int(trainer.global_step)
        every = max(int(getattr(trainer, "log_every_n_steps", 50) or 50), 1)
        if step % every or step == self._last_logged_step:
            return
        self._last_logged_step = step
        _log(trainer, pl_module, run.progress_figures(step - self._first_step), on_step=True)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        """Stop measuring: training finished, or stopped early (``EarlyStopping``)."""
        self._carbontrack.finish()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        """Training raised: end the run with a report that says so. Lightning re-raises."""
        self._carbontrack.finish(exception)

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """The last hook of ``fit()``: end a run that no other hook ended."""
        self._carbontrack.finish()


def _steps_per_epoch(trainer: Any) -> int | None:
    batches = trainer.num_training_batches
    if not isinstance(batches, int | float) or not math.isfinite(batches) or batches <= 0:
        return None
    return math.ceil(batches / max(int(trainer.accumulate_grad_batches), 1))


def _log(trainer: Any, pl_module: Any, figures: dict[str, float], *, on_step: bool) -> None:
    import torch  # Lightning's own dependency: here it is imported already

    # Only global rank 0 has figures, hence rank_zero_only. With it, sync_dist=True reduces
    # nothing (Lightning's sync function is a no-op for rank-zero-only values: no collective a
    # rank might not join) and spares users Lightning's advice to pass sync_dist=True.
    # logger=None is Lightning's default: every configured logger and trainer.logged_metrics
    # get the figures, and no warning when there is no logger. Float64 tensors keep the figures
    # exact (a float becomes a float32 tensor) and skip a conversion in each call, which costs
    # about 0.3 ms of Lightning's machinery: the reason the prediction is logged only after the
    # epochs it is made.
    for name, value in figures.items():
        pl_module.log(
            name,
            torch.tensor(value, dtype=torch.float64),
            on_step=on_step,
            on_epoch=not on_step,
            prog_bar=False,
            logger=None,
            rank_zero_only=True,
            sync_dist=True,
            # One value per epoch: its max is the value, and "max" spares Lightning the mean's
            # batch-size bookkeeping (about 15 % of what each call costs).
            reduce_fx="max",
        )
