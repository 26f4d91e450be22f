"""Values: readings are well-formed and reports round-trip through JSON."""

from __future__ import annotations

import json

import pytest

from carbontrack import Reading, Report, track
from carbontrack.testing import FakeDevice, FakeHardware


def test_reading_needs_exactly_one_of_joules_watts_or_error() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        Reading("x")
    with pytest.raises(ValueError, match="exactly one"):
        Reading("x", joules=1.0, watts=2.0)
    assert Reading("x", error="gone").error == "gone"


def test_reading_rejects_negative_and_non_finite_values() -> None:
    with pytest.raises(ValueError, match="finite number >= 0"):
        Reading("x", watts=-1.0)
    with pytest.raises(ValueError, match="finite number >= 0"):
        Reading("x", joules=float("inf"))


def test_report_round_trips_through_json() -> None:
    hw = FakeHardware(
        [
            FakeDevice("pkg", watts=50.0),
            FakeDevice("gpu0", kind="gpu", method="power", watts=120.0, shared=True),
        ]
    )
    with track(plugins=[hw], epochs=3, verbose=0, interval_s=0.01, location="DK") as run:
        for _ in range(3):
            with run.epoch():
                pass
    report = run.report
    data = json.loads(json.dumps(report.to_dict()))
    assert Report.from_dict(data) == report
    for key in (
        "schema",
        "duration_s",
        "energy_j",
        "facility_energy_j",
        "pue",
        "co2eq_g",
        "devices",
        "epochs",
        "intensity",
        "failures",
    ):
        assert key in data
    assert {"kind", "name", "backend", "method", "energy_j"} <= set(data["devices"][0])
    assert {"g_per_kwh", "source", "basis"} <= set(data["intensity"])
    assert len(data["epochs"]) == 3


def test_methodology_names_method_intensity_pue_and_caveats() -> None:
    hw = FakeHardware(
        [
            FakeDevice("pkg", watts=50.0),
            FakeDevice("gpu0", kind="gpu", method="power", watts=120.0),
            FakeDevice("ram", kind="ram", method="model", watts=5.0),
        ]
    )
    with track(plugins=[hw], components="all,ram", verbose=0, interval_s=0.01, pue=1.2) as run:
        pass
    text = run.report.methodology()
    assert "cumulative hardware energy counters" in text
    assert "trapezoid rule" in text
    assert "model estimate" in text
    assert "power usage effectiveness of 1.2" in text
    assert "the world average, as the location was not known" in text
    assert "larger, unquantified uncertainty" in text
    assert f"{run.report.co2eq_g:.4g} gCO2eq" in text


def test_methodology_states_the_prediction_interval() -> None:
    hw = FakeHardware([FakeDevice("pkg", watts=50.0)])
    with track(plugins=[hw], epochs=5, verbose=0, interval_s=0.01, monitor_epochs=-1) as run:
        for _ in range(3):
            with run.epoch():
                pass
    text = run.report.methodology()
    assert "95% prediction interval" in text
    assert "after 3 epoch(s) for 5 epochs" in text
