"""Carbon intensity and location: where the machine is and how clean its electricity is.

Public helpers (imported on first use, so ``import carbontrack`` stays light):
``current_intensity(settings)``, ``parse_location(code)``, ``pue_preset(name)``,
``PUE_PRESETS``, ``load_table()`` and ``attribution()`` (the data licence notice).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "PUE_PRESETS",
    "attribution",
    "current_intensity",
    "load_table",
    "parse_location",
    "pue_preset",
]

_WHERE = {
    "PUE_PRESETS": "_pue",
    "pue_preset": "_pue",
    "attribution": "_table",
    "load_table": "_table",
    "current_intensity": "_resolve",
    "parse_location": "_location",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
