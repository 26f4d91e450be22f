"""docs/report-schema.md stays true: every field of every value in a report, the schema version
and the run-log line types are documented, and nothing documented has gone from the code."""

from __future__ import annotations

import re
import time
from pathlib import Path

import attrs
import pytest

from carbontrack import track
from carbontrack.model import (
    Command,
    SCHEMA_VERSION,
    ComponentEnergy,
    Device,
    DeviceEnergy,
    EpochRecord,
    Intensity,
    IntensityPoint,
    Location,
    PluginFailure,
    Prediction,
    JobInfo,
    JobReport,
    NodeEnergy,
    RankEnergy,
    Report,
    RunInfo,
    Unavailable,
)
from carbontrack.testing import FakeDevice, FakeHardware
from carbontrack.writers.runlog import read_run_log

DOC = Path(__file__).resolve().parent.parent / "docs" / "report-schema.md"

# Everything ``Report.to_dict()`` and the run log's header can hold.
DOCUMENTED: tuple[type, ...] = (
    Report,
    Command,
    DeviceEnergy,
    ComponentEnergy,
    EpochRecord,
    Prediction,
    Intensity,
    IntensityPoint,
    Location,
    PluginFailure,
    Unavailable,
    RunInfo,
    Device,
    JobReport,
    RankEnergy,
    NodeEnergy,
    JobInfo,
)

_ROW = re.compile(r"^\| `([^`]+)` \|", re.MULTILINE)


def _text() -> str:
    return DOC.read_text(encoding="utf-8")


def _section(heading: str) -> str:
    text = _text()
    assert heading in text, f"docs/report-schema.md has no section {heading!r}"
    start = text.index(heading) + len(heading)
    end = text.find("\n#", start)
    return text[start : end if end != -1 else len(text)]


def _documented_fields(cls: type) -> list[str]:
    return _ROW.findall(_section(f"### `{cls.__name__}`"))


def _serialised_fields(cls: type) -> list[str]:
    # Fields with eq=False (a device's private ``handle``) never leave the process.
    return [f.name for f in attrs.fields(cls) if f.eq]


@pytest.mark.parametrize("cls", DOCUMENTED, ids=lambda c: c.__name__)
def test_every_field_is_documented(cls: type) -> None:
    documented = _documented_fields(cls)
    missing = [name for name in _serialised_fields(cls) if name not in documented]
    assert not missing, (
        f"docs/report-schema.md, section `{cls.__name__}`, lacks a row for {missing}: "
        "add `| `name` | type | unit | meaning |`"
    )


@pytest.mark.parametrize("cls", DOCUMENTED, ids=lambda c: c.__name__)
def test_no_documented_field_is_gone_from_the_code(cls: type) -> None:
    stale = [n for n in _documented_fields(cls) if n not in _serialised_fields(cls)]
    assert not stale, (
        f"docs/report-schema.md documents {cls.__name__} fields that are gone: {stale}"
    )


@pytest.mark.parametrize("cls", DOCUMENTED, ids=lambda c: c.__name__)
def test_every_row_states_type_unit_and_meaning(cls: type) -> None:
    for line in _section(f"### `{cls.__name__}`").splitlines():
        if _ROW.match(line):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            assert len(cells) == 4, f"not field | type | unit | meaning: {line!r}"
            assert all(cells), f"empty cell: {line!r}"


def test_the_current_schema_version_and_its_rule_are_stated() -> None:
    rule = " ".join(_section("## The `schema` version rule").split())
    assert f"The current version is **{SCHEMA_VERSION}**" in rule
    assert "bumped when a field **changes meaning or unit, or disappears**" in rule


def _logged_run(tmp_path: Path) -> list[dict[str, object]]:
    hw = FakeHardware([FakeDevice("package-0", kind="cpu", watts=50.0)])
    with track(
        plugins=[hw],
        log_dir=tmp_path,
        epochs=2,
        verbose=0,
        interval_s=0.01,
        checkpoint_s=0.01,
    ) as run:
        for _ in range(2):
            with run.epoch():
                time.sleep(0.05)
    (log,) = tmp_path.glob("*.jsonl")
    lines, problems = read_run_log(log)
    assert not problems
    return lines


def test_every_run_log_line_type_is_documented(tmp_path: Path) -> None:
    lines = _logged_run(tmp_path)
    types = {str(line["type"]) for line in lines}
    assert types == {"header", "epoch", "checkpoint", "report"}  # the run wrote each kind
    table = _section("## The run log")
    documented = set(_ROW.findall(table))
    assert types <= documented, f"undocumented run-log line types: {types - documented}"
    for line in lines:
        row = next(r for r in table.splitlines() if r.startswith(f"| `{line['type']}` |"))
        for key in line:
            if key != "type":
                assert f"`{key}`" in row, f"run-log {line['type']!r} field {key!r} undocumented"


def test_the_header_options_are_documented(tmp_path: Path) -> None:
    header = _logged_run(tmp_path)[0]
    options = header["options"]
    assert isinstance(options, dict)
    row = next(r for r in _section("## The run log").splitlines() if r.startswith("| `header` |"))
    assert all(f"`{key}`" in row for key in options), sorted(options)


def test_to_dict_holds_exactly_the_documented_report_fields(tmp_path: Path) -> None:
    report_line = _logged_run(tmp_path)[-1]
    data = report_line["report"]
    assert isinstance(data, dict)
    assert sorted(data) == sorted(_documented_fields(Report))
    assert Report.from_dict(data).to_dict() == data
