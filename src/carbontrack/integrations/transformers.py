"""Hugging Face Transformers: ``Trainer(callbacks=[CarbonTrackCallback()])`` measures ``train()``.

A ``transformers.TrainerCallback``. The figures go into the ``logs`` of ``on_log`` (and the
matching ``state.log_history`` entry), so callbacks after this one see them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from transformers import DefaultFlowCallback, TrainerCallback

from carbontrack.integrations._core import CallbackMixin, Place, TrainingRun

__all__ = ["CarbonTrackCallback"]


class CarbonTrackCallback(CallbackMixin, TrainerCallback):  # type: ignore[misc]
    """Measure a ``Trainer.train()`` run: its energy, CO2eq and predicted footprint.

    Takes ``track()``'s options (validated now, with ``track()``'s errors); ``epochs`` defaults
    to ``num_train_epochs``. With ``max_steps`` (or a fractional ``num_train_epochs``) the run
    is measured whole and predicted from the steps done. ``report`` holds the final ``Report``
    after ``train()``. The ``Trainer`` calls no callback when ``train()`` raises: use
    ``with callback:`` around ``train()`` (or call ``callback.close()``) to end the run there;
    otherwise it ends when the next ``train()`` with this callback starts, or at interpreter
    exit.
    """

    def __init__(self, *, plugins: Sequence[object] = (), autoload: bool = True, **options: Any):
        self._carbontrack = TrainingRun("Transformers", options, plugins, autoload)
        self._pending: dict[str, float] = {}
        self._first_step = 0

    def attach(self, trainer: Any) -> CarbonTrackCallback:
        """Put this callback on ``trainer`` before its reporting integrations; return it.

        The Trainer calls the integrations chosen by ``report_to`` (TensorBoard, W&B,
        MLflow...) before the callbacks given to ``Trainer(callbacks=...)``, so they would log
        each event before this callback adds its figures. Attached here, right after the
        Trainer's own flow callback, it comes first and they log carbontrack's figures too.
        """
        callbacks = trainer.callback_handler.callbacks
        callbacks[:] = [cb for cb in callbacks if cb is not self]
        first = 1 if callbacks and isinstance(callbacks[0], DefaultFlowCallback) else 0
        callbacks.insert(first, self)
        return self

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Start measuring; the planned epochs come from ``num_train_epochs``."""
        self._pending = {}
        self._first_step = int(state.global_step)
        wanted = float(args.num_train_epochs)
        steps_total = None
        epochs = None
        if args.max_steps > 0 or not wanted.is_integer():
            # max_steps overrides num_train_epochs (the Trainer's rule); a fraction of an epoch
            # also ends training inside an epoch: both are counted in steps.
            steps_total = int(state.max_steps) - self._first_step
            limit = f"max_steps={args.max_steps}" if args.max_steps > 0 else ""
        else:
            # Resumed from a checkpoint: only the epochs still to train are this run's.
            done = math.floor(state.epoch or 0)
            epochs = max(int(state.num_train_epochs) - done, 1)
            limit = f"num_train_epochs={args.num_train_epochs:g}"
        self._carbontrack.start(
            epochs=epochs,
            place=Place(
                rank=int(args.process_index),
                local_rank=int(args.local_process_index),
                world_size=int(args.world_size),
            ),
            steps_total=steps_total,
            limit=limit or f"num_train_epochs={args.num_train_epochs:g}",
        )

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """A training epoch starts."""
        self._carbontrack.epoch_start()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        """At an epoch's last step, end the epoch and have the Trainer log at this step."""
        # state.epoch is epoch + (step + 1) / steps_in_epoch: whole only at the last step.
        # Ending the epoch here (not in on_epoch_end) lets its figures ride on a log of this
        # very step; a log already made at this step would leave no log for on_epoch_end.
        if state.epoch is not None and float(state.epoch).is_integer():
            return self._end_epoch(control)
        return None

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        """End the epoch if its last step did not (training stopped inside it)."""
        return self._end_epoch(control)

    def _end_epoch(self, control: Any) -> Any:
        figures = self._carbontrack.epoch_end()
        if not figures:
            return None
        self._pending = figures
        control.should_log = True
        return control

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        """Add carbontrack's figures to this log event and its ``log_history`` entry."""
        run = self._carbontrack
        if logs is None or not run.place.logs:
            return
        if run.steps_total:
            figures = run.progress_figures(int(state.global_step) - self._first_step)
        else:
            figures, self._pending = self._pending, {}
        if not figures:
            return
        logs.update(figures)
        # The Trainer appends a copy of the logs to log_history just before on_log.
        history = state.log_history
        if history and history[-1].get("step") == state.global_step:
            history[-1].update(figures)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Stop measuring: training finished, or stopped early (``should_training_stop``)."""
        self._carbontrack.finish()
