"""The shipped offline table, its licence notice, its build script and PUE presets."""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from carbontrack.cli import _intensity as _intensity_cmd
from carbontrack.errors import InvalidOption
from carbontrack.intensity import PUE_PRESETS, attribution, load_table, pue_preset
from carbontrack.intensity._world import WORLD_G_PER_KWH, WORLD_YEAR
from carbontrack.testing.intensity import FakeCarbonIntensityGB

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "build_intensity_table.py"
DATA = ROOT / "src" / "carbontrack" / "intensity" / "data"


def test_every_country_has_one_plausible_lifecycle_value() -> None:
    table = load_table()
    assert len(table.rows) > 200
    assert len({r.iso3 for r in table.rows}) == len(table.rows)
    assert len({r.iso2 for r in table.rows}) == len(table.rows)
    for row in table.rows:
        assert 0 < row.g_per_kwh <= 2000, row
        assert row.basis == "lifecycle"
        assert 2000 <= row.year <= 2030


def test_known_values_from_the_source() -> None:
    # Figures as read in the inputs (carbon.md 2.3): Ember via OWID, 2024.
    table = load_table()
    for code, value in (("DK", 143.30), ("DEU", 344.14), ("france", 44.18), ("NO", 30.75)):
        row = table.get(code)
        assert row is not None
        assert (row.g_per_kwh, row.year) == (value, 2024)


def test_world_value_and_metadata() -> None:
    meta = load_table().meta
    assert meta["world"] == {"value": 472.94, "year": 2024, "source": meta["world"]["source"]}
    assert (WORLD_G_PER_KWH, WORLD_YEAR) == (472.94, 2024)
    # world_intensity() answers from the constants: they must be the table's own figures.
    assert (meta["world"]["value"], meta["world"]["year"]) == (WORLD_G_PER_KWH, WORLD_YEAR)
    assert meta["license"] == "CC-BY-4.0"
    assert {i["label"].split(",")[0] for i in meta["inputs"]} == {
        "PyPI carbontracker==2.4.7 wheel",
        "npm @tgwf/co2@0.19.0",
    }


def test_the_attribution_notice_ships_with_the_package() -> None:
    text = attribution()
    assert "Ember" in text
    assert "CC BY 4.0" in text
    assert "https://ember-energy.org/creative-commons/" in text
    assert "reformatted by carbontrack" in text
    notice = resources.files("carbontrack.intensity.data").joinpath("NOTICE").read_text("utf-8")
    assert "CC BY 4.0" in notice
    assert "carbontracker==2.4.7" in notice


def _ember_csv(path: Path, rows: list[tuple[str, str, int, float]]) -> Path:
    header = (
        "Area,ISO 3 code,Year,Area type,Continent,Ember region,EU,OECD,G20,G7,ASEAN,"
        "Category,Subcategory,Variable,Unit,Value,YoY absolute change,YoY % change"
    )
    lines = [header]
    for area, iso3, year, value in rows:
        lines.append(
            f"{area},{iso3},{year},Country,Europe,EU,1,1,0,0,0,"
            f"Power sector emissions,CO2 intensity,CO2 intensity,gCO2/kWh,{value},,"
        )
        # Rows of other variables must be ignored.
        lines.append(
            f"{area},{iso3},{year},Country,Europe,EU,1,1,0,0,0,"
            f"Electricity generation,Fuel,Coal,TWh,{value * 10},,"
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _build(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False
    )


def test_the_build_script_regenerates_the_shipped_table_from_ember(tmp_path: Path) -> None:
    # Ember's own file for a few countries, with the shipped table as the previous version.
    out = tmp_path / "data"
    out.mkdir()
    (out / "intensity_countries.csv").write_bytes((DATA / "intensity_countries.csv").read_bytes())
    source = _ember_csv(
        tmp_path / "ember.csv",
        [
            ("Denmark", "DNK", 2023, 151.65),
            ("Denmark", "DNK", 2025, 120.0),
            ("Germany", "DEU", 2025, 330.0),
            ("Nowhere", "NWH", 2025, 0.0),
            ("World", "", 2025, 460.0),
        ],
    )
    done = _build("--input", str(source), "--out", str(out), "--release-date", "2026-04-21")
    assert done.returncode == 0, done.stderr
    assert "changed   DNK Denmark: 143.30 (2024) -> 120.00 (2025), -16.3 %" in done.stdout
    assert "rejected  NWH Nowhere 2025: 0.0 g/kWh" in done.stdout
    assert "removed   SWE Sweden" in done.stdout
    with (out / "intensity_countries.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert rows == [
        {
            "iso3": "DEU",
            "iso2": "DE",
            "name": "Germany",
            "year": "2025",
            "g_co2e_per_kwh": "330.00",
            "basis": "lifecycle",
            "source": "Ember",
        },
        {
            "iso3": "DNK",
            "iso2": "DK",
            "name": "Denmark",
            "year": "2025",
            "g_co2e_per_kwh": "120.00",
            "basis": "lifecycle",
            "source": "Ember",
        },
    ]
    meta = json.loads((out / "intensity_meta.json").read_text(encoding="utf-8"))
    assert meta["world"]["value"] == 460.0
    assert meta["release_date"] == "2026-04-21"
    assert "release 2026-04-21" in meta["attribution"]


def test_the_build_script_refuses_large_moves_without_accept(tmp_path: Path) -> None:
    out = tmp_path / "data"
    out.mkdir()
    (out / "intensity_countries.csv").write_bytes((DATA / "intensity_countries.csv").read_bytes())
    source = _ember_csv(
        tmp_path / "ember.csv", [("Denmark", "DNK", 2025, 400.0), ("World", "", 2025, 460.0)]
    )
    refused = _build("--input", str(source), "--out", str(out))
    assert refused.returncode == 1
    assert "refusing to write" in refused.stderr
    assert not (out / "intensity_meta.json").exists()
    accepted = _build("--input", str(source), "--out", str(out), "--accept")
    assert accepted.returncode == 0


def test_the_check_mode_finds_no_difference_for_the_shipped_input(tmp_path: Path) -> None:
    # The shipped table read back as an OWID grapher file gives the same rows.
    lines = ["Entity,Code,Year,Carbon intensity of electricity - gCO2/kWh"]
    for row in load_table().rows:
        name = f'"{row.name}"' if "," in row.name else row.name
        lines.append(f"{name},{row.iso3},{row.year},{row.g_per_kwh}")
    lines.append("World,OWID_WRL,2024,472.94")
    source = tmp_path / "owid.csv"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    done = _build("--input", str(source), "--out", str(DATA), "--check")
    assert done.returncode == 0, done.stderr
    assert "0 added, 0 removed, 0 changed" in done.stdout


def test_pue_presets() -> None:
    assert pue_preset("uptime-2024") == 1.56
    assert pue_preset("none") == 1.0
    assert PUE_PRESETS["uptime-2024"].year == 2024
    assert all(p.pue >= 1.0 for p in PUE_PRESETS.values())
    with pytest.raises(InvalidOption, match=r"'uptime2024'.*Did you mean: uptime-2024"):
        pue_preset("uptime2024")


# -- carbontrack intensity -------------------------------------------------------------------


def _cmd(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    _intensity_cmd.configure_parser(parser)
    return _intensity_cmd.run(parser.parse_args(list(argv)))


def test_intensity_command_shows_the_table_value(capsys: pytest.CaptureFixture[str]) -> None:
    assert _cmd("--location", "DK") == 0
    out = capsys.readouterr().out
    assert "143.3 gCO2eq/kWh (lifecycle)" in out
    assert "Denmark 2024" in out
    assert "CC BY 4.0" in out


def test_intensity_command_says_when_the_location_is_unknown(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _cmd() == 0
    out = capsys.readouterr().out
    assert "location:   unknown" in out
    assert "fallback:   yes" in out
    assert "CARBONTRACK_LOCATION" in out


def test_intensity_command_rejects_an_unknown_location(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _cmd("--location", "Denmrak") == 2
    err = capsys.readouterr().err
    assert "Did you mean: DK (Denmark)" in err


def test_intensity_command_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert _cmd("--location", "FR", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["intensity"]["g_per_kwh"] == 44.18
    assert data["location"]["country"] == "FR"
    assert "Ember" in data["attribution"]


def test_intensity_command_with_a_live_provider_shows_its_forecast(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeCarbonIntensityGB(lambda ts: 150.0 + (ts // 1800) % 7) as gb:
        for name, value in gb.env().items():
            monkeypatch.setenv(name, value)
        assert _cmd("--location", "GB-RG10", "--provider", "carbonintensity-gb") == 0
    out = capsys.readouterr().out
    assert "GB Carbon Intensity API" in out
    assert "postcode RG10" in out
    assert "forecast:   96 points" in out
