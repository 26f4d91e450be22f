"""carbontrack: measure the energy and carbon footprint of code, and predict it for training runs.

>>> from carbontrack import track
>>> with track() as run:          # doctest: +SKIP
...     train()
>>> run.report.co2eq_g            # doctest: +SKIP
"""

import importlib

from carbontrack._version import __version__

# Not imported from typing: typing alone would double the cost of `import carbontrack`.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from carbontrack._job import detect_job
    from carbontrack._tracker import Tracker, track, track_epochs
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
        JobInfo,
        Location,
        PluginFailure,
        Prediction,
        Reading,
        Report,
        RunInfo,
        Unavailable,
    )
    from carbontrack.settings import Settings, make_settings

# Names are imported on first use (PEP 562), so `import carbontrack` in a training script costs
# next to nothing; `from carbontrack import track` loads what tracking needs, and pluggy only
# loads when a run starts or a plugin author imports `hookimpl`.
_LAZY = {
    "JobInfo": "carbontrack.model",
    "detect_job": "carbontrack._job",
    "Tracker": "carbontrack._tracker",
    "track": "carbontrack._tracker",
    "track_epochs": "carbontrack._tracker",
    "BudgetExceeded": "carbontrack.errors",
    "CarbontrackError": "carbontrack.errors",
    "InvalidOption": "carbontrack.errors",
    "PluginLoadError": "carbontrack.errors",
    "UsageError": "carbontrack.errors",
    "hookimpl": "carbontrack.hookspecs",
    "hookspec": "carbontrack.hookspecs",
    "ComponentEnergy": "carbontrack.model",
    "Device": "carbontrack.model",
    "DeviceEnergy": "carbontrack.model",
    "EpochRecord": "carbontrack.model",
    "Intensity": "carbontrack.model",
    "IntensityPoint": "carbontrack.model",
    "Location": "carbontrack.model",
    "PluginFailure": "carbontrack.model",
    "Prediction": "carbontrack.model",
    "Reading": "carbontrack.model",
    "Report": "carbontrack.model",
    "RunInfo": "carbontrack.model",
    "Unavailable": "carbontrack.model",
    "Settings": "carbontrack.settings",
    "make_settings": "carbontrack.settings",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'carbontrack' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


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
    "JobInfo",
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
    "detect_job",
    "hookimpl",
    "hookspec",
    "make_settings",
    "track",
    "track_epochs",
]
