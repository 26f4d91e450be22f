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
    to ``fit(epochs=...)``. ``report`` holds the final ``Report`` after ``fit()``. Keras calls
    no callback when ``fit()`` raises: use ``with callback:`` around ``fit()`` (or call
    ``callback.close()``) to end the run there; otherwise it ends when the next ``fit()``
    with this callback starts, or at interpreter exit.
    """

    def __init__(self, *, plugins: Sequence[object] = (), autoload: bool = True, **options: Any):
        super().__init__()
        self._carbontrack = TrainingRun("Keras", options, plugins, autoload)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Start measuring; the planned epochs come from ``fit(epochs=...)``."""
        epochs = (self.params or {}).get("epochs")
        planned = epochs if isinstance(epochs, int) and epochs > 0 else None
        # Keras has no ranks of its own: the tracker reads the launcher's (torchrun, Slurm, MPI).
        self._carbontrack.start(
            epochs=planned,
            place=place_from_env(),
            limit=f"epochs={epochs}",
            ranks_from_framework=False,
        )

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """A training epoch starts."""
        self._carbontrack.epoch_start()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Record the epoch and add carbontrack's figures to the epoch's logs."""
        # History keeps one list per name: the latest prediction repeats so that they align.
        figures = self._carbontrack.epoch_end(repeat_prediction=True)
        if logs is not None:
            logs.update(figures)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        """Stop measuring (after the last epoch, or when ``stop_training`` ended fit early)."""
        self._carbontrack.finish()
