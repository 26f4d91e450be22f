#!/usr/bin/env python3
"""Regenerate carbontrack's shipped CPU TDP table from CodeCarbon's ``cpu_power.csv``.

The table (``src/carbontrack/backends/data/cpu_tdp.csv``, columns ``key,name,tdp_w``, ``key``
being the name as the backend normalises model strings, sorted) is read by the ``estimate``
backend. Its source is CodeCarbon's ``codecarbon/data/hardware/cpu_power.csv``
(MIT licence; rows scraped by CodeCarbon from Intel ARK and AMD's product pages, plus rows it
lists without a scraper, such as Apple M-series). The input is the PyPI wheel or the CSV itself,
so the table can be rebuilt on a machine that only reaches a package registry::

    pip download --no-deps -d /tmp/cc codecarbon==3.3.2
    python scripts/build_cpu_tdp.py --input /tmp/cc/codecarbon-3.3.2-py3-none-any.whl

What it does: keeps rows whose name starts with ``Intel``, ``AMD`` or ``Apple`` (the others are
bare model numbers such as ``6234`` that duplicate a prefixed row and could match anything),
drops TDPs outside (0, 1000] W, keeps the first row of names that are equal after the
normalisation the backend uses (printing any with a different TDP), sorts by key, and writes
the table, ``cpu_tdp_meta.json`` (source, version, input SHA-256, date, licence, counts) and
``cpu_tdp.LICENSE`` (the source's MIT notice). It prints what changed against the current table.
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
import zipfile
from pathlib import Path

GENERATOR_VERSION = "2"
OUT_DIR = Path(__file__).resolve().parent.parent / "src" / "carbontrack" / "backends" / "data"
TABLE = "cpu_tdp.csv"
META = "cpu_tdp_meta.json"
LICENSE = "cpu_tdp.LICENSE"
MEMBER = "codecarbon/data/hardware/cpu_power.csv"
VENDORS = ("Intel ", "AMD ", "Apple ")
MAX_TDP_W = 1000.0


def read_input(path: Path) -> tuple[bytes, str, str | None]:
    """``(csv bytes, label, licence text or None)`` from a wheel or a plain CSV."""
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as whl:
            data = whl.read(MEMBER)
            licence = next(
                (whl.read(n).decode() for n in whl.namelist() if n.endswith("/LICENSE")), None
            )
        version = re.match(r"codecarbon-([^-]+)-", path.name)
        label = f"PyPI codecarbon=={version.group(1)} wheel" if version else path.name
        return data, f"{label}, {MEMBER}", licence
    return path.read_bytes(), path.name, None


def build(data: bytes) -> tuple[list[tuple[str, str, float]], list[str]]:
    """Rows to ship and notes about what was left out."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    from carbontrack.backends.estimate import normalise_cpu_name

    notes: list[str] = []
    rows: dict[str, tuple[str, str, float]] = {}
    reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig")))
    for row in reader:
        name = " ".join((row.get("Name") or "").split())
        if not name.startswith(VENDORS):
            continue
        try:
            tdp = float(row.get("TDP") or "")
        except ValueError:
            notes.append(f"no numeric TDP: {name!r} ({row.get('TDP')!r})")
            continue
        if not 0 < tdp <= MAX_TDP_W:
            notes.append(f"implausible TDP: {name!r} {tdp}")
            continue
        key = normalise_cpu_name(name)
        if not key:
            continue
        if key in rows:
            if rows[key][2] != tdp:
                kept = rows[key][1:]
                notes.append(f"same chip twice: kept {kept!r}, dropped {(name, tdp)!r}")
            continue
        rows[key] = (key, name, tdp)
    return sorted(rows.values()), notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, required=True, help="codecarbon wheel or CSV")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    parser.add_argument("--retrieved", default=dt.date.today().isoformat(), help="YYYY-MM-DD")
    args = parser.parse_args(argv)

    data, label, licence = read_input(args.input)
    rows, notes = build(data)
    for note in notes:
        print(f"note: {note}")
    old: dict[str, str] = {}
    table = args.out / TABLE
    if table.exists():
        old = {r["name"]: r["tdp_w"] for r in csv.DictReader(table.open(encoding="utf-8"))}
    new = {name: f"{tdp:g}" for _key, name, tdp in rows}
    added = sorted(set(new) - set(old))
    removed = sorted(set(old) - set(new))
    changed = sorted(n for n in set(old) & set(new) if old[n] != new[n])
    print(f"{len(rows)} rows; +{len(added)} -{len(removed)} ~{len(changed)} against {table}")
    for n in changed[:20]:
        print(f"  changed {n}: {old[n]} -> {new[n]} W")

    args.out.mkdir(parents=True, exist_ok=True)
    with table.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["key", "name", "tdp_w"])
        writer.writerows([key, name, f"{tdp:g}"] for key, name, tdp in rows)
    meta = {
        "source_name": "CodeCarbon cpu_power.csv: rows from CodeCarbon's scrapers of Intel ARK and "
        "AMD product pages (cpu_dataset_builder/) and rows it lists without one (Apple M-series)",
        "source_url": "https://github.com/mlco2/codecarbon",
        "source_path": MEMBER,
        "input": label,
        "input_sha256": hashlib.sha256(data).hexdigest(),
        "retrieved_at": args.retrieved,
        "license": "MIT",
        "license_file": LICENSE,
        "unit": "W, rated TDP of one CPU package",
        "rows": len(rows),
        "filter": "names starting with Intel/AMD/Apple, 0 < TDP <= 1000 W, first of duplicates",
        "generator": f"scripts/build_cpu_tdp.py v{GENERATOR_VERSION}",
    }
    (args.out / META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", "utf-8")
    if licence is not None:
        header = (
            "The CPU table cpu_tdp.csv is derived (rows filtered and renamed, see "
            f"{META}) from CodeCarbon's cpu_power.csv, distributed under this licence:\n\n"
        )
        (args.out / LICENSE).write_text(header + licence, "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
