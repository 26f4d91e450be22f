"""Built-in location answer: the ``location`` option or ``$CARBONTRACK_LOCATION``, else unknown."""

from __future__ import annotations

from carbontrack.hookspecs import hookimpl
from carbontrack.model import Location
from carbontrack.settings import Settings


@hookimpl(trylast=True)
def carbontrack_locate(settings: Settings) -> Location:
    """Return the configured location; an unconfigured machine is unknown, never guessed."""
    if settings.location:
        code = settings.location.strip()
        country, _, region = code.partition("-")
        return Location(country=country.upper(), region=code if region else None, source="setting")
    return Location(country=None, region=None, source="unknown")
