"""Keras 3 (any backend): ``model.fit(..., callbacks=[CarbonTrackCallback()])`` measures training.

Each training epoch is one carbontrack epoch; its window includes the validation Keras runs at
the epoch's end. The figures go into the epoch's ``logs``, so ``History.history`` has them, and
so do the callbacks listed after this one (``CSVLogger``, ``TensorBoard``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from carbontrack.integrations._core import CallbackMixin, TrainingRun, place_from_env

__all__ = ["CarbonTrackCallback"]


class CarbonTrackCallback(CallbackMixin, keras.callbacks.Callback):  # type: ignore[misc]
    """Measure a ``model.fit()`` run: its energy, CO2eq and predicted footprint.

    Takes ``track()``'s options (validated now, with ``track()``'s errors); ``epochs`` defaults
    to the epochs ``fit()`` trains: ``fit(epochs=...)`` less ``initial_epoch``. ``report``
    holds the final ``Report`` after ``fit()``. Keras calls no callback when ``fit()`` raises:
    use ``with callback:`` around ``fit()`` (or call ``callback.close()``) to end the run there;
    otherwise it ends when the next ``fit()`` with this callback starts, or at interpreter exit.
    """

    def __init__(self, *, plugins: Sequence[object] = (), autoload: bool = True, **options: Any):
        super().__init__()
        self._carbontrack = TrainingRun("Keras", options, plugins, autoload)
        self._started = False

    def _fit_epochs(self) -> int | None:
        epochs = (self.params or {}).get("epochs")
        return epochs if isinstance(epochs, int) and epochs > 0 else None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        """A ``fit()`` begins: end a run a previous ``fit()`` left open; measuring starts with
        the first epoch, whose index says where training resumes."""
        self._started = False
        self._carbontrack.end_previous()

    def _start(self, epochs: int | None, limit: str, why_unplanned: str = "") -> None:
        self._started = True
        # Keras has no ranks of its own: the tracker reads the launcher's (torchrun, Slurm, MPI,
        # TF_CONFIG).
        self._carbontrack.start(
            epochs=epochs,
            place=place_from_env(),
            limit=limit,
            ranks_from_framework=False,
            why_unplanned=why_unplanned,
        )

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """A training epoch starts (the first one starts the run)."""
        if not self._started:
            # fit(epochs=10, initial_epoch=4) trains epochs 4..9: the first index is where
            # training resumes (initial_epoch, or BackupAndRestore's), and params hold only
            # epochs. Keras says neither before this hook.
            fit_epochs = self._fit_epochs()
            first = epoch if isinstance(epoch, int) and epoch > 0 else 0
            left = fit_epochs - first if fit_epochs is not None else None
            limit = f"epochs={(self.params or {}).get('epochs')}"
            if first:
                limit += f", initial_epoch={first}"
            self._start(left if left is not None and left > 0 else None, limit)
        self._carbontrack.epoch_start()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Record the epoch and add carbontrack's figures to the epoch's logs."""
        # History keeps one list per name: the latest prediction repeats so that they align.
        figures = self._carbontrack.epoch_end(repeat_prediction=True)
        if logs is not None:
            logs.update(figures)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        """Stop measuring (after the last epoch, or when ``stop_training`` ended fit early)."""
        if not self._started:
            # initial_epoch at or past epochs: Keras trains nothing, yet fit() has a report.
            epochs = (self.params or {}).get("epochs")
            self._start(
                None,
                f"epochs={epochs}",
                why_unplanned=f"Keras trained no epoch: fit(epochs={epochs}) was given an "
                "initial_epoch at or past it (or resumed a finished training)",
            )
        self._carbontrack.finish()
