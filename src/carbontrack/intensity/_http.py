"""HTTP for the live providers: standard library only, short timeouts, one retry, a disk cache.

Also where the providers' options are read: base URLs (overridable for tests and proxies), API
keys (options, environment, config file) and the config file itself. Keys never appear in a log
line, an error message or a report: errors carry the HTTP status and the server's message, with
any key redacted.
"""

from __future__ import annotations

# json is imported in the functions that use it: this module loads at every run's start and
# most runs never use it (about a millisecond; docs/performance.md, "Start-up").
import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from carbontrack import _files
from carbontrack._redact import is_secret_name, redact_data, redact_text
from carbontrack.errors import InvalidOption
from carbontrack.settings import Settings

if TYPE_CHECKING:
    import socket

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "ProviderError",
    "api_key",
    "base_url",
    "cache_dir",
    "config_path",
    "enabled",
    "get_json",
    "read_config",
]

logger = logging.getLogger(__name__)

#: Seconds to wait for a provider before falling back: intensity is asked for at the start and
#: end of a run, so a slow API must never hold up training for long.
DEFAULT_TIMEOUT_S = 5.0

#: The ``plugin_options`` key under which the intensity plugins read their options:
#: ``{"urls": {provider: base_url}, "timeout_s": 5, "providers": [...], "cache": True}``.
OPTIONS_KEY = "intensity"

CONFIG_ENV = "CARBONTRACK_CONFIG"
CACHE_ENV = "CARBONTRACK_CACHE_DIR"
PROVIDERS_ENV = "CARBONTRACK_INTENSITY_PROVIDERS"


class ProviderError(Exception):
    """A live provider gave no usable answer; the message is the reason, without any key.

    ``final`` marks a failure that asking again in the same run would only repeat, at a cost:
    a timeout or an unreachable server (seconds of waiting each time) and a rejected key.
    """

    def __init__(self, reason: str, *, final: bool = False) -> None:
        super().__init__(reason)
        self.final = final


# -- configuration ---------------------------------------------------------------------------


def config_path() -> Path:
    """``$CARBONTRACK_CONFIG``, else ``config.toml`` in carbontrack's home directory."""
    return _files.config_path()


def read_config() -> dict[str, Any]:
    """The config file's content (``{}`` when there is none or it cannot be read).

    Raises ``InvalidOption`` naming the file when it is not a regular file, is larger than
    ``carbontrack._files.MAX_CONFIG_BYTES`` or is not valid TOML.
    """
    return _files.read_config()


def _config_quiet() -> dict[str, Any]:
    # Providers run inside the measurement: a broken config file was already reported at start.
    try:
        return read_config()
    except InvalidOption:
        return {}


def options(settings: Settings) -> Mapping[str, Any]:
    """This package's entry in ``settings.plugin_options`` (``{}`` when absent)."""
    value = settings.plugin_options.get(OPTIONS_KEY, {})
    return value if isinstance(value, Mapping) else {}


def base_url(settings: Settings, provider: str, default: str) -> str:
    """The provider's base URL: ``plugin_options["intensity"]["urls"][provider]``, else
    ``$CARBONTRACK_<PROVIDER>_URL``, else ``default``."""
    urls = options(settings).get("urls", {})
    if isinstance(urls, Mapping) and urls.get(provider):
        return str(urls[provider]).rstrip("/")
    env = os.environ.get(f"CARBONTRACK_{_env_name(provider)}_URL", "").strip()
    return (env or default).rstrip("/")


def timeout_s(settings: Settings) -> float:
    """Seconds to wait for one HTTP answer (``plugin_options["intensity"]["timeout_s"]``)."""
    value = options(settings).get("timeout_s", DEFAULT_TIMEOUT_S)
    return float(value) if isinstance(value, int | float) and value > 0 else DEFAULT_TIMEOUT_S


def _env_name(name: str) -> str:
    return name.upper().replace("-", "_")


def api_key(settings: Settings, names: Iterable[str]) -> str | None:
    """The first key found under any of ``names``: ``settings.api_keys``, then
    ``$CARBONTRACK_<NAME>_KEY``, then the config file's ``[api_keys]`` table."""
    names = tuple(names)
    for name in names:
        if settings.api_keys.get(name):
            return settings.api_keys[name]
    for name in names:
        env = os.environ.get(f"CARBONTRACK_{_env_name(name)}_KEY", "").strip()
        if env:
            return env
    keys = _config_quiet().get("api_keys", {})
    if isinstance(keys, Mapping):
        for name in names:
            if isinstance(keys.get(name), str) and keys[name]:
                return str(keys[name])
    return None


def enabled(settings: Settings, names: Iterable[str]) -> bool:
    """Whether a keyless provider was switched on: one of ``names`` is listed in
    ``plugin_options["intensity"]["providers"]``, ``$CARBONTRACK_INTENSITY_PROVIDERS``
    (comma-separated) or the config file's ``providers``, or has an entry in ``api_keys``
    (carbontracker's way of choosing a provider)."""
    names = {n.lower() for n in names}
    listed: set[str] = set()
    chosen = options(settings).get("providers", ())
    if isinstance(chosen, str):
        chosen = chosen.split(",")
    listed |= {str(n).strip().lower() for n in chosen}
    listed |= {n.strip().lower() for n in os.environ.get(PROVIDERS_ENV, "").split(",")}
    config = _config_quiet().get("providers", ())
    if isinstance(config, list):
        listed |= {str(n).strip().lower() for n in config}
    listed |= {k.lower() for k in settings.api_keys}
    return bool(names & listed)


# -- cache -------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """``$CARBONTRACK_CACHE_DIR``, else ``<$CARBONTRACK_HOME>/cache`` when that is set, else
    the platform's user cache directory for carbontrack."""
    env = os.environ.get(CACHE_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    home = os.environ.get("CARBONTRACK_HOME", "").strip()
    if home:
        return Path(home).expanduser() / "cache"
    import platformdirs

    return platformdirs.user_cache_path("carbontrack", appauthor=False) / "intensity"


def _cache_file(key: str) -> Path:
    import hashlib

    return cache_dir() / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"


def cache_get(key: str, max_age_s: float) -> Any:
    """The cached value for ``key`` if younger than ``max_age_s``, else ``None``."""
    import json

    try:
        entry = json.loads(_cache_file(key).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or entry.get("key") != key:
        return None
    age = time.time() - float(entry.get("at", 0))
    return entry.get("data") if 0 <= age <= max_age_s else None


#: Cache files older than this are deleted (once per process): time-range URLs differ from run
#: to run, so without pruning the cache would gain a file or two per run for ever.
CACHE_KEEP_S = 2 * 86400.0
_PRUNED: set[Path] = set()


def _prune(folder: Path) -> None:
    if folder in _PRUNED:
        return
    _PRUNED.add(folder)
    cutoff = time.time() - CACHE_KEEP_S
    for old in folder.glob("*.json"):
        try:
            if len(old.stem) == 32 and old.stat().st_mtime < cutoff:
                old.unlink()
        except OSError:
            pass  # another process pruned it first, or it is not ours to delete


def cache_put(key: str, data: Any) -> None:
    """Remember ``data`` under ``key``; a cache that cannot be written is skipped quietly."""
    import json

    path = _cache_file(key)
    try:
        # Always private to the user (0600 in a 0700 directory), whatever file_mode says: the
        # cache is per user, and an answer may say where the machine is.
        entry = json.dumps({"key": key, "at": time.time(), "data": data})
        _files.write_bytes(path, entry.encode("utf-8"), "private")
    except (OSError, ValueError):
        logger.debug("carbontrack: cannot write the intensity cache at %s", path, exc_info=True)
        return
    _prune(path.parent)


# -- HTTP ------------------------------------------------------------------------------------

#: Largest answer read, in bytes: a year of 5-minute records from Energi Data Service is about
#: 16 MB less than this; a hostile or broken server streaming gigabytes is cut off here.
MAX_RESPONSE_BYTES = 32 * 2**20
#: Largest error body read (only its message is kept).
MAX_ERROR_BYTES = 64 * 2**10
#: Redirects followed per request (a same-host move is common; a chain is not).
MAX_REDIRECTS = 4


def _server_message(body: bytes) -> str:
    import json

    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return body.decode("utf-8", "replace").strip()[:200]
    if isinstance(data, dict):
        err = data.get("error", data.get("message"))
        if isinstance(err, dict):  # the GB API: {"error": {"code": ..., "message": ...}}
            err = err.get("message") or err.get("code")
        if err:
            return str(err)[:200]
    return ""


def _redact(text: str, secrets: Iterable[str]) -> str:
    return redact_text(text, secrets)


def _wait(timeout: float, deadline: float | None) -> float:
    """Seconds one attempt may wait: ``timeout``, or less where ``deadline`` is nearer."""
    if deadline is None:
        return timeout
    wait = min(timeout, deadline - time.monotonic())
    if wait <= 0.01:
        raise ProviderError(f"no answer within {timeout:g} s (timeout)", final=True)
    return wait


class _Status(Exception):
    """An HTTP error status, with the server's message (read within the limits)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message


class _Exchange:
    """The sockets of one request, so that the waiting thread can cut them at the deadline:
    socket timeouts bound each read, not the request (a server sending one byte every half
    second never trips them)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.cancelled = False

    def add(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.cancelled:
                _cut(sock)

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
            for sock in self._sockets:
                _cut(sock)


def _cut(sock: socket.socket) -> None:
    # socket.socket.shutdown, not SSLSocket.shutdown: the TLS object is in use by the reader;
    # shutting the descriptor down wakes its blocked read with an error.
    import socket  # loaded with the request that needs it, not at every start

    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


#: The exchange of the request running in this thread (each request has its worker thread),
#: so that one opener, built once, reports each connection's socket to the right exchange.
_CURRENT = threading.local()
_OPENER: list[Any] = []


def _opener() -> Any:
    """The opener, built on first use (``build_opener`` costs about a millisecond) and then
    shared, as urllib's own ``urlopen`` shares its default one."""
    if _OPENER:
        return _OPENER[0]
    import http.client
    import urllib.request

    def track(sock: Any) -> None:
        exchange = getattr(_CURRENT, "exchange", None)
        if exchange is not None:
            exchange.add(sock)

    class Tracked(http.client.HTTPConnection):
        def connect(self) -> None:
            super().connect()
            track(self.sock)

    class TrackedTLS(http.client.HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            track(self.sock)

    class HTTP(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(Tracked, req)

    class HTTPS(urllib.request.HTTPSHandler):
        def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(TrackedTLS, req, context=self._context)  # type: ignore[attr-defined]

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        # Redirects are followed by get_json itself, which decides which headers go along;
        # returning None here hands the 3xx back unread (urllib would read its body whole).
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    # The proxy handler (from $https_proxy and friends, read once, as urlopen does) stays:
    # clusters often need one.
    _OPENER.append(urllib.request.build_opener(HTTP, HTTPS, NoRedirect))
    return _OPENER[0]


def _same_origin(old: str, new: str) -> bool:
    import urllib.parse

    a, b = urllib.parse.urlsplit(old), urllib.parse.urlsplit(new)
    ports = {"http": 80, "https": 443}
    if a.scheme == "https" and b.scheme != "https":
        return False  # never a credential over plain text
    return (a.hostname or "").lower() == (b.hostname or "").lower() and (
        a.port or ports.get(a.scheme)
    ) == (b.port or ports.get(b.scheme))


def _strip_credentials(headers: dict[str, str], secrets: Sequence[str]) -> dict[str, str]:
    """``headers`` without any that carries a credential: by name (``auth-token``,
    ``Authorization``, ``Cookie``, ``X-Api-Key``...) or by holding one of ``secrets``."""
    kept = {}
    for name, value in headers.items():
        lowered = value.lower()
        if name.lower() in ("authorization", "cookie", "proxy-authorization"):
            continue
        if is_secret_name(name) or any(s and s.lower() in lowered for s in secrets):
            continue
        kept[name] = value
    return kept


def _read_capped(response: Any, limit: int, exchange: _Exchange) -> bytes:
    import http.client

    text = response.headers.get("Content-Length")
    length = int(text) if text is not None and text.strip().isdigit() else None
    if length is not None and length > limit:
        raise ProviderError(
            f"answer too large ({length:,} bytes announced; at most {limit:,} are read)"
        )
    chunks: list[bytes] = []
    size = 0
    while True:
        if exchange.cancelled:
            raise TimeoutError
        # read1: what one socket read gives, so that the deadline is checked between reads.
        chunk = response.read1(65536)
        if not chunk:
            if length is not None and size < length:  # the connection closed mid-answer
                raise http.client.IncompleteRead(b"".join(chunks), length - size)
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise ProviderError(f"answer too large (over {limit:,} bytes; the rest is not read)")
        chunks.append(chunk)


def _attempt(
    url: str,
    *,
    headers: dict[str, str],
    secrets: Sequence[str],
    wait: float,
    exchange: _Exchange,
    max_bytes: int,
) -> bytes:
    """One request, its redirects followed by hand; runs in a worker thread."""
    import urllib.error
    import urllib.parse
    import urllib.request

    opener = _opener()
    _CURRENT.exchange = exchange
    for _hop in range(MAX_REDIRECTS + 1):
        request = urllib.request.Request(url, headers=headers)
        try:
            with opener.open(request, timeout=wait) as response:
                return _read_capped(response, max_bytes, exchange)
        except urllib.error.HTTPError as exc:
            with exc:
                location = exc.headers.get("Location") if exc.headers else None
                if exc.code in (301, 302, 303, 307, 308) and location:
                    target = urllib.parse.urljoin(url, location)
                    if urllib.parse.urlsplit(target).scheme not in ("http", "https"):
                        raise ProviderError(
                            f"redirected to a non-HTTP address ({exc.code})", final=True
                        ) from None
                    if not _same_origin(url, target):
                        # The key was given for this host, not for wherever it points to.
                        headers = _strip_credentials(headers, secrets)
                    url = target
                    continue
                try:
                    body = _read_capped(exc, MAX_ERROR_BYTES, exchange)
                except ProviderError:
                    body = b""
                raise _Status(exc.code, _server_message(body)) from None
    raise ProviderError(f"more than {MAX_REDIRECTS} redirects", final=True)


def _bounded(
    url: str,
    headers: dict[str, str],
    secrets: Sequence[str],
    wait: float,
    max_bytes: int,
) -> bytes:
    """``_attempt`` with a total deadline of ``wait`` seconds (name lookup, connection, TLS,
    headers, body, redirects), after which its sockets are cut and ``TimeoutError`` raised."""
    exchange = _Exchange()
    outcome: list[Any] = []

    def work() -> None:
        try:
            outcome.append(
                (
                    "ok",
                    _attempt(
                        url,
                        headers=headers,
                        secrets=secrets,
                        wait=wait,
                        exchange=exchange,
                        max_bytes=max_bytes,
                    ),
                )
            )
        except BaseException as exc:  # handed to the caller's thread
            outcome.append(("error", exc))

    # A worker thread, because a name lookup cannot be interrupted: at the deadline the caller
    # goes on, and the worker ends once its cut sockets (or the lookup) return.
    worker = threading.Thread(target=work, name="carbontrack-http", daemon=True)
    worker.start()
    worker.join(wait)
    if worker.is_alive() or not outcome:
        exchange.cancel()
        raise TimeoutError
    kind, value = outcome[0]
    if kind == "error":
        if exchange.cancelled:
            raise TimeoutError
        raise value
    return bytes(value)


def _decode(body: bytes, secrets: Sequence[str]) -> Any:
    import json

    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise ProviderError("malformed JSON in the response") from None
    # Servers echo what they were sent (a key in a message, a URL): nothing of a key goes on
    # into the cache, the report, the CSV or the run log.
    return redact_data(data, secrets)


def get_json(
    url: str,
    *,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    cache_s: float = 0.0,
    secrets: Iterable[str] = (),
    deadline: float | None = None,
    max_bytes: int = MAX_RESPONSE_BYTES,
) -> Any:
    """GET ``url`` and decode its JSON, with one retry on a 5xx or a refused connection.

    ``timeout`` is a total for the request, retry included (not a per-read socket timeout), and
    ``deadline`` (a ``time.monotonic()`` value) caps it further. Answers over ``max_bytes`` are
    refused unread. Redirects to another host (or from https to http) go without any header
    carrying a credential. The decoded answer has every occurrence of ``secrets`` (in any case)
    masked before it is cached or returned. A response younger than ``cache_s`` seconds is
    served from the disk cache (the key is the URL with its query; headers, and so API keys,
    are not part of it). Raises ``ProviderError`` with the reason (HTTP status and server
    message, timeout, malformed JSON, too large).
    """
    import http.client
    import urllib.error
    import urllib.parse

    from carbontrack._version import __version__

    secrets = tuple(s for s in secrets if s)
    full = url + ("?" + urllib.parse.urlencode(params) if params else "")
    if cache_s > 0:
        cached = cache_get(full, cache_s)
        if cached is not None:
            return cached
    all_headers = {
        "Accept": "application/json",
        "User-Agent": f"carbontrack/{__version__}",
        **(headers or {}),
    }
    total = time.monotonic() + timeout
    deadline = total if deadline is None else min(deadline, total)
    timed_out = f"no answer within {timeout:g} s (timeout)"
    attempts = 2
    for attempt in range(attempts):
        last = attempt == attempts - 1
        try:
            body = _bounded(full, all_headers, secrets, _wait(timeout, deadline), max_bytes)
        except _Status as exc:
            message = _redact(exc.message, secrets)
            if exc.code >= 500 and not last:
                time.sleep(0.1)
                continue
            reason = f"HTTP {exc.code}" + (f": {message}" if message else "")
            if exc.code == 429:
                reason += " (rate limited)"
            raise ProviderError(reason, final=exc.code in (401, 403)) from None
        except TimeoutError:
            raise ProviderError(timed_out, final=True) from None
        except ProviderError as exc:
            raise ProviderError(_redact(str(exc), secrets), final=exc.final) from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise ProviderError(timed_out, final=True) from None
            if not last:
                time.sleep(0.1)
                continue
            raise ProviderError(
                f"cannot connect ({_redact(str(exc.reason), secrets)})", final=True
            ) from None
        except (OSError, http.client.HTTPException) as exc:  # connection lost mid-answer
            if not last:
                continue
            raise ProviderError(f"connection failed ({type(exc).__name__})", final=True) from None
        data = _decode(body, secrets)
        if cache_s > 0:
            cache_put(full, data)
        return data
    raise AssertionError("unreachable")  # pragma: no cover
