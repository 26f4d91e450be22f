"""The API: track(), track_epochs(), epochs, misuse, isolation, threads, fork, run log."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from carbontrack import Device, Reading, Tracker, UsageError, hookimpl, track, track_epochs
from carbontrack.model import J_PER_KWH, Report
from carbontrack.testing import FakeDevice, FakeHardware
from carbontrack.writers.runlog import read_run_log

QUIET = {"verbose": 0, "interval_s": 0.01}


def _hw(**kwargs: object) -> FakeHardware:
    return FakeHardware(
        [
            FakeDevice("package-0", kind="cpu", watts=60.0),
            FakeDevice("dram-0", kind="dram", watts=10.0),
            FakeDevice("gpu0", kind="gpu", method="power", watts=200.0),
        ],
        **kwargs,  # type: ignore[arg-type]
    )


def test_context_manager_measures_the_block() -> None:
    hw = _hw()
    with track(plugins=[hw], **QUIET) as run:
        time.sleep(0.05)
    report = run.report
    assert report.final
    assert report.duration_s >= 0.05
    # Counters match exactly; sampled power is timed by the sampler's clock, a few µs apart.
    assert report.energy_j == pytest.approx(hw.true_energy_j, rel=1e-3)
    assert {d.id: d.method for d in report.devices} == {
        "package-0": "counter",
        "dram-0": "counter",
        "gpu0": "power",
    }
    cpu = next(c for c in report.components if c.component == "cpu")
    assert cpu.devices == 2  # DRAM is counted under cpu, each device keeps its kind
    assert not report.estimated


def test_co2_is_facility_energy_times_intensity() -> None:
    with track(plugins=[_hw()], pue=1.5, **QUIET) as run:
        time.sleep(0.02)
    r = run.report
    assert r.facility_energy_j == pytest.approx(r.energy_j * 1.5)
    assert r.co2eq_g == pytest.approx(r.facility_energy_j / J_PER_KWH * r.intensity.g_per_kwh)
    assert r.intensity.is_fallback
    assert "world average" in r.intensity.note


def test_report_before_the_end_says_how_to_get_it() -> None:
    with track(plugins=[_hw()], **QUIET) as run:
        with pytest.raises(UsageError, match="after the `with` block"):
            _ = run.report
        snapshot = run.snapshot()
        assert not snapshot.final
    assert run.report.final


def test_user_exception_propagates_and_the_report_is_still_written(tmp_path: Path) -> None:
    with (
        pytest.raises(ZeroDivisionError),
        track(plugins=[_hw()], log_dir=tmp_path, **QUIET) as run,
    ):
        _ = 1 / 0
    assert run.report.final
    (log,) = tmp_path.glob("*.jsonl")
    lines, problems = read_run_log(log)
    assert not problems
    assert lines[-1]["type"] == "report"


def test_decorator_measures_every_call_with_fresh_state() -> None:
    hw = _hw()
    runs: list[Tracker] = []

    @track(plugins=[hw], **QUIET)
    def work(depth: int) -> int:
        return work(depth - 1) + 1 if depth else 0

    assert work(3) == 3  # recursion: every level is its own tracker
    assert work.__name__ == "work"
    runs.append(track(plugins=[hw], **QUIET).new_tracker())
    assert runs[0] is not track(plugins=[hw], **QUIET).new_tracker()


def test_decorated_function_keeps_its_latest_report() -> None:
    @track(plugins=[_hw()], **QUIET)
    def work(fail: bool) -> None:
        if fail:
            raise RuntimeError("boom")

    assert work.last_report is None  # type: ignore[attr-defined]
    work(False)
    first = work.last_report  # type: ignore[attr-defined]
    assert first is not None
    assert first.final
    with pytest.raises(RuntimeError):
        work(True)
    assert work.last_report.run_id != first.run_id  # type: ignore[attr-defined]


def test_bare_decorator_works() -> None:
    @track
    def work() -> str:
        return "done"

    assert work() == "done"


class _Reports:
    """Keeps every final report (the decorator form has no ``run`` to read it from)."""

    name = "reports"

    def __init__(self) -> None:
        self.reports: list[Report] = []

    @hookimpl
    def carbontrack_report_ready(self, report: Report) -> None:
        self.reports.append(report)


def test_decorated_coroutine_function_is_measured_while_it_runs() -> None:
    seen = _Reports()

    @track(plugins=[_hw(), seen], **QUIET)
    async def work() -> str:
        await asyncio.sleep(0.2)
        return "done"

    assert inspect.iscoroutinefunction(work)
    assert asyncio.run(work()) == "done"
    (report,) = seen.reports
    assert report.duration_s >= 0.2  # the await, not only the creation of the coroutine


def test_decorating_a_generator_function_says_what_to_do_instead() -> None:
    def batches() -> Iterator[int]:
        yield 1

    with pytest.raises(
        TypeError, match=r"batches\(\), which is a generator function.*with track\(\)"
    ):
        track(**QUIET)(batches)


def test_same_track_object_nests_and_runs_in_threads() -> None:
    factory = track(plugins=[_hw()], **QUIET)
    reports = []

    def body() -> None:
        with factory as outer:
            with factory as inner:
                assert inner is not outer
                time.sleep(0.02)
            reports.append(inner.report)
        reports.append(outer.report)

    threads = [threading.Thread(target=body) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(reports) == 8
    assert len({r.run_id for r in reports}) == 8


def test_sampler_is_a_named_daemon_thread() -> None:
    with track(plugins=[_hw()], **QUIET) as run:
        (thread,) = [t for t in threading.enumerate() if t.name.endswith(run.run_id)]
        assert thread.daemon
        assert thread.name.startswith("carbontrack-sampler")
    thread.join(1)
    assert not thread.is_alive()


def test_epochs_partition_the_run() -> None:
    hw = _hw()
    with track(plugins=[hw], epochs=3, **QUIET) as run:
        for _ in range(2):
            with run.epoch():
                time.sleep(0.01)
        run.epoch_start()
        record = run.epoch_end()
    assert record.index == 3
    r = run.report
    assert [e.index for e in r.epochs] == [1, 2, 3]
    assert sum(e.energy_j for e in r.epochs) <= r.energy_j + 1e-9
    first = r.epochs[0]
    assert first.energy_by_component_j["cpu"] + first.energy_by_component_j["gpu"] == pytest.approx(
        first.energy_j
    )
    assert r.epochs_planned == 3
    # One prediction after the first epoch (epochs_before_pred=1, monitor_epochs=1).
    assert [p.after_epoch for p in r.predictions] == [1]


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (lambda run: run.epoch_end(), "call epoch_start\\(\\) first"),
        (lambda run: (run.epoch_start(), run.epoch_start()), "call epoch_end\\(\\) before"),
        (lambda run: run.start(), "already running"),
    ],
)
def test_misuse_says_the_fix(action: object, message: str) -> None:
    with track(plugins=[_hw()], **QUIET) as run, pytest.raises(UsageError, match=message):
        action(run)  # type: ignore[operator]


def test_a_stopped_tracker_cannot_restart_or_take_epochs() -> None:
    with track(plugins=[_hw()], **QUIET) as run:
        pass
    with pytest.raises(UsageError, match="create a new one with track\\(\\)"):
        run.start()
    with pytest.raises(UsageError, match="after the run stopped"):
        run.epoch_start()
    assert run.stop() is run.report  # stop() again returns the same report


def test_track_epochs_makes_every_call_an_epoch() -> None:
    hw = _hw()
    calls = []

    @track_epochs(epochs=3, plugins=[hw], **QUIET)
    def train_one_epoch(i: int) -> int:
        calls.append(i)
        return i * 2

    assert [train_one_epoch(i) for i in range(3)] == [0, 2, 4]
    report = train_one_epoch.report
    assert report is not None
    assert len(report.epochs) == 3
    assert train_one_epoch.tracker is not None
    assert not train_one_epoch.tracker.running
    train_one_epoch(9)  # a further call starts a new run
    assert train_one_epoch.tracker.running
    early = train_one_epoch.stop()
    assert early is not None
    assert len(early.epochs) == 1


@pytest.mark.parametrize("kind", ["async def", "generator"])
def test_track_epochs_refuses_functions_whose_call_is_not_the_epoch(kind: str) -> None:
    async def async_epoch() -> None:
        await asyncio.sleep(0)

    def generator_epoch() -> Iterator[int]:
        yield 1

    func = async_epoch if kind == "async def" else generator_epoch
    with pytest.raises(TypeError, match=r"@track_epochs\(\) on .*run\.epoch\(\)"):
        track_epochs(epochs=2, **QUIET)(func)  # type: ignore[arg-type]


def test_components_select_devices() -> None:
    with track(plugins=[_hw()], components="gpu", **QUIET) as run:
        pass
    assert [d.kind for d in run.report.devices] == ["gpu"]


def test_model_device_is_dropped_where_a_measured_one_exists() -> None:
    measured = FakeHardware([FakeDevice("package-0", watts=50.0)], name="meter")
    model = FakeHardware(
        [
            FakeDevice("cpu-model", method="model", watts=80.0),
            FakeDevice("gpu-model", kind="gpu", method="model"),
        ],
        name="model",
    )
    with track(plugins=[model, measured], **QUIET) as run:
        pass
    assert sorted((d.id, d.method) for d in run.report.devices) == [
        ("gpu-model", "model"),
        ("package-0", "counter"),
    ]
    assert run.report.estimated


def test_one_kind_is_modelled_by_one_plugin_only() -> None:
    # Two models of the machine's CPU (carbontracker's sim_cpu beside the built-in estimate)
    # would sum the same CPU twice: the plugin asked first keeps the kind (the last registered:
    # plugins= and installed ones before the built-ins).
    first = FakeHardware([FakeDevice("cpu-sim", method="model", watts=100.0)], name="sim")
    second = FakeHardware(
        [
            FakeDevice("cpu-model", method="model", watts=80.0),
            FakeDevice("gpu-model", kind="gpu", method="model", watts=30.0),
        ],
        name="model",
    )
    with track(plugins=[second, first], **QUIET) as run:
        pass
    assert sorted((d.id, d.backend) for d in run.report.devices) == [
        ("cpu-sim", "sim"),
        ("gpu-model", "model"),
    ]


def test_estimate_stands_in_when_nothing_is_measured() -> None:
    model = FakeHardware([FakeDevice("cpu-model", method="model", watts=80.0)], name="model")
    with track(plugins=[model], **QUIET) as run:
        time.sleep(0.02)
    (component,) = run.report.components
    assert component.methods == ("model",)
    assert component.estimated
    assert run.report.energy_j > 0


def test_device_dropped_mid_run_marks_the_report_partial(caplog: pytest.LogCaptureFixture) -> None:
    hw = FakeHardware(
        [
            FakeDevice("pkg", watts=10.0, fail_at=set(range(3, 10_000))),
            FakeDevice("gpu", kind="gpu"),
        ]
    )
    with track(plugins=[hw], **QUIET) as run:
        time.sleep(0.1)
    r = run.report
    dropped = {d.id: d.dropped for d in r.devices}
    assert dropped["pkg"] is not None
    assert dropped["gpu"] is None
    assert r.partial
    assert next(c for c in r.components if c.component == "cpu").partial
    assert any("pkg" in w for w in r.warnings)
    drops = [rec for rec in caplog.records if "stopped measuring" in rec.getMessage()]
    assert len(drops) == 1


def test_plugin_raising_in_every_read_never_reaches_user_code() -> None:
    hw = FakeHardware([FakeDevice("pkg", watts=10.0)], read_error_at=set(range(1, 10_000)))
    with track(plugins=[hw], **QUIET) as run:
        time.sleep(0.05)
    assert run.report.energy_j == 0
    assert run.report.devices[0].dropped is not None
    assert run.report.failures[0].count >= 3


def test_devices_are_closed_at_the_end() -> None:
    hw = _hw()
    with track(plugins=[hw], **QUIET):
        assert not hw.closed
    assert hw.closed


def test_no_device_at_all_is_said_plainly() -> None:
    with track(**QUIET) as run:
        pass
    assert run.report.devices == ()
    assert any("no device could be measured" in w for w in run.report.warnings)


def test_run_log_has_header_epochs_checkpoints_and_report(tmp_path: Path) -> None:
    with track(
        plugins=[_hw()],
        epochs=2,
        log_dir=tmp_path,
        checkpoint_s=0.02,
        log_file_prefix="exp1-",
        **QUIET,
    ) as run:
        (log,) = tmp_path.glob("exp1-carbontrack-*.jsonl")
        # Flushed line by line: the header is on disk while the run goes on.
        assert json.loads(log.read_text().splitlines()[0])["type"] == "header"
        for _ in range(2):
            with run.epoch():
                time.sleep(0.05)
    lines, problems = read_run_log(log)
    assert not problems
    types = [line["type"] for line in lines]
    assert types[0] == "header"
    assert types[-1] == "report"
    assert types.count("epoch") == 2
    assert "checkpoint" in types
    assert lines[0]["run"]["run_id"] == run.run_id
    assert lines[-1]["report"] == json.loads(json.dumps(run.report.to_dict()))
    epochs = [line for line in lines if line["type"] == "epoch"]
    assert epochs[0]["prediction"]["after_epoch"] == 1
    assert epochs[1]["prediction"] is None


def test_default_log_dir_is_under_carbontrack_home(tmp_path: Path) -> None:
    with track(plugins=[_hw()], **QUIET):
        pass
    home = Path(os.environ["CARBONTRACK_HOME"])
    assert len(list((home / "logs").glob("*.jsonl"))) == 1


def test_console_summary_on_stderr_and_silenced_by_verbose_0(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with track(plugins=[_hw()], interval_s=0.01):
        pass
    err = capsys.readouterr().err
    assert "measured (energy counter)" in err
    assert "measured (sampled power)" in err
    with track(plugins=[_hw()], **QUIET):
        pass
    assert capsys.readouterr().err == ""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_has_no_running_sampler() -> None:
    with track(plugins=[_hw()], **QUIET) as run:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child reports what it sees, then leaves without cleanup
            threads = [t.name for t in threading.enumerate() if "carbontrack" in t.name]
            verdict = "ok" if not run.running and not threads else f"bad {threads}"
            os.write(write_fd, verdict.encode())
            os._exit(0)
        os.close(write_fd)
        _, status = os.waitpid(pid, 0)
        answer = os.read(read_fd, 200).decode()
        os.close(read_fd)
        assert run.running  # the parent keeps measuring
    assert answer == "ok"
    assert os.waitstatus_to_exitcode(status) == 0


def test_ram_model_is_dropped_where_dram_is_measured() -> None:
    rapl = FakeHardware([FakeDevice("dram-0", kind="dram", watts=5.0)], name="meter")
    model = FakeHardware([FakeDevice("ram-model", kind="ram", method="model", watts=9.0)], name="m")
    with track(plugins=[model, rapl], components="all,ram", **QUIET) as run:
        pass
    assert [d.id for d in run.report.devices] == ["dram-0"]


def test_device_detail_reaches_the_report() -> None:
    class Estimator:
        name = "estimator"

        @hookimpl
        def carbontrack_discover_devices(self) -> list[Device]:
            return [
                Device(
                    id="cpu",
                    kind="cpu",
                    name="CPU model",
                    backend="estimator",
                    method="model",
                    detail="no readable counter; fix: sudo chmod +r ...",
                )
            ]

        @hookimpl
        def carbontrack_read_energy(self) -> list[Reading]:
            return [Reading("cpu", watts=20.0)]

    with track(plugins=[Estimator()], **QUIET) as run:
        pass
    assert run.report.devices[0].detail == "no readable counter; fix: sudo chmod +r ..."


def test_summary_flags_shared_hardware(capsys: pytest.CaptureFixture[str]) -> None:
    hw = FakeHardware([FakeDevice("gpu0", kind="gpu", watts=100.0, shared=True, name="A100 MIG")])
    with track(plugins=[hw], interval_s=0.01):
        pass
    err = capsys.readouterr().err
    assert "SHARED A100 MIG: the whole device's energy is counted" in err


def test_psys_counts_under_cpu_and_replaces_cpu_and_ram_models() -> None:
    psys = FakeHardware([FakeDevice("psys", kind="psys", watts=20.0)], name="meter")
    models = FakeHardware(
        [
            FakeDevice("cpu-model", kind="cpu", method="model", watts=30.0),
            FakeDevice("ram-model", kind="ram", method="model", watts=3.0),
        ],
        name="models",
    )
    with track(plugins=[models, psys], components="cpu,ram", **QUIET) as run:
        pass
    assert [d.id for d in run.report.devices] == ["psys"]
    assert [c.component for c in run.report.components] == ["cpu"]


def test_a_plugin_read_that_hangs_never_holds_up_training(caplog: pytest.LogCaptureFixture) -> None:
    # Read 1 is the start edge; read 2 is the background thread's first, and it hangs for 4 s.
    hw = FakeHardware([FakeDevice("pkg", watts=10.0)], hang_at={2}, hang_s=4.0)
    with track(plugins=[hw], **QUIET) as run:
        while hw.reads < 2:
            time.sleep(0.005)
        started = time.perf_counter()
        with run.epoch():
            pass
        epoch_s = time.perf_counter() - started
        started = time.perf_counter()
    stop_s = time.perf_counter() - started
    # The first edge waits at most the read budget (1 s) for the stuck read, later ones skip
    # the stuck plugin at once.
    assert epoch_s < 2.0
    assert stop_s < 2.0
    assert run.report.final
    # One warning names the plugin and its budget; its device is dropped, the report partial.
    (warned,) = [r for r in caplog.records if "no answer within its 1 s budget" in r.getMessage()]
    assert "'fake'" in warned.getMessage()
    assert run.report.partial
    assert "has not returned" in (run.report.devices[0].dropped or "")


def test_decorated_coroutine_keeps_its_latest_report() -> None:
    import asyncio

    @track(plugins=[_hw()], **QUIET)
    async def work() -> int:
        await asyncio.sleep(0.02)
        return 7

    assert asyncio.run(work()) == 7
    report = work.last_report  # type: ignore[attr-defined]
    assert report is not None
    assert report.duration_s >= 0.02


def test_an_epoch_open_at_stop_counts_in_the_total_but_not_as_an_epoch() -> None:
    hw = _hw()
    with track(plugins=[hw], epochs=5, **QUIET) as run:
        with run.epoch():
            time.sleep(0.01)
        run.epoch_start()
        time.sleep(0.02)
    r = run.report
    assert [e.index for e in r.epochs] == [1]
    assert r.energy_j > r.epochs[0].energy_j
    assert any("epoch 2 was still open" in w for w in r.warnings)


def test_summary_of_a_run_without_devices_says_nothing_was_measured(capsys: pytest.CaptureFixture[str]) -> None:
    with track(interval_s=0.01):
        pass
    first = capsys.readouterr().err.splitlines()[0]
    assert "(nothing measured)" in first
    assert "(measured)" not in first
