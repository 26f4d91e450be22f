"""Where the machine is: location codes, the config file, opt-in IP geolocation."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from carbontrack._plugins import PluginHost, make_plugin_manager
from carbontrack.errors import InvalidOption
from carbontrack.hookspecs import hookimpl
from carbontrack.intensity._location import check_location, parse_location
from carbontrack.model import Location
from carbontrack.settings import make_settings
from carbontrack.testing.intensity import FakeGeolocation


def _locate(**options: object) -> Location | None:
    host = PluginHost(make_plugin_manager(autoload=False))
    found: Location | None = host.first("carbontrack_locate", settings=make_settings(**options))
    assert host.failures == ()
    return found


@pytest.mark.parametrize(
    ("code", "country", "region"),
    [
        ("DK", "DK", None),
        ("dk", "DK", None),
        ("DNK", "DK", None),
        ("Denmark", "DK", None),
        (" united kingdom ", "GB", None),
        ("DK-DK1", "DK", "DK-DK1"),
        ("US-CAL-CISO", "US", "US-CAL-CISO"),
        ("GB-RG10", "GB", "GB-RG10"),
        ("World", None, "World"),
    ],
)
def test_location_codes(code: str, country: str | None, region: str | None) -> None:
    found = parse_location(code)
    assert (found.country, found.region) == (country, region)


@pytest.mark.parametrize(
    ("code", "suggestion"),
    [
        ("Denmrk", "DK (Denmark)"),
        ("DNX", "DK (Denmark)"),
        ("Germnay", "DE (Germany)"),
        ("DK-DK3", "DK-DK1, DK-DK2"),
        ("XX-CISO", ""),
    ],
)
def test_unknown_codes_raise_value_error_with_close_matches(code: str, suggestion: str) -> None:
    with pytest.raises(ValueError, match="is not a known location") as info:
        parse_location(code)
    assert repr(code) in str(info.value)
    assert suggestion in str(info.value)
    assert "expected a country" in str(info.value)


def test_the_setting_answers() -> None:
    assert _locate(location="DE") == Location(country="DE", region=None, source="setting")


def test_the_environment_variable_is_named_as_the_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARBONTRACK_LOCATION", "FR")
    found = _locate()
    assert found is not None
    assert found.country == "FR"
    assert "CARBONTRACK_LOCATION" in found.source


def test_nothing_configured_means_unknown_not_a_default_country() -> None:
    assert _locate() is None


def test_the_config_file_answers_when_no_option_is_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text('location = "SE"\n', encoding="utf-8")
    monkeypatch.setenv("CARBONTRACK_CONFIG", str(config))
    found = _locate()
    assert found is not None
    assert found.country == "SE"
    assert str(config) in found.source
    assert _locate(location="NO") == Location(country="NO", region=None, source="setting")


def test_a_broken_config_file_is_reported_at_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text("location = \n", encoding="utf-8")
    monkeypatch.setenv("CARBONTRACK_CONFIG", str(config))
    with pytest.raises(InvalidOption, match=r"config.toml is not valid TOML"):
        check_location(make_settings())


def test_the_env_location_is_checked_like_the_option(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARBONTRACK_LOCATION", "Swden")
    with pytest.raises(InvalidOption, match=r"CARBONTRACK_LOCATION='Swden'.*SE \(Sweden\)"):
        check_location(make_settings())


def test_geolocation_is_off_by_default() -> None:
    with FakeGeolocation() as geo:
        assert _locate(plugin_options=geo.plugin_options()) is None
        assert geo.requests == []


def test_geolocation_when_opted_in() -> None:
    with FakeGeolocation("NO") as geo:
        found = _locate(geolocate=True, plugin_options=geo.plugin_options())
        assert geo.paths() == ["/json"]
    assert found is not None
    assert found.country == "NO"
    assert found.source.startswith("IP geolocation (127.0.0.1")


def test_geolocation_by_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("geolocate = true\n", encoding="utf-8")
    monkeypatch.setenv("CARBONTRACK_CONFIG", str(config))
    with FakeGeolocation("FI") as geo:
        found = _locate(plugin_options=geo.plugin_options())
    assert found is not None
    assert found.country == "FI"


def test_an_explicit_location_skips_geolocation() -> None:
    with FakeGeolocation("NO") as geo:
        found = _locate(location="DK", geolocate=True, plugin_options=geo.plugin_options())
        assert geo.requests == []
    assert found is not None
    assert found.country == "DK"


def test_geolocation_falls_back_to_the_second_service() -> None:
    with FakeGeolocation("NO") as geo:
        geo.fail("429")
        found = _locate(geolocate=True, plugin_options=geo.plugin_options())
        assert geo.paths() == ["/json", "/v1/ip/geo.json"]
    assert found is not None
    assert found.country == "NO"


@pytest.mark.parametrize("failure", ["401", "403", "429", "malformed", "timeout", "null"])
def test_geolocation_failure_leaves_the_location_unknown_with_a_warning(
    caplog: pytest.LogCaptureFixture, failure: str
) -> None:
    with FakeGeolocation(hang_s=0.5) as geo:
        geo.fail(failure, times=2)
        options = geo.plugin_options(timeout_s=0.2)
        with caplog.at_level(logging.WARNING):
            assert _locate(geolocate=True, plugin_options=options) is None
    assert "IP geolocation failed" in caplog.text
    assert "geolocate-ipinfo" in caplog.text
    assert "geolocate-geojs" in caplog.text


def test_geolocation_server_errors_are_retried(caplog: pytest.LogCaptureFixture) -> None:
    with FakeGeolocation("DK") as geo:
        geo.fail("500", times=3)  # ipinfo twice (one retry), geojs once, then geojs answers
        found = _locate(geolocate=True, plugin_options=geo.plugin_options())
        assert len(geo.requests) == 4
    assert found is not None
    assert found.country == "DK"


class _CloudLocator:
    """A third-party locate plugin (a cloud-metadata look-up, say)."""

    @hookimpl
    def carbontrack_locate(self, settings: object) -> Location:
        return Location(country="IE", region=None, source="cloud metadata")


def test_the_setting_beats_a_plugin_which_beats_the_config_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text('location = "SE"\n', encoding="utf-8")
    monkeypatch.setenv("CARBONTRACK_CONFIG", str(config))

    def locate(**options: object) -> Location | None:
        pm = make_plugin_manager(autoload=False, extra_plugins=[_CloudLocator()])
        found: Location | None = PluginHost(pm).first(
            "carbontrack_locate", settings=make_settings(**options)
        )
        return found

    assert locate(location="DE") == Location(country="DE", region=None, source="setting")
    found = locate()
    assert found is not None
    assert (found.country, found.source) == ("IE", "cloud metadata")
