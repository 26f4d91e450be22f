"""The offline answer, asked last: an explicit intensity, the shipped country table, the world.

Always labelled: a country's figure names its year, basis and source; the world average is
marked ``is_fallback`` and says why it was used and how to set the location.
"""

from __future__ import annotations

import attrs

from carbontrack._lookup import lookup_state
from carbontrack.hookspecs import hookimpl
from carbontrack.intensity._table import load_table
from carbontrack.model import Intensity, Location
from carbontrack.settings import Settings

__all__ = [
    "WORLD_G_PER_KWH",
    "WORLD_YEAR",
    "provider_failed",
    "table_intensity",
    "take_failures",
    "world_intensity",
]

#: World average lifecycle intensity of electricity generation in 2024: 472.94 gCO2eq/kWh
#: (Ember, Yearly Electricity Data, CC BY 4.0); the shipped table's metadata holds the same.
WORLD_G_PER_KWH = 472.94
WORLD_YEAR = 2024
WORLD_SOURCE = "Ember Yearly Electricity Data, world average (CC BY 4.0)"

HOW_TO_SET = "Set it with track(location='DK'), CARBONTRACK_LOCATION=DK or --location DK"


# Why the live providers asked before this answer gave none, for its note (so the report says
# it, not only the log). The plugin host calls each provider on its own worker thread, in a copy
# of one context per look-up: the notes live in that look-up's shared state.


def provider_failed(note: str) -> None:
    """Record that a live provider gave nothing in the current look-up, and why."""
    pending: list[str] = lookup_state().setdefault("failed_providers", [])
    if note not in pending:
        pending.append(note)


def take_failures() -> list[str]:
    """The failures recorded in the current look-up, now cleared."""
    pending: list[str] = lookup_state().pop("failed_providers", [])
    return pending


def world_intensity(note: str) -> Intensity:
    """The world average as an ``Intensity`` marked as a fallback, with ``note`` saying why."""
    # The constants, not the table's metadata (a test holds them equal): reading that would
    # import json at every run's start only for these two numbers.
    return Intensity(
        g_per_kwh=WORLD_G_PER_KWH,
        source=WORLD_SOURCE,
        basis="lifecycle",
        year=WORLD_YEAR,
        zone="World",
        is_fallback=True,
        note=note,
    )


def table_intensity(location: Location) -> Intensity | None:
    """The shipped table's figure for ``location``'s country, or ``None`` if it has none."""
    if location.country is None:
        return None
    row = load_table().get(location.country)
    if row is None:
        return None
    note = ""
    if location.region:
        note = (
            f"no offline figure for {location.region}: using {row.name}'s yearly average "
            "(configure a live provider for zone-level data)"
        )
    return Intensity(
        g_per_kwh=row.g_per_kwh,
        source=f"{row.source}, {row.name} {row.year} (carbontrack offline table, CC BY 4.0)",
        basis=row.basis,
        year=row.year,
        zone=row.iso2 or row.iso3,
        note=note,
    )


@hookimpl(trylast=True)
def carbontrack_carbon_intensity(location: Location, settings: Settings) -> Intensity:
    """Answer last: ``intensity_g_per_kwh``, else the country table, else the world average;
    the note names any live provider that failed before."""
    failures = take_failures()
    found = _offline(location, settings)
    if not failures:
        return found
    told = "; ".join(failures)
    note = f"{told}: {found.note}" if found.note else f"{told}: using {found.source}"
    return attrs.evolve(found, note=note)


def _offline(location: Location, settings: Settings) -> Intensity:
    if settings.intensity_g_per_kwh is not None:
        return Intensity(
            g_per_kwh=float(settings.intensity_g_per_kwh),
            source="user setting intensity_g_per_kwh",
            basis="user",
        )
    found = table_intensity(location)
    if found is not None:
        return found
    if location.region == "World":
        return world_intensity(f"location set to World ({location.source}): the world average")
    if location.country is None:
        return world_intensity(f"location unknown: using the world average. {HOW_TO_SET}")
    return world_intensity(
        f"no intensity data for {location.region or location.country}: using the world average"
    )
