"""The Lightning callback, with the real Lightning, training a tiny model on CPU."""

# The frameworks are imported after importorskip, so that a machine without them skips.
# ruff: noqa: E402

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pl = pytest.importorskip("lightning.pytorch")

from lightning.pytorch.loggers import Logger
from torch.utils.data import DataLoader, TensorDataset

from carbontrack.integrations.lightning import CarbonTrackCallback
from integration_helpers import (
    QUIET,
    assert_finished_run,
    assert_logged_figures,
    assert_options_checked_like_track,
    fake_hardware,
    linear_regression,
)

# Lightning's advice on a tiny CPU run (more dataloader workers, a logger) is noise here.
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*does not have many workers:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*LightningModule.*:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*:lightning.fabric.utilities.warnings.PossibleUserWarning"),
]


class Tiny(linear_regression(pl.LightningModule)):  # type: ignore[misc]
    """A linear regression; ``fail_in_epoch`` raises ``exc`` in that (0-based) epoch."""

    def __init__(self, fail_in_epoch: int | None = None, exc: BaseException | None = None):
        super().__init__()
        self.fail_in_epoch, self.exc = fail_in_epoch, exc

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        if self.current_epoch == self.fail_in_epoch and batch_idx == 2:
            raise self.exc  # type: ignore[misc]
        loss = self.loss(batch)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.log("val_loss", self.loss(batch))


class Recorder(Logger):  # type: ignore[misc]
    """A logger that keeps every ``log_metrics`` call: what TensorBoard or W&B would get."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, float]] = []

    @property
    def name(self) -> str:
        return "recorder"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.rows.append({**metrics, "_step": step})


def _loader() -> Any:
    torch.manual_seed(0)
    x = torch.randn(64, 4)
    return DataLoader(TensorDataset(x, x.sum(dim=1, keepdim=True)), batch_size=8)


def _trainer(callback: Any, logger: Any = None, **kwargs: Any) -> Any:
    options = {
        "accelerator": "cpu",
        "devices": 1,
        "logger": logger if logger is not None else False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "callbacks": [callback],
        **kwargs,
    }
    return pl.Trainer(**options)


@pytest.fixture(autouse=True)
def _sigint_restored() -> Iterator[None]:
    # Lightning ignores SIGINT after a KeyboardInterrupt (to shut down): give pytest its own back.
    before = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, before)


def _carbon_rows(logger: Recorder) -> list[dict[str, float]]:
    return [row for row in logger.rows if "carbontrack/energy_kwh" in row]


def test_fit_for_three_epochs_reports_three_epochs_and_logs_the_figures(tmp_path: Path) -> None:
    callback = CarbonTrackCallback(plugins=[fake_hardware()], log_dir=tmp_path, **QUIET)
    logger = Recorder()
    trainer = _trainer(callback, logger, max_epochs=3, log_every_n_steps=1)
    trainer.fit(Tiny(), _loader(), _loader())
    report = assert_finished_run(callback.report, tmp_path, epochs=3)
    assert report.epochs_planned == 3  # from max_epochs
    assert report.predictions[0].after_epoch == 1
    rows = _carbon_rows(logger)
    assert len(rows) == 3  # once per training epoch; the sanity check and validation add none
    assert_logged_figures(rows, report)
    assert trainer.logged_metrics["carbontrack/energy_kwh"].item() == pytest.approx(
        rows[-1]["carbontrack/energy_kwh"]
    )
    assert "val_loss" in trainer.logged_metrics  # Lightning's own figures are untouched


def test_an_exception_in_epoch_2_ends_the_run_and_is_raised(tmp_path: Path) -> None:
    callback = CarbonTrackCallback(plugins=[fake_hardware()], log_dir=tmp_path, **QUIET)
    trainer = _trainer(callback, max_epochs=3)
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(Tiny(fail_in_epoch=1, exc=RuntimeError("boom")), _loader())
    report = assert_finished_run(callback.report, tmp_path, epochs=1)
    assert any("ended by RuntimeError" in w for w in report.warnings)
    assert any("epoch 2 was still open" in w for w in report.warnings)


def test_keyboard_interrupt_ends_the_run_before_lightning_exits(tmp_path: Path) -> None:
    callback = CarbonTrackCallback(plugins=[fake_hardware()], log_dir=tmp_path, **QUIET)
    trainer = _trainer(callback, max_epochs=3)
    # Lightning turns Ctrl+C into a graceful shutdown that ends in sys.exit(1).
    with pytest.raises(SystemExit):
        trainer.fit(Tiny(fail_in_epoch=1, exc=KeyboardInterrupt()), _loader())
    report = assert_finished_run(callback.report, tmp_path, epochs=1)
    assert any("interrupted (KeyboardInterrupt)" in w for w in report.warnings)


def test_early_stopping_ends_the_run_with_the_epochs_trained(tmp_path: Path) -> None:
    class StopAfter2(Tiny):
        def on_train_epoch_end(self) -> None:
            if self.current_epoch == 1:
                self.trainer.should_stop = True

    callback = CarbonTrackCallback(plugins=[fake_hardware()], log_dir=tmp_path, **QUIET)
    _trainer(callback, max_epochs=5).fit(StopAfter2(), _loader())
    report = assert_finished_run(callback.report, tmp_path, epochs=2)
    assert report.epochs_planned == 5
    assert not any("still open" in w for w in report.warnings)


def test_max_steps_measures_the_whole_run_and_predicts_from_progress(tmp_path: Path) -> None:
    callback = CarbonTrackCallback(plugins=[fake_hardware()], log_dir=tmp_path, **QUIET)
    logger = Recorder()
    # 8 batches an epoch: 12 steps end training in the middle of epoch 2.
    trainer = _trainer(callback, logger, max_epochs=5, max_steps=12, log_every_n_steps=3)
    trainer.fit(Tiny(), _loader())
    report = assert_finished_run(callback.report, tmp_path, epochs=0)
    assert report.epochs_planned is None
    assert any("driven by steps (12 steps)" in w for w in report.warnings)
    rows = [row for row in _carbon_rows(logger) if "carbontrack/predicted_co2eq_g" in row]
    by_step = {row["_step"]: row for row in rows}
    assert {2, 5, 8, 11} <= set(by_step)  # every 3 steps (Lightning counts logging steps from 0)
    for step, row in by_step.items():
        done = step + 1
        assert row["carbontrack/predicted_co2eq_g"] == pytest.approx(
            row["carbontrack/co2eq_g"] * 12 / done
        )


def test_a_wrong_option_fails_at_construction_with_tracks_error() -> None:
    assert_options_checked_like_track(CarbonTrackCallback)


def test_the_older_pytorch_lightning_package_gets_its_own_callback(tmp_path: Path) -> None:
    old = pytest.importorskip("pytorch_lightning")
    from carbontrack.integrations.pytorch_lightning import CarbonTrackCallback as OldCallback

    OldTiny = linear_regression(old.LightningModule)

    callback = OldCallback(plugins=[fake_hardware()], log_dir=tmp_path, **QUIET)
    assert isinstance(callback, old.Callback)
    trainer = old.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[callback],
    )
    trainer.fit(OldTiny(), _loader())
    assert_finished_run(callback.report, tmp_path, epochs=3)
    assert "carbontrack/co2eq_g" in trainer.logged_metrics
