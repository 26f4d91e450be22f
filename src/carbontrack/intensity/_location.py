"""Where the machine is: a ``firstresult`` chain of built-in ``carbontrack_locate`` answers.

In order: third-party plugins, the ``location`` option or ``$CARBONTRACK_LOCATION``
(``SettingLocation``), the config file's ``location`` (``ConfigLocation``), then IP geolocation,
only when the user opted in (``GeoLocation``). Nobody answering means *unknown*: the world
average, said so plainly, never a default country.
"""

from __future__ import annotations

import logging
import os

from carbontrack._locations import EXPECTED, gb_postcode, parse_location
from carbontrack.errors import InvalidOption
from carbontrack.hookspecs import hookimpl
from carbontrack.intensity import _http
from carbontrack.intensity._table import load_table
from carbontrack.model import Location
from carbontrack.settings import Settings

__all__ = [
    "ConfigLocation",
    "GeoLocation",
    "SettingLocation",
    "check_location",
    "gb_postcode",
    "parse_location",
]

logger = logging.getLogger(__name__)


def _config_location() -> tuple[str, str] | None:
    value = _http.read_config().get("location")
    if value is None:
        return None
    path = str(_http.config_path())
    if not isinstance(value, str) or not value.strip():
        raise InvalidOption(f"location={value!r} in {path} is not valid: expected {EXPECTED}")
    return value, path


def check_location(settings: Settings) -> None:
    """Validate every configured location before a run starts.

    Raises ``InvalidOption`` (a ``ValueError``) for an unknown code in the ``location`` option,
    ``$CARBONTRACK_LOCATION`` or the config file, listing close matches, and for a config file
    that cannot be read.
    """
    if settings.location is not None:
        parse_location(settings.location, origin=_setting_origin(settings))
    found = _config_location()
    if found is not None:
        parse_location(found[0], origin=f"location in {found[1]}")


def _setting_origin(settings: Settings) -> str:
    env = os.environ.get("CARBONTRACK_LOCATION", "").strip()
    return "CARBONTRACK_LOCATION" if env and env == settings.location else "location"


class SettingLocation:
    """The ``location`` option (or ``$CARBONTRACK_LOCATION``): asked first of all.

    What the user said explicitly wins over any plugin's look-up; without the option this
    answers ``None`` and installed plugins, the config file and the opt-in geolocation follow.
    """

    @staticmethod
    def needed_by(settings: Settings) -> bool:
        """Whether a run with ``settings`` has a ``location`` option to answer with."""
        return settings.location is not None

    @hookimpl(tryfirst=True)
    def carbontrack_locate(self, settings: Settings) -> Location | None:
        """Return the configured location, or ``None`` when none is set."""
        if settings.location is None:
            return None
        origin = _setting_origin(settings)
        source = "setting" if origin == "location" else "environment CARBONTRACK_LOCATION"
        return parse_location(settings.location, source=source, origin=origin)


class ConfigLocation:
    """The config file's ``location`` (``$CARBONTRACK_CONFIG`` or ``<home>/config.toml``)."""

    @staticmethod
    def needed_by(settings: Settings) -> bool:
        """Whether there is a config file to read (a stat on the caller's thread; the hook then
        reads and parses it once, on its worker)."""
        return _http.config_path().exists()

    @hookimpl(trylast=True)
    def carbontrack_locate(self, settings: Settings) -> Location | None:
        """Return the config file's location, or ``None`` when it has none."""
        found = _config_location()
        if found is None:
            return None
        return parse_location(found[0], source=f"config file {found[1]}", origin="location")


#: IP geolocation services, tried in order: (provider name, default URL, country field).
GEOLOCATORS = (
    ("geolocate-ipinfo", "https://ipinfo.io/json", "country"),
    ("geolocate-geojs", "https://get.geojs.io/v1/ip/geo.json", "country_code"),
)


class GeoLocation:
    """Country from the machine's public IP address, only with ``geolocate=True`` (or
    ``geolocate = true`` in the config file): it tells a third party where you are."""

    @staticmethod
    def needed_by(settings: Settings) -> bool:
        """Whether a run with ``settings`` geolocates (``geolocate``, here or in the config)."""
        return settings.geolocate or _http._config_quiet().get("geolocate") is True

    @hookimpl(trylast=True)
    def carbontrack_locate(self, settings: Settings) -> Location | None:
        """Ask the geolocation services in turn; ``None`` (unknown) when none answers."""
        if not self.needed_by(settings):
            return None
        table = load_table()
        reasons = []
        for name, default, field in GEOLOCATORS:
            url = _http.base_url(settings, name, default)
            try:
                data = _http.get_json(url, timeout=min(_http.timeout_s(settings), 2.0))
            except _http.ProviderError as exc:
                reasons.append(f"{name}: {exc}")
                continue
            code = data.get(field) if isinstance(data, dict) else None
            row = table.get(code) if isinstance(code, str) and code else None
            if row is None:
                reasons.append(f"{name}: no known country in the answer ({code!r})")
                continue
            host = url.split("/")[2] if "//" in url else url
            return Location(
                country=row.iso2 or row.iso3, region=None, source=f"IP geolocation ({host})"
            )
        logger.warning(
            "carbontrack: IP geolocation failed (%s); the location stays unknown. Set it with "
            "track(location='DK') or CARBONTRACK_LOCATION",
            "; ".join(reasons),
        )
        return None
