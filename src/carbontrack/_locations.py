"""Location codes: parse what a user wrote (country, grid zone, GB postcode area, World).

A leaf module: it imports nothing that imports ``settings``, so that ``settings`` can check a
location when the options are given, and ``intensity._location`` (the ``carbontrack_locate``
answers, which need ``settings``, ``hookspecs`` and ``intensity._http``) builds on it without
an import cycle. The table of codes is the offline intensity table (``intensity._table``,
itself a leaf).
"""

from __future__ import annotations

import re

from carbontrack.errors import InvalidOption
from carbontrack.intensity._table import load_table
from carbontrack.model import Location

__all__ = ["EXPECTED", "WORLD_CODES", "gb_postcode", "parse_location"]

#: Codes that ask for the world average on purpose.
WORLD_CODES = frozenset({"WORLD", "WLD"})

# A pattern string, not a compiled pattern: ``re`` compiles it on first use and caches it, so
# a run that never needs it never pays for it (docs/performance.md, "Start-up").
_ZONE_SUFFIX = r"[A-Z0-9]+(?:-[A-Z0-9]+)*"
# The outward part of a UK postcode (RG10, SW1A, M1): what the GB API takes for regions.
_OUTWARD_POSTCODE = r"[A-Z]{1,2}[0-9][0-9A-Z]?"
_DK_AREAS = ("DK1", "DK2")

EXPECTED = (
    "a country (ISO code such as 'DK' or 'DNK', or its English name), a grid zone such as "
    "'DK-DK1' or 'US-CAL-CISO', a GB postcode area such as 'GB-RG10', or 'World'"
)


def _invalid(code: str, origin: str, matches: list[str]) -> InvalidOption:
    hint = f" Did you mean: {', '.join(matches)}?" if matches else ""
    name, _, where = origin.partition(" in ")
    where = f" in {where}" if where else ""
    return InvalidOption(
        f"{name}={code!r}{where} is not a known location: expected {EXPECTED}.{hint} "
        "Run `carbontrack intensity --location CODE` to check a code."
    )


def parse_location(code: str, *, source: str = "setting", origin: str = "location") -> Location:
    """Turn a user's location code into a ``Location``; ``origin`` names where the code came
    from in error messages (``"location"``, ``"location in <file>"``).

    Raises ``InvalidOption`` (a ``ValueError``) naming the code, what is accepted and the
    closest known codes.
    """
    table = load_table()
    text = code.strip()
    upper = text.upper()
    if upper in WORLD_CODES:
        return Location(country=None, region="World", source=source)
    row = table.get(text)
    if row is not None:
        return Location(country=row.iso2 or row.iso3, region=None, source=source)
    prefix, dash, suffix = upper.partition("-")
    row = table.get(prefix) if dash and len(prefix) <= 3 else None
    if row is None or not re.fullmatch(_ZONE_SUFFIX, suffix):
        matches = table.close_matches(prefix if dash and len(prefix) <= 3 else text, n=3)
        raise _invalid(code, origin, matches)
    country = row.iso2 or row.iso3
    if country == "DK" and suffix not in _DK_AREAS:
        raise _invalid(code, origin, [f"DK-{a}" for a in _DK_AREAS])
    return Location(country=country, region=f"{country}-{suffix}", source=source)


def gb_postcode(location: Location) -> str | None:
    """The GB outward postcode in a location such as ``GB-RG10``, else ``None``."""
    if location.country != "GB" or not location.region:
        return None
    suffix = location.region.partition("-")[2]
    return suffix if re.fullmatch(_OUTWARD_POSTCODE, suffix) else None
