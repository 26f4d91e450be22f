"""The Hugging Face callback, with the real Trainer training a tiny GPT-2 built from a config."""

from __future__ import annotations

# The frameworks are imported after importorskip, so that a machine without them skips.
# ruff: noqa: E402
import os
from pathlib import Path
from typing import Any

import pytest

# Nothing may come from the Hub: the model is built from a config, here.
os.environ["HF_HUB_OFFLINE"] = "1"
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from carbontrack.integrations.transformers import CarbonTrackCallback
from integration_helpers import (
    QUIET,
    assert_finished_run,
    assert_logged_figures,
    assert_options_checked_like_track,
    fake_hardware,
)

STEPS_PER_EPOCH = 4


class _Data(torch.utils.data.Dataset):  # type: ignore[misc]
    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, 32, (4 * STEPS_PER_EPOCH, 8), generator=generator)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def _model() -> Any:
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=32, n_positions=8, n_embd=8, n_layer=1, n_head=2, n_inner=16
    )
    return transformers.GPT2LMHeadModel(config)


def _trainer(tmp_path: Path, callbacks: list[Any], **kwargs: Any) -> Any:
    options = {
        "output_dir": str(tmp_path / "out"),
        "num_train_epochs": 3,
        "per_device_train_batch_size": 4,
        "report_to": "none",
        "save_strategy": "no",
        "use_cpu": True,
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        **kwargs,
    }
    return transformers.Trainer(
        model=_model(),
        args=transformers.TrainingArguments(**options),
        train_dataset=_Data(),
        callbacks=callbacks,
    )


class _Seen(transformers.TrainerCallback):  # type: ignore[misc]
    """A callback after ours: what a reporting integration would receive in on_log."""

    def __init__(self) -> None:
        self.logs: list[dict[str, Any]] = []

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
        self.logs.append(dict(logs or {}))


class _RaiseAtStep(transformers.TrainerCallback):  # type: ignore[misc]
    def __init__(self, step: int, exc: BaseException) -> None:
        self.step, self.exc = step, exc

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if state.global_step == self.step:
            raise self.exc


def _carbon(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [row for row in rows if "carbontrack/energy_kwh" in row]


@pytest.mark.parametrize("logging_steps", [500, STEPS_PER_EPOCH])
def test_train_for_three_epochs_reports_three_epochs_and_logs_the_figures(
    tmp_path: Path, logging_steps: int
) -> None:
    # logging_steps=4 makes the Trainer log at each epoch's last step by itself as well.
    callback = CarbonTrackCallback(plugins=[fake_hardware()], log_dir=tmp_path, **QUIET)
    seen = _Seen()
    trainer = _trainer(tmp_path, [callback, seen], logging_steps=logging_steps)
    trainer.train()
    report = assert_finished_run(callback.report, tmp_path, epochs=3)
    assert report.epochs_planned == 3  # from num_train_epochs
    assert report.predictions[0].after_epoch == 1
    rows = _carbon(trainer.state.log_history)
    assert [row["step"] for row in rows] == [4, 8, 12]  # each epoch's last step
    assert [row["epoch"] for row in rows] == [1.0, 2.0, 3.0]
    assert_logged_figures(rows, report)
    assert all("loss" in row for row in rows)  # the Trainer's own figures are untouched
    assert _carbon(seen.logs) == [{k: v for k, v in row.items() if k != "step"} for row in rows]


def test_an_exception_in_epoch_2_ends_the_run_and_is_raised(tmp_path: Path) -> None:
    callback = CarbonTrackCallback(plugins=[fake_hardware()], log_dir=tmp_path, **QUIET)
    trainer = _trainer(tmp_path, [callback, _RaiseAtStep(6, RuntimeError("boom"))])
    with pytest.raises(RuntimeError, match="boom"), callback:
        trainer.train()
    report = assert_finished_run(callback.report, tmp_path, epochs=1)
    assert any("ended by RuntimeError" in w for w in report.warnings)
    assert any("epoch 2 was still open" in w for w in report.warnings)


def test_a_run_left_open_by_an_exception_ends_when_the_next_train_starts(tmp_path: Path) -> None:
    callback = CarbonTrackCallback(plugins=[fake_hardware()], log_dir=tmp_path, **QUIET)
    failing = _trainer(tmp_path, [callback, _RaiseAtStep(6, KeyboardInterrupt())])
    with pytest.raises(KeyboardInterrupt):
        failing.train()
    first = callback.tracker
    assert first is not None
    assert first.running  # the Trainer told no callback
    _trainer(tmp_path, [callback], num_train_epochs=1).train()
    assert not first.running
    assert len(first.report.epochs) == 1
    assert any("a new Transformers training started" in w for w in first.report.warnings)
    assert callback.report is not None
    assert len(callback.report.epochs) == 1


def test_early_stopping_ends_the_run_with_the_epochs_trained(tmp_path: Path) -> None:
    class StopAfter2(transformers.TrainerCallback):  # type: ignore[misc]
        def on_epoch_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
            if state.epoch >= 2:
                control.should_training_stop = True
            return control

    callback = CarbonTrackCallback(plugins=[fake_hardware()], log_dir=tmp_path, **QUIET)
    _trainer(tmp_path, [callback, StopAfter2()], num_train_epochs=5).train()
    report = assert_finished_run(callback.report, tmp_path, epochs=2)
    assert report.epochs_planned == 5
    assert not any("still open" in w for w in report.warnings)


def test_max_steps_measures_the_whole_run_and_predicts_from_progress(tmp_path: Path) -> None:
    callback = CarbonTrackCallback(plugins=[fake_hardware()], log_dir=tmp_path, **QUIET)
    trainer = _trainer(tmp_path, [callback], max_steps=6, logging_steps=2)
    trainer.train()
    report = assert_finished_run(callback.report, tmp_path, epochs=0)
    assert report.epochs_planned is None
    assert any("driven by steps (6 steps)" in w for w in report.warnings)
    rows = [r for r in _carbon(trainer.state.log_history) if "carbontrack/predicted_co2eq_g" in r]
    assert {2, 4, 6} <= {row["step"] for row in rows}
    for row in rows:
        assert row["carbontrack/predicted_co2eq_g"] == pytest.approx(
            row["carbontrack/co2eq_g"] * 6 / row["step"]
        )


def test_a_wrong_option_fails_at_construction_with_tracks_error() -> None:
    assert_options_checked_like_track(CarbonTrackCallback)


def test_attach_puts_the_figures_in_the_reporting_integrations_logs(tmp_path: Path) -> None:
    # `seen` stands for a report_to integration: the Trainer calls those before the callbacks
    # given to it, so without attach() they log each event before the figures are added.
    seen = _Seen()
    callback = CarbonTrackCallback(plugins=[fake_hardware()], log_dir=tmp_path, **QUIET)
    trainer = _trainer(tmp_path, [seen, callback])
    assert callback.attach(trainer) is callback
    names = [type(cb).__name__ for cb in trainer.callback_handler.callbacks]
    assert names.index("CarbonTrackCallback") < names.index("_Seen")
    assert names.count("CarbonTrackCallback") == 1
    trainer.train()
    assert len(_carbon(seen.logs)) == 3


def test_without_attach_a_callback_before_it_misses_the_figures(tmp_path: Path) -> None:
    seen = _Seen()
    callback = CarbonTrackCallback(plugins=[fake_hardware()], log_dir=tmp_path, **QUIET)
    _trainer(tmp_path, [seen, callback]).train()
    assert _carbon(seen.logs) == []  # the limit attach() exists for


def test_a_fraction_of_an_epoch_is_counted_in_steps(tmp_path: Path) -> None:
    # num_train_epochs=1.5 ends training in the middle of epoch 2: a partial epoch must not be
    # recorded as a whole one, so the run is measured whole and predicted from steps.
    callback = CarbonTrackCallback(plugins=[fake_hardware()], log_dir=tmp_path, **QUIET)
    trainer = _trainer(tmp_path, [callback], num_train_epochs=1.5, logging_steps=3)
    trainer.train()
    report = assert_finished_run(callback.report, tmp_path, epochs=0)
    assert trainer.state.global_step == 6
    assert any("driven by steps (6 steps)" in w for w in report.warnings)
