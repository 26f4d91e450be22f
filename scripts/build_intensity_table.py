#!/usr/bin/env python3
"""Regenerate carbontrack's shipped carbon-intensity table and print what changed.

The table (``src/carbontrack/intensity/data/intensity_countries.csv`` plus
``intensity_meta.json``) holds one row per country: the latest year with a value of the
lifecycle carbon intensity of electricity generation, from Ember's Yearly Electricity Data
(CC BY 4.0). Inputs this script reads (the format is detected from the file):

* ``ember``: Ember's long CSV (``yearly_full_release_long_format.csv``), the real source;
* ``owid``: the Our World in Data grapher CSV ``carbon-intensity-electricity.csv`` (Ember data
  processed by OWID; ``Entity,Code,Year,<value>``);
* ``carbontracker``: ``carbontracker/data/carbon-intensities.csv`` from the PyPI wheel
  ``carbontracker`` (the OWID figures with ISO alpha-2 codes), usable on machines that reach
  a package registry but not Ember;
* ``co2js``: ``dist/esm/data/average-intensities.min.js`` from the npm package ``@tgwf/co2``
  (Ember figures by ISO3 code, without years), used for the world value with ``--world-input``.

Examples::

    python scripts/build_intensity_table.py --input yearly_full_release_long_format.csv \\
        --release-date 2026-04-21 --source-url https://files.ember-energy.org/...
    python scripts/build_intensity_table.py --input carbon-intensities.csv \\
        --input-label "PyPI carbontracker==2.4.7 wheel" --world-input average-intensities.min.js \\
        --world-label "npm @tgwf/co2@0.19.0" --world-year 2024 --check

ISO3 -> ISO2 codes and names come from the input when it has them, else from the current
table, else from ``pycountry`` (a build-time dependency only, if installed). Output is
deterministic (sorted rows, fixed decimals). Differences against the current table are
printed; moves larger than ``--max-change`` percent make the script fail unless ``--accept``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import io
import json
import re
import sys
from collections.abc import Iterable
from pathlib import Path

GENERATOR_VERSION = "1"
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "src" / "carbontrack" / "intensity" / "data"
TABLE_NAME = "intensity_countries.csv"
META_NAME = "intensity_meta.json"
COLUMNS = ("iso3", "iso2", "name", "year", "g_co2e_per_kwh", "basis", "source")
MAX_PLAUSIBLE = 2000.0
EMBER_URL = "https://ember-energy.org/data/yearly-electricity-data/"
LICENSE_URL = "https://ember-energy.org/creative-commons/"

Row = dict[str, str]


def read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8-sig")


def detect_format(text: str) -> str:
    head = text[:4000]
    if "const data" in head or head.lstrip().startswith("{"):
        return "co2js"
    first = head.splitlines()[0] if head else ""
    if "Variable" in first and "ISO 3 code" in first:
        return "ember"
    if first.startswith("alpha-2,"):
        return "carbontracker"
    if first.startswith("Entity,Code,Year"):
        return "owid"
    raise SystemExit(f"cannot tell the format of the input (first line {first!r})")


def parse_ember(text: str) -> dict[str, tuple[str, int, float]]:
    """ISO3 (or ``WORLD``) -> (name, year, value), the latest year with a value per area."""
    out: dict[str, tuple[str, int, float]] = {}
    for rec in csv.DictReader(io.StringIO(text)):
        if rec.get("Variable") != "CO2 intensity" or rec.get("Unit") != "gCO2/kWh":
            continue
        if not rec.get("Value"):
            continue
        code = (rec.get("ISO 3 code") or "").strip()
        if not code:
            if rec.get("Area") != "World":
                continue
            code = "WORLD"
        year = int(rec["Year"])
        if code not in out or year > out[code][1]:
            out[code] = (rec["Area"], year, float(rec["Value"]))
    return out


def parse_owid(text: str) -> dict[str, tuple[str, int, float]]:
    out: dict[str, tuple[str, int, float]] = {}
    reader = csv.reader(io.StringIO(text))
    next(reader)  # the value header's text has changed over time: read columns by position
    for entity, iso3, year_s, value_s, *_ in reader:
        if not value_s:
            continue
        if entity == "World":
            code = "WORLD"
        elif re.fullmatch(r"[A-Z]{3}", iso3):
            code = iso3
        else:
            continue  # OWID aggregates (continents, income groups) have no ISO code
        year = int(year_s)
        if code not in out or year > out[code][1]:
            out[code] = (entity, year, float(value_s))
    return out


def parse_carbontracker(text: str) -> tuple[dict[str, tuple[str, int, float]], dict[str, str]]:
    out: dict[str, tuple[str, int, float]] = {}
    iso2: dict[str, str] = {}
    reader = csv.reader(io.StringIO(text))
    next(reader)
    for alpha2, year_s, entity, code, value_s, *_ in reader:
        if not value_s or not code:
            continue
        out[code] = (entity, int(year_s), float(value_s))
        iso2[code] = alpha2
    return out, iso2


def parse_co2js(text: str) -> dict[str, float]:
    match = re.search(r"\{[^{}]*\}", text)
    if match is None:
        raise SystemExit("no data object found in the co2.js input")
    body = re.sub(r"(\d)e(\d)", r"\1e+\2", match.group(0))  # 1e3 is valid JSON; keep it explicit
    data = json.loads(body)
    return {str(k): float(v) for k, v in data.items()}


def current_table(out_dir: Path) -> dict[str, Row]:
    path = out_dir / TABLE_NAME
    if not path.exists():
        return {}
    with path.open(encoding="utf-8", newline="") as f:
        return {row["iso3"]: row for row in csv.DictReader(f)}


def iso2_lookup(
    codes: Iterable[str], known: dict[str, str], previous: dict[str, Row]
) -> dict[str, str]:
    out = dict(known)
    missing = [c for c in codes if c not in out]
    for code in list(missing):
        if code in previous and previous[code]["iso2"]:
            out[code] = previous[code]["iso2"]
            missing.remove(code)
    if missing:
        try:
            import pycountry  # type: ignore[import-not-found]
        except ImportError:
            pycountry = None
        for code in missing:
            country = pycountry.countries.get(alpha_3=code) if pycountry else None
            if country is not None:
                out[code] = country.alpha_2
    return out


def build(args: argparse.Namespace) -> int:
    out_dir: Path = args.out
    text = read_text(args.input)
    fmt = detect_format(text)
    known_iso2: dict[str, str] = {}
    if fmt == "ember":
        areas = parse_ember(text)
    elif fmt == "owid":
        areas = parse_owid(text)
    elif fmt == "carbontracker":
        areas, known_iso2 = parse_carbontracker(text)
    else:
        raise SystemExit("co2.js data has no years: use it with --world-input only")
    input_label = args.input_label or f"{fmt} file {args.input.name}"
    world = areas.pop("WORLD", None)
    world_label = input_label
    if args.world_input is not None:
        wtext = read_text(args.world_input)
        wfmt = detect_format(wtext)
        world_label = args.world_label or f"{wfmt} file {args.world_input.name}"
        if wfmt == "co2js":
            value = parse_co2js(wtext).get("WORLD")
            if value is None or args.world_year is None:
                raise SystemExit("co2.js world value needs --world-year (the data has no years)")
            world = ("World", args.world_year, value)
        else:
            parsed = parse_ember(wtext) if wfmt == "ember" else parse_owid(wtext)
            world = parsed.get("WORLD")
    if world is None:
        raise SystemExit("no world value in the input(s): add --world-input")

    previous = current_table(out_dir)
    iso2 = iso2_lookup(areas, known_iso2, previous)
    # Short per-row label; the full provenance (package, file, checksum) is in the metadata.
    source = "Ember via OWID" if fmt in ("owid", "carbontracker") else "Ember"
    rows: list[Row] = []
    rejected: list[str] = []
    for code in sorted(areas):
        name, year, value = areas[code]
        if not (0 < value <= MAX_PLAUSIBLE):
            rejected.append(
                f"{code} {name} {year}: {value} g/kWh (outside 0 < v <= {MAX_PLAUSIBLE:g})"
            )
            continue
        rows.append(
            {
                "iso3": code,
                "iso2": iso2.get(code, ""),
                "name": name,
                "year": str(year),
                "g_co2e_per_kwh": f"{value:.2f}",
                "basis": "lifecycle",
                "source": source,
            }
        )

    changes = diff(previous, {r["iso3"]: r for r in rows})
    for line in rejected:
        print(f"rejected  {line}")
    for line in changes.lines:
        print(line)
    print(
        f"{len(rows)} countries, world {world[2]:.2f} g/kWh ({world[1]}); "
        f"{changes.added} added, {changes.removed} removed, {changes.changed} changed, "
        f"largest move {changes.largest_pct:.1f} %"
    )
    if changes.largest_pct > args.max_change and not args.accept:
        print(
            f"refusing to write: a value moved by {changes.largest_pct:.1f} % "
            f"(> --max-change {args.max_change:g} %); check the input, then rerun with --accept",
            file=sys.stderr,
        )
        return 1
    if args.check:
        return 0
    write_outputs(
        args, fmt=fmt, input_label=input_label, world_label=world_label, world=world, rows=rows
    )
    return 0


def write_outputs(
    args: argparse.Namespace,
    *,
    fmt: str,
    input_label: str,
    world_label: str,
    world: tuple[str, int, float],
    rows: list[Row],
) -> None:
    out_dir: Path = args.out
    release = args.release_date or ""
    attribution = (
        "Carbon intensity of electricity: Ember - Yearly Electricity Data"
        + (f" (release {release})" if release else "")
        + f", licensed CC BY 4.0 ({LICENSE_URL})"
        + (
            ", processed by Our World in Data (CC BY 4.0)"
            if fmt in ("owid", "carbontracker")
            else ""
        )
        + "; values selected (latest year per country) and reformatted by carbontrack."
    )
    inputs = [{"label": input_label, "format": fmt, "sha256": sha256(args.input)}]
    if args.world_input is not None:
        inputs.append(
            {
                "label": world_label,
                "format": detect_format(read_text(args.world_input)),
                "sha256": sha256(args.world_input),
                "used_for": "world",
            }
        )
    meta = {
        "source_name": "Ember - Yearly Electricity Data",
        "source_url": args.source_url or EMBER_URL,
        "release_date": release,
        "retrieved_at": args.retrieved_at or dt.date.today().isoformat(),
        "inputs": inputs,
        "input_sha256": inputs[0]["sha256"],
        "license": "CC-BY-4.0",
        "license_url": LICENSE_URL,
        "attribution": attribution,
        "basis": "lifecycle",
        "unit": "gCO2eq/kWh",
        "world": {"value": round(world[2], 2), "year": world[1], "source": world_label},
        "countries": len(rows),
        "generator": "scripts/build_intensity_table.py",
        "generator_version": GENERATOR_VERSION,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / TABLE_NAME).open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    (out_dir / META_NAME).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", "utf-8")
    print(f"wrote {out_dir / TABLE_NAME} and {out_dir / META_NAME}")


class Diff:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.added = self.removed = self.changed = 0
        self.largest_pct = 0.0


def diff(old: dict[str, Row], new: dict[str, Row]) -> Diff:
    d = Diff()
    for code in sorted(set(old) | set(new)):
        a, b = old.get(code), new.get(code)
        if a is None and b is not None:
            d.added += 1
            d.lines.append(f"added     {code} {b['name']}: {b['g_co2e_per_kwh']} ({b['year']})")
        elif b is None and a is not None:
            d.removed += 1
            d.lines.append(f"removed   {code} {a['name']}: {a['g_co2e_per_kwh']} ({a['year']})")
        elif a is not None and b is not None:
            va, vb = float(a["g_co2e_per_kwh"]), float(b["g_co2e_per_kwh"])
            if va != vb or a["year"] != b["year"]:
                d.changed += 1
                pct = (vb - va) / va * 100 if va else 100.0
                d.largest_pct = max(d.largest_pct, abs(pct))
                d.lines.append(
                    f"changed   {code} {b['name']}: {va:.2f} ({a['year']}) -> "
                    f"{vb:.2f} ({b['year']}), {pct:+.1f} %"
                )
    return d


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--input", type=Path, required=True, help="Ember, OWID or carbontracker CSV")
    p.add_argument("--input-label", help="how the input was obtained (recorded in the metadata)")
    p.add_argument("--world-input", type=Path, help="a second file to take the world value from")
    p.add_argument("--world-label", help="how the world input was obtained")
    p.add_argument("--world-year", type=int, help="year of the world value (co2.js has none)")
    p.add_argument("--release-date", help="Ember release date of the data, YYYY-MM-DD")
    p.add_argument("--retrieved-at", help="when the input was downloaded (default today)")
    p.add_argument("--source-url", help="where the input came from")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    p.add_argument("--max-change", type=float, default=25.0, help="percent (default 25)")
    p.add_argument("--accept", action="store_true", help="write even past --max-change")
    p.add_argument("--check", action="store_true", help="print the differences, write nothing")
    return build(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
