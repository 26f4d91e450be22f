"""Hostile intensity servers (issue 21): slow drip, huge bodies, cross-host redirects, NaN and
negative values, deep JSON, keys echoed back. Each reproduces a break of the old code."""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import tracemalloc
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from carbontrack import track
from carbontrack.intensity import _http
from carbontrack.intensity._http import ProviderError, get_json
from carbontrack.intensity._live import CarbonIntensityGB, ElectricityMaps, EnergiDataService
from carbontrack.intensity._location import parse_location
from carbontrack.model import Intensity
from carbontrack.settings import make_settings
from carbontrack.testing import FakeDevice, FakeHardware
from carbontrack.testing.intensity import (
    FakeCarbonIntensityGB,
    FakeElectricityMaps,
    FakeEnergiDataService,
)

KEY = "Sekret-Token-3141"
HOUR = 3600.0
NOW = math.floor(1_760_000_000 / HOUR) * HOUR + 1500.0


def _fixed() -> float:
    return NOW


def _hourly(ts: float) -> float:
    return 100.0 + 10.0 * ((ts // HOUR) % 24)


def _in_thread(call: Callable[[], Any], limit_s: float) -> tuple[Any, float]:
    """Run ``call`` in a thread; fail the test if it has not returned after ``limit_s`` (so
    that the old, unbounded code fails in seconds instead of hanging the suite)."""
    box: list[Any] = []
    started = time.monotonic()

    def work() -> None:
        try:
            box.append(call())
        except BaseException as exc:
            box.append(exc)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(limit_s)
    elapsed = time.monotonic() - started
    assert not worker.is_alive(), f"still waiting after {elapsed:.1f} s"
    return box[0], elapsed


def _ask(provider: Any, settings: Any, location: str, start: float = NOW, end: float = NOW) -> Any:
    return provider.carbontrack_carbon_intensity(
        location=parse_location(location), start=start, end=end, settings=settings
    )


def _em_settings(server: FakeElectricityMaps, **intensity: Any) -> Any:
    return make_settings(
        plugin_options=server.plugin_options(**intensity), api_keys={"electricitymaps": KEY}
    )


# -- a total deadline per request ------------------------------------------------------------


def test_a_server_dripping_one_byte_per_half_second_is_cut_at_the_timeout() -> None:
    # Old code: the timeout bounded each socket read; every read got a byte in time, so the
    # request took (length of the answer) x 0.5 s: about 75 s for a short answer.
    with FakeElectricityMaps(key=KEY, drip_s=0.5) as server:
        server.fail("drip", times=10)
        result, elapsed = _in_thread(
            lambda: get_json(
                server.url + "/carbon-intensity/latest",
                params={"zone": "DE"},
                headers={"auth-token": KEY},
                timeout=1.0,
            ),
            limit_s=10,
        )
    assert isinstance(result, ProviderError)
    assert "timeout" in str(result)
    assert result.final  # not asked again in the same run
    assert elapsed < 4.0  # 1 s budget; generous for a loaded machine


def test_a_dripping_api_does_not_hold_up_a_two_epoch_run(caplog: pytest.LogCaptureFixture) -> None:
    # Issue 21's reproduction: timeout_s=2, a 2-epoch job of 0.4 s took 150 s (75 s at entry,
    # ~75 s for the prediction at the first epoch's end). The bound asked for is 8 s.
    hw = FakeHardware([FakeDevice("package-0", kind="cpu", watts=20.0)])
    with FakeElectricityMaps(key=KEY, drip_s=0.5) as server:
        server.fail("drip", times=100)

        def job() -> Any:
            with track(
                plugins=[hw],
                epochs=2,
                location="DE",
                api_keys={"electricitymaps": KEY},
                plugin_options=server.plugin_options(timeout_s=2.0),
                verbose=0,
                write_log=False,
                interval_s=0.05,
            ) as run:
                for _ in range(2):
                    with run.epoch():
                        time.sleep(0.2)
            return run.report

        report, elapsed = _in_thread(job, limit_s=30)
    assert not isinstance(report, BaseException), report
    assert elapsed < 8.0, f"the run took {elapsed:.1f} s"
    # It fell back to the table, saying why.
    assert "Electricity Maps" in caplog.text
    assert "timeout" in caplog.text
    assert not report.intensity.is_fallback or report.intensity.zone


# -- size cap --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["huge", "huge-unannounced"])
def test_a_huge_answer_is_not_read_whole(kind: str) -> None:
    # Old code: response.read() took the whole body (1 GB: 2 GB peak memory, +4.5 s at entry).
    size = 256 * 2**20
    with FakeElectricityMaps(key=KEY, huge_bytes=size) as server:
        server.fail(kind, times=2)
        tracemalloc.start()
        try:
            result, _ = _in_thread(
                lambda: get_json(server.url + "/carbon-intensity/latest", timeout=20.0),
                limit_s=40,
            )
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        sent = server.bytes_sent
    assert isinstance(result, ProviderError)
    assert "too large" in str(result)
    assert peak < 2 * _http.MAX_RESPONSE_BYTES + 16 * 2**20
    assert sent < size


# -- redirects -------------------------------------------------------------------------------


def test_a_redirect_to_another_host_does_not_carry_the_key() -> None:
    # Old code: urllib followed the 302 with every header, the auth-token included.
    with (
        FakeElectricityMaps(_hourly, key="another-key", now=_fixed) as elsewhere,
        FakeElectricityMaps(_hourly, key=KEY, now=_fixed) as server,
    ):
        server.redirect_to = elsewhere.url.replace("127.0.0.1", "localhost")
        server.fail("redirect")
        found = _ask(ElectricityMaps(), _em_settings(server), "DE")
        [received] = elsewhere.requests
    assert received.path == "/carbon-intensity/latest"
    assert "auth-token" not in received.headers
    assert KEY.lower() not in json.dumps(dict(received.headers)).lower()
    assert found is None  # the other host refused (401): the next source answers


def test_a_redirect_on_the_same_host_keeps_the_key() -> None:
    with FakeElectricityMaps(_hourly, key=KEY, now=_fixed) as server:
        server.redirect_to = server.url
        server.fail("redirect")
        found = _ask(ElectricityMaps(), _em_settings(server), "DE")
        assert [r.headers.get("auth-token") for r in server.requests] == [KEY, KEY]
    assert found is not None
    assert found.g_per_kwh == _hourly(NOW)


# -- values that are not intensities ---------------------------------------------------------


@pytest.mark.parametrize("kind", ["nan", "negative"])
def test_bad_points_in_a_history_are_dropped_with_a_warning(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Old code: NaN points gave co2eq_g=NaN; -1e9 gave negative CO2.
    with FakeElectricityMaps(_hourly, key=KEY, now=_fixed) as server:
        server.fail(kind, path="/history")
        found = _ask(ElectricityMaps(), _em_settings(server), "DE", NOW - 4 * HOUR, NOW)
    assert found is not None
    assert math.isfinite(found.g_per_kwh)
    assert found.g_per_kwh > 0
    assert found.points
    assert all(0 <= p.g_per_kwh < 1000 for p in found.points)
    assert "Electricity Maps sent" in caplog.text
    assert "ignored" in caplog.text
    # The report says it too (the note reaches report.warnings and the summary).
    assert "Electricity Maps: " in found.note
    assert "unusable value(s) in its history ignored" in found.note


@pytest.mark.parametrize("kind", ["nan", "negative"])
def test_a_bad_latest_value_falls_back_with_a_warning(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    with FakeElectricityMaps(_hourly, key=KEY, now=_fixed) as server:
        server.fail(kind, path="/latest")
        found = _ask(ElectricityMaps(), _em_settings(server), "DE")
    assert found is None
    assert "not a number from 0" in caplog.text


@pytest.mark.parametrize("kind", ["nan", "negative"])
def test_bad_points_from_gb_and_denmark_are_dropped(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    found: list[Intensity | None] = []
    with FakeCarbonIntensityGB(_hourly, now=_fixed) as gb:
        gb.fail(kind)
        settings = make_settings(plugin_options=gb.plugin_options(providers=["carbonintensity-gb"]))
        found.append(_ask(CarbonIntensityGB(), settings, "GB", NOW - 3 * HOUR, NOW))
    with FakeEnergiDataService(_hourly, now=_fixed, rate_limit_s=0) as eds:
        eds.fail(kind)
        settings = make_settings(
            plugin_options=eds.plugin_options(providers=["energidataservice"], cache=False)
        )
        found.append(_ask(EnergiDataService(), settings, "DK", NOW - HOUR, NOW))
    for answer in found:
        assert answer is not None
        assert math.isfinite(answer.g_per_kwh)
        assert all(0 <= p.g_per_kwh < 1000 for p in answer.points)
    assert "GB Carbon Intensity API sent" in caplog.text
    assert "Energi Data Service sent" in caplog.text


def test_a_run_with_nan_intensity_points_has_a_finite_footprint(tmp_path: Path) -> None:
    hw = FakeHardware([FakeDevice("package-0", kind="cpu", watts=20.0)])
    with FakeElectricityMaps(_hourly, key=KEY) as server:
        server.fail("nan", times=20)
        with track(
            plugins=[hw],
            location="DE",
            api_keys={"electricitymaps": KEY},
            plugin_options=server.plugin_options(cache=False),
            verbose=0,
            log_dir=tmp_path,
            interval_s=0.02,
        ) as run:
            time.sleep(0.1)
    assert math.isfinite(run.report.co2eq_g)
    assert run.report.co2eq_g >= 0


def test_deeply_nested_json_is_a_malformed_answer_not_a_crash() -> None:
    with FakeElectricityMaps(key=KEY) as server:
        server.fail("deep")
        with pytest.raises(ProviderError, match="malformed JSON"):
            get_json(server.url + "/carbon-intensity/latest", timeout=5.0)


# -- keys echoed back ------------------------------------------------------------------------


class _EchoingMaps(FakeElectricityMaps):
    """Electricity Maps that echoes the key it received, upper-cased, in its answers (some
    APIs put the request in their error messages)."""

    def answer(
        self, path: str, query: Mapping[str, str], headers: Mapping[str, str], *, null: bool
    ) -> Any:
        status, body = super().answer(path, query, headers, null=null)
        echo = headers.get("auth-token", "").upper()
        if status == 200 and isinstance(body, dict):
            body = {**body, "datetime": f"{body.get('datetime')} token={echo}"}
            body["requested"] = {"token": echo, echo: "x"}
        elif isinstance(body, dict):
            body = {"error": f"Invalid auth-token {echo}"}
        return status, body


def test_a_key_echoed_in_any_case_is_written_nowhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Old code: keys were redacted case-sensitively and only from error messages; an answer
    # echoing the key reached the cache, and through the source text, the report and logs.
    cache = tmp_path / "cache"
    monkeypatch.setenv("CARBONTRACK_CACHE_DIR", str(cache))
    hw = FakeHardware([FakeDevice("package-0", kind="cpu", watts=20.0)])
    with _EchoingMaps(_hourly, key=KEY) as server:
        with track(
            plugins=[hw],
            location="DE",
            api_keys={"electricitymaps": KEY},
            plugin_options=server.plugin_options(),
            verbose=0,
            log_dir=tmp_path / "logs",
            interval_s=0.02,
        ) as run:
            time.sleep(0.05)
        assert server.requests  # it was asked
    assert "Electricity Maps" in run.report.intensity.source
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.parent == cache for p in written)
    assert any(p.suffix == ".csv" for p in written)
    texts = [p.read_text(errors="replace").lower() for p in written]
    texts.append(json.dumps(run.report.to_dict()).lower())
    assert all(KEY.lower() not in text for text in texts)


def test_a_key_echoed_in_an_error_is_redacted_in_any_case() -> None:
    with (
        _EchoingMaps(_hourly, key="the-right-key") as server,
        pytest.raises(ProviderError) as caught,
    ):
        get_json(
            server.url + "/carbon-intensity/latest",
            params={"zone": "DE"},
            headers={"auth-token": KEY},
            secrets=(KEY,),
            timeout=5.0,
        )
    message = str(caught.value)
    assert "HTTP 401" in message
    assert KEY.lower() not in message.lower()
    assert "***" in message


def test_the_logger_never_sees_the_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with _EchoingMaps(_hourly, key="the-right-key") as server:
        assert _ask(ElectricityMaps(), _em_settings(server), "DE") is None
    assert "HTTP 401" in caplog.text
    assert KEY.lower() not in caplog.text.lower()


def test_a_live_answer_slower_than_the_host_budget_but_within_timeout_s_is_used() -> None:
    # The plugin host's intensity budget (3 s) must not cut off what the user allowed: with
    # timeout_s=6 an answer after 3.6 s is the run's intensity, not a recorded hang and the table.
    hw = FakeHardware([FakeDevice("package-0", kind="cpu", watts=20.0)])
    with FakeElectricityMaps(key=KEY, hang_s=3.6) as server:
        server.fail("timeout", times=1)
        with track(
            plugins=[hw],
            location="DE",
            api_keys={"electricitymaps": KEY},
            plugin_options=server.plugin_options(timeout_s=6.0),
            verbose=0,
            write_log=False,
            interval_s=0.05,
        ) as run:
            pass
    report = run.report
    assert not report.intensity.is_fallback, report.intensity
    assert "Electricity Maps" in report.intensity.source
    assert not [f for f in report.failures if "intensity" in f.hook], report.failures
