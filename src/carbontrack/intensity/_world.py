"""The last-resort carbon intensity: the world average, always labelled as such."""

from __future__ import annotations

from carbontrack.hookspecs import hookimpl
from carbontrack.model import Intensity, Location
from carbontrack.settings import Settings

#: World average lifecycle intensity of electricity generation in 2024: 472.94 gCO2eq/kWh
#: (Ember, Yearly Electricity Data, CC BY 4.0).
WORLD_G_PER_KWH = 472.94
WORLD_YEAR = 2024
WORLD_SOURCE = "Ember Yearly Electricity Data, world average (CC BY 4.0)"


def world_intensity(note: str) -> Intensity:
    """The world average as an ``Intensity`` marked as a fallback, with ``note`` saying why."""
    return Intensity(
        g_per_kwh=WORLD_G_PER_KWH,
        source=WORLD_SOURCE,
        basis="lifecycle",
        year=WORLD_YEAR,
        zone="World",
        is_fallback=True,
        note=note,
    )


@hookimpl(trylast=True)
def carbontrack_carbon_intensity(location: Location, settings: Settings) -> Intensity:
    """Answer last: an explicit ``intensity_g_per_kwh``, else the world average, labelled."""
    if settings.intensity_g_per_kwh is not None:
        return Intensity(
            g_per_kwh=float(settings.intensity_g_per_kwh),
            source="user setting intensity_g_per_kwh",
            basis="user",
        )
    if location.country is None:
        note = (
            "location unknown: using the world average. Set it with track(location='DK') "
            "or CARBONTRACK_LOCATION=DK"
        )
    else:
        note = (
            f"no intensity data for {location.region or location.country}: using the world average"
        )
    return world_intensity(note)
