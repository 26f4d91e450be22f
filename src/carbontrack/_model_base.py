"""The values both ``carbontrack.model`` and ``carbontrack._model_later`` build on.

Part of ``carbontrack.model`` (import them from there); kept apart only so that the values
loaded later (``carbontrack._model_later``) need not import ``carbontrack.model`` back.
"""

from __future__ import annotations

from typing import Literal

import attrs

__all__ = ["METHODS", "DeviceEnergy", "Location", "Method"]

#: How a device's energy is obtained: a cumulative hardware counter, sampled instantaneous
#: power (integrated with the trapezoid rule), or a model estimate (never a measurement).
METHODS = ("counter", "power", "model")
Method = Literal["counter", "power", "model"]


@attrs.frozen
class Location:
    """Where the machine is: an ISO 3166 alpha-2 ``country`` and an optional grid ``region``."""

    country: str | None
    region: str | None = None
    source: str = "unknown"


@attrs.frozen
class DeviceEnergy:
    """What one device drew over the run, and how that figure was obtained."""

    id: str
    kind: str
    name: str
    backend: str
    method: Method
    energy_j: float
    shared: bool = False
    resets: int = 0
    dropped: str | None = None
    detail: str = ""


# They are carbontrack.model's values: reprs, pickles and type hints name that module.
Location.__module__ = DeviceEnergy.__module__ = "carbontrack.model"
