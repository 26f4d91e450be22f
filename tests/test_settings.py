"""Every option is validated before anything starts, with a message that names value and fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from carbontrack import InvalidOption, track
from carbontrack.settings import ALL_COMPONENTS, make_settings, parse_components


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"epochs": 0}, "epochs=0"),
        ({"epochs": -3}, "an integer >= 1"),
        ({"interval_s": -1}, "interval_s=-1"),
        ({"interval_s": 0}, "a finite number > 0"),
        ({"interval_s": float("nan")}, "interval_s=nan"),
        ({"components": "tpu"}, "'cpu', 'gpu', 'ane', 'ram'"),
        ({"components": ["cpu", "tpu"]}, "Unknown: 'tpu'"),
        ({"components": ""}, "components=''"),
        ({"pue": 0.5}, "pue=0.5"),
        ({"verbose": 3}, "one of 0, 1, 2"),
        ({"epochs": 3, "epochs_before_pred": 5}, "at most epochs=3"),
        ({"monitor_epochs": 0}, "monitor_epochs=0"),
        ({"attribution": "user"}, "'machine', 'process'"),
        ({"cpu_tdp_w": 0}, "cpu_tdp_w=0"),
        ({"cpu_tdp_w": "95"}, "cpu_tdp_w='95'"),  # not a positive number: a ValueError too
        ({"budget_co2eq_g": -1.0}, "budget_co2eq_g=-1.0"),
        ({"on_budget": "panic"}, "on_budget='panic'"),
        ({"location": ""}, "location=''"),
        ({"gpu_ids": []}, "gpu_ids=()"),
    ],
)
def test_invalid_values_raise_value_error_naming_option_and_value(
    options: dict[str, object], fragment: str
) -> None:
    with pytest.raises(InvalidOption) as info:
        track(**options)
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"epochs": "10"}, "expected an integer >= 1, got str"),
        ({"epochs": True}, "got a bool"),
        ({"interval_s": "fast"}, "interval_s='fast'"),
        ({"components": 3}, "components=3"),
        ({"log_dir": 3}, "log_dir=3"),
        ({"write_log": "yes"}, "write_log='yes' is not valid: expected True or False, got str"),
        ({"geolocate": 1}, "geolocate=1 is not valid: expected True or False, got int"),
        ({"devices_by_pid": None}, "devices_by_pid=None is not valid: expected True or False"),
        ({"rapl_psys": "no"}, "rapl_psys='no' is not valid: expected True or False"),
        ({"log_file_prefix": 3}, "log_file_prefix=3 is not valid: expected a string"),
        ({"plugin_options": 3}, "plugin_options=3 is not valid: expected a dict"),
    ],
)
def test_wrong_types_raise_type_error(options: dict[str, object], fragment: str) -> None:
    with pytest.raises(TypeError) as info:
        track(**options)
    assert fragment in str(info.value)


def test_unknown_option_lists_the_valid_ones() -> None:
    with pytest.raises(TypeError, match=r"unknown option\(s\) 'epoch'.*valid options are:.*epochs"):
        track(epoch=3)


def test_components_accept_all_lists_and_comma_strings() -> None:
    assert parse_components("all") == ALL_COMPONENTS
    assert parse_components("CPU, gpu") == frozenset({"cpu", "gpu"})
    assert parse_components(["gpu"]) == frozenset({"gpu"})
    assert parse_components("all,ram") == ALL_COMPONENTS | {"ram"}


def test_dram_is_measured_under_cpu_and_plugin_kinds_under_all() -> None:
    cpu_only = make_settings(components="cpu")
    assert cpu_only.wants("cpu")
    assert cpu_only.wants("dram")
    assert not cpu_only.wants("gpu")
    assert not cpu_only.wants("psu")
    assert make_settings().wants("psu")
    assert not make_settings().wants("ram")


def test_location_defaults_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARBONTRACK_LOCATION", "DK")
    assert make_settings().location == "DK"
    assert make_settings(location="SE").location == "SE"


def test_log_dir_becomes_a_path() -> None:
    assert make_settings(log_dir="~/x").log_dir == Path("~/x").expanduser()


def test_gpu_ids_accept_strings_ints_and_lists() -> None:
    assert make_settings(gpu_ids="0, 2").gpu_ids == ("0", "2")
    assert make_settings(gpu_ids=1).gpu_ids == ("1",)
    assert make_settings(gpu_ids=["GPU-abc"]).gpu_ids == ("GPU-abc",)


def test_unknown_location_is_rejected_when_the_options_are_given() -> None:
    with pytest.raises(InvalidOption, match=r"location='DNKX' is not a known location.*DK"):
        track(location="DNKX")


def test_unknown_location_from_the_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CARBONTRACK_LOCATION", "Atlantis")
    with pytest.raises(InvalidOption, match="CARBONTRACK_LOCATION='Atlantis'"):
        track()
