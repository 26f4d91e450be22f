"""Power usage effectiveness presets: facility energy = IT energy x PUE.

carbontrack's default PUE is the latest Uptime Institute survey average,
``carbontrack.settings.DEFAULT_PUE`` (1.56, 2024). Pick a preset by name or give the
operator's own figure: ``track(pue="none")`` on a laptop or workstation, ``track(pue="aws")``,
``track(pue=1.2)``.
"""

from __future__ import annotations

import attrs

from carbontrack.errors import InvalidOption

__all__ = ["LATEST_SURVEY", "PUE_PRESETS", "PuePreset", "pue_preset"]


@attrs.frozen
class PuePreset:
    """A named PUE with the year and source it comes from."""

    name: str
    pue: float
    year: int | None
    source: str


_UPTIME = "Uptime Institute Global Data Center Survey (average PUE of respondents' largest site)"

#: Every preset by name. Survey averages are industry-wide; hyperscalers run far lower.
PUE_PRESETS: dict[str, PuePreset] = {
    p.name: p
    for p in (
        PuePreset("none", 1.0, None, "IT energy only: a laptop, a workstation, a lab machine"),
        PuePreset("uptime-2024", 1.56, 2024, _UPTIME),
        PuePreset("uptime-2023", 1.58, 2023, _UPTIME),
        PuePreset("uptime-2022", 1.55, 2022, _UPTIME),
        PuePreset("uptime-2021", 1.57, 2021, _UPTIME),
        PuePreset("uptime-2020", 1.59, 2020, _UPTIME),
        PuePreset("uptime-2019", 1.67, 2019, _UPTIME),
        PuePreset("uptime-2018", 1.58, 2018, f"{_UPTIME}; used by the carbontracker paper"),
        PuePreset("google", 1.10, 2020, "Google fleet-wide trailing twelve-month PUE"),
        PuePreset("gcp", 1.12, None, "Green Algorithms default for Google Cloud"),
        PuePreset("aws", 1.135, None, "Cloud Carbon Footprint's figure for AWS"),
        PuePreset("azure", 1.12, 2023, "Green Algorithms default for Azure (Nutanix, 2023)"),
    )
}

#: The latest Uptime Institute survey average carbontrack ships (the 2025 survey's ~1.54 is
#: known only from secondary summaries, so it is not used yet).
LATEST_SURVEY = PUE_PRESETS["uptime-2024"]


def pue_preset(name: str) -> float:
    """The PUE of preset ``name`` (``"uptime-2024"``, ``"aws"``, ``"none"``...).

    Raises ``InvalidOption`` (a ``ValueError``) listing close names for an unknown one.
    """
    key = name.strip().lower()
    if key in PUE_PRESETS:
        return PUE_PRESETS[key].pue
    import difflib  # only for a mistyped preset

    close = difflib.get_close_matches(key, list(PUE_PRESETS), n=3, cutoff=0.4)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise InvalidOption(
        f"pue preset {name!r} is not known: expected one of {', '.join(PUE_PRESETS)}, or pass a "
        f"number >= 1 as pue=.{hint}"
    )
