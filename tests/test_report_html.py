"""``carbontrack report --format html`` and ``--epochs``: what the page and the view show."""

from __future__ import annotations

import argparse
import io
import re
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carbontrack import track
from carbontrack.cli._report import configure_parser, parse_run_log
from carbontrack.cli._report_view import load_runs, run
from carbontrack.report_html import format_epochs, read_run_detail, render_page
from carbontrack.testing import FakeDevice, FakeHardware
from carbontrack.testing.runlogs import write_long_run_log
from test_report_cmd import write_carbontracker_logs

WATTS = {"package-0": 60.0, "gpu-0": 200.0, "ram": 6.0}


def real_run(log_dir: Path, *, epochs: int = 4, planned: int = 10) -> Path:
    """A real (fake-hardware) run with checkpoints and a prediction interval; its log path."""
    hw = FakeHardware(
        [
            FakeDevice("package-0", kind="cpu", watts=WATTS["package-0"]),
            FakeDevice("gpu-0", kind="gpu", watts=WATTS["gpu-0"], method="power"),
            FakeDevice("ram", kind="ram", watts=WATTS["ram"], method="model"),
        ]
    )
    opts = {"interval_s": 0.01, "checkpoint_s": 0.04, "verbose": 0, "location": "DK"}
    with track(
        plugins=[hw],
        log_dir=log_dir,
        epochs=planned,
        epochs_before_pred=2,
        monitor_epochs=-1,
        components="all,ram",
        **opts,
    ) as r:
        for _ in range(epochs):
            with r.epoch():
                time.sleep(0.06)
    (path,) = [p for p in log_dir.glob("*.jsonl") if r.run_id in p.name]
    return path


def kill(path: Path) -> Path:
    """What a killed process leaves: the log without its final report line."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    assert '"type":"report"' in lines[-1]
    path.write_text("".join(lines[:-1]), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A log directory: one complete run, one killed run, one carbontracker log."""
    logs = tmp_path_factory.mktemp("html") / "logs"
    real_run(logs)
    kill(real_run(logs, epochs=3))
    write_carbontracker_logs(logs / "old")
    return logs


def page_for(*paths: Path) -> str:
    runs, problems, _files = load_runs(list(paths))
    return render_page(runs, problems)


def report(*argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    out, err = io.StringIO(), io.StringIO()
    code = run(parser.parse_args(list(argv)), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


class _Svgs(HTMLParser):
    """Every <svg>, with its attributes and the text of its <title> and <desc>."""

    def __init__(self) -> None:
        super().__init__()
        self.svgs: list[dict[str, str]] = []
        self.ids: dict[str, str] = {}
        self._open: str | None = None
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "svg":
            self.svgs.append({k: v or "" for k, v in a.items()})
        if tag in ("title", "desc") and a.get("id"):
            self._open = a["id"]
            self.ids[self._open or ""] = ""

    def handle_data(self, data: str) -> None:
        if self._open:
            self.ids[self._open] += data

    def handle_endtag(self, tag: str) -> None:
        if tag in ("title", "desc"):
            self._open = None


def parsed(html: str) -> _Svgs:
    p = _Svgs()
    p.feed(html)
    return p


def test_the_page_has_every_part_for_two_runs_a_killed_one_and_carbontracker(
    two_runs: Path,
) -> None:
    html = page_for(two_runs)
    assert html.startswith("<!DOCTYPE html>")
    assert "killed: no final report" in html
    assert "carbontracker log" in html
    assert html.count('<section id="run-') == 3
    # CO2 per run (once), then per carbontrack run: power, energy per epoch, cumulative.
    kinds = [s["class"] for s in parsed(html).svgs]
    assert kinds.count("chart runs") == 1
    assert kinds.count("chart power") == 2
    assert kinds.count("chart epochs") == 2
    assert kinds.count("chart cumulative") == 2
    assert "<h3>Methodology</h3>" in html
    assert "prediction interval" in html


def test_the_page_is_self_contained_with_nothing_to_fetch(two_runs: Path) -> None:
    html = page_for(two_runs)
    assert "<script" not in html.lower()
    assert "@import" not in html
    assert "url(" not in html
    for tag, attrs in parsed(html).tags:
        for name in ("src", "href"):
            value = attrs.get(name)
            assert value is None or value.startswith("#"), (tag, name, value)
    # The only URL is SVG's namespace name, which is never fetched.
    assert set(re.findall(r"https?://[^\s\"'<]+", html)) == {"http://www.w3.org/2000/svg"}


def test_every_chart_is_an_image_with_a_title_and_a_description(two_runs: Path) -> None:
    p = parsed(page_for(two_runs))
    assert p.svgs
    for svg in p.svgs:
        assert svg["role"] == "img"
        title, desc = svg["aria-labelledby"].split()
        assert p.ids[title].strip()
        assert len(p.ids[desc]) > 20, p.ids[desc]


def test_dark_light_and_print_styles(two_runs: Path) -> None:
    html = page_for(two_runs)
    assert "@media (prefers-color-scheme: dark)" in html
    assert "@media print" in html
    assert '<meta name="color-scheme" content="light dark">' in html


def test_power_over_time_is_each_devices_mean_power_between_checkpoints(tmp_path: Path) -> None:
    path = real_run(tmp_path)
    problems: list[str] = []
    summary = parse_run_log(path, problems)
    assert summary is not None
    detail = read_run_detail(path, summary, problems)
    assert len(detail.steps) >= 3  # checkpoints every 0.04 s over a quarter of a second
    for device in detail.devices:
        joules = sum(s.watts[device.key] * (s.end_s - s.start_s) for s in detail.steps)
        # The steps hold exactly the energy of the final report.
        assert joules == pytest.approx(device.energy_j, rel=1e-6)
    by_id = {d.id: d for d in detail.devices}
    gpu = by_id["gpu-0"].key
    later = [s.watts[gpu] for s in detail.steps[1:]]  # a power sensor counts from its 2nd read
    assert sum(later) / len(later) == pytest.approx(WATTS["gpu-0"], rel=0.1)


def test_device_table_says_how_each_figure_was_obtained(two_runs: Path) -> None:
    html = page_for(two_runs)
    assert "measured (counter)" in html
    assert "sampled (power)" in html
    assert "estimated (model)" in html


def test_a_killed_run_is_marked_and_keeps_its_epochs(tmp_path: Path) -> None:
    path = kill(real_run(tmp_path, epochs=3))
    runs, _problems, _ = load_runs([path])
    (detail,) = runs
    assert detail.status == "killed"
    assert len(detail.epochs) == 3
    html = render_page(runs, [])
    assert "This run ended without its final report" in html


def test_a_carbontracker_log_alone_renders(tmp_path: Path) -> None:
    out = write_carbontracker_logs(tmp_path / "ct")
    html = page_for(out)
    assert "A carbontracker log" in html
    assert "0.0586" in html  # its CO2eq, 0.058591666667 g


def test_a_thousand_epoch_day_long_run_gives_a_page_under_2_mb(tmp_path: Path) -> None:
    path = write_long_run_log(tmp_path / "long.jsonl", epochs=1000, hours=24.0)
    html = page_for(path)
    assert len(html.encode("utf-8")) < 2_000_000
    assert html.count("<rect") >= 1000  # one bar per epoch, none dropped


def test_cli_writes_the_page_to_a_file(two_runs: Path, tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    code, out, err = report(str(two_runs), "--format", "html", "-o", str(target))
    assert code == 0
    assert out == ""
    assert f"wrote {target}" in err
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_cli_output_to_a_directory_is_a_usage_error(two_runs: Path, tmp_path: Path) -> None:
    code, _out, err = report(str(two_runs), "--format", "html", "-o", str(tmp_path))
    assert code == 2
    assert "is a directory" in err


def test_epochs_view_shows_a_bar_per_epoch_and_the_prediction(tmp_path: Path) -> None:
    path = real_run(tmp_path, epochs=4, planned=10)
    code, out, err = report("--epochs", str(path))
    assert code == 0, err
    rows = [line for line in out.splitlines() if re.match(r"\s+\d+\s+\d+:\d\d:\d\d", line)]
    assert len(rows) == 4
    assert "predicted after epoch 4 for 10 epochs" in out
    assert "95% interval" in out


def test_epochs_view_groups_a_long_run_into_at_most_40_rows(tmp_path: Path) -> None:
    path = write_long_run_log(tmp_path / "long.jsonl", epochs=100, hours=1.0)
    runs, _, _ = load_runs([path])
    text = format_epochs(runs[0], unicode=False)
    rows = [line for line in text.splitlines() if re.match(r"\s+\d+(-\d+)?\s+\d+:", line)]
    assert len(rows) == 34  # groups of 3 epochs: 33 full ones and epoch 100 alone
    assert rows[0].split()[0] == "1-3"
    assert rows[-1].split()[0] == "100"
    assert "#" in text
    assert "█" not in text


def test_epochs_view_needs_exactly_one_run(two_runs: Path) -> None:
    code, _out, err = report("--epochs", str(two_runs))
    assert code == 2
    assert "--epochs shows one run, and 3 were found" in err


def test_epochs_view_is_text_only(two_runs: Path) -> None:
    code, _out, err = report("--epochs", "--format", "json", str(two_runs))
    assert code == 2
    assert "--epochs is a terminal view" in err


def test_a_multi_process_job_is_one_run_on_the_page_counted_once(tmp_path: Path) -> None:
    from carbontrack.model import J_PER_KWH
    from test_report_jobs import _job

    truth = _job(tmp_path / "logs")
    runs, problems, files = load_runs([tmp_path / "logs"])
    assert files == 4  # one log per rank
    (job,) = runs
    assert job.status == "job"
    assert job.summary.energy_kwh == pytest.approx(truth / J_PER_KWH, rel=1e-6)
    html = render_page(runs, problems)
    assert "multi-process job" in html
    assert html.count('<section id="run-') == 1


@pytest.fixture(scope="module")
def one_log(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return real_run(tmp_path_factory.mktemp("one")).read_bytes()


@given(cut=st.integers(min_value=0, max_value=10**6), junk=st.binary(max_size=40))
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_a_log_cut_anywhere_or_with_junk_still_gives_a_page(
    one_log: bytes, tmp_path: Path, cut: int, junk: bytes
) -> None:
    path = tmp_path / "carbontrack-cut.jsonl"
    data = one_log[: cut % (len(one_log) + 1)]
    path.write_bytes(data + junk)
    runs, problems, _ = load_runs([path])
    html = render_page(runs, problems)
    assert html.startswith("<!DOCTYPE html>")
    assert html.rstrip().endswith("</html>")


def test_a_log_with_epoch_lines_only_renders_without_power_figures(tmp_path: Path) -> None:
    path = real_run(tmp_path)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [
        line
        for line in lines
        if '"type":"checkpoint"' not in line and '"type":"report"' not in line
    ]
    path.write_text("".join(kept), encoding="utf-8")
    runs, problems, _ = load_runs([path])
    (detail,) = runs
    assert detail.status == "killed"
    assert len(detail.epochs) == 4
    html = render_page(runs, problems)
    assert "No power figures" in html
    assert 'class="chart epochs"' in html
