"""Console options: ``plugin_options["console"]["equivalents"]`` (carbontracker's
``interpretable``) decides whether the "that is about ..." lines are printed."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest

from carbontrack import track
from carbontrack.compat import CarbonTracker
from carbontrack.equivalents import EQUIVALENTS
from carbontrack.testing import FakeDevice, FakeHardware

EQUIVALENTS_LINE = "\n  that is about "


def _hw() -> FakeHardware:
    return FakeHardware([FakeDevice("package-0", kind="cpu", watts=60.0)])


def _console(capsys: pytest.CaptureFixture[str], **options: Any) -> str:
    with track(plugins=[_hw()], epochs=2, verbose=1, interval_s=0.01, **options) as run:
        for _ in range(2):
            with run.epoch():
                time.sleep(0.01)
    return capsys.readouterr().err


def test_equivalents_are_printed_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    err = _console(capsys)
    # Once in the prediction block after epoch 1, once in the final block.
    assert err.count(EQUIVALENTS_LINE) == 2
    assert EQUIVALENTS[0].unit in err


def test_equivalents_false_leaves_them_out_of_both_blocks(
    capsys: pytest.CaptureFixture[str],
) -> None:
    err = _console(capsys, plugin_options={"console": {"equivalents": False}})
    assert "carbontrack: predicted for all 2 epochs" in err  # the blocks are still printed
    assert "carbontrack: actual" in err
    assert EQUIVALENTS_LINE not in err
    assert not any(e.unit in err for e in EQUIVALENTS)


def test_other_console_options_keep_the_default(capsys: pytest.CaptureFixture[str]) -> None:
    err = _console(capsys, plugin_options={"console": {}, "other": {"equivalents": False}})
    assert err.count(EQUIVALENTS_LINE) == 2


def test_a_value_that_is_not_a_bool_is_reported_and_the_summary_still_printed(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="carbontrack.writers.console"):
        err = _console(capsys, plugin_options={"console": {"equivalents": "no"}})
    assert "carbontrack: actual" in err
    assert err.count(EQUIVALENTS_LINE) == 2
    assert "plugin_options['console']['equivalents']='no' is not valid" in caplog.text


def test_compat_interpretable_false_prints_no_equivalents(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import carbontrack._plugins as plugins

    original = plugins.make_plugin_manager
    hw = _hw()

    def with_fake(*, autoload: bool = True, extra_plugins: tuple[object, ...] = ()) -> object:
        return original(autoload=autoload, extra_plugins=(hw, *extra_plugins))

    # CarbonTracker takes no plugins=, so the fake hardware is added where managers are made.
    monkeypatch.setattr(plugins, "make_plugin_manager", with_fake)
    for interpretable, expected in ((True, 2), (False, 0)):
        tracker = CarbonTracker(epochs=2, interpretable=interpretable, update_interval=0.01)
        for _ in range(2):
            tracker.epoch_start()
            time.sleep(0.01)
            tracker.epoch_end()
        tracker.stop()
        err = capsys.readouterr().err
        assert "carbontrack: actual" in err
        assert err.count(EQUIVALENTS_LINE) == expected, err


def test_intensity_year_is_not_repeated_when_the_source_names_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The offline table's source already says "Denmark 2024"; "... CC BY 4.0) 2024" said it twice.
    err = _console(capsys, location="DK")
    (line,) = [line for line in err.splitlines() if line.startswith("  intensity ")]
    assert line.count("2024") == 1, line
    assert "Denmark 2024" in line


def test_no_run_log_path_is_printed_when_the_log_could_not_be_written(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # A directory that cannot be made at run time (a path under a file is refused up front);
    # /proc takes no new entries, even from root.
    err = _console(capsys, log_dir=Path("/proc/carbontrack-no-such-dir/logs"))
    assert "plugin runlog failed in carbontrack_run_started" in err
    assert "run log:" not in err
