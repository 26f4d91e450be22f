"""The callback for the older ``pytorch_lightning`` package's ``Trainer``.

Identical to ``carbontrack.integrations.lightning.CarbonTrackCallback``, but a
``pytorch_lightning.Callback``: a ``pytorch_lightning.Trainer`` accepts only its own package's
callbacks.
"""

from __future__ import annotations

from pytorch_lightning import Callback

from carbontrack.integrations._lightning_hooks import LightningHooks

__all__ = ["CarbonTrackCallback"]


class CarbonTrackCallback(LightningHooks, Callback):  # type: ignore[misc]
    __doc__ = LightningHooks.__doc__
