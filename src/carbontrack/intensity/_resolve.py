"""One-shot answers outside a run: where this machine is and which intensity would be used now."""

from __future__ import annotations

import time
from collections.abc import Sequence

from carbontrack.intensity._location import check_location
from carbontrack.intensity._world import world_intensity
from carbontrack.model import Intensity, Location
from carbontrack.settings import Settings

__all__ = ["current_intensity"]


def current_intensity(
    settings: Settings, *, plugins: Sequence[object] = (), autoload: bool = True
) -> tuple[Location, Intensity]:
    """The location and the carbon intensity a run started now would use.

    Raises ``InvalidOption`` (a ``ValueError``) for an unknown location code, like a run would;
    everything else (a failing provider, no network) falls back as in a run.
    """
    from carbontrack._plugins import PluginHost, make_plugin_manager

    check_location(settings)
    host = PluginHost(make_plugin_manager(autoload=autoload, extra_plugins=plugins))
    location = host.first("carbontrack_locate", settings=settings) or Location(country=None)
    now = time.time()
    found = host.first(
        "carbontrack_carbon_intensity", location=location, start=now, end=now, settings=settings
    )
    if not isinstance(found, Intensity):
        found = world_intensity("no intensity provider answered: using the world average")
    return location, found
