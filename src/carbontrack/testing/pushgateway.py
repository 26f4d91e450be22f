"""A local HTTP server that answers like the Prometheus Pushgateway's push API.

Behaviour follows the Pushgateway README ("API" section, prometheus/pushgateway): pushes go to
``/metrics/job/<job>{/<label>/<value>}``, the job and the label pairs forming the *grouping
key*; ``PUT`` replaces every metric of that group, ``POST`` only the metrics with the names
pushed, ``DELETE`` removes the group (answering 202). A push answers 200, or 400 with the reason
in the body when the body is not the text exposition format or a pushed metric carries a
grouping label of its own (the official client libraries refuse to send those, see
client_golang's ``push.go``: "pushed metric ... already contains grouping label"). ``GET
/metrics`` serves every group's metrics with the grouping labels added, plus
``push_time_seconds`` per group, as the real one does.

``fail("500", times=1)`` or ``fail("hang")`` (answer after ``hang_s``) reproduce an unhealthy
gateway. Figures pushed here are whatever the client pushed; nothing is simulated.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import attrs

__all__ = ["FakePushgateway", "Push"]


@attrs.frozen
class Push:
    """One push the fake received: method, grouping key and the raw body."""

    method: str
    grouping: tuple[tuple[str, str], ...]
    body: str
    status: int
    at: float


def _grouping(path: str) -> tuple[tuple[str, str], ...] | str:
    """The grouping key of a push path, or a reason why the path is not one."""
    prefix = "/metrics/job/"
    if not path.startswith(prefix):
        return f"path {path!r} is not /metrics/job/<job>..."
    parts = [urllib.parse.unquote(p) for p in path[len(prefix) :].split("/")]
    if not parts[0]:
        return "job name is empty"
    if len(parts) % 2 != 1:
        return "label name without a value in the grouping key"
    pairs = [("job", parts[0])]
    pairs += [(parts[i], parts[i + 1]) for i in range(1, len(parts), 2)]
    return tuple(pairs)


class FakePushgateway:
    """A Pushgateway fake on ``127.0.0.1`` (a free port): ``with FakePushgateway() as gw:``."""

    def __init__(self, *, hang_s: float = 3.0) -> None:
        self.hang_s = hang_s
        self.pushes: list[Push] = []
        # grouping key -> metric family name -> the family's exposition lines
        self.groups: dict[tuple[tuple[str, str], ...], dict[str, list[str]]] = {}
        self._failures: list[str] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL, ``http://127.0.0.1:<port>``."""
        if self._server is None:
            raise RuntimeError("the fake is not running: use `with FakePushgateway() as gw:`")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def fail(self, kind: str, times: int = 1) -> None:
        """Answer the next ``times`` pushes with ``"500"`` or after ``hang_s`` (``"hang"``)."""
        if kind not in ("500", "hang"):
            raise ValueError(f"fail({kind!r}): expected '500' or 'hang'")
        with self._lock:
            self._failures.extend([kind] * times)

    def values(self, name: str, **grouping: str) -> dict[tuple[tuple[str, str], ...], float]:
        """Samples named ``name`` in the groups whose key includes ``grouping``, by labels."""
        from prometheus_client.parser import text_string_to_metric_families

        out: dict[tuple[tuple[str, str], ...], float] = {}
        with self._lock:
            groups = {k: dict(v) for k, v in self.groups.items()}
        for key, families in groups.items():
            if not set(grouping.items()) <= set(key):
                continue
            text = "".join(line for lines in families.values() for line in lines)
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if sample.name == name:
                        out[tuple(sorted(sample.labels.items()))] = sample.value
        return out

    # -- server ------------------------------------------------------------------------------

    def _handle_push(self, method: str, path: str, body: str) -> tuple[int, str]:
        grouping = _grouping(path)
        if isinstance(grouping, str):
            return 400, grouping
        failure = None
        with self._lock:
            if self._failures:
                failure = self._failures.pop(0)
        if failure == "hang":
            time.sleep(self.hang_s)
        elif failure == "500":
            return 500, "injected failure"
        if method == "DELETE":
            with self._lock:
                self.groups.pop(grouping, None)
            return 202, ""
        families = self._parse(body, dict(grouping))
        if isinstance(families, str):
            return 400, families
        with self._lock:
            if method == "PUT":
                self.groups[grouping] = families
            else:
                self.groups.setdefault(grouping, {}).update(families)
        return 200, ""

    @staticmethod
    def _parse(body: str, grouping: dict[str, str]) -> dict[str, list[str]] | str:
        from prometheus_client.parser import text_string_to_metric_families

        families: dict[str, list[str]] = {}
        try:
            parsed = list(text_string_to_metric_families(body))
        except Exception as exc:  # the real one answers 400 with the parser's message
            return f"text format parsing error: {exc}"
        for family in parsed:
            lines = [f"# TYPE {family.name} {family.type}\n"]
            for s in family.samples:
                taken = set(s.labels) & set(grouping)
                if taken:
                    return (
                        f"pushed metric {s.name} already contains grouping label {sorted(taken)[0]}"
                    )
                labels = {**s.labels, **grouping}
                text = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
                lines.append(f"{s.name}{{{text}}} {s.value!r}\n")
            families[family.name] = lines
        return families

    def _metrics_text(self) -> str:
        with self._lock:
            groups = {k: dict(v) for k, v in self.groups.items()}
            times = {p.grouping: p.at for p in self.pushes if p.status == 200}
        lines = []
        for key, families in groups.items():
            for family in families.values():
                lines.extend(family)
            labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(key))
            lines.append(f"push_time_seconds{{{labels}}} {times.get(key, 0.0)!r}\n")
        return "".join(lines)

    def start(self) -> FakePushgateway:
        """Start serving (``with`` does it for you)."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, text: str) -> None:
                data = text.encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _push(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode("utf-8", errors="replace")
                path = urllib.parse.urlsplit(self.path).path
                status, text = fake._handle_push(self.command, path, body)
                grouping = _grouping(path)
                with fake._lock:
                    fake.pushes.append(
                        Push(
                            method=self.command,
                            grouping=grouping if isinstance(grouping, tuple) else (),
                            body=body,
                            status=status,
                            at=time.time(),
                        )
                    )
                self._answer(status, text)

            do_PUT = do_POST = do_DELETE = _push

            def do_GET(self) -> None:
                if urllib.parse.urlsplit(self.path).path != "/metrics":
                    self._answer(404, "not found")
                    return
                self._answer(200, fake._metrics_text())

            def log_message(self, *_args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fake-pushgateway", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakePushgateway:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
