"""carbontrack.compat.CarbonTracker: carbontracker's API, mapped argument by argument."""

from __future__ import annotations

from pathlib import Path

import pytest

from carbontrack import InvalidOption
from carbontrack.compat import CarbonTracker
from carbontrack.testing import FakeDevice, FakeHardware
from carbontrack.testing.intensity import FakeElectricityMaps


@pytest.fixture
def fake_gpus(monkeypatch: pytest.MonkeyPatch) -> FakeHardware:
    """Fake hardware that every CarbonTracker in the test picks up (it takes no plugins=)."""
    hw = FakeHardware(
        [
            FakeDevice("gpu0", kind="gpu", watts=100.0),
            FakeDevice("gpu1", kind="gpu", watts=300.0),
            FakeDevice("package-0", kind="cpu", watts=50.0),
        ]
    )
    import carbontrack._plugins as plugins

    original = plugins.make_plugin_manager

    def with_fake(*, autoload: bool = True, extra_plugins: tuple[object, ...] = ()) -> object:
        return original(autoload=autoload, extra_plugins=(hw, *extra_plugins))

    monkeypatch.setattr(plugins, "make_plugin_manager", with_fake)
    return hw


def test_readme_usage_runs_unchanged(fake_gpus: FakeHardware, tmp_path: Path) -> None:
    # carbontracker's README loop, with the seed example's constructor.
    max_epochs = 4
    tracker = CarbonTracker(
        epochs=max_epochs, components="gpu", log_dir=str(tmp_path), monitor_epochs=-1
    )
    for _epoch in range(max_epochs):
        tracker.epoch_start()
        sum(range(1000))
        tracker.epoch_end()
    tracker.stop()
    report = tracker.report
    assert report is not None
    assert len(report.epochs) == max_epochs
    # Both GPUs summed (carbontracker averaged them), CPU excluded by components="gpu".
    assert sorted(d.id for d in report.devices) == ["gpu0", "gpu1"]
    assert {c.component for c in report.components} == {"gpu"}
    assert len(list(tmp_path.glob("carbontrack-*.jsonl"))) == 1


def test_monitor_epochs_stops_the_run_after_that_many_epochs(fake_gpus: FakeHardware) -> None:
    tracker = CarbonTracker(epochs=5, monitor_epochs=2, verbose=0)
    for _ in range(5):
        tracker.epoch_start()
        tracker.epoch_end()
    assert tracker.report is not None
    assert len(tracker.report.epochs) == 2
    assert not tracker.tracker.running


@pytest.mark.parametrize("bad", [0])
def test_monitor_epochs_zero_is_rejected(bad: int) -> None:
    with pytest.raises(ValueError, match="monitor_epochs=0"):
        CarbonTracker(epochs=3, monitor_epochs=bad)


def test_monitor_epochs_below_epochs_before_pred_is_rejected() -> None:
    with pytest.raises(ValueError, match="epochs_before_pred"):
        CarbonTracker(epochs=5, epochs_before_pred=3, monitor_epochs=2)


def test_argument_mapping(fake_gpus: FakeHardware, tmp_path: Path) -> None:
    tracker = CarbonTracker(
        epochs=7,
        epochs_before_pred=2,
        update_interval=0.5,
        components="cpu,gpu",
        devices_by_pid=True,
        log_dir=str(tmp_path),
        log_file_prefix="exp",
        verbose=0,
        api_keys={"electricitymaps": "secret"},
        interpretable=False,
        ignore_errors=True,
        decimal_precision=3,
    )
    s = tracker.settings
    assert s.epochs == 7
    assert s.epochs_before_pred == 2
    assert s.interval_s == 0.5
    assert s.components == frozenset({"cpu", "gpu"})
    assert s.devices_by_pid is True
    assert s.log_dir == tmp_path
    assert s.log_file_prefix == "exp_"  # carbontracker appended "_" to the prefix
    assert s.write_log is True
    assert s.verbose == 0
    assert s.api_keys == {"electricitymaps": "secret"}
    assert s.plugin_options["console"]["equivalents"] is False
    assert tracker.ignore_errors is True
    assert tracker.decimal_precision == 3
    tracker.stop()
    assert len(list(tmp_path.glob("exp_carbontrack-*.jsonl"))) == 1


def test_no_log_dir_writes_no_files(fake_gpus: FakeHardware) -> None:
    tracker = CarbonTracker(epochs=1, verbose=0)
    assert tracker.settings.write_log is False
    tracker.stop()


def test_epochs_before_pred_minus_one_never_predicts(fake_gpus: FakeHardware) -> None:
    tracker = CarbonTracker(epochs=3, epochs_before_pred=-1, verbose=0)
    assert tracker.settings.epochs_before_pred == 0
    for _ in range(3):
        tracker.epoch_start()
        tracker.epoch_end()
    assert tracker.report is not None
    assert tracker.report.predictions == ()


def test_stop_and_confirm_warns_once_and_never_prompts(
    fake_gpus: FakeHardware, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_input(*_args: object) -> str:
        raise AssertionError("input() must never be called")

    monkeypatch.setattr("builtins.input", no_input)
    tracker = CarbonTracker(epochs=4, stop_and_confirm=True, monitor_epochs=-1, verbose=0)

    # At the prediction, where carbontracker prompted: one warning, through the budget callback.
    def train() -> None:
        for _ in range(4):
            tracker.epoch_start()
            tracker.epoch_end()

    with pytest.warns(UserWarning, match="never waits for input\\(\\): training goes on") as seen:
        train()
    assert len([w for w in seen if "stop_and_confirm" in str(w.message)]) == 1
    assert tracker.report is not None
    assert len(tracker.report.epochs) == 4  # training went on
    assert tracker.settings.on_budget is not None
    assert callable(tracker.settings.on_budget)


def test_sim_cpu_and_sim_gpu_are_labelled_models(monkeypatch: pytest.MonkeyPatch) -> None:
    tracker = CarbonTracker(
        epochs=1,
        verbose=0,
        sim_cpu="Fake CPU",
        sim_cpu_tdp=100,
        sim_cpu_util=0.3,
        sim_gpu="Fake GPU",
        sim_gpu_watts=250,
    )
    tracker.epoch_start()
    tracker.epoch_end()
    report = tracker.report
    assert report is not None
    devices = {d.kind: d for d in report.devices}
    assert devices["cpu"].method == "model"
    assert devices["gpu"].method == "model"
    assert devices["cpu"].name == "Fake CPU (simulated)"
    assert report.estimated
    hw_cpu = tracker.tracker._run.devices
    assert {d.detail for d in hw_cpu} == {
        "simulated by carbontracker's sim_cpu option: 30 W constant",
        "simulated by carbontracker's sim_gpu option: 125 W constant",
    }


def test_sim_cpu_replaces_the_builtin_cpu_estimate(monkeypatch: pytest.MonkeyPatch) -> None:
    # As in carbontracker, a simulated CPU replaces CPU detection: never summed with the
    # estimate. A fake model CPU stands for the built-in estimate, registered before, as it is.
    estimate = FakeHardware([FakeDevice("cpu", method="model", watts=20.0)], name="cpu-estimate")
    import carbontrack._plugins as plugins

    original = plugins.make_plugin_manager

    def with_estimate(*, autoload: bool = True, extra_plugins: tuple[object, ...] = ()) -> object:
        return original(autoload=autoload, extra_plugins=(estimate, *extra_plugins))

    monkeypatch.setattr(plugins, "make_plugin_manager", with_estimate)
    plain = CarbonTracker(epochs=1, verbose=0)
    assert plain.stop() is not None
    assert [d.backend for d in plain.report.devices] == ["cpu-estimate"]
    tracker = CarbonTracker(epochs=1, verbose=0, sim_cpu="Xeon X", sim_cpu_tdp=200)
    report = tracker.stop()
    assert report is not None
    assert [(d.kind, d.backend) for d in report.devices] == [("cpu", "simulated")]


def test_a_measured_device_beats_a_simulated_one(fake_gpus: FakeHardware) -> None:
    tracker = CarbonTracker(epochs=1, verbose=0, sim_gpu="Fake GPU", sim_gpu_watts=250)
    tracker.stop()
    assert tracker.report is not None
    assert {d.method for d in tracker.report.devices} == {"counter"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sim_cpu": "X"}, "needs sim_cpu_tdp="),
        ({"sim_gpu": "X"}, "needs sim_gpu_watts="),
        ({"sim_cpu": "X", "sim_cpu_tdp": 100, "sim_cpu_util": 1.5}, "sim_cpu_util=1.5"),
        ({"sim_gpu": "X", "sim_gpu_watts": -5}, "sim_gpu_watts=-5"),
        ({"decimal_precision": -1}, "decimal_precision=-1"),
    ],
)
def test_bad_sim_values_raise_value_error(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CarbonTracker(epochs=1, **kwargs)  # type: ignore[arg-type]


def test_unknown_argument_raises_type_error_naming_it() -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'epoch'"):
        CarbonTracker(epoch=3)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"components": "tpu"}, "components='tpu'"),
        ({"update_interval": -1}, "interval_s=-1"),
        ({"epochs": 0}, "epochs=0"),
        ({"verbose": -1}, "verbose=-1"),
    ],
)
def test_invalid_values_raise_the_same_errors_as_track(
    kwargs: dict[str, object], message: str
) -> None:
    args: dict[str, object] = {"epochs": 2, **kwargs}
    with pytest.raises(InvalidOption, match=message):
        CarbonTracker(**args)  # type: ignore[arg-type]


def test_set_api_keys_applies_to_the_final_intensity(fake_gpus: FakeHardware) -> None:
    tracker = CarbonTracker(epochs=1, verbose=0, api_keys={"electricitymaps": "a"})
    tracker.set_api_keys({"energidataservice": "b"})
    assert tracker.settings.api_keys == {"electricitymaps": "a", "energidataservice": "b"}
    tracker.stop()


def test_a_key_set_after_construction_reaches_the_live_provider(
    fake_gpus: FakeHardware, monkeypatch: pytest.MonkeyPatch
) -> None:
    # carbontracker's set_api_keys() never reached its intensity thread; ours must.
    with FakeElectricityMaps(lambda _ts: 123.0) as em:
        for name, value in {**em.env(), "CARBONTRACK_LOCATION": "DE"}.items():
            monkeypatch.setenv(name, value)
        without = CarbonTracker(epochs=1, verbose=0)
        without.stop()
        tracker = CarbonTracker(epochs=1, verbose=0)
        tracker.set_api_keys({"electricitymaps": em.key})
        tracker.epoch_start()
        tracker.epoch_end()
    assert without.report is not None
    assert "Electricity Maps" not in without.report.intensity.source
    assert tracker.report is not None
    assert tracker.report.intensity.g_per_kwh == pytest.approx(123.0)
    assert "Electricity Maps" in tracker.report.intensity.source


def test_calls_after_the_run_are_no_ops_like_carbontracker(fake_gpus: FakeHardware) -> None:
    tracker = CarbonTracker(epochs=1, verbose=0)
    tracker.epoch_start()
    tracker.epoch_end()
    report = tracker.report
    tracker.epoch_start()
    assert tracker.epoch_end() is None
    assert tracker.stop() is report


def test_verbosity_above_two_is_accepted_as_two(fake_gpus: FakeHardware) -> None:
    tracker = CarbonTracker(epochs=1, verbose=3)
    assert tracker.settings.verbose == 2
    tracker.stop()


def test_stop_mid_epoch_does_not_count_the_interrupted_epoch(fake_gpus: FakeHardware) -> None:
    # carbontracker's stop() took one off its epoch counter for the epoch it interrupted.
    tracker = CarbonTracker(epochs=5, verbose=0)
    tracker.epoch_start()
    tracker.epoch_end()
    tracker.epoch_start()
    report = tracker.stop()
    assert report is not None
    assert len(report.epochs) == 1
