"""Live carbon-intensity providers, built-in plugins that answer only when configured.

* ``electricitymaps``: Electricity Maps v3 (``auth-token`` header, ``zone``): latest, 24 h
  history, forecast. Needs a key (``api_keys={"electricitymaps": KEY}``).
* ``carbonintensity-gb``: the GB Carbon Intensity API (NESO, CC BY 4.0), national or by
  postcode area (``location="GB-RG10"``), with forecasts. No key; switch it on with
  ``plugin_options={"intensity": {"providers": ["carbonintensity-gb"]}}`` or carbontracker's
  ``api_keys={"carbonintensityGB": ...}``.
* ``energidataservice``: Energinet's Energi Data Service for Denmark (``CO2Emis``, and
  ``CO2EmisProg`` for forecasts), at most one request per dataset per minute. No key; switch it
  on like the GB provider (carbontracker's name ``energidataservice``).

A provider that fails (HTTP error, timeout, malformed answer) logs one warning naming itself and
the reason, and the next source answers: never an exception into the user's code. At the end of
a run a provider that answered at the start but cannot give its history falls back to the value
it gave at the start, saying so.
"""

from __future__ import annotations

# json is imported in the functions that use it: this module loads at every run's start and
# most runs never use it (about a millisecond; docs/performance.md, "Start-up").
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar, NamedTuple

import attrs

from carbontrack.hookspecs import hookimpl
from carbontrack.intensity import _http
from carbontrack.intensity._http import ProviderError
from carbontrack.intensity._location import gb_postcode
from carbontrack.intensity._world import provider_failed, take_failures
from carbontrack.model import Intensity, IntensityPoint, Location
from carbontrack.settings import Settings

__all__ = [
    "CarbonIntensityGB",
    "ElectricityMaps",
    "EnergiDataService",
    "weighted_mean",
    "window_points",
]

logger = logging.getLogger(__name__)

#: How long a latest value or a history stays fresh: intensities move over quarter hours.
CACHE_S = 300.0
#: Energi Data Service answers HTTP 429 to a second request for a dataset within a minute.
EDS_MIN_INTERVAL_S = 60.0
#: Forecast horizon asked of the providers that take one (hours).
FORECAST_HOURS = 48
#: A window ending this far past the clock is a prediction's, answered from the forecast (the
#: end of a run is "now" to within clock drift between the monotonic and the wall clock).
FUTURE_MARGIN_S = 2.0

#: Largest carbon intensity taken from a provider, g/kWh: the dirtiest grids (lignite, oil on
#: islands) are near 1,200; a value this far above is a unit error or a broken answer.
MAX_G_PER_KWH = 5000.0


def _plausible(value: float) -> bool:
    return math.isfinite(value) and 0.0 <= value <= MAX_G_PER_KWH


#: Values dropped during the question being answered in this thread, for the answer's note.
_DROPPED = threading.local()


def _warn_bad(bad: Sequence[float], title: str, what: str) -> None:
    if bad:
        shown = ", ".join(f"{v:g}" for v in bad[:3]) + (", ..." if len(bad) > 3 else "")
        told = getattr(_DROPPED, "notes", None)
        if told is not None:
            told.append(f"{len(bad)} unusable value(s) in its {what} ignored ({shown})")
        logger.warning(
            "carbontrack: %s sent %d unusable carbon intensity value(s) in its %s, not numbers "
            "from 0 to %g g/kWh (%s); ignored",
            title,
            len(bad),
            what,
            MAX_G_PER_KWH,
            shown,
        )


def _checked(points: Iterable[IntensityPoint], title: str, what: str) -> tuple[IntensityPoint, ...]:
    """``points`` without those whose value is not a finite number in ``[0, MAX_G_PER_KWH]``
    (NaN, infinities, negatives, absurd magnitudes), with one warning naming the provider."""
    given = tuple(points)
    _warn_bad([p.g_per_kwh for p in given if not _plausible(p.g_per_kwh)], title, what)
    return tuple(p for p in given if _plausible(p.g_per_kwh))


def _value(value: Any, title: str, what: str) -> float:
    """One carbon intensity from an answer, or ``ProviderError`` when it is not plausible."""
    number = float(value)
    if not _plausible(number):
        raise ProviderError(
            f"{what} {number:g} g/kWh is not a number from 0 to {MAX_G_PER_KWH:g}; ignored"
        )
    return number


def _ts(text: str) -> float:
    """Unix seconds of an ISO 8601 timestamp; one without a zone is UTC."""
    # datetime is imported where a provider answers, not with the module: most runs ask none.
    import datetime as dt

    value = dt.datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.timestamp()


def window_points(
    points: Iterable[IntensityPoint], start: float, end: float
) -> tuple[IntensityPoint, ...]:
    """The points that overlap ``[start, end]`` (the one holding ``start`` when equal)."""
    out = [p for p in points if p.start_ts < end and p.end_ts > start]
    if not out and start == end:
        out = [p for p in points if p.start_ts <= start < p.end_ts]
    return tuple(sorted(out, key=lambda p: p.start_ts))


def weighted_mean(points: Sequence[IntensityPoint], start: float, end: float) -> float:
    """Time-weighted mean of ``points`` over ``[start, end]`` (plain mean of a zero window)."""
    weights = [max(0.0, min(p.end_ts, end) - max(p.start_ts, start)) for p in points]
    total = sum(weights)
    if total <= 0:
        return sum(p.g_per_kwh for p in points) / len(points)
    return sum(w * p.g_per_kwh for w, p in zip(weights, points, strict=True)) / total


class _Call(NamedTuple):
    # A named tuple, not an attrs class: attrs classes cost about half a millisecond each to
    # generate in every process (docs/performance.md, "Start-up").

    location: Location
    start: float
    end: float
    settings: Settings
    base: str
    key: str | None
    timeout: float
    #: ``time.monotonic()`` by which the whole question must be answered: its requests
    #: (history, latest, forecast, retries) share one timeout, so a slow API holds a run up
    #: for one timeout at most.
    deadline: float

    def get(self, path: str, *, cache_s: float = CACHE_S, **kwargs: Any) -> Any:
        headers = kwargs.pop("headers", None)
        if _http.options(self.settings).get("cache", True) is False:
            cache_s = 0.0
        return _http.get_json(
            self.base + path,
            params=kwargs.pop("params", None),
            headers=headers,
            timeout=self.timeout,
            cache_s=cache_s,
            secrets=(self.key,) if self.key else (),
            deadline=self.deadline,
        )

    @property
    def is_future(self) -> bool:
        """A window reaching past now: the tracker asks about a predicted run's remainder."""
        return self.end > time.time() + FUTURE_MARGIN_S

    @property
    def is_history(self) -> bool:
        """A window in the past: the run so far, answered with the provider's history."""
        return self.end > self.start and not self.is_future

    @property
    def wants_forecast(self) -> bool:
        # A forecast only serves predictions, and costs a request (a paid one at some providers):
        # asked for a predicted window, at the start of an epoch-aware run, or when the options
        # say so.
        if self.is_future:
            return True
        asked = _http.options(self.settings).get("forecast")
        if asked is not None:
            return bool(asked) and self.start == self.end
        return self.start == self.end and self.settings.epochs is not None


class _LiveProvider:
    """One live provider: configuration checks, errors to warnings, fallback to the start value."""

    name: ClassVar[str]
    title: ClassVar[str]
    default_url: ClassVar[str]
    #: Names under which users switch the provider on or give its key (carbontracker's too).
    names: ClassVar[tuple[str, ...]]
    needs_key: ClassVar[bool] = False
    countries: ClassVar[frozenset[str] | None] = None

    def __init__(self) -> None:
        # One instance per run (the plugin host makes a fresh one for every manager).
        self._warned = False
        self._last: Intensity | None = None
        # Set by a failure that asking again would only repeat (timeout, unreachable, key
        # rejected): the provider stays silent for the rest of the run, so a dead API costs
        # one timeout per run, not one per question (start, end, each prediction).
        self._given_up: str | None = None
        self._no_forecast = False

    @classmethod
    def needed_by(cls, settings: Settings) -> bool:
        """Whether a run with ``settings`` may ask this provider: it has a key (or, keyless,
        was switched on) and no fixed intensity overrides every provider."""
        if settings.intensity_g_per_kwh is not None:
            return False
        if cls.needs_key:
            return _http.api_key(settings, cls.names) is not None
        return _http.enabled(settings, (cls.name, *cls.names))

    def _fetch(self, call: _Call) -> Intensity:
        raise NotImplementedError

    @hookimpl
    def carbontrack_carbon_intensity(
        self, location: Location, start: float, end: float, settings: Settings
    ) -> Intensity | None:
        """Live intensity for ``location`` when this provider is configured and covers it."""
        found = self._answer(location, start, end, settings)
        if found is not None:
            take_failures()  # a live answer ends the look-up: no one else will tell them
        return found

    def _answer(
        self, location: Location, start: float, end: float, settings: Settings
    ) -> Intensity | None:
        if location.country is None or not self.needed_by(settings):
            return None
        if self.countries is not None and location.country not in self.countries:
            return None
        key = _http.api_key(settings, self.names) if self.needs_key else None
        call = _Call(
            location=location,
            start=start,
            end=end,
            settings=settings,
            base=_http.base_url(settings, self.name, self.default_url),
            key=key,
            timeout=_http.timeout_s(settings),
            deadline=time.monotonic() + _http.timeout_s(settings),
        )
        if self._given_up is not None:
            return self._fallback(self._given_up, call)
        _DROPPED.notes = []
        try:
            try:
                found = self._fetch(call)
            except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
                raise ProviderError(f"unexpected response ({type(exc).__name__}: {exc})") from None
        except ProviderError as exc:
            if exc.final:
                self._given_up = str(exc)
            return self._fallback(str(exc), call)
        finally:
            dropped, _DROPPED.notes = _DROPPED.notes, None
        if dropped:
            # Said in the report too, not only on stderr: the figure rests on fewer points.
            said = f"{self.title}: " + "; ".join(dropped)
            found = attrs.evolve(found, note=f"{found.note}; {said}" if found.note else said)
        if call.is_future:
            inside = window_points(found.forecast, call.start, call.end)
            if inside:
                found = attrs.evolve(
                    found,
                    g_per_kwh=weighted_mean(inside, call.start, call.end),
                    source=f"{found.source}; forecast mean over the predicted window",
                )
            # The value for the run itself stays the one from its start.
            return found
        self._last = found
        return found

    def _fallback(self, reason: str, call: _Call) -> Intensity | None:
        if self._last is not None:
            then = "the value it gave at the start of the run"
        else:
            then = "the next source (the offline table)"
        # One warning per run, naming the provider and the first reason; later failures of the
        # same run are told quietly (the report's note carries what was used instead).
        message = "carbontrack: %s gave no carbon intensity (%s); using %s"
        logger.log(
            logging.INFO if self._warned else logging.WARNING, message, self.title, reason, then
        )
        self._warned = True
        if self._last is None:
            provider_failed(f"{self.title} gave no carbon intensity ({reason})")
            return None
        if call.is_future:
            note = (
                f"{self.title}: no forecast for the predicted window ({reason}); the value from "
                "the start of the run is used"
            )
        else:
            note = (
                f"{self.title}: no history for the run ({reason}); the value from its start is used"
            )
        return attrs.evolve(self._last, note=note, points=())

    def _forecast_or_empty(
        self, fetch: Callable[[], Iterable[IntensityPoint]], start: float
    ) -> tuple[IntensityPoint, ...]:
        if self._no_forecast:
            return ()
        try:
            return tuple(p for p in fetch() if p.end_ts > start)
        except (ProviderError, KeyError, IndexError, TypeError, ValueError) as exc:
            # The current value is still good; predictions use it instead of a forecast. A
            # forecast that timed out or is refused to this key is not asked for again.
            self._no_forecast = isinstance(exc, ProviderError) and exc.final
            logger.info("carbontrack: %s has no forecast for this run (%s)", self.title, exc)
            return ()


def _to_intensity(points: tuple[IntensityPoint, ...], call: _Call, **fields: Any) -> Intensity:
    covered = sum(max(0.0, min(p.end_ts, call.end) - max(p.start_ts, call.start)) for p in points)
    share = covered / (call.end - call.start)
    if share < 0.999:
        # Said plainly: the uncovered part of the run counts at the mean of the covered part.
        gap = f"the provider's data covers {share:.0%} of the run; the rest counts at its mean"
        fields["note"] = f"{fields['note']}; {gap}" if fields.get("note") else gap
    return Intensity(g_per_kwh=weighted_mean(points, call.start, call.end), points=points, **fields)


# -- Electricity Maps ----------------------------------------------------------------------------


class ElectricityMaps(_LiveProvider):
    """Electricity Maps v3: ``/carbon-intensity/latest``, ``/history`` and ``/forecast``."""

    name = "electricitymaps"
    title = "Electricity Maps"
    default_url = "https://api.electricitymaps.com/v3"
    names = ("electricitymaps",)
    needs_key = True

    def _zone(self, location: Location) -> str:
        if location.region and gb_postcode(location) is None:
            return location.region
        return str(location.country)

    def _fetch(self, call: _Call) -> Intensity:
        zone = self._zone(call.location)
        headers = {"auth-token": str(call.key)}
        params = {"zone": zone}
        if call.is_history:
            data = call.get("/carbon-intensity/history", params=params, headers=headers)
            points = _checked(
                (
                    IntensityPoint(_ts(item["datetime"]), _ts(item["datetime"]) + 3600.0, float(ci))
                    for item in data["history"]
                    if (ci := item.get("carbonIntensity")) is not None
                ),
                self.title,
                "history",
            )
            inside = window_points(points, call.start, call.end)
            if inside:
                basis = str(data["history"][-1].get("emissionFactorType") or "lifecycle")
                return _to_intensity(
                    inside,
                    call,
                    source=f"Electricity Maps, zone {zone}, hourly history",
                    basis=basis,
                    zone=zone,
                )
        latest = call.get("/carbon-intensity/latest", params=params, headers=headers)
        ci = latest.get("carbonIntensity")
        if ci is None:
            raise ProviderError(f"no carbonIntensity for zone {zone} (null in the answer)")
        forecast: tuple[IntensityPoint, ...] = ()
        if call.wants_forecast:
            forecast = self._forecast_or_empty(
                lambda: self._forecast(call, zone, headers), call.start
            )
        return Intensity(
            g_per_kwh=_value(ci, self.title, "the latest carbonIntensity"),
            source=f"Electricity Maps, zone {zone}, latest ({latest.get('datetime', '?')})",
            basis=str(latest.get("emissionFactorType") or "lifecycle"),
            zone=zone,
            forecast=forecast,
        )

    def _forecast(self, call: _Call, zone: str, headers: dict[str, str]) -> list[IntensityPoint]:
        data = call.get(
            "/carbon-intensity/forecast", params={"zone": zone}, headers=headers, cache_s=900
        )
        return list(
            _checked(
                (
                    IntensityPoint(_ts(p["datetime"]), _ts(p["datetime"]) + 3600.0, float(ci), True)
                    for p in data["forecast"]
                    if (ci := p.get("carbonIntensity")) is not None
                ),
                self.title,
                "forecast",
            )
        )


# -- GB Carbon Intensity API -------------------------------------------------------------------

_GB_FMT = "%Y-%m-%dT%H:%MZ"
_GB_MAX_RANGE_S = 14 * 86400.0


def _gb_time(ts: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime(_GB_FMT)


def _gb_items(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The half-hour items of any GB answer: national (``data`` is the list of items), regional
    by postcode (``data`` is a list holding one region object) or a regional time range
    (``data`` is the region object itself)."""
    data = payload["data"]
    if isinstance(data, dict):
        return list(data["data"])
    if data and isinstance(data[0], dict) and "data" in data[0]:
        return list(data[0]["data"])
    return list(data)


def _gb_points(items: Iterable[dict[str, Any]]) -> tuple[tuple[IntensityPoint, ...], int]:
    points = []
    forecasts = 0
    for item in items:
        intensity = item["intensity"]
        value = intensity.get("actual")
        is_forecast = value is None  # regional data and the future have only the forecast
        if is_forecast:
            value = intensity["forecast"]
            forecasts += 1
        points.append(IntensityPoint(_ts(item["from"]), _ts(item["to"]), float(value), is_forecast))
    return _checked(points, CarbonIntensityGB.title, "half-hours"), forecasts


class CarbonIntensityGB(_LiveProvider):
    """The GB Carbon Intensity API: national, or regional by outward postcode."""

    name = "carbonintensity-gb"
    title = "GB Carbon Intensity API"
    default_url = "https://api.carbonintensity.org.uk"
    names = ("carbonintensity-gb", "carbonintensityGB")
    countries = frozenset({"GB"})

    def _fetch(self, call: _Call) -> Intensity:
        postcode = gb_postcode(call.location)
        where = f"postcode {postcode}" if postcode else "national"
        suffix = f"/postcode/{postcode}" if postcode else ""
        zone = f"GB-{postcode}" if postcode else "GB"
        if call.is_history:
            frm = max(math.floor(call.start / 1800) * 1800, call.end - _GB_MAX_RANGE_S)
            span = f"/{_gb_time(frm)}/{_gb_time(call.end)}"
            path = f"/regional/intensity{span}{suffix}" if postcode else f"/intensity{span}"
            points, forecasts = _gb_points(_gb_items(call.get(path)))
            inside = window_points(points, call.start, call.end)
            if inside:
                note = ""
                if forecasts:
                    note = f"GB: {forecasts} of {len(points)} half-hours are forecasts (no actual)"
                return _to_intensity(
                    inside,
                    call,
                    source=f"GB Carbon Intensity API (NESO, CC BY 4.0), {where}, half-hourly",
                    note=note,
                    basis="direct",
                    zone=zone,
                )
        path = f"/regional{suffix}" if postcode else "/intensity"
        points, forecasts = _gb_points(_gb_items(call.get(path)))
        if not points:
            raise ProviderError(f"no data for {where}")
        now = points[-1]
        forecast: tuple[IntensityPoint, ...] = ()
        if call.wants_forecast:
            fpath = f"/{_gb_time(call.start)}/fw{FORECAST_HOURS}h"
            fpath = f"/regional/intensity{fpath}{suffix}" if postcode else f"/intensity{fpath}"
            forecast = self._forecast_or_empty(
                lambda: _gb_points(_gb_items(call.get(fpath, cache_s=900)))[0],
                call.start,
            )
        kind = "forecast" if forecasts else "actual"
        return Intensity(
            g_per_kwh=now.g_per_kwh,
            source=f"GB Carbon Intensity API (NESO, CC BY 4.0), {where}, current half hour "
            f"({kind})",
            forecast=forecast,
            basis="direct",
            zone=zone,
        )


# -- Energi Data Service -----------------------------------------------------------------------

_DK_AREAS = ("DK1", "DK2")


def _danish_time(ts: float, *, end: bool = False) -> str:
    """Energi Data Service reads ``start``/``end`` in Danish local time; ``end=True`` for the
    end of a window."""
    import datetime as dt

    try:
        from zoneinfo import ZoneInfo

        tz: dt.tzinfo = ZoneInfo("Europe/Copenhagen")
    except Exception:
        # No tz database here: CET (UTC+1). In summer (UTC+2) the server reads that an hour
        # early, which only widens a start; an end is pushed an hour later so that it widens too.
        tz = dt.timezone(dt.timedelta(hours=1))
        if end:
            ts += 3600.0
    return dt.datetime.fromtimestamp(ts, tz).strftime("%Y-%m-%dT%H:%M")


def _eds_points(
    records: Iterable[dict[str, Any]], areas: Sequence[str], *, is_forecast: bool = False
) -> tuple[IntensityPoint, ...]:
    # DK1 and DK2 mostly carry the same all-Denmark value; where both are asked for, average.
    by_time: dict[float, list[float]] = {}
    bad: list[float] = []
    for rec in records:
        if rec.get("PriceArea") not in areas or rec.get("CO2Emission") is None:
            continue
        value = float(rec["CO2Emission"])
        if not _plausible(value):  # checked per area: a bad DK2 value leaves DK1's
            bad.append(value)
            continue
        by_time.setdefault(_ts(rec["Minutes5UTC"]), []).append(value)
    _warn_bad(bad, EnergiDataService.title, "5-minute records")
    return tuple(
        IntensityPoint(t, t + 300.0, sum(v) / len(v), is_forecast)
        for t, v in sorted(by_time.items())
    )


class EnergiDataService(_LiveProvider):
    """Energi Data Service (Energinet, Denmark): ``CO2Emis`` and ``CO2EmisProg`` (5-minute)."""

    name = "energidataservice"
    title = "Energi Data Service"
    default_url = "https://api.energidataservice.dk"
    names = ("energidataservice",)
    countries = frozenset({"DK"})

    def _dataset(self, call: _Call, dataset: str, start: float, end: float) -> Any:
        import json

        # One request per dataset per minute, or HTTP 429: an answer younger than that is
        # reused for any query on the same dataset (the records carry their own times).
        recent = _http.cache_get(f"eds-last:{call.base}:{dataset}", EDS_MIN_INTERVAL_S)
        if recent is not None:
            return recent
        data = call.get(
            f"/dataset/{dataset}",
            cache_s=0,
            params={
                "start": _danish_time(start),
                "end": _danish_time(end, end=True),
                "filter": json.dumps({"PriceArea": list(_DK_AREAS)}, separators=(",", ":")),
                "sort": "Minutes5UTC DESC",
                # Ask for every 5-minute record of the window (two price areas, a margin).
                "limit": str(2 * math.ceil((end - start) / 300.0) + 10),
            },
        )
        if not isinstance(data, dict) or not isinstance(data.get("records"), list):
            raise ProviderError(f"unexpected response: no records list in {dataset}")
        _http.cache_put(f"eds-last:{call.base}:{dataset}", data)
        return data

    def _fetch(self, call: _Call) -> Intensity:
        region = call.location.region
        areas = (region.partition("-")[2],) if region else _DK_AREAS
        where = "+".join(areas)
        zone = f"DK-{areas[0]}" if region else "DK"
        if call.is_history:
            start = math.floor(call.start / 300) * 300.0
            data = self._dataset(call, "CO2Emis", start - 3600.0, call.end + 300.0)
            inside = window_points(_eds_points(data["records"], areas), call.start, call.end)
            if inside:
                return _to_intensity(
                    inside,
                    call,
                    source=f"Energi Data Service CO2Emis, {where}, 5-minute",
                    basis="direct",
                    zone=zone,
                )
        data = self._dataset(call, "CO2Emis", call.start - 3600.0, call.start + 300.0)
        points = _eds_points(data["records"], areas)
        if not points:
            raise ProviderError(f"no CO2Emis records for {where}")
        forecast: tuple[IntensityPoint, ...] = ()
        if call.wants_forecast:
            start = call.start
            forecast = self._forecast_or_empty(
                lambda: _eds_points(
                    self._dataset(call, "CO2EmisProg", start, start + 9 * 3600.0)["records"],
                    areas,
                    is_forecast=True,
                ),
                call.start,
            )
        return Intensity(
            g_per_kwh=points[-1].g_per_kwh,
            source=f"Energi Data Service CO2Emis, {where}, latest 5 minutes",
            forecast=forecast,
            basis="direct",
            zone=zone,
        )
