"""Local HTTP servers that answer like the carbon-intensity and geolocation APIs.

Each fake listens on ``127.0.0.1`` (a free port) in a daemon thread, serves the response shapes
of the real API (see docs/intensity.md, "Live providers"), records every request, and
reproduces its errors on demand: ``server.fail("401")``, ``"403"``, ``"429"``, ``"500"``,
``"malformed"`` (truncated JSON), ``"dropped"`` (the connection closes mid-answer, before the
announced length), ``"timeout"`` (answers after ``hang_s``), ``"null"`` (a missing value), each
for the next ``times`` requests. Values come from ``intensity(ts)``, a
function of Unix time, and "now" from ``now()``, so a test can drive them with a fake clock.

Hostile answers, for robustness tests (of carbontrack and of plugins that speak HTTP):

* ``"drip"``: the whole answer, status line included, one byte every ``drip_s`` seconds (a
  socket timeout never fires: each read gets a byte in time);
* ``"huge"``: a body of ``huge_bytes`` (1 GiB by default), its length announced;
  ``"huge-unannounced"``: the same with no ``Content-Length`` (the connection closes at the end);
* ``"redirect"``: ``302 Found`` to ``redirect_to`` (another server's base URL; the same path and
  query), so a test can see which headers the target received (its ``requests``);
* ``"nan"`` / ``"negative"``: every other intensity value in the answer (the 1st, 3rd...)
  replaced by ``NaN`` (as Python's ``json`` writes it) or by ``-1e9``;
* ``"deep"``: a JSON body nested 100,000 arrays deep.

Point carbontrack at a fake with ``track(plugin_options=server.plugin_options(), ...)`` (or
``server.env()`` as environment variables). Figures from these fakes are simulated.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import attrs

__all__ = [
    "FakeCarbonIntensityGB",
    "FakeElectricityMaps",
    "FakeEnergiDataService",
    "FakeGeolocation",
    "FakeIntensityServer",
    "RecordedRequest",
]

UTC = dt.UTC

Answer = tuple[int, Any]


@attrs.frozen
class RecordedRequest:
    """One request a fake received."""

    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]


def _constant(_ts: float) -> float:
    return 250.0


def _iso(ts: float, fmt: str = "%Y-%m-%dT%H:%M:%S.000Z") -> str:
    return dt.datetime.fromtimestamp(ts, UTC).strftime(fmt)


class FakeIntensityServer:
    """Base of the fakes: the server thread, the request log and the injected failures."""

    #: The provider name carbontrack uses for this fake's base URL.
    provider: ClassVar[str] = ""
    #: Body of an error answer, per status (the provider's own shape).
    error_bodies: ClassVar[dict[int, Any]] = {}

    def __init__(
        self,
        intensity: Callable[[float], float] = _constant,
        *,
        now: Callable[[], float] = time.time,
        hang_s: float = 2.0,
        drip_s: float = 0.5,
        huge_bytes: int = 2**30,
        redirect_to: str | None = None,
    ) -> None:
        self.intensity = intensity
        self.now = now
        self.hang_s = hang_s
        self.drip_s = drip_s
        self.huge_bytes = huge_bytes
        self.redirect_to = redirect_to
        #: Bytes of hostile bodies ("huge") the server managed to send before the client left.
        self.bytes_sent = 0
        self.requests: list[RecordedRequest] = []
        self._failures: list[tuple[str, str | None]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- control ---------------------------------------------------------------------------

    def fail(self, kind: str, times: int = 1, *, path: str | None = None) -> None:
        """Answer the next ``times`` requests (only those whose path ends with ``path``, when
        given) with the failure ``kind``."""
        known = (
            *("401", "403", "429", "500", "malformed", "dropped", "timeout", "null"),
            *("drip", "huge", "huge-unannounced", "redirect", "nan", "negative", "deep"),
        )
        if kind not in known:
            raise ValueError(f"fail({kind!r}): expected one of {', '.join(known)}")
        with self._lock:
            self._failures.extend([(kind, path)] * times)

    @property
    def url(self) -> str:
        """The base URL, ``http://127.0.0.1:<port>``."""
        if self._server is None:
            raise RuntimeError("the fake server is not running: use `with Fake...() as server:`")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def urls(self) -> dict[str, str]:
        """Provider name -> base URL, as carbontrack's options take them."""
        return {self.provider: self.url}

    def plugin_options(self, **extra: Any) -> dict[str, Any]:
        """``plugin_options`` that point carbontrack at this fake (``extra`` merged in)."""
        return {"intensity": {"urls": self.urls(), "timeout_s": 1.0, **extra}}

    def env(self) -> dict[str, str]:
        """Environment variables that point carbontrack at this fake."""
        return {f"CARBONTRACK_{n.upper().replace('-', '_')}_URL": u for n, u in self.urls().items()}

    def paths(self) -> list[str]:
        """The paths requested so far, in order."""
        return [r.path for r in self.requests]

    def start(self) -> FakeIntensityServer:
        """Start serving (``with`` does it for you)."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # tests read fake.requests instead

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        server = self._server
        self._thread = threading.Thread(
            # A short poll keeps stop() quick (the default waits up to half a second).
            target=lambda: server.serve_forever(poll_interval=0.02),
            name=f"fake-{self.provider}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeIntensityServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- serving ---------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        parsed = urllib.parse.urlsplit(handler.path)
        query = dict(urllib.parse.parse_qsl(parsed.query))
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self._lock:
            self.requests.append(RecordedRequest(parsed.path, query, headers))
            failure = None
            for i, (kind, only) in enumerate(self._failures):
                if only is None or parsed.path.endswith(only):
                    failure = kind
                    del self._failures[i]
                    break
        if failure == "timeout":
            time.sleep(self.hang_s)
        if failure in ("huge", "huge-unannounced"):
            self._send_huge(handler, announce=failure == "huge")
            return
        if failure == "redirect":
            if self.redirect_to is None:
                raise RuntimeError("fail('redirect') needs redirect_to, another server's URL")
            target = self.redirect_to.rstrip("/") + handler.path
            self._send_raw(
                handler,
                f"HTTP/1.1 302 Found\r\nLocation: {target}\r\nContent-Length: 0\r\n"
                "Connection: close\r\n\r\n".encode(),
            )
            return
        if failure == "deep":
            data = b"[" * 100_000 + b"]" * 100_000
            self._send_raw(handler, self._head(200, len(data)) + data)
            return
        try:
            if failure in ("401", "403", "429", "500"):
                status = int(failure)
                answer: Answer = (status, self.error_bodies.get(status, {"error": "error"}))
            else:
                answer = self.answer(parsed.path, query, headers, null=failure == "null")
        except Exception as exc:  # a bug in a fake must show in the test, not hang it
            answer = (500, {"error": f"fake server error: {type(exc).__name__}: {exc}"})
        status, body = answer
        if failure in ("nan", "negative") and status == 200:
            body = _poison(body, math.nan if failure == "nan" else -1e9)
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        if failure == "malformed":
            status, data = 200, data[: max(1, len(data) // 2)]
        if failure == "drip":
            self._drip(handler, self._head(status, len(data)) + data)
            return
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            if failure == "dropped":
                data = data[: len(data) // 2]
                handler.close_connection = True
            handler.wfile.write(data)
        except OSError:
            pass  # the client gave up (a timeout test): nothing to answer

    def answer(
        self, path: str, query: Mapping[str, str], headers: Mapping[str, str], *, null: bool
    ) -> Answer:
        """The ``(status, JSON body)`` for a request; each fake implements its API here."""
        raise NotImplementedError

    # -- hostile answers -----------------------------------------------------------------------

    @staticmethod
    def _head(status: int, length: int | None) -> bytes:
        lines = [f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}"]
        lines.append("Content-Type: application/json")
        if length is not None:
            lines.append(f"Content-Length: {length}")
        lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def _send_raw(self, handler: BaseHTTPRequestHandler, data: bytes) -> None:
        handler.close_connection = True
        with contextlib.suppress(OSError):  # the client gave up
            handler.wfile.write(data)

    def _drip(self, handler: BaseHTTPRequestHandler, data: bytes) -> None:
        handler.close_connection = True
        for i in range(len(data)):
            if self._server is None:
                return  # stopped
            try:
                handler.wfile.write(data[i : i + 1])
                handler.wfile.flush()
            except OSError:
                return  # the client gave up: what carbontrack should do
            time.sleep(self.drip_s)

    def _send_huge(self, handler: BaseHTTPRequestHandler, *, announce: bool) -> None:
        handler.close_connection = True
        total = self.huge_bytes
        head = b'{"data": "'
        tail = b'"}'
        try:
            handler.wfile.write(self._head(200, total if announce else None) + head)
            left = total - len(head) - len(tail)
            chunk = b"a" * min(2**20, max(left, 0))
            while left > 0 and self._server is not None:
                piece = chunk[:left]
                handler.wfile.write(piece)
                left -= len(piece)
                with self._lock:
                    self.bytes_sent += len(piece)
            handler.wfile.write(tail)
        except OSError:
            pass  # the client stopped reading: what carbontrack should do


#: Keys whose numbers are carbon intensities in the fakes' answers (all three APIs).
_INTENSITY_KEYS = frozenset({"carbonIntensity", "actual", "forecast", "CO2Emission"})


def _poison(body: Any, bad: float) -> Any:
    """``body`` with every other intensity number (the 1st, the 3rd...) replaced by ``bad``."""
    seen = 0

    def walk(value: Any) -> Any:
        nonlocal seen
        if isinstance(value, dict):
            out = {}
            for k, v in value.items():
                if k in _INTENSITY_KEYS and isinstance(v, int | float) and not isinstance(v, bool):
                    seen += 1
                    out[k] = bad if seen % 2 == 1 else v
                else:
                    out[k] = walk(v)
            return out
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return walk(body)


# -- Electricity Maps ------------------------------------------------------------------------


class FakeElectricityMaps(FakeIntensityServer):
    """Electricity Maps v3: ``/carbon-intensity/latest``, ``/history`` (24 hourly items, newest
    last) and ``/forecast``, with the ``auth-token`` header checked against ``key`` and zones
    limited to ``zones`` (``None``: every zone), like a free-tier token."""

    provider = "electricitymaps"
    error_bodies: ClassVar[dict[int, Any]] = {
        401: {"error": "Invalid auth-token"},
        403: {"error": "Forbidden"},
        429: {"error": "Too many requests"},
        500: {"status": "error", "message": "Internal server error"},
    }

    def __init__(
        self,
        intensity: Callable[[float], float] = _constant,
        *,
        key: str = "test-key",
        zones: frozenset[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(intensity, **kwargs)
        self.key = key
        self.zones = zones

    def _item(self, zone: str, hour: float, *, null: bool) -> dict[str, Any]:
        return {
            "zone": zone,
            "carbonIntensity": None if null else round(self.intensity(hour), 3),
            "datetime": _iso(hour),
            "updatedAt": _iso(hour + 600),
            "createdAt": _iso(hour - 3 * 86400),
            "emissionFactorType": "lifecycle",
            "isEstimated": True,
            "estimationMethod": "TIME_SLICER_AVERAGE",
        }

    def answer(
        self, path: str, query: Mapping[str, str], headers: Mapping[str, str], *, null: bool
    ) -> Answer:
        if headers.get("auth-token") != self.key:
            return 401, {"error": "Invalid auth-token"}
        zone = query.get("zone")
        if not zone:
            return 400, {"error": "zone or lat/lon is required"}
        kind = path.rsplit("/", 1)[-1]
        if self.zones is not None and zone not in self.zones:
            return 401, {
                "error": f"Request unauthorized for zoneKey={zone},requestType={kind},"
                "dataType=carbonIntensity"
            }
        hour = math.floor(self.now() / 3600) * 3600.0
        if path.endswith("/carbon-intensity/latest"):
            return 200, self._item(zone, hour, null=null)
        if path.endswith("/carbon-intensity/history"):
            hours = [hour - 3600.0 * i for i in range(23, -1, -1)]
            return 200, {"zone": zone, "history": [self._item(zone, h, null=null) for h in hours]}
        if path.endswith("/carbon-intensity/forecast"):
            points = [
                {
                    "carbonIntensity": round(self.intensity(hour + 3600.0 * i), 3),
                    "datetime": _iso(hour + 3600.0 * i),
                }
                for i in range(24)
            ]
            return 200, {"zone": zone, "forecast": points, "updatedAt": _iso(hour)}
        return 404, {"error": f"Not found: {path}"}


# -- GB Carbon Intensity API -----------------------------------------------------------------

_GB_FMT = "%Y-%m-%dT%H:%MZ"
_GB_REGIONS = {
    "RG10": (12, "Southern Electric", "South England"),
    "BS7": (11, "WPD South West", "South West England"),
    "EH1": (2, "SP Distribution", "South Scotland"),
}


def _gb_index(value: float) -> str:
    bands = ((40, "very low"), (120, "low"), (200, "moderate"), (290, "high"))
    return next((name for limit, name in bands if value < limit), "very high")


def _gb_parse(text: str) -> float:
    return dt.datetime.strptime(text, _GB_FMT).replace(tzinfo=UTC).timestamp()


def _gb_forward(start: float) -> float:
    # fw48h: 96 half-hours from the one holding ``start``.
    return math.floor(start / 1800) * 1800.0 + 48 * 3600.0


class FakeCarbonIntensityGB(FakeIntensityServer):
    """The GB Carbon Intensity API: ``/intensity``, ``/intensity/{from}/{to}``,
    ``/intensity/{from}/fw48h``, ``/regional/postcode/{pc}`` (``data`` is a list) and
    ``/regional/intensity/{from}/{to}|fw48h/postcode/{pc}`` (``data`` is an object). National
    half-hours in the past have an ``actual``; the rest only a ``forecast``."""

    provider = "carbonintensity-gb"
    error_bodies: ClassVar[dict[int, Any]] = {
        status: {"error": {"code": code, "message": message}}
        for status, code, message in (
            (401, "401 Unauthorized", "Unauthorized"),
            (403, "403 Forbidden", "Forbidden"),
            (429, "429 Too Many Requests", "Too many requests"),
            (500, "500 Internal Server Error", "Internal Server Error"),
        )
    }

    def _item(self, start: float, *, regional: bool, null: bool) -> dict[str, Any]:
        value = None if null else round(self.intensity(start))
        intensity: dict[str, Any] = {"forecast": value}
        if not regional:
            past = start + 1800 <= self.now()
            intensity["actual"] = value if past and value is not None else None
        intensity["index"] = _gb_index(value or 0)
        item: dict[str, Any] = {
            "from": _iso(start, _GB_FMT),
            "to": _iso(start + 1800, _GB_FMT),
            "intensity": intensity,
        }
        if regional:
            item["generationmix"] = [
                {"fuel": "gas", "perc": 43.6},
                {"fuel": "wind", "perc": 30.1},
                {"fuel": "nuclear", "perc": 16.2},
                {"fuel": "imports", "perc": 10.1},
            ]
        return item

    def _items(self, start: float, end: float, *, regional: bool, null: bool) -> list[Any]:
        first = math.floor(start / 1800) * 1800.0
        count = max(1, math.ceil((end - first) / 1800))
        return [self._item(first + 1800.0 * i, regional=regional, null=null) for i in range(count)]

    def _region(self, postcode: str, items: list[Any]) -> dict[str, Any] | None:
        known = _GB_REGIONS.get(postcode)
        if known is None:
            return None
        regionid, dno, short = known
        return {
            "regionid": regionid,
            "dnoregion": dno,
            "shortname": short,
            "postcode": postcode,
            "data": items,
        }

    def answer(
        self, path: str, query: Mapping[str, str], headers: Mapping[str, str], *, null: bool
    ) -> Answer:
        parts = [p for p in path.split("/") if p]
        now = self.now()
        bad_postcode = (
            400,
            {"error": {"code": "400 Bad Request", "message": "Please enter a valid postcode."}},
        )
        try:
            if parts == ["intensity"]:
                return 200, {"data": self._items(now, now, regional=False, null=null)}
            if len(parts) == 3 and parts[0] == "intensity":
                start = _gb_parse(parts[1])
                end = _gb_forward(start) if parts[2] == "fw48h" else _gb_parse(parts[2])
                return 200, {"data": self._items(start, end, regional=False, null=null)}
            if len(parts) == 3 and parts[:2] == ["regional", "postcode"]:
                region = self._region(parts[2], self._items(now, now, regional=True, null=null))
                return (200, {"data": [region]}) if region else bad_postcode
            if len(parts) == 6 and parts[0] == "regional" and parts[4] == "postcode":
                start = _gb_parse(parts[2])
                end = _gb_forward(start) if parts[3] == "fw48h" else _gb_parse(parts[3])
                items = self._items(start, end, regional=True, null=null)
                region = self._region(parts[5], items)
                return (200, {"data": region}) if region else bad_postcode
        except ValueError:
            return 400, {
                "error": {
                    "code": "400 Bad Request",
                    "message": "Please enter a valid ISO datetime.",
                }
            }
        return 404, {"error": {"code": "404 Not Found", "message": f"No route for {path}"}}


# -- Energi Data Service ---------------------------------------------------------------------


def _copenhagen() -> dt.tzinfo:
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo("Europe/Copenhagen")
    except Exception:
        return dt.timezone(dt.timedelta(hours=1))


class FakeEnergiDataService(FakeIntensityServer):
    """Energi Data Service: ``/dataset/CO2Emis`` (5-minute records up to now) and
    ``/dataset/CO2EmisProg`` (records into the future), ``start``/``end`` in Danish local time,
    ``filter`` on ``PriceArea``, newest first, at most ``limit`` records; HTTP 429 for a second
    request to a dataset within ``rate_limit_s`` seconds of real time (``0`` turns the limit
    off). Error bodies are not documented by Energinet: the fake's are plausible JSON, not
    captured ones."""

    provider = "energidataservice"
    error_bodies: ClassVar[dict[int, Any]] = {
        401: {"statusCode": 401, "error": "Unauthorized", "message": "Unauthorized"},
        403: {"statusCode": 403, "error": "Forbidden", "message": "Forbidden"},
        429: {"statusCode": 429, "error": "Too Many Requests", "message": "Rate limit exceeded"},
        500: {"statusCode": 500, "error": "Internal Server Error", "message": "Server error"},
    }

    def __init__(
        self,
        intensity: Callable[[float], float] = _constant,
        *,
        area_offsets: Mapping[str, float] | None = None,
        rate_limit_s: float = 60.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(intensity, **kwargs)
        self.area_offsets = dict(area_offsets or {"DK1": 0.0, "DK2": 0.0})
        self.rate_limit_s = rate_limit_s
        self._last: dict[str, float] = {}

    def _local(self, text: str) -> float:
        value = dt.datetime.strptime(text, "%Y-%m-%dT%H:%M")
        return value.replace(tzinfo=_copenhagen()).timestamp()

    def answer(
        self, path: str, query: Mapping[str, str], headers: Mapping[str, str], *, null: bool
    ) -> Answer:
        parts = [p for p in path.split("/") if p]
        if len(parts) != 2 or parts[0] != "dataset" or parts[1] not in ("CO2Emis", "CO2EmisProg"):
            return 404, {"statusCode": 404, "error": "Not Found", "message": f"No {path}"}
        dataset = parts[1]
        moment = time.monotonic()
        if self.rate_limit_s and moment - self._last.get(dataset, -1e18) < self.rate_limit_s:
            return 429, self.error_bodies[429]
        self._last[dataset] = moment
        try:
            start = self._local(query["start"])
            end = self._local(query["end"])
            areas = json.loads(query.get("filter", "{}")).get("PriceArea", list(self.area_offsets))
        except (KeyError, ValueError) as exc:
            return 400, {"statusCode": 400, "error": "Bad Request", "message": str(exc)}
        now = self.now()
        records = []
        t = math.ceil(start / 300) * 300.0
        tz = _copenhagen()
        while t < end:
            if dataset == "CO2EmisProg" or t <= now:
                for area in areas:
                    value = self.intensity(t) + self.area_offsets.get(area, 0.0)
                    records.append(
                        {
                            "Minutes5UTC": dt.datetime.fromtimestamp(t, UTC).strftime(
                                "%Y-%m-%dT%H:%M:%S"
                            ),
                            "Minutes5DK": dt.datetime.fromtimestamp(t, tz).strftime(
                                "%Y-%m-%dT%H:%M:%S"
                            ),
                            "PriceArea": area,
                            "CO2Emission": None if null else round(value, 3),
                        }
                    )
            t += 300.0
        records.sort(key=lambda r: (r["Minutes5UTC"], r["PriceArea"]), reverse=True)
        body: dict[str, Any] = {"total": len(records)}
        if "filter" in query:
            body["filters"] = query["filter"]
        if "limit" in query:
            body["limit"] = int(query["limit"])
            records = records[: int(query["limit"])] if int(query["limit"]) > 0 else records
        body["dataset"] = dataset
        body["records"] = records
        return 200, body


# -- IP geolocation ------------------------------------------------------------------------


class FakeGeolocation(FakeIntensityServer):
    """ipinfo.io (``/json``: ``country``) and geojs (``/v1/ip/geo.json``: ``country_code``)
    answering for a machine in ``country``. ``fail`` applies to the next requests of either."""

    provider = "geolocate"
    error_bodies: ClassVar[dict[int, Any]] = {
        401: {"error": {"title": "Unknown token", "message": "Please check your token"}},
        403: {"error": {"title": "Forbidden", "message": "Forbidden"}},
        429: {"error": {"title": "Rate limit exceeded", "message": "Upgrade to increase limits"}},
        500: {"error": {"title": "Server error", "message": "Server error"}},
    }

    def __init__(self, country: str = "DK", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.country = country

    def urls(self) -> dict[str, str]:
        return {
            "geolocate-ipinfo": f"{self.url}/json",
            "geolocate-geojs": f"{self.url}/v1/ip/geo.json",
        }

    def answer(
        self, path: str, query: Mapping[str, str], headers: Mapping[str, str], *, null: bool
    ) -> Answer:
        country = None if null else self.country
        if path == "/json":
            return 200, {
                "ip": "192.0.2.10",
                "city": "Copenhagen",
                "region": "Capital Region",
                "country": country,
                "loc": "55.6759,12.5655",
                "postal": "1000",
                "timezone": "Europe/Copenhagen",
            }
        if path == "/v1/ip/geo.json":
            return 200, {
                "ip": "192.0.2.10",
                "country_code": country,
                "country": "Denmark",
                "latitude": "55.6759",
                "longitude": "12.5655",
                "timezone": "Europe/Copenhagen",
            }
        return 404, {"error": {"title": "Wrong path", "message": path}}
