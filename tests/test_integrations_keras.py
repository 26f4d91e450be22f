"""The Keras 3 callback, with the real Keras on the torch backend, training a tiny model on CPU."""

# The backend must be chosen before Keras is first imported, so imports follow that line.
# ruff: noqa: E402

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

# Keras picks its backend when first imported; the test machines have torch, not TensorFlow.
os.environ["KERAS_BACKEND"] = "torch"
keras = pytest.importorskip("keras")
np = pytest.importorskip("numpy")

from carbontrack.integrations.keras import CarbonTrackCallback
from carbontrack.testing.launchers import tf_config_env, torchrun_env
from carbontrack.writers.runlog import read_run_log
from integration_helpers import (
    QUIET,
    assert_finished_run,
    assert_logged_figures,
    assert_options_checked_like_track,
    fake_hardware,
)

# Keras's torch backend converts tensors with a call numpy 2 deprecates: Keras's noise, not ours.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _model() -> Any:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    return model


def _data() -> tuple[Any, Any]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    return x, x.sum(axis=1, keepdims=True)


class _RaiseInEpoch(keras.callbacks.Callback):  # type: ignore[misc]
    def __init__(self, epoch: int, exc: BaseException) -> None:
        super().__init__()
        self.epoch, self.exc = epoch, exc

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._current = epoch

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        if self._current == self.epoch and batch == 1:
            raise self.exc


def test_fit_for_three_epochs_reports_three_epochs_and_logs_the_figures(tmp_path: Path) -> None:
    callback = CarbonTrackCallback(plugins=[fake_hardware()], log_dir=tmp_path, **QUIET)
    x, y = _data()
    history = _model().fit(
        x, y, epochs=3, batch_size=8, validation_split=0.25, callbacks=[callback], verbose=0
    )
    report = assert_finished_run(callback.report, tmp_path, epochs=3)
    assert report.epochs_planned == 3  # inferred from fit(epochs=3)
    assert report.predictions[0].after_epoch == 1
    rows = [{k: v[i] for k, v in history.history.items() if len(v) == 3} for i in range(3)]
    assert_logged_figures(rows, report)
    assert "val_loss" in rows[0]  # Keras's own figures are untouched


def test_an_exception_in_epoch_2_ends_the_run_and_is_raised(tmp_path: Path) -> None:
    callback = CarbonTrackCallback(plugins=[fake_hardware()], log_dir=tmp_path, **QUIET)
    x, y = _data()
    with pytest.raises(RuntimeError, match="boom"), callback:
        _model().fit(
            x,
            y,
            epochs=3,
            batch_size=8,
            callbacks=[callback, _RaiseInEpoch(1, RuntimeError("boom"))],
            verbose=0,
        )
    report = assert_finished_run(callback.report, tmp_path, epochs=1)
    assert any("ended by RuntimeError" in w for w in report.warnings)
    assert any("epoch 2 was still open" in w for w in report.warnings)


def test_keyboard_interrupt_ends_the_run_and_is_raised(tmp_path: Path) -> None:
    callback = CarbonTrackCallback(plugins=[fake_hardware()], log_dir=tmp_path, **QUIET)
    x, y = _data()
    with pytest.raises(KeyboardInterrupt), callback:
        _model().fit(
            x,
            y,
            epochs=3,
            batch_size=8,
            callbacks=[callback, _RaiseInEpoch(1, KeyboardInterrupt())],
            verbose=0,
        )
    report = assert_finished_run(callback.report, tmp_path, epochs=1)
    assert any("interrupted (KeyboardInterrupt)" in w for w in report.warnings)


def test_a_run_left_open_by_an_exception_ends_when_the_next_fit_starts(tmp_path: Path) -> None:
    callback = CarbonTrackCallback(plugins=[fake_hardware()], log_dir=tmp_path, **QUIET)
    x, y = _data()
    model = _model()
    with pytest.raises(RuntimeError):
        model.fit(
            x,
            y,
            epochs=3,
            batch_size=8,
            callbacks=[callback, _RaiseInEpoch(1, RuntimeError())],
            verbose=0,
        )
    assert callback.report is None  # Keras told no callback: the run is still open
    assert callback.tracker is not None
    first = callback.tracker
    assert first.running
    model.fit(x, y, epochs=2, batch_size=8, callbacks=[callback], verbose=0)
    assert not first.running
    assert any("a new Keras training started" in w for w in first.report.warnings)
    assert len(first.report.epochs) == 1
    assert callback.report is not None
    assert len(callback.report.epochs) == 2


def test_early_stopping_ends_the_run_with_the_epochs_trained(tmp_path: Path) -> None:
    class StopAfter2(keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            if epoch == 1:
                self.model.stop_training = True

    callback = CarbonTrackCallback(plugins=[fake_hardware()], log_dir=tmp_path, **QUIET)
    x, y = _data()
    _model().fit(x, y, epochs=5, batch_size=8, callbacks=[callback, StopAfter2()], verbose=0)
    report = assert_finished_run(callback.report, tmp_path, epochs=2)
    assert report.epochs_planned == 5
    assert not any("still open" in w for w in report.warnings)


def test_initial_epoch_resumes_and_the_callback_expects_the_epochs_left(tmp_path: Path) -> None:
    # fit(epochs=5, initial_epoch=2) trains epochs 2, 3 and 4 (on_epoch_begin gets those
    # indices), so 3 epochs: keras/src/backend/torch/trainer.py, "for epoch in
    # range(initial_epoch, epochs)"; params only say epochs=5 (CallbackList(epochs=epochs)).
    callback = CarbonTrackCallback(plugins=[fake_hardware()], log_dir=tmp_path, **QUIET)
    x, y = _data()
    history = _model().fit(
        x, y, epochs=5, initial_epoch=2, batch_size=8, callbacks=[callback], verbose=0
    )
    report = assert_finished_run(callback.report, tmp_path, epochs=3)
    assert report.epochs_planned == 3
    assert [p.epochs for p in report.predictions] == [3] * len(report.predictions)
    assert report.predictions[0].after_epoch == 1
    assert not any("was given" in w or "sets no number" in w for w in report.warnings)
    rows = [{k: v[i] for k, v in history.history.items() if len(v) == 3} for i in range(3)]
    assert_logged_figures(rows, report)


def test_explicit_epochs_are_compared_with_the_epochs_left_after_initial_epoch(
    tmp_path: Path,
) -> None:
    x, y = _data()
    agrees = CarbonTrackCallback(plugins=[fake_hardware()], epochs=2, log_dir=tmp_path, **QUIET)
    _model().fit(x, y, epochs=4, initial_epoch=2, batch_size=16, callbacks=[agrees], verbose=0)
    assert agrees.report is not None
    assert agrees.report.epochs_planned == 2
    assert not any("was given" in w for w in agrees.report.warnings)
    differs = CarbonTrackCallback(plugins=[fake_hardware()], epochs=4, log_dir=tmp_path, **QUIET)
    _model().fit(x, y, epochs=4, initial_epoch=2, batch_size=16, callbacks=[differs], verbose=0)
    assert differs.report is not None
    assert differs.report.epochs_planned == 4
    (warning,) = [w for w in differs.report.warnings if "was given" in w]
    assert "set to train 2 epochs (epochs=4, initial_epoch=2)" in warning


def test_initial_epoch_at_epochs_trains_nothing_and_still_reports(tmp_path: Path) -> None:
    callback = CarbonTrackCallback(plugins=[fake_hardware()], log_dir=tmp_path, **QUIET)
    x, y = _data()
    history = _model().fit(
        x, y, epochs=3, initial_epoch=3, batch_size=8, callbacks=[callback], verbose=0
    )
    assert history.history == {}  # Keras trained no epoch
    report = callback.report
    assert report is not None
    assert report.final
    assert report.epochs == ()
    assert report.epochs_planned is None
    (warning,) = [w for w in report.warnings if "trained no epoch" in w]
    assert "epochs=3" in warning
    assert not any("sets no number" in w for w in report.warnings)
    (log,) = tmp_path.glob("*.jsonl")
    lines, problems = read_run_log(log)
    assert not problems
    assert lines[-1]["type"] == "report"


def test_a_wrong_option_fails_at_construction_with_tracks_error() -> None:
    assert_options_checked_like_track(CarbonTrackCallback)
    with pytest.raises(TypeError, match="unknown option"):
        CarbonTrackCallback(epoch=3)


def test_explicit_epochs_win_over_fit_and_the_report_says_so(tmp_path: Path) -> None:
    callback = CarbonTrackCallback(plugins=[fake_hardware()], epochs=10, log_dir=tmp_path, **QUIET)
    x, y = _data()
    _model().fit(x, y, epochs=2, batch_size=16, callbacks=[callback], verbose=0)
    assert callback.report is not None
    assert callback.report.epochs_planned == 10
    assert any("epochs=10 was given" in w for w in callback.report.warnings)


def test_under_a_launcher_each_rank_joins_the_job_and_only_rank_0_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # torchrun's variables for rank 1, then rank 0, of a job of two on one node: Keras has no
    # ranks of its own, so the callback and the tracker read the launcher's.
    x, y = _data()
    options = {**QUIET, "log_dir": tmp_path, "job_wait_s": 0.2}
    for name, value in torchrun_env(1, nproc_per_node=2, run_id="keras").items():
        monkeypatch.setenv(name, value)
    one = CarbonTrackCallback(plugins=[fake_hardware()], **options)
    history = _model().fit(x, y, epochs=2, batch_size=16, callbacks=[one], verbose=0)
    assert one.report is not None
    assert one.report.job is not None
    assert one.report.job.scope == "rank"
    # The node's CPU is read by the node leader (local rank 0) alone; a single GPU is read by
    # the rank it is bound to (the job's ledger counts a shared one once).
    assert [d.id for d in one.report.devices] == ["gpu0"]
    assert not any(k.startswith("carbontrack/") for k in history.history)

    for name, value in torchrun_env(0, nproc_per_node=2, run_id="keras").items():
        monkeypatch.setenv(name, value)
    zero = CarbonTrackCallback(plugins=[fake_hardware()], **options)
    history = _model().fit(x, y, epochs=2, batch_size=16, callbacks=[zero], verbose=0)
    assert zero.report is not None
    assert zero.report.job is not None
    assert zero.report.job.scope == "job"
    assert zero.report.energy_j > 0
    assert len(history.history["carbontrack/energy_kwh"]) == 2


def test_under_tf_config_each_worker_joins_the_job_and_only_the_chief_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # MultiWorkerMirroredStrategy's workers: TF_CONFIG makes the chief rank 0 and worker 0
    # rank 1 of a job of two (tensorflow/python/distribute/multi_worker_util.py).
    x, y = _data()
    options = {**QUIET, "log_dir": tmp_path, "job_wait_s": 0.2}
    monkeypatch.setenv("TF_CONFIG", tf_config_env("worker", 0, chief=1, workers=1)["TF_CONFIG"])
    worker = CarbonTrackCallback(plugins=[fake_hardware()], **options)
    history = _model().fit(x, y, epochs=2, batch_size=16, callbacks=[worker], verbose=0)
    assert worker.report is not None
    assert worker.report.job is not None
    assert worker.report.job.scope == "rank"
    assert not any(k.startswith("carbontrack/") for k in history.history)

    monkeypatch.setenv("TF_CONFIG", tf_config_env("chief", 0, chief=1, workers=1)["TF_CONFIG"])
    chief = CarbonTrackCallback(plugins=[fake_hardware()], **options)
    history = _model().fit(x, y, epochs=2, batch_size=16, callbacks=[chief], verbose=0)
    assert chief.report is not None
    assert chief.report.job is not None
    assert chief.report.job.scope == "job"
    assert chief.report.energy_j > 0
    assert len(history.history["carbontrack/energy_kwh"]) == 2
