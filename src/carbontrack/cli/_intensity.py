"""``carbontrack intensity``: the carbon intensity a run started now would use, and why.

Shows the location and how it was found, the value with its source, basis and year, a note when
the figure is a fallback, forecasts when a live provider has them, and the data attribution.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from typing import Any

__all__ = ["configure_parser", "run"]

EPILOG = """examples:
  carbontrack intensity                   # where am I, and which figure would be used
  carbontrack intensity --location DK     # Denmark's figure from the offline table
  carbontrack intensity --location GB-RG10 --provider carbonintensity-gb
  carbontrack intensity --location DE --json
"""


def _provider(text: str) -> str:
    """A keyless live provider's name, checked: an unknown one would be ignored without a word."""
    from carbontrack.intensity._live import CarbonIntensityGB, EnergiDataService

    known = [CarbonIntensityGB.name, EnergiDataService.name]
    accepted = {n.lower() for cls in (CarbonIntensityGB, EnergiDataService) for n in cls.names}
    if text.strip().lower() not in accepted | {n.lower() for n in known}:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a keyless live provider: expected one of {', '.join(known)} "
            "(Electricity Maps is switched on by its key: CARBONTRACK_ELECTRICITYMAPS_KEY)"
        )
    return text.strip()


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Add the options of ``carbontrack intensity`` to ``p``."""
    p.description = "Show the carbon intensity a run started now would use, and its source."
    p.epilog = EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument(
        "--location",
        metavar="CODE",
        help="country or zone, e.g. DK, DNK, Denmark, DK-DK1, US-CAL-CISO, GB-RG10, World "
        "(default: CARBONTRACK_LOCATION, the config file, else unknown)",
    )
    p.add_argument(
        "--provider",
        action="append",
        default=[],
        type=_provider,
        metavar="NAME",
        help="switch on a keyless live provider: carbonintensity-gb, energidataservice "
        "(Electricity Maps needs a key: CARBONTRACK_ELECTRICITYMAPS_KEY)",
    )
    p.add_argument(
        "--geolocate",
        action="store_true",
        help="find the country from this machine's public IP address (asks ipinfo.io)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def run(args: argparse.Namespace) -> int:
    """Print the intensity; 0 on success, 2 for an unknown location or a bad option."""
    from carbontrack.errors import InvalidOption
    from carbontrack.intensity._resolve import current_intensity
    from carbontrack.intensity._table import attribution
    from carbontrack.settings import make_settings

    options: dict[str, Any] = {"plugin_options": {"intensity": {"forecast": True}}}
    if args.provider:
        options["plugin_options"]["intensity"]["providers"] = list(args.provider)
    if getattr(args, "location", None) is not None:
        options["location"] = args.location
    if getattr(args, "geolocate", False):
        options["geolocate"] = True
    try:
        settings = make_settings(**options)
        location, intensity = current_intensity(settings)
    except (InvalidOption, ValueError, TypeError) as exc:
        message = str(exc)
        if message.startswith("location="):  # in the words the user typed
            message = "--location " + message.removeprefix("location=")
        parser = getattr(args, "command_parser", None)
        if parser is not None:
            parser.error(message)  # the usage line, and exit 2
        print(f"carbontrack intensity: error: {message}", file=sys.stderr)
        return 2

    if args.json:
        from carbontrack.model import _unstructure

        print(
            json.dumps(
                {
                    "location": _unstructure(location),
                    "intensity": _unstructure(intensity),
                    "attribution": attribution(),
                },
                indent=2,
            )
        )
        return 0

    where = location.region or location.country or "unknown"
    lines = [
        f"location:   {where} ({location.source})",
        f"intensity:  {intensity.g_per_kwh:.1f} gCO2eq/kWh ({intensity.basis})",
        f"source:     {intensity.source}",
    ]
    if intensity.year is not None:
        lines.append(f"year:       {intensity.year}")
    if intensity.is_fallback:
        lines.append("fallback:   yes (this is not a figure for your location)")
    if intensity.note:
        lines.append(f"note:       {intensity.note}")
    if intensity.forecast:
        values = [p.g_per_kwh for p in intensity.forecast]
        lowest = min(intensity.forecast, key=lambda p: p.g_per_kwh)
        lines.append(
            f"forecast:   {len(values)} points to {_when(intensity.forecast[-1].end_ts)}, "
            f"{min(values):.0f}-{max(values):.0f} g/kWh, lowest from {_when(lowest.start_ts)}"
        )
    else:
        lines.append("forecast:   none (live providers with forecasts: see docs/intensity.md)")
    lines.append(f"data:       {attribution()}")
    print("\n".join(lines))
    return 0
