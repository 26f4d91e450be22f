"""Live intensity providers against local fakes of their APIs, every error included."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import pytest

from carbontrack.intensity._live import (
    CarbonIntensityGB,
    ElectricityMaps,
    EnergiDataService,
    _LiveProvider,
)
from carbontrack.intensity._location import parse_location
from carbontrack.intensity._resolve import current_intensity
from carbontrack.model import Intensity
from carbontrack.settings import make_settings
from carbontrack.testing.intensity import (
    FakeCarbonIntensityGB,
    FakeElectricityMaps,
    FakeEnergiDataService,
    FakeIntensityServer,
)

HOUR = 3600.0
NOW = math.floor(1_760_000_000 / HOUR) * HOUR + 1500.0  # 25 minutes past an hour
KEY = "sekret-token-3141"


def _fixed() -> float:
    return NOW


def _hourly(ts: float) -> float:
    return 100.0 + 10.0 * ((ts // HOUR) % 24)


def _settings(server: FakeIntensityServer, **options: Any) -> Any:
    extra = options.pop("intensity_options", {})
    return make_settings(plugin_options=server.plugin_options(**extra), **options)


def _ask(
    provider: _LiveProvider,
    settings: Any,
    location: str,
    start: float = NOW,
    end: float = NOW,
) -> Intensity | None:
    return provider.carbontrack_carbon_intensity(
        location=parse_location(location), start=start, end=end, settings=settings
    )


@pytest.fixture
def em() -> Any:
    with FakeElectricityMaps(_hourly, key=KEY, now=_fixed, hang_s=0.6) as server:
        yield server


@pytest.fixture
def gb() -> Any:
    with FakeCarbonIntensityGB(_hourly, now=_fixed, hang_s=0.6) as server:
        yield server


@pytest.fixture
def eds() -> Any:
    with FakeEnergiDataService(_hourly, now=_fixed, hang_s=0.6) as server:
        yield server


def _em_settings(em: FakeElectricityMaps, **options: Any) -> Any:
    return _settings(em, api_keys={"electricitymaps": KEY}, **options)


# -- Electricity Maps ----------------------------------------------------------------------------


def test_electricitymaps_latest_sends_zone_and_auth_token(em: FakeElectricityMaps) -> None:
    found = _ask(ElectricityMaps(), _em_settings(em), "DE")
    assert found is not None
    assert found.g_per_kwh == _hourly(NOW)
    assert (found.zone, found.basis) == ("DE", "lifecycle")
    assert "Electricity Maps" in found.source
    (request,) = em.requests
    assert request.path == "/carbon-intensity/latest"
    assert request.query == {"zone": "DE"}
    assert request.headers["auth-token"] == KEY


def test_electricitymaps_uses_the_grid_zone_of_the_location(em: FakeElectricityMaps) -> None:
    _ask(ElectricityMaps(), _em_settings(em), "US-CAL-CISO")
    assert em.requests[0].query == {"zone": "US-CAL-CISO"}


def test_electricitymaps_history_gives_hourly_points_over_the_run(em: FakeElectricityMaps) -> None:
    start, end = NOW - 2 * HOUR, NOW
    found = _ask(ElectricityMaps(), _em_settings(em), "DE", start, end)
    assert found is not None
    assert [p.g_per_kwh for p in found.points] == [
        _hourly(start),
        _hourly(start + HOUR),
        _hourly(NOW),
    ]
    assert found.points[0].start_ts == math.floor(start / HOUR) * HOUR
    assert found.points[0].end_ts - found.points[0].start_ts == HOUR
    assert "history" in em.paths()[0]


def test_a_run_longer_than_the_history_says_how_much_it_covers(em: FakeElectricityMaps) -> None:
    found = _ask(ElectricityMaps(), _em_settings(em), "DE", NOW - 48 * HOUR, NOW)
    assert found is not None
    assert len(found.points) == 24
    assert "covers 49% of the run" in found.note


def test_electricitymaps_forecast_for_an_epoch_run(em: FakeElectricityMaps) -> None:
    found = _ask(ElectricityMaps(), _em_settings(em, epochs=10), "DE")
    assert found is not None
    assert len(found.forecast) == 24
    assert found.forecast[1].g_per_kwh == _hourly(math.floor(NOW / HOUR) * HOUR + HOUR)
    assert all(p.is_forecast for p in found.forecast)
    assert em.paths() == ["/carbon-intensity/latest", "/carbon-intensity/forecast"]


def test_a_predicted_window_is_answered_from_the_forecast() -> None:
    now = time.time()
    with FakeElectricityMaps(_hourly, key=KEY) as server:
        found = _ask(ElectricityMaps(), _em_settings(server), "DE", now, now + 3 * HOUR)
        paths = server.paths()
    assert found is not None
    assert paths == ["/carbon-intensity/latest", "/carbon-intensity/forecast"]
    inside = [p for p in found.forecast if p.start_ts < now + 3 * HOUR and p.end_ts > now]
    expected = sum(
        p.g_per_kwh * (min(p.end_ts, now + 3 * HOUR) - max(p.start_ts, now)) for p in inside
    ) / (3 * HOUR)
    assert found.g_per_kwh == pytest.approx(expected)
    assert "forecast mean over the predicted window" in found.source


def test_electricitymaps_without_a_forecast_keeps_the_latest_value(
    em: FakeElectricityMaps, caplog: pytest.LogCaptureFixture
) -> None:
    em.fail("401", path="/forecast")  # free tokens get latest and history only
    found = _ask(ElectricityMaps(), _em_settings(em, epochs=10), "DE")
    assert found is not None
    assert found.forecast == ()
    assert found.g_per_kwh == _hourly(NOW)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_electricitymaps_is_silent_without_a_key(em: FakeElectricityMaps) -> None:
    assert _ask(ElectricityMaps(), _settings(em), "DE") is None
    assert em.requests == []


def test_electricitymaps_key_from_the_environment(
    em: FakeElectricityMaps, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CARBONTRACK_ELECTRICITYMAPS_KEY", KEY)
    found = _ask(ElectricityMaps(), _settings(em), "DE")
    assert found is not None
    assert em.requests[0].headers["auth-token"] == KEY


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        ("401", "HTTP 401: Invalid auth-token"),
        ("403", "HTTP 403: Forbidden"),
        ("429", "HTTP 429: Too many requests (rate limited)"),
        ("malformed", "malformed JSON"),
        ("timeout", "no answer within 0.2 s (timeout)"),
        ("null", "no carbonIntensity for zone DE (null in the answer)"),
    ],
)
def test_electricitymaps_errors_fall_back_with_one_warning(
    em: FakeElectricityMaps, caplog: pytest.LogCaptureFixture, failure: str, reason: str
) -> None:
    em.fail(failure)
    settings = _em_settings(em, intensity_options={"urls": em.urls(), "timeout_s": 0.2})
    with caplog.at_level(logging.WARNING):
        assert _ask(ElectricityMaps(), settings, "DE") is None
    (record,) = caplog.records
    assert "Electricity Maps" in record.getMessage()
    assert reason in record.getMessage()
    assert KEY not in caplog.text


def test_electricitymaps_retries_once_on_a_server_error(em: FakeElectricityMaps) -> None:
    em.fail("500")
    found = _ask(ElectricityMaps(), _em_settings(em), "DE")
    assert found is not None
    assert len(em.requests) == 2


def test_electricitymaps_gives_up_after_two_server_errors(
    em: FakeElectricityMaps, caplog: pytest.LogCaptureFixture
) -> None:
    em.fail("500", times=2)
    assert _ask(ElectricityMaps(), _em_settings(em), "DE") is None
    assert "HTTP 500: Internal server error" in caplog.text
    assert len(em.requests) == 2


def test_electricitymaps_wrong_key_and_zone_outside_the_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with FakeElectricityMaps(key="another", zones=frozenset({"DK-DK1"}), now=_fixed) as server:
        assert _ask(ElectricityMaps(), _em_settings(server), "DE") is None
        assert "Invalid auth-token" in caplog.text
    with FakeElectricityMaps(key=KEY, zones=frozenset({"DK-DK1"}), now=_fixed) as server:
        assert _ask(ElectricityMaps(), _em_settings(server), "IT") is None
        assert "Request unauthorized for zoneKey=IT" in caplog.text
    assert KEY not in caplog.text


def test_electricitymaps_answers_are_cached(em: FakeElectricityMaps) -> None:
    first = _ask(ElectricityMaps(), _em_settings(em), "DE")
    second = _ask(ElectricityMaps(), _em_settings(em), "DE")
    assert first == second
    assert len(em.requests) == 1


def test_a_history_failure_at_the_end_keeps_the_start_value(
    em: FakeElectricityMaps, caplog: pytest.LogCaptureFixture
) -> None:
    provider = ElectricityMaps()
    at_start = _ask(provider, _em_settings(em), "DE")
    em.fail("500", times=2)
    at_end = _ask(provider, _em_settings(em), "DE", NOW, NOW + 600)
    assert at_start is not None
    assert at_end is not None
    assert at_end.g_per_kwh == at_start.g_per_kwh
    assert "no history" in at_end.note
    assert "value it gave at the start" in caplog.text


def test_an_explicit_intensity_beats_the_live_provider(em: FakeElectricityMaps) -> None:
    settings = _em_settings(em, intensity_g_per_kwh=123.0, location="DE")
    _, found = current_intensity(settings, autoload=False)
    assert (found.g_per_kwh, found.basis) == (123.0, "user")
    assert em.requests == []


def test_the_provider_answers_before_the_table_in_a_lookup(em: FakeElectricityMaps) -> None:
    settings = _em_settings(em, location="DE")
    _, found = current_intensity(settings, autoload=False)
    assert "Electricity Maps" in found.source
    assert found.g_per_kwh == _hourly(NOW)


def test_a_failing_provider_leaves_the_table_answer(
    em: FakeElectricityMaps, caplog: pytest.LogCaptureFixture
) -> None:
    em.fail("401")
    settings = _em_settings(em, location="DE")
    _, found = current_intensity(settings, autoload=False)
    assert "offline table" in found.source
    assert found.g_per_kwh == 344.14
    assert "Electricity Maps gave no carbon intensity (HTTP 401" in caplog.text


# -- GB Carbon Intensity API -----------------------------------------------------------------


def _gb_settings(gb: FakeCarbonIntensityGB, **options: Any) -> Any:
    return _settings(gb, intensity_options={"providers": ["carbonintensity-gb"]}, **options)


def test_gb_is_off_unless_switched_on(gb: FakeCarbonIntensityGB) -> None:
    assert _ask(CarbonIntensityGB(), _settings(gb), "GB") is None
    assert gb.requests == []


def test_gb_is_switched_on_by_carbontrackers_api_key_name(gb: FakeCarbonIntensityGB) -> None:
    settings = _settings(gb, api_keys={"carbonintensityGB": "unused"})
    assert _ask(CarbonIntensityGB(), settings, "GB") is not None


def test_gb_answers_only_for_great_britain(gb: FakeCarbonIntensityGB) -> None:
    assert _ask(CarbonIntensityGB(), _gb_settings(gb), "FR") is None
    assert gb.requests == []


def test_gb_national_current_half_hour(gb: FakeCarbonIntensityGB) -> None:
    found = _ask(CarbonIntensityGB(), _gb_settings(gb), "GB")
    assert found is not None
    assert found.g_per_kwh == round(_hourly(NOW))
    assert (found.zone, found.basis) == ("GB", "direct")
    assert "national" in found.source
    assert "(forecast)" in found.source
    assert gb.paths() == ["/intensity"]


def test_gb_national_history_uses_actuals_and_says_which_are_forecasts(
    gb: FakeCarbonIntensityGB,
) -> None:
    found = _ask(CarbonIntensityGB(), _gb_settings(gb), "GB", NOW - HOUR, NOW)
    assert found is not None
    assert len(found.points) == 3  # half-hours from 24 minutes past the previous hour to now
    assert all(p.end_ts - p.start_ts == 1800 for p in found.points)
    assert "1 of 3 half-hours are forecasts" in found.note
    # The report says which values were forecasts: the current half-hour has no actual yet.
    assert [p.is_forecast for p in found.points] == [False, False, True]
    (path,) = gb.paths()
    assert path.startswith("/intensity/")
    assert path.count("/") == 3


def test_gb_regional_by_postcode_reads_the_list_shape(gb: FakeCarbonIntensityGB) -> None:
    found = _ask(CarbonIntensityGB(), _gb_settings(gb), "GB-RG10")
    assert found is not None
    assert found.zone == "GB-RG10"
    assert "postcode RG10" in found.source
    assert gb.paths() == ["/regional/postcode/RG10"]


def test_gb_regional_range_reads_the_object_shape(gb: FakeCarbonIntensityGB) -> None:
    found = _ask(CarbonIntensityGB(), _gb_settings(gb), "GB-BS7", NOW - HOUR, NOW)
    assert found is not None
    assert len(found.points) == 3
    assert gb.paths()[0].endswith("/postcode/BS7")
    assert gb.paths()[0].startswith("/regional/intensity/")


def test_gb_forecast_48_hours(gb: FakeCarbonIntensityGB) -> None:
    found = _ask(CarbonIntensityGB(), _gb_settings(gb, epochs=5), "GB-RG10")
    assert found is not None
    assert len(found.forecast) == 96
    assert gb.paths()[1].endswith("/fw48h/postcode/RG10")


def test_gb_unknown_postcode_falls_back(
    gb: FakeCarbonIntensityGB, caplog: pytest.LogCaptureFixture
) -> None:
    assert _ask(CarbonIntensityGB(), _gb_settings(gb), "GB-ZZ9") is None
    assert "GB Carbon Intensity API" in caplog.text
    assert "HTTP 400: Please enter a valid postcode." in caplog.text


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        ("401", "HTTP 401: Unauthorized"),
        ("403", "HTTP 403: Forbidden"),
        ("429", "HTTP 429: Too many requests (rate limited)"),
        ("malformed", "malformed JSON"),
        ("timeout", "(timeout)"),
        ("null", "unexpected response"),
    ],
)
def test_gb_errors_fall_back_with_one_warning(
    gb: FakeCarbonIntensityGB, caplog: pytest.LogCaptureFixture, failure: str, reason: str
) -> None:
    gb.fail(failure)
    settings = _settings(
        gb, intensity_options={"providers": "carbonintensity-gb", "timeout_s": 0.2}
    )
    with caplog.at_level(logging.WARNING):
        assert _ask(CarbonIntensityGB(), settings, "GB") is None
    (record,) = caplog.records
    assert "GB Carbon Intensity API" in record.getMessage()
    assert reason in record.getMessage()


def test_gb_server_error_is_retried_once_then_falls_back(
    gb: FakeCarbonIntensityGB, caplog: pytest.LogCaptureFixture
) -> None:
    gb.fail("500")
    assert _ask(CarbonIntensityGB(), _gb_settings(gb), "GB") is not None
    gb.fail("500", times=2)
    assert _ask(CarbonIntensityGB(), _gb_settings(gb), "GB-EH1") is None
    assert "HTTP 500: Internal Server Error" in caplog.text


# -- Energi Data Service ---------------------------------------------------------------------


def _eds_settings(eds: FakeEnergiDataService, **options: Any) -> Any:
    return _settings(eds, intensity_options={"providers": ["energidataservice"]}, **options)


def test_eds_latest_averages_dk1_and_dk2() -> None:
    with FakeEnergiDataService(_hourly, now=_fixed, area_offsets={"DK1": 10, "DK2": -20}) as eds:
        found = _ask(EnergiDataService(), _eds_settings(eds), "DK")
        assert found is not None
        (request,) = eds.requests
    latest = math.floor(NOW / 300) * 300
    assert found.g_per_kwh == pytest.approx(_hourly(latest) - 5)
    assert request.path == "/dataset/CO2Emis"
    assert request.query["filter"] == '{"PriceArea":["DK1","DK2"]}'
    assert request.query["sort"] == "Minutes5UTC DESC"
    assert found.zone == "DK"


def test_eds_times_are_sent_in_danish_local_time(eds: FakeEnergiDataService) -> None:
    _ask(EnergiDataService(), _eds_settings(eds), "DK")
    start = eds.requests[0].query["start"]
    # NOW is 2025-10-09 08:25 UTC, 10:25 in Copenhagen (summer time): one hour before NOW.
    assert start == "2025-10-09T09:25"


def test_eds_price_area_zone(eds: FakeEnergiDataService) -> None:
    found = _ask(EnergiDataService(), _eds_settings(eds), "DK-DK1")
    assert found is not None
    assert found.zone == "DK-DK1"
    assert "DK1" in found.source
    assert "DK2" not in found.source


def test_eds_is_switched_on_by_carbontrackers_name(eds: FakeEnergiDataService) -> None:
    settings = _settings(eds, api_keys={"energidataservice": "unused"})
    assert _ask(EnergiDataService(), settings, "DK") is not None
    assert _ask(EnergiDataService(), _settings(eds), "DK") is None


def test_eds_history_has_five_minute_points(eds: FakeEnergiDataService) -> None:
    found = _ask(EnergiDataService(), _eds_settings(eds), "DK", NOW - 1800, NOW)
    assert found is not None
    assert len(found.points) == 6  # the 5-minute slots from 07:55 to 08:20 UTC
    assert {p.end_ts - p.start_ts for p in found.points} == {300.0}


def test_eds_asks_for_every_record_of_a_long_run(eds: FakeEnergiDataService) -> None:
    found = _ask(EnergiDataService(), _eds_settings(eds), "DK", NOW - 10 * HOUR, NOW)
    assert found is not None
    assert len(found.points) == 10 * 12
    assert not any(p.is_forecast for p in found.points)
    assert found.note == ""
    assert int(eds.requests[0].query["limit"]) >= 2 * 11 * 12


def test_eds_forecast_uses_co2emisprog(eds: FakeEnergiDataService) -> None:
    eds.rate_limit_s = 0
    found = _ask(EnergiDataService(), _eds_settings(eds, epochs=3), "DK")
    assert found is not None
    assert [r.path for r in eds.requests] == ["/dataset/CO2Emis", "/dataset/CO2EmisProg"]
    assert len(found.forecast) >= 9 * 12
    assert all(p.is_forecast for p in found.forecast)
    assert found.forecast[-1].start_ts > NOW + 8 * HOUR


def test_eds_never_asks_a_dataset_twice_within_a_minute(eds: FakeEnergiDataService) -> None:
    provider = EnergiDataService()
    at_start = _ask(provider, _eds_settings(eds), "DK")
    at_end = _ask(provider, _eds_settings(eds), "DK", NOW, NOW + 30)
    assert at_start is not None
    assert at_end is not None
    assert len(eds.requests) == 1
    assert at_end.g_per_kwh == at_start.g_per_kwh


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        ("401", "HTTP 401: Unauthorized"),
        ("403", "HTTP 403: Forbidden"),
        ("429", "HTTP 429: Too Many Requests (rate limited)"),
        ("malformed", "malformed JSON"),
        ("timeout", "(timeout)"),
        ("null", "no CO2Emis records"),
    ],
)
def test_eds_errors_fall_back_with_one_warning(
    eds: FakeEnergiDataService, caplog: pytest.LogCaptureFixture, failure: str, reason: str
) -> None:
    eds.fail(failure)
    settings = _settings(
        eds, intensity_options={"providers": ["energidataservice"], "timeout_s": 0.2}
    )
    with caplog.at_level(logging.WARNING):
        assert _ask(EnergiDataService(), settings, "DK") is None
    (record,) = caplog.records
    assert "Energi Data Service" in record.getMessage()
    assert reason in record.getMessage()


def test_eds_server_error_is_retried_once(eds: FakeEnergiDataService) -> None:
    eds.fail("500")
    assert _ask(EnergiDataService(), _eds_settings(eds), "DK") is not None
    assert len(eds.requests) == 2


def test_eds_real_rate_limit_answer_falls_back(
    eds: FakeEnergiDataService,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    _ask(EnergiDataService(), _eds_settings(eds), "DK")
    # Another process with its own cache asks within the minute: the API itself says 429.
    monkeypatch.setenv("CARBONTRACK_CACHE_DIR", str(tmp_path / "another-cache"))
    assert _ask(EnergiDataService(), _eds_settings(eds), "DK") is None
    assert "Energi Data Service gave no carbon intensity (HTTP 429" in caplog.text


# -- one run: one warning, bounded waiting ---------------------------------------------------


def test_an_unreachable_provider_is_asked_once_per_run(
    em: FakeElectricityMaps, caplog: pytest.LogCaptureFixture
) -> None:
    # A timeout at the start of a run must not cost another timeout at its end (or at each
    # prediction): the provider stays silent for the rest of the run.
    em.fail("timeout", times=5)
    settings = _em_settings(em, intensity_options={"urls": em.urls(), "timeout_s": 0.2})
    provider = ElectricityMaps()
    began = time.monotonic()
    with caplog.at_level(logging.INFO):
        assert _ask(provider, settings, "DE") is None
        assert _ask(provider, settings, "DE", NOW, NOW + 600) is None
    assert time.monotonic() - began < 0.55
    assert len(em.requests) == 1
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "(timeout)" in warnings[0].getMessage()


def test_a_rejected_key_is_not_sent_again_in_the_run(em: FakeElectricityMaps) -> None:
    em.fail("401")
    provider = ElectricityMaps()
    assert _ask(provider, _em_settings(em), "DE") is None
    assert _ask(provider, _em_settings(em), "DE", NOW, NOW + 600) is None
    assert len(em.requests) == 1


def test_different_failures_in_one_run_give_one_warning(
    em: FakeElectricityMaps, caplog: pytest.LogCaptureFixture
) -> None:
    em.fail("500", times=2)
    provider = ElectricityMaps()
    with caplog.at_level(logging.INFO):
        assert _ask(provider, _em_settings(em), "DE") is None
        em.fail("malformed")
        assert _ask(provider, _em_settings(em), "DE", NOW, NOW + 600) is None
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "HTTP 500" in warnings[0].getMessage()
    # The later reason is still told, quietly.
    assert any("malformed JSON" in r.getMessage() for r in caplog.records)
    assert len(em.requests) == 3


def test_a_failed_forecast_for_a_prediction_keeps_the_start_value_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = time.time()
    with FakeElectricityMaps(_hourly, key=KEY) as server:
        provider = ElectricityMaps()
        settings = _em_settings(server, intensity_options={"urls": server.urls(), "cache": False})
        at_start = _ask(provider, settings, "DE", now, now)
        server.fail("500", times=2)
        predicted = _ask(provider, settings, "DE", now + 60, now + 3 * HOUR)
    assert at_start is not None
    assert predicted is not None
    assert predicted.g_per_kwh == at_start.g_per_kwh
    assert "predicted" in predicted.note
    assert "history" not in predicted.note
    assert len(server.requests) == 3  # no cache: the latest value was asked for again


def test_the_cache_can_be_switched_off(em: FakeElectricityMaps) -> None:
    settings = _em_settings(em, intensity_options={"urls": em.urls(), "cache": False})
    _ask(ElectricityMaps(), settings, "DE")
    _ask(ElectricityMaps(), settings, "DE")
    assert len(em.requests) == 2


@pytest.mark.parametrize("month", [1, 7])  # winter (CET) and summer (CEST)
def test_eds_window_without_a_time_zone_database_is_asked_wider_never_narrower(
    monkeypatch: pytest.MonkeyPatch, month: int
) -> None:
    import datetime as dt
    import zoneinfo

    from carbontrack.intensity._live import _danish_time

    start = dt.datetime(2025, month, 9, 8, 25, tzinfo=dt.UTC).timestamp()
    end = start + HOUR
    exact = (_danish_time(start), _danish_time(end, end=True))

    def missing(key: str) -> zoneinfo.ZoneInfo:
        raise zoneinfo.ZoneInfoNotFoundError(key)

    monkeypatch.setattr(zoneinfo, "ZoneInfo", missing)
    wide = (_danish_time(start), _danish_time(end, end=True))
    # The strings are Danish local times of the same format: they compare as times.
    assert wide[0] <= exact[0]
    assert wide[1] >= exact[1]


def test_api_keys_never_show_in_settings_repr_or_option_errors() -> None:
    from carbontrack.errors import InvalidOption
    from carbontrack.settings import make_settings as settings_of

    settings = settings_of(api_keys={"electricitymaps": KEY})
    assert KEY not in repr(settings)
    assert "electricitymaps" in repr(settings)
    # A key given as a bare string (a common slip) is not echoed back either.
    with pytest.raises((InvalidOption, TypeError)) as info:
        settings_of(api_keys=KEY)
    assert KEY not in str(info.value)
    assert "api_keys" in str(info.value)


def test_one_question_waits_at_most_the_timeout_in_all(em: FakeElectricityMaps) -> None:
    # Latest and forecast each answer slowly but within the timeout: together they must not
    # hold the run for longer than one timeout (the forecast is dropped, the latest kept).
    em.hang_s = 0.3
    em.fail("timeout", times=3)
    settings = _em_settings(em, epochs=10, intensity_options={"urls": em.urls(), "timeout_s": 0.4})
    began = time.monotonic()
    found = _ask(ElectricityMaps(), settings, "DE")
    waited = time.monotonic() - began
    assert found is not None
    assert found.g_per_kwh == _hourly(NOW)
    assert found.forecast == ()
    assert waited < 0.55


def test_electricitymaps_key_from_the_config_file_and_its_precedence(
    em: FakeElectricityMaps, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[api_keys]\nelectricitymaps = "{KEY}"\n', encoding="utf-8")
    monkeypatch.setenv("CARBONTRACK_CONFIG", str(config))
    assert _ask(ElectricityMaps(), _settings(em), "DE") is not None
    assert em.requests[-1].headers["auth-token"] == KEY
    # The environment beats the file, and the option beats both.
    monkeypatch.setenv("CARBONTRACK_ELECTRICITYMAPS_KEY", "from-env")
    _ask(ElectricityMaps(), _settings(em, intensity_options={"cache": False}), "DE")
    assert em.requests[-1].headers["auth-token"] == "from-env"
    settings = _settings(
        em, api_keys={"electricitymaps": "from-option"}, intensity_options={"cache": False}
    )
    _ask(ElectricityMaps(), settings, "DE")
    assert em.requests[-1].headers["auth-token"] == "from-option"


def test_keyless_providers_switched_on_by_environment_or_config_file(
    gb: FakeCarbonIntensityGB, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CARBONTRACK_INTENSITY_PROVIDERS", "energidataservice, carbonintensity-gb")
    assert _ask(CarbonIntensityGB(), _settings(gb), "GB") is not None
    monkeypatch.delenv("CARBONTRACK_INTENSITY_PROVIDERS")
    config = tmp_path / "config.toml"
    config.write_text('providers = ["carbonintensity-gb"]\n', encoding="utf-8")
    monkeypatch.setenv("CARBONTRACK_CONFIG", str(config))
    assert _ask(CarbonIntensityGB(), _settings(gb), "GB") is not None
    config.write_text("providers = []\n", encoding="utf-8")
    assert _ask(CarbonIntensityGB(), _settings(gb), "GB") is None


def test_the_cache_does_not_grow_without_bound(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import os

    from carbontrack.intensity import _http

    monkeypatch.setenv("CARBONTRACK_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(_http, "_PRUNED", set())
    stale = tmp_path / ("0" * 32 + ".json")
    stale.write_text('{"key": "old", "at": 0, "data": 1}', encoding="utf-8")
    os.utime(stale, (time.time() - 3 * 86400, time.time() - 3 * 86400))
    other = tmp_path / "notes.txt"  # not the cache's: left alone
    other.write_text("mine", encoding="utf-8")
    os.utime(other, (0, 0))
    _http.cache_put("fresh", {"v": 1})
    assert not stale.exists()
    assert other.exists()
    assert _http.cache_get("fresh", 60) == {"v": 1}


class _EchoingElectricityMaps(FakeElectricityMaps):
    """A server that quotes the token back in its error (some proxies do)."""

    def answer(self, path: str, query: Any, headers: Any, *, null: bool) -> tuple[int, Any]:
        return 401, {"error": f"Invalid auth-token {headers.get('auth-token')}"}


def test_a_key_quoted_back_by_the_server_is_redacted(caplog: pytest.LogCaptureFixture) -> None:
    with _EchoingElectricityMaps(key=KEY, now=_fixed) as server:
        settings = _em_settings(server, location="DE")
        _, found = current_intensity(settings, autoload=False)
    assert "Invalid auth-token ***" in caplog.text
    assert "Invalid auth-token ***" in found.note
    assert KEY not in caplog.text
    assert KEY not in found.note


def test_a_connection_dropped_mid_answer_is_retried_then_falls_back(
    em: FakeElectricityMaps, caplog: pytest.LogCaptureFixture
) -> None:
    em.fail("dropped")
    assert _ask(ElectricityMaps(), _em_settings(em), "DE") is not None
    em.fail("dropped", times=2)
    settings = _em_settings(em, intensity_options={"urls": em.urls(), "cache": False})
    with caplog.at_level(logging.WARNING):
        assert _ask(ElectricityMaps(), settings, "DE") is None
    (record,) = caplog.records  # the provider's warning, not a plugin failure with a traceback
    assert "Electricity Maps gave no carbon intensity (connection failed (IncompleteRead))" in (
        record.getMessage()
    )
