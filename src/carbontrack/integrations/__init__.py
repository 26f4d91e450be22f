"""Training-framework callbacks: one carbontrack run per training, figures in the framework's logs.

``carbontrack.integrations.lightning``, ``.transformers`` and ``.keras`` each define a
``CarbonTrackCallback``; each module imports its framework when it is imported, never before,
so ``import carbontrack`` stays free of torch, Lightning, Transformers and Keras.
"""

from __future__ import annotations

__all__: list[str] = []
