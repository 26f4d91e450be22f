"""Predicting the footprint of a whole training run from its first epochs (pure functions).

The method of Anthony et al. (2020): what was measured plus the remaining epochs times the mean
epoch. Warm-up epochs can be left out of the mean.
"""

from __future__ import annotations

from collections.abc import Sequence

from carbontrack.model import J_PER_KWH, EpochRecord, Prediction

__all__ = ["predict"]


def predict(
    epochs: Sequence[EpochRecord],
    *,
    total_epochs: int,
    g_per_kwh: float,
    pue: float,
    warmup_epochs: int = 0,
    intensity_source: str = "",
) -> Prediction:
    """Predict duration, energy and CO2eq of ``total_epochs`` from the measured ``epochs``.

    ``energy_j`` is device (IT) energy; ``co2eq_g`` includes the PUE. Raises ``ValueError`` when
    no epoch is left for the mean after ``warmup_epochs``.
    """
    sample = list(epochs[warmup_epochs:])
    if not sample:
        raise ValueError(
            f"cannot predict from {len(epochs)} epoch(s) with warmup_epochs={warmup_epochs}: "
            "no epoch left for the mean"
        )
    done = len(epochs)
    remaining = max(total_epochs - done, 0)
    mean_s = sum(e.duration_s for e in sample) / len(sample)
    mean_j = sum(e.energy_j for e in sample) / len(sample)
    duration_s = sum(e.duration_s for e in epochs) + remaining * mean_s
    energy_j = sum(e.energy_j for e in epochs) + remaining * mean_j
    return Prediction(
        after_epoch=done,
        epochs=total_epochs,
        duration_s=duration_s,
        energy_j=energy_j,
        co2eq_g=energy_j * pue / J_PER_KWH * g_per_kwh,
        g_per_kwh=g_per_kwh,
        epochs_in_mean=len(sample),
        intensity_source=intensity_source,
    )
