"""The exceptions carbontrack raises into user code.

Every message names the value at fault, what was expected and how to fix it.
"""

from __future__ import annotations

__all__ = [
    "BudgetExceeded",
    "CarbontrackError",
    "InvalidOption",
    "InvalidOptionType",
    "PluginLoadError",
    "UsageError",
]


class CarbontrackError(Exception):
    """Base class of every error carbontrack raises on purpose."""


class InvalidOption(CarbontrackError, ValueError):
    """An option has a value outside what it allows (raised before any work starts)."""


class InvalidOptionType(InvalidOption, TypeError):
    """An option has a value of the wrong type (both a ``ValueError`` and a ``TypeError``)."""


class UsageError(CarbontrackError, RuntimeError):
    """The API was called in an order that cannot work, such as ``epoch_end()`` first."""


class PluginLoadError(CarbontrackError, ImportError):
    """A plugin could not be imported or registered; raised at start, before measuring."""


class BudgetExceeded(CarbontrackError):
    """The predicted footprint of the run exceeds the budget set with ``on_budget="raise"``."""
