"""PyTorch Lightning: ``Trainer(callbacks=[CarbonTrackCallback()])`` measures ``fit()``.

A ``lightning.pytorch.Callback`` (the ``lightning`` package); where only the older
``pytorch_lightning`` package is installed, a ``pytorch_lightning.Callback``. For a
``pytorch_lightning.Trainer`` while both are installed, use
``carbontrack.integrations.pytorch_lightning``. The figures go through ``pl_module.log``, so they
are in ``trainer.logged_metrics`` and every configured logger.
"""

from __future__ import annotations

try:
    from lightning.pytorch import Callback
except ImportError:  # only the older package is installed
    from pytorch_lightning import Callback

from carbontrack.integrations._lightning_hooks import LightningHooks

__all__ = ["CarbonTrackCallback"]


class CarbonTrackCallback(LightningHooks, Callback):  # type: ignore[misc]
    __doc__ = LightningHooks.__doc__
