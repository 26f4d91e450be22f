"""carbontrack: measure the energy and carbon footprint of code, and predict it for training runs.

>>> from carbontrack import track
>>> with track() as run:          # doctest: +SKIP
...     train()
>>> run.report.co2eq_g            # doctest: +SKIP
"""

from carbontrack._tracker import Tracker, track, track_epochs
from carbontrack._version import __version__
from carbontrack.errors import (
    BudgetExceeded,
    CarbontrackError,
    InvalidOption,
    PluginLoadError,
    UsageError,
)
from carbontrack.hookspecs import hookimpl, hookspec
from carbontrack.model import (
    ComponentEnergy,
    Device,
    DeviceEnergy,
    EpochRecord,
    Intensity,
    IntensityPoint,
    Location,
    PluginFailure,
    Prediction,
    Reading,
    Report,
    RunInfo,
    Unavailable,
)
from carbontrack.settings import Settings, make_settings

__all__ = [
    "BudgetExceeded",
    "CarbontrackError",
    "ComponentEnergy",
    "Device",
    "DeviceEnergy",
    "EpochRecord",
    "Intensity",
    "IntensityPoint",
    "InvalidOption",
    "Location",
    "PluginFailure",
    "PluginLoadError",
    "Prediction",
    "Reading",
    "Report",
    "RunInfo",
    "Settings",
    "Tracker",
    "Unavailable",
    "UsageError",
    "__version__",
    "hookimpl",
    "hookspec",
    "make_settings",
    "track",
    "track_epochs",
]
