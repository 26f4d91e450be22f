"""The shipped offline table: carbon intensity of electricity per country, and the world value.

Read lazily from the package data on first use (``intensity_countries.csv`` and
``intensity_meta.json``, built by ``scripts/build_intensity_table.py``).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, NamedTuple

__all__ = [
    "CountryIntensity",
    "Table",
    "attribution",
    "load_table",
]


# A named tuple and a plain class, not attrs classes: generating an attrs class costs about
# half a millisecond in every process that imports this module, and most runs never read the
# rows (docs/performance.md, "Start-up").


class CountryIntensity(NamedTuple):
    """One row of the table: a country's intensity in its latest year with data."""

    iso3: str
    iso2: str
    name: str
    year: int
    g_per_kwh: float
    basis: str
    source: str


class Table:
    """The whole table with its metadata (source, release, licence, world value)."""

    def __init__(self, *, rows: tuple[CountryIntensity, ...], meta: dict[str, Any]) -> None:
        self.rows = rows
        self.meta = meta

    def __repr__(self) -> str:
        return f"Table(<{len(self.rows)} rows>, release={self.meta.get('release')!r})"

    @functools.cached_property
    def _index(self) -> dict[str, CountryIntensity]:
        index: dict[str, CountryIntensity] = {}
        for row in self.rows:
            index[row.name.upper()] = row
            index[row.iso3] = row
            if row.iso2:
                index[row.iso2] = row
        return index

    def get(self, code: str) -> CountryIntensity | None:
        """Find a country by ISO alpha-2, alpha-3 code or English name (any case)."""
        return self._index.get(code.strip().upper())

    @property
    def world_g_per_kwh(self) -> float:
        """The world average of the same source and basis."""
        return float(self.meta["world"]["value"])

    @property
    def world_year(self) -> int:
        """The year of the world average."""
        return int(self.meta["world"]["year"])

    def close_matches(self, code: str, n: int = 5) -> list[str]:
        """Up to ``n`` known codes or names that look like ``code``, as ``"DK (Denmark)"``."""
        key = code.strip().upper()
        names = {row.name.upper(): row for row in self.rows}
        codes = {row.iso2: row for row in self.rows if row.iso2}
        codes.update({row.iso3: row for row in self.rows})
        # Short inputs are codes; long ones are names. Compare each with its own kind.
        pool = codes if len(key) <= 3 else names
        import difflib  # only for a mistyped location

        found = difflib.get_close_matches(key, list(pool), n=n, cutoff=0.5)
        if len(key) <= 3:
            # A name starting with the input ("DEN" -> Denmark) is a likely intent too.
            found += [n for n in names if n.startswith(key) and n not in found][:2]
        seen: list[str] = []
        for hit in found:
            row = pool.get(hit) or names[hit]
            label = f"{row.iso2 or row.iso3} ({row.name})"
            if label not in seen:
                seen.append(label)
        return seen[:n]


def _read(name: str) -> str:
    # Beside this module, not through importlib.resources (whose imports cost more than the
    # read): the wheel installs the package data as plain files.
    return (Path(__file__).parent / "data" / name).read_text(encoding="utf-8")


@functools.cache
def load_meta() -> dict[str, Any]:
    """The table's metadata alone (source, release, licence, world value): a run that only
    needs the world average reads this small file, not the 200 country rows."""
    import json

    meta: dict[str, Any] = json.loads(_read("intensity_meta.json"))
    return meta


@functools.cache
def load_table() -> Table:
    """The shipped table (read once per process; the data never changes at run time)."""
    import csv
    import io

    rows = tuple(
        CountryIntensity(
            iso3=r["iso3"],
            iso2=r["iso2"],
            name=r["name"],
            year=int(r["year"]),
            g_per_kwh=float(r["g_co2e_per_kwh"]),
            basis=r["basis"],
            source=r["source"],
        )
        for r in csv.DictReader(io.StringIO(_read("intensity_countries.csv")))
    )
    return Table(rows=rows, meta=load_meta())


def attribution() -> str:
    """The CC BY 4.0 attribution notice of the shipped table."""
    return str(load_meta()["attribution"])
