"""CO2eq in terms people picture: kilometres by car, phone charges, tree-months, streaming.

Every constant sits in one table with its unit, value, year and source, so a report can cite
it. Figures are lifecycle or direct emission factors as their sources define them; they give a
sense of scale, not an offset.
"""

from __future__ import annotations

import attrs

__all__ = ["EQUIVALENTS", "Equivalent", "equivalents", "format_equivalents"]


@attrs.frozen
class Equivalent:
    """``g_per_unit`` grams of CO2eq make one ``unit`` (as of ``year``, per ``source``)."""

    key: str
    unit: str
    g_per_unit: float
    year: int
    source: str

    def amount(self, co2eq_g: float) -> float:
        """How many ``unit`` s ``co2eq_g`` grams are."""
        return co2eq_g / self.g_per_unit


#: The table. Values as collected in shared/reference/carbon.md §2.6; check a source before
#: citing a figure in a paper.
EQUIVALENTS: tuple[Equivalent, ...] = (
    Equivalent(
        key="car_km",
        unit="km by car",
        g_per_unit=106.8,
        year=2024,
        source="EEA, average CO2 emissions of new passenger cars in the EU (as used by "
        "carbontracker 2.4.7, co2eq.csv)",
    ),
    Equivalent(
        key="phone_charges",
        unit="smartphone charges",
        g_per_unit=12.4,
        year=2022,
        source="US EPA Greenhouse Gas Equivalencies Calculator (eGRID2022 edition): "
        "1.24e-5 t CO2 per smartphone charge",
    ),
    Equivalent(
        key="tree_months",
        unit="tree-months of CO2 uptake",
        g_per_unit=917.0,
        year=2021,
        source="Lannelongue, Grealey & Inouye 2021, Green Algorithms (Adv. Sci. 8, 2100707): "
        "a tree absorbs 11 kg CO2 a year",
    ),
    Equivalent(
        key="streaming_hours",
        unit="hours of video streaming",
        g_per_unit=36.0,
        year=2021,
        source="Green Algorithms referenceValues.csv (Netflix streaming, 36 gCO2eq per hour)",
    ),
)


def equivalents(co2eq_g: float) -> list[tuple[Equivalent, float]]:
    """Each entry of ``EQUIVALENTS`` with the amount ``co2eq_g`` grams make."""
    return [(e, e.amount(co2eq_g)) for e in EQUIVALENTS]


def _amount(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 1:
        return f"{value:.1f}"
    return f"{value:.2g}"


def format_equivalents(co2eq_g: float) -> str:
    """One line: ``2.8 km by car, 24 smartphone charges, ...``."""
    return ", ".join(f"{_amount(v)} {e.unit}" for e, v in equivalents(co2eq_g))
