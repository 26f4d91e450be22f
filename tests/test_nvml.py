"""The NVML backend, against carbontrack.testing.nvml's fake pynvml (and the real one's API)."""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carbontrack import _tracker
from carbontrack.backends import nvml as backend
from carbontrack.model import Device, Report, Unavailable
from carbontrack.settings import make_settings
from carbontrack.testing import FakeClock
from carbontrack.testing import nvml as fake_nvml
from carbontrack.testing.nvml import (
    FakeGpu,
    FakeMigInstance,
    FakeNVML,
    NVMLError,
    PowerTrace,
)

OTHER_BACKENDS = "rapl,powermetrics,estimate"


def gpu(n: int, bus: int, **kw: object) -> FakeGpu:
    """A fake GPU with a recognisable UUID and PCI bus number."""
    return FakeGpu(
        uuid=f"GPU-{str(n) * 8}-aaaa-bbbb-cccc-{n:012d}",
        pci_bus_id=f"00000000:{bus:02X}:00.0",
        **kw,  # type: ignore[arg-type]
    )


# NVML index order deliberately differs from PCI bus order: PCI order is B, A, C.
A, B, C = 1, 2, 3


def three_gpus(**kw: object) -> list[FakeGpu]:
    return [gpu(A, 0x3B, **kw), gpu(B, 0x1A, **kw), gpu(C, 0x88, **kw)]


def uuid(n: int) -> str:
    return gpu(n, 0).uuid


@pytest.fixture(autouse=True)
def _nvml_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARBONTRACK_DISABLE_PLUGINS", OTHER_BACKENDS)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    monkeypatch.delenv(backend.CUDA_PROBE_ENV, raising=False)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def discover(fake: FakeNVML, **options: object) -> list[Device | Unavailable]:
    """Run discovery against ``fake``, close what it opened, return what it found."""
    with fake.installed():
        found = backend.discover(make_settings(**options))
        backend.carbontrack_close_devices([d for d in found if isinstance(d, Device)])
    assert fake.shutdown_count == fake.init_count
    return found


def devices(found: list[Device | Unavailable]) -> list[Device]:
    return [d for d in found if isinstance(d, Device)]


def ids(found: list[Device | Unavailable]) -> list[str]:
    return [d.id for d in devices(found)]


def run(fake: FakeNVML, clock: FakeClock, steps: list[float], **options: object) -> Report:
    """A tracked run reading the GPUs after each step of the fake clock (no background reads)."""
    settings = make_settings(interval_s=3600.0, write_log=False, verbose=0, **options)
    with fake.installed():
        tracker = _tracker.Tracker(settings, clock=clock)
        tracker.start()
        for step in steps:
            clock.advance(step)
            tracker.snapshot()
        return tracker.stop()


# -- the fake stays faithful to nvidia-ml-py --------------------------------------------------


def test_fake_functions_have_the_signatures_of_the_real_pynvml() -> None:
    pynvml = pytest.importorskip("pynvml")
    fake = FakeNVML()
    assert len(fake_nvml.FUNCTIONS) >= 20
    for name in fake_nvml.FUNCTIONS:
        real = getattr(pynvml, name, None)
        assert real is not None, f"pynvml has no {name}"
        want = [(p.name, p.kind) for p in inspect.signature(real).parameters.values()]
        got = [(p.name, p.kind) for p in inspect.signature(getattr(fake, name)).parameters.values()]
        assert got == want, name


def test_fake_error_classes_and_constants_match_the_real_pynvml() -> None:
    pynvml = pytest.importorskip("pynvml")
    for const, code in fake_nvml.ERROR_CODES.items():
        assert getattr(pynvml, const) == code
        real_cls = type(pynvml.NVMLError(code))
        fake_exc = NVMLError(code)
        assert type(fake_exc).__name__ == real_cls.__name__
        assert isinstance(fake_exc, NVMLError)
        assert fake_exc.value == code
        assert str(fake_exc) == str(pynvml.NVMLError(code))
    for const, value in fake_nvml.CONSTANTS.items():
        assert getattr(pynvml, const) == value, const
    real_mismatch = pynvml.NVMLLibraryMismatchError
    assert not issubclass(real_mismatch, pynvml.NVMLError)
    assert not issubclass(fake_nvml.NVMLLibraryMismatchError, NVMLError)


def test_fake_subclass_is_raised_and_caught_by_its_own_name() -> None:
    fake = FakeNVML([gpu(A, 0x3B, lost=True)])
    fake.nvmlInit()
    handle = fake.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(fake.NVMLError_GpuIsLost, match="GPU is lost"):  # type: ignore[attr-defined]
        fake.nvmlDeviceGetTotalEnergyConsumption(handle)
    fake.nvmlShutdown()
    with pytest.raises(fake.NVMLError_Uninitialized):  # type: ignore[attr-defined]
        fake.nvmlDeviceGetCount()


def test_fake_units_are_millijoules_and_milliwatts(clock: FakeClock) -> None:
    fake = FakeNVML([gpu(A, 0x3B, power=250.0, start_mj=1000)], clock=clock)
    fake.nvmlInit()
    h = fake.nvmlDeviceGetHandleByIndex(0)
    clock.advance(2.0)
    assert fake.nvmlDeviceGetTotalEnergyConsumption(h) == 1000 + 500_000
    assert fake.nvmlDeviceGetPowerUsage(h) == 250_000
    assert fake.nvmlDeviceGetPciInfo(h).busId == b"00000000:3B:00.0"


def test_power_trace_energy_is_exact() -> None:
    trace = PowerTrace.from_steps([(1.0, 100.0), (0.5, 300.0), (2.0, 50.0)])
    assert trace.energy_j(1.5) == pytest.approx(250.0)
    assert trace.energy_j(10.0) == pytest.approx(250.0 + 50.0 * 8.5)
    assert trace.power_w(1.2) == 300.0


# -- parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "entries"),
    [
        (None, None),
        ("", []),
        ("-1", []),
        ("NoDevFiles", []),
        ("0,2,-1,1", ["0", "2"]),
        (" 1 , 0 ", ["1", "0"]),
        ("GPU-8932f937,1", ["GPU-8932f937", "1"]),
        ("MIG-0c9a4f7e-1d2b-5a6c-9e8f-0123456789ab", ["MIG-0c9a4f7e-1d2b-5a6c-9e8f-0123456789ab"]),
        ("MIG-GPU-8932f937-aaaa/1/0", ["MIG-GPU-8932f937-aaaa/1/0"]),
        ("0,foo,1", ["0"]),
    ],
)
def test_cuda_visible_devices_is_parsed_as_cuda_does(
    value: str | None, entries: list[str] | None
) -> None:
    assert backend.parse_visible_devices(value) == entries


@pytest.mark.parametrize(
    "text", ["00000000:1A:00.0", "0000:1a:00.0", "1a:00.0", b"00000000:1A:00.0"]
)
def test_pci_bus_ids_compare_as_numbers_in_every_form(text: str | bytes) -> None:
    assert backend.parse_bus_id(text) == (0, 0x1A, 0)


def test_process_tree_follows_children_in_proc(tmp_path: Path) -> None:
    def proc(pid: int, ppid: int, comm: str) -> None:
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(f"{pid} ({comm}) S {ppid} 1 1 0 -1\n")

    proc(100, 1, "python")
    proc(101, 100, "pt worker (1) x")  # comm with spaces and parentheses
    proc(102, 101, "child")
    proc(200, 1, "other")
    (tmp_path / "self").mkdir()
    assert backend.process_tree(100, tmp_path) == {100, 101, 102}
    assert backend.process_tree(100, tmp_path / "missing") == {100}


# -- methods ------------------------------------------------------------------------------


def test_counter_gpu_energy_is_the_counter_difference(clock: FakeClock) -> None:
    fake = FakeNVML([gpu(A, 0x3B, power=300.0)], clock=clock)
    report = run(fake, clock, [7.0, 13.0])
    (dev,) = report.devices
    assert dev.method == "counter"
    assert dev.energy_j == pytest.approx(300.0 * 20.0)
    assert fake.calls["nvmlDeviceGetPowerUsage"] == 0  # a counter is never sampled as power


def test_counter_reading_is_joules_without_wrap(clock: FakeClock) -> None:
    fake = FakeNVML([gpu(A, 0x3B, start_mj=123_456)], clock=clock)
    with fake.installed():
        found = devices(backend.discover(make_settings()))
        (reading,) = backend.carbontrack_read_energy(found)
        backend.carbontrack_close_devices(found)
    assert reading.joules == pytest.approx(123.456)
    assert reading.wrap_j is None


def test_power_only_gpu_is_sampled_and_integrated(clock: FakeClock) -> None:
    trace = PowerTrace.from_steps([(10.0, 100.0), (10.0, 200.0)])
    fake = FakeNVML(
        [gpu(A, 0x3B, name="Tesla P100", architecture=4, energy_counter=False, power=trace)],
        clock=clock,
    )
    report = run(fake, clock, [1.0] * 20)
    (dev,) = report.devices
    assert dev.method == "power"
    # Trapezoid over 1 s samples; the power reads 200 W from t=10 s, so the second before the
    # step counts (100 + 200) / 2 W: 50 J more than the exact 3000 J.
    assert dev.energy_j == pytest.approx(100.0 * 9 + 150.0 + 200.0 * 10)
    with fake.installed():
        (device,) = devices(backend.discover(make_settings()))
        (reading,) = backend.carbontrack_read_energy([device])
        backend.carbontrack_close_devices([device])
    assert reading.watts == pytest.approx(200.0)
    assert "power read every interval_s" in device.detail
    assert "no power sample buffer" in device.detail
    assert "instantaneous power" in device.detail  # Pascal: not the 1 s average


def test_mixed_machine_measures_each_gpu_its_own_way(clock: FakeClock) -> None:
    fake = FakeNVML(
        [gpu(A, 0x3B, power=300.0), gpu(B, 0x1A, energy_counter=False, power=100.0)], clock=clock
    )
    report = run(fake, clock, [1.0] * 10)
    methods = {d.id: d.method for d in report.devices}
    assert methods == {uuid(A): "counter", uuid(B): "power"}
    assert report.energy_j == pytest.approx(4000.0)  # summed, never averaged
    (gpu_component,) = report.components
    assert gpu_component.methods == ("counter", "power")


def test_gpu_without_energy_or_power_is_unavailable_with_reason() -> None:
    fake = FakeNVML([gpu(A, 0x3B, energy_counter=False, power_sensor=False), gpu(B, 0x1A)])
    found = discover(fake)
    assert ids(found) == [uuid(B)]
    (unavailable,) = [u for u in found if isinstance(u, Unavailable)]
    assert "NVMLError_NotSupported" in unavailable.reason
    assert uuid(A) in unavailable.reason


def test_devices_are_named_in_nvidia_smi_order() -> None:
    found = devices(discover(FakeNVML(three_gpus())))
    assert [d.id for d in found] == [uuid(B), uuid(A), uuid(C)]
    assert [d.name.split()[1] for d in found] == ["0", "1", "2"]
    assert "00000000:1A:00.0" in found[0].detail


# -- which GPUs ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["", "-1", "NoDevFiles", "-1,0"])
def test_cuda_visible_devices_that_hide_all_gpus_measure_none(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
    fake = FakeNVML(three_gpus())
    assert discover(fake) == []
    assert fake.init_count == 1  # and discover() checked that it was shut down


@pytest.mark.parametrize(
    ("order", "value", "expected"),
    [
        ("PCI_BUS_ID", "0", [B]),
        ("PCI_BUS_ID", "1", [A]),
        ("PCI_BUS_ID", "2,0", [C, B]),
        # Identical GPUs: FASTEST_FIRST ties are broken by PCI bus id, so it is PCI order too.
        ("FASTEST_FIRST", "0", [B]),
        (None, "2", [C]),
    ],
)
def test_integer_entries_follow_the_cuda_device_order_not_nvml_indices(
    monkeypatch: pytest.MonkeyPatch, order: str | None, value: str, expected: list[int]
) -> None:
    if order is not None:
        monkeypatch.setenv("CUDA_DEVICE_ORDER", order)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
    assert ids(discover(FakeNVML(three_gpus()))) == [uuid(n) for n in expected]


def write_probe(tmp_path: Path, lines: list[str], exit_code: int = 0) -> str:
    """A fake CUDA probe executable printing PCI bus ids in CUDA's order."""
    script = tmp_path / "probe.py"
    body = f"""
        import os, sys
        assert "CUDA_VISIBLE_DEVICES" not in os.environ
        assert os.environ["CUDA_DEVICE_ORDER"] == "FASTEST_FIRST"
        print("\\n".join({lines!r}))
        sys.exit({exit_code})
    """
    script.write_text(textwrap.dedent(body))
    return f"{sys.executable} {script}"


def mixed_models() -> list[FakeGpu]:
    return [gpu(A, 0x3B, name="NVIDIA A100"), gpu(B, 0x1A, name="Tesla T4"), gpu(C, 0x88)]


def test_fastest_first_with_different_models_asks_cuda_for_its_order(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # CUDA ranks the A100s first: C (0x88), A (0x3B), then the T4 (0x1A); sysfs form, lowercase.
    probe = write_probe(tmp_path, ["0000:88:00.0", "0000:3b:00.0", "0000:1a:00.0"])
    monkeypatch.setenv(backend.CUDA_PROBE_ENV, probe)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,2")
    assert ids(discover(FakeNVML(mixed_models()))) == [uuid(C), uuid(B)]
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID")  # then the probe is not needed
    assert ids(discover(FakeNVML(mixed_models()))) == [uuid(B), uuid(C)]


def test_fastest_first_falls_back_to_pci_order_with_a_warning_when_cuda_cannot_answer(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(backend.CUDA_PROBE_ENV, write_probe(tmp_path, [], exit_code=3))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with caplog.at_level(logging.WARNING):
        assert ids(discover(FakeNVML(mixed_models()))) == [uuid(B)]
    assert "CUDA_DEVICE_ORDER=PCI_BUS_ID" in caplog.text


def test_gpu_uuid_prefixes_select_by_uuid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", f"{uuid(C)[:12]},{uuid(A)}")
    assert ids(discover(FakeNVML(three_gpus()))) == [uuid(C), uuid(A)]


def test_an_unusable_entry_ends_the_list_like_cuda(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # "GPU-" is ambiguous (every GPU), 7 is out of range: both stop parsing there.
    for value in ("2,GPU-,0", "2,7,0"):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
        with caplog.at_level(logging.WARNING):
            assert ids(discover(FakeNVML(three_gpus()))) == [uuid(C)]
        assert "matches no GPU" in caplog.text


def mig_machine() -> list[FakeGpu]:
    migs = [
        FakeMigInstance("MIG-11111111-0000-0000-0000-000000000001", 1, 0, processes=[]),
        FakeMigInstance("MIG-11111111-0000-0000-0000-000000000002", 2, 0, processes=[]),
    ]
    return [gpu(A, 0x3B, mig=migs), gpu(B, 0x1A, mig_capable=False)]


def test_mig_instances_measure_their_parent_gpu_once_marked_shared(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "CUDA_VISIBLE_DEVICES",
        "MIG-11111111-0000-0000-0000-000000000002,MIG-11111111-0000-0000-0000-000000000001",
    )
    (device,) = devices(discover(FakeNVML(mig_machine())))
    assert device.id == uuid(A)
    assert device.shared is True
    assert device.method == "counter"
    assert "MIG" in device.detail


def test_legacy_mig_ids_name_their_parent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", f"MIG-{uuid(A)}/1/0")
    (device,) = devices(discover(FakeNVML(mig_machine())))
    assert (device.id, device.shared) == (uuid(A), True)


def test_all_gpus_with_mig_enabled_are_marked_shared() -> None:
    shared = {d.id: d.shared for d in devices(discover(FakeNVML(mig_machine())))}
    assert shared == {uuid(A): True, uuid(B): False}


def test_gpu_ids_override_cuda_visible_devices_and_use_nvidia_smi_numbers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    fake = FakeNVML(three_gpus())
    assert ids(discover(fake, gpu_ids=[0])) == [uuid(B)]
    assert ids(discover(fake, gpu_ids=f"2,{uuid(A)[:10]}")) == [uuid(C), uuid(A)]
    assert ids(discover(fake, gpu_ids="0000:3b:00.0")) == [uuid(A)]


def test_gpu_ids_that_match_nothing_are_reported_with_the_gpus_there() -> None:
    found = discover(FakeNVML(three_gpus()), gpu_ids="1,9")
    assert ids(found) == [uuid(A)]
    (unavailable,) = [u for u in found if isinstance(u, Unavailable)]
    assert "'9'" in unavailable.reason
    assert uuid(C) in unavailable.reason


# -- devices_by_pid ------------------------------------------------------------------------


def test_devices_by_pid_measures_the_gpus_of_this_process() -> None:
    gpus = three_gpus()
    gpus[2].processes = [os.getpid()]
    gpus[0].processes = [999_999_999]  # someone else
    assert ids(discover(FakeNVML(gpus), devices_by_pid=True)) == [uuid(C)]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_devices_by_pid_includes_the_children_of_the_process() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        gpus = three_gpus()
        gpus[0].processes = [child.pid]
        assert ids(discover(FakeNVML(gpus), devices_by_pid=True)) == [uuid(A)]
    finally:
        child.kill()
        child.wait()


def test_devices_by_pid_uses_the_tracked_pid(monkeypatch: pytest.MonkeyPatch) -> None:
    gpus = three_gpus()
    gpus[1].processes = [os.getppid()]
    found = discover(FakeNVML(gpus), devices_by_pid=True, pid=os.getppid())
    assert ids(found) == [uuid(B)]


def test_devices_by_pid_sees_processes_on_mig_instances() -> None:
    gpus = mig_machine()
    gpus[0].mig[1].processes = [os.getpid()]
    found = devices(discover(FakeNVML(gpus), devices_by_pid=True))
    assert [(d.id, d.shared) for d in found] == [(uuid(A), True)]


def test_devices_by_pid_works_with_drivers_without_v3_process_calls() -> None:
    gpus = three_gpus()
    gpus[0].processes = [os.getpid()]
    fake = FakeNVML(gpus, versioned_processes_only=True)
    assert ids(discover(fake, devices_by_pid=True)) == [uuid(A)]
    assert fake.calls["nvmlDeviceGetComputeRunningProcesses_v2"] == 3


def test_devices_by_pid_without_visible_processes_says_so_and_falls_back(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A container without the host PID namespace: NVML's host PIDs don't exist here.
    gpus = three_gpus()
    gpus[0].processes = [999_999_991]
    gpus[1].processes = [999_999_992]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    with caplog.at_level(logging.WARNING):
        found = devices(discover(FakeNVML(gpus), devices_by_pid=True))
    assert [d.id for d in found] == [uuid(A)]
    assert "--pid=host" in caplog.text
    assert "devices_by_pid found none" in found[0].detail


def test_devices_by_pid_before_any_gpu_work_watches_the_visible_gpus(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,2")
    with caplog.at_level(logging.INFO):
        found = devices(discover(FakeNVML(three_gpus()), devices_by_pid=True))
    assert [d.id for d in found] == [uuid(B), uuid(C)]
    for d in found:
        assert "counted only from when process" in d.detail
        assert "no process computes on any GPU yet" in d.detail
        assert "CUDA_VISIBLE_DEVICES=0,2" in d.detail
    assert "counted from when process" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# -- devices_by_pid, late attribution (carbontrack run: the command starts CUDA later) ------


def late_run(
    fake: FakeNVML,
    clock: FakeClock,
    steps: int,
    step_s: float,
    change: dict[int, Callable[[], None]],
) -> Report:
    """A tracked devices_by_pid run reading every ``step_s``; ``change[k]`` runs after read k."""
    settings = make_settings(interval_s=3600.0, write_log=False, verbose=0, devices_by_pid=True)
    with fake.installed():
        tracker = _tracker.Tracker(settings, clock=clock)
        tracker.start()
        for k in range(1, steps + 1):
            clock.advance(step_s)
            tracker.snapshot()
            if k in change:
                change[k]()
        report = tracker.stop()
    assert fake.shutdown_count == fake.init_count
    return report


@pytest.fixture
def late_clock(monkeypatch: pytest.MonkeyPatch, clock: FakeClock) -> FakeClock:
    """The fake clock, also driving the backend's process-check throttle."""
    monkeypatch.setattr(backend, "_now", clock)
    return clock


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_a_child_appearing_on_one_gpu_later_is_the_only_gpu_counted_from_then(
    late_clock: FakeClock,
) -> None:
    gpus = [gpu(A, 0x3B, power=300.0), gpu(B, 0x1A, power=100.0), gpu(C, 0x88, power=200.0)]
    fake = FakeNVML(gpus, clock=late_clock)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        # nvidia-smi order is B, A, C: GPU 1 is A. The child starts on it after the 2nd read.
        report = late_run(
            fake, late_clock, 6, 2.0, {2: lambda: fake.gpus[0].processes.append(child.pid)}
        )
    finally:
        child.kill()
        child.wait()
    by_id = {d.id: d for d in report.devices}
    assert list(by_id) == [uuid(B), uuid(A), uuid(C)]
    # Seen at the 3rd read (t = 6 s, the throttle lets a check through every 2 s): counted from
    # there to the end (t = 12 s); the others never ran our processes and add nothing.
    assert by_id[uuid(A)].energy_j == pytest.approx(300.0 * 6.0)
    assert by_id[uuid(B)].energy_j == 0.0
    assert by_id[uuid(C)].energy_j == 0.0
    assert report.energy_j == pytest.approx(300.0 * 6.0)
    assert all("counted only from when process" in d.detail for d in report.devices)
    assert all(d.dropped is None and d.resets == 0 for d in report.devices)


def test_a_gpu_once_used_stays_counted_after_the_process_leaves_it(
    late_clock: FakeClock,
) -> None:
    fake = FakeNVML(three_gpus(power=100.0), clock=late_clock)
    me = os.getpid()
    report = late_run(
        fake,
        late_clock,
        6,
        2.0,
        {1: lambda: fake.gpus[2].processes.append(me), 3: fake.gpus[2].processes.clear},
    )
    by_id = {d.id: d.energy_j for d in report.devices}
    # Seen at read 2 (t = 4 s), counted to the end (t = 12 s) although it left at t = 6 s.
    assert by_id == {uuid(B): 0.0, uuid(A): 0.0, uuid(C): pytest.approx(100.0 * 8.0)}


def test_a_power_only_gpu_reports_a_flat_counter_until_used_then_power(
    late_clock: FakeClock,
) -> None:
    fake = FakeNVML(
        [gpu(A, 0x3B, energy_counter=False, power=150.0), gpu(B, 0x1A, energy_counter=False)],
        clock=late_clock,
    )
    settings = make_settings(devices_by_pid=True)
    with fake.installed():
        found = devices(backend.discover(settings))
        before = backend.carbontrack_read_energy(found)
        late_clock.advance(2.0)
        fake.gpus[0].processes.append(os.getpid())
        after = backend.carbontrack_read_energy(found)
        backend.carbontrack_close_devices(found)
    assert [d.method for d in found] == ["power", "power"]
    # Never a made-up 0 W: an unused GPU is a counter that does not move.
    assert [(r.joules, r.watts) for r in before] == [(0.0, None), (0.0, None)]
    assert [(r.joules, r.watts) for r in after] == [(0.0, None), (None, pytest.approx(150.0))]
    fake.gpus[0].processes.clear()  # a new run, before the command used a GPU
    report = late_run(
        fake, late_clock, 5, 2.0, {2: lambda: fake.gpus[0].processes.append(os.getpid())}
    )
    by_id = {d.id: d.energy_j for d in report.devices}
    # Seen at read 3 (t = 6 s): power is sampled from there, integrated to t = 10 s.
    assert by_id == {uuid(B): 0.0, uuid(A): pytest.approx(150.0 * 4.0)}


def test_process_lists_are_checked_at_most_every_two_seconds(late_clock: FakeClock) -> None:
    fake = FakeNVML(three_gpus(), clock=late_clock)
    late_run(fake, late_clock, 10, 0.5, {})
    calls = fake.calls["nvmlDeviceGetComputeRunningProcesses"]
    # Discovery asks each of the 3 GPUs once; then 5 s of reads allow 2 checks of 3 GPUs.
    assert calls == 3 + 2 * 3


def test_once_every_gpu_is_used_the_process_lists_are_no_longer_checked(
    late_clock: FakeClock,
) -> None:
    fake = FakeNVML([gpu(A, 0x3B, power=50.0)], clock=late_clock)
    report = late_run(
        fake, late_clock, 8, 2.0, {1: lambda: fake.gpus[0].processes.append(os.getpid())}
    )
    # Discovery, then reads 1 and 2 (seen there); none of the 6 reads after.
    assert fake.calls["nvmlDeviceGetComputeRunningProcesses"] == 1 + 2
    assert report.energy_j == pytest.approx(50.0 * 12.0)  # from read 2 (t = 4 s) to t = 16 s


def test_a_late_counted_gpu_still_sees_a_counter_reset(late_clock: FakeClock) -> None:
    fake = FakeNVML([gpu(A, 0x3B, power=200.0)], clock=late_clock)
    report = late_run(
        fake,
        late_clock,
        6,
        2.0,
        {
            1: lambda: fake.gpus[0].processes.append(os.getpid()),
            3: lambda: fake.reset_energy(fake.gpus[0]),
        },
    )
    (dev,) = report.devices
    assert dev.resets == 1
    # Counted from read 2 (t = 4 s) to t = 12 s, less the interval of the reset (t = 6..8 s).
    assert dev.energy_j == pytest.approx(200.0 * 6.0)


def test_late_processes_invisible_in_a_container_fall_back_to_full_measuring(
    late_clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    gpus = [gpu(A, 0x3B, power=300.0), gpu(B, 0x1A, power=100.0)]
    fake = FakeNVML(gpus, clock=late_clock)

    def host_pids() -> None:  # the command started: NVML lists its host PID, unknown here
        fake.gpus[0].processes.append(999_999_991)

    with caplog.at_level(logging.WARNING):
        report = late_run(fake, late_clock, 4, 2.0, {1: host_pids})
    assert "--pid=host" in caplog.text
    assert caplog.text.count("devices_by_pid cannot tell") == 1
    # As when discovery sees it: every watched GPU measured fully, counters from the start.
    by_id = {d.id: d.energy_j for d in report.devices}
    assert by_id == {uuid(A): pytest.approx(300.0 * 8.0), uuid(B): pytest.approx(100.0 * 8.0)}


# -- NVML missing or broken ----------------------------------------------------------------


def test_no_nvidia_library_means_no_devices_and_no_noise(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeNVML(init_error=fake_nvml.CONSTANTS["NVML_ERROR_LIBRARY_NOT_FOUND"])
    with caplog.at_level(logging.INFO), fake.installed():
        assert backend.discover(make_settings()) == []
    assert caplog.text == ""


def test_no_gpus_means_no_devices() -> None:
    fake = FakeNVML([])
    assert discover(fake) == []
    assert fake.init_count == fake.shutdown_count == 1


def test_missing_module_means_no_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(backend.MODULE_ENV, "no_such_module_for_carbontrack")
    assert backend.discover(make_settings()) == []


@pytest.mark.parametrize(
    ("code", "fix"),
    [("NVML_ERROR_DRIVER_NOT_LOADED", "modprobe"), ("NVML_ERROR_NO_PERMISSION", "/dev/nvidia")],
)
def test_driver_or_permission_errors_are_unavailable_with_the_fix(code: str, fix: str) -> None:
    fake = FakeNVML(three_gpus(), init_error=fake_nvml.CONSTANTS[code])
    (unavailable,) = discover(fake)
    assert isinstance(unavailable, Unavailable)
    assert unavailable.kind == "gpu"
    assert fix in unavailable.fix


def test_gpus_are_not_touched_when_gpu_is_not_measured() -> None:
    fake = FakeNVML(three_gpus())
    assert discover(fake, components="cpu") == []
    assert fake.init_count == 0


def test_unexpected_failure_in_discovery_still_shuts_nvml_down(clock: FakeClock) -> None:
    fake = FakeNVML(three_gpus(), clock=clock)

    def broken() -> int:
        raise RuntimeError("driver exploded")

    fake.nvmlDeviceGetCount = broken  # type: ignore[method-assign]
    report = run(fake, clock, [1.0])
    assert report.devices == ()
    assert [f.hook for f in report.failures] == ["carbontrack_discover_devices"]
    assert fake.init_count == fake.shutdown_count == 1


def test_a_gpu_failing_in_discovery_is_unavailable_and_the_others_measured() -> None:
    gpus = three_gpus()
    gpus[0].errors["nvmlDeviceGetUUID"] = fake_nvml.CONSTANTS["NVML_ERROR_UNKNOWN"]
    found = discover(FakeNVML(gpus))
    assert ids(found) == [uuid(B), uuid(C)]
    assert any(isinstance(u, Unavailable) and "index 0" in u.reason for u in found)


def test_importing_carbontrack_and_the_backend_does_not_import_pynvml() -> None:
    code = (
        "import sys, carbontrack, carbontrack.backends.nvml; "
        "assert 'pynvml' not in sys.modules, 'pynvml imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- faults while measuring ----------------------------------------------------------------


def test_gpu_lost_mid_run_is_dropped_once_and_the_others_keep_measuring(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeNVML([gpu(A, 0x3B, power=300.0), gpu(B, 0x1A, power=100.0)], clock=clock)
    settings = make_settings(interval_s=3600.0, write_log=False, verbose=0)
    with fake.installed(), caplog.at_level(logging.WARNING):
        tracker = _tracker.Tracker(settings, clock=clock)
        tracker.start()
        for _ in range(5):
            clock.advance(1.0)
            tracker.snapshot()
        fake.gpus[0].lost = True
        for _ in range(5):
            clock.advance(1.0)
            tracker.snapshot()
        report = tracker.stop()
    by_id = {d.id: d for d in report.devices}
    assert by_id[uuid(A)].dropped is not None
    assert "NVMLError_GpuIsLost" in by_id[uuid(A)].dropped
    assert by_id[uuid(A)].energy_j == pytest.approx(300.0 * 5)
    assert by_id[uuid(B)].dropped is None
    assert by_id[uuid(B)].energy_j == pytest.approx(100.0 * 10)
    assert report.partial
    assert report.components[0].partial
    assert caplog.text.count("stopped measuring") == 1
    # Once lost, GPU A is not asked again: 1 discovery + 1 start + 5 good + 1 failed read; GPU B
    # is read 1 + 1 + 10 + 1 (stop) times.
    assert fake.calls["nvmlDeviceGetTotalEnergyConsumption"] == 8 + 13
    assert fake.shutdown_count == fake.init_count


def test_gpu_returning_errors_is_dropped_after_three_failed_reads(clock: FakeClock) -> None:
    fake = FakeNVML([gpu(A, 0x3B, power=300.0), gpu(B, 0x1A)], clock=clock)
    settings = make_settings(interval_s=3600.0, write_log=False, verbose=0)
    with fake.installed():
        tracker = _tracker.Tracker(settings, clock=clock)
        tracker.start()
        clock.advance(1.0)
        tracker.snapshot()
        fake.gpus[0].errors["nvmlDeviceGetTotalEnergyConsumption"] = 999
        clock.advance(1.0)
        tracker.snapshot()
        clock.advance(1.0)
        assert all(d.dropped is None for d in tracker.snapshot().devices)  # 2 failures so far
        clock.advance(1.0)
        report = tracker.stop()
    dropped = {d.id: d.dropped for d in report.devices}
    assert dropped[uuid(A)] is not None
    assert "NVMLError_Unknown" in dropped[uuid(A)]
    assert dropped[uuid(B)] is None


def test_counter_going_backwards_is_a_reset_not_negative_energy(clock: FakeClock) -> None:
    fake = FakeNVML([gpu(A, 0x3B, power=200.0)], clock=clock)
    settings = make_settings(interval_s=3600.0, write_log=False, verbose=0)
    with fake.installed():
        tracker = _tracker.Tracker(settings, clock=clock)
        tracker.start()
        clock.advance(5.0)
        tracker.snapshot()
        clock.advance(2.5)
        fake.reset_energy(fake.gpus[0])  # driver reload: the counter restarts from 0
        clock.advance(2.5)
        tracker.snapshot()
        clock.advance(5.0)
        report = tracker.stop()
    (dev,) = report.devices
    assert dev.resets == 1
    assert dev.energy_j == pytest.approx(200.0 * 10)  # the reset interval counts nothing


def test_nvml_is_shut_down_at_the_end_of_every_run(clock: FakeClock) -> None:
    fake = FakeNVML(three_gpus(), clock=clock)
    run(fake, clock, [1.0])
    run(fake, clock, [1.0])
    assert fake.init_count == fake.shutdown_count == 2
    assert not fake.initialized


@pytest.fixture
def _no_stray_modules() -> Iterator[None]:
    before = set(sys.modules)
    yield
    assert not {m for m in set(sys.modules) - before if m.startswith("carbontrack_fake_nvml")}


@pytest.mark.usefixtures("_no_stray_modules")
def test_installed_restores_the_environment() -> None:
    fake = FakeNVML()
    with fake.installed():
        assert os.environ[backend.MODULE_ENV] == fake.__name__
    assert backend.MODULE_ENV not in os.environ


def test_without_a_cuda_driver_the_built_in_probe_falls_back_to_pci_order(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # On this machine libcuda either is missing or knows other GPUs than the fake's: either way
    # the probe's answer cannot be used.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    with caplog.at_level(logging.WARNING):
        assert ids(discover(FakeNVML(mixed_models()))) == [uuid(A)]
    assert "assuming PCI bus order" in caplog.text


def test_uuid_entries_never_ask_cuda_for_its_order(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    marker = tmp_path / "probe-ran"
    script = tmp_path / "probe.py"
    script.write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.setenv(backend.CUDA_PROBE_ENV, f"{sys.executable} {script}")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", uuid(B))
    assert ids(discover(FakeNVML(mixed_models()))) == [uuid(B)]
    assert not marker.exists()


_entry = st.one_of(
    st.integers(-3, 20).map(str),
    st.sampled_from(["GPU-8932f937", "MIG-0c9a4f7e", "NoDevFiles", "", "gpu0", " 2 "]),
)


@given(st.lists(_entry, max_size=6))
def test_visible_devices_parse_to_the_valid_prefix_of_the_list(entries: list[str]) -> None:
    parsed = backend.parse_visible_devices(",".join(entries))
    assert parsed is not None
    stripped = [e.strip() for e in entries] or [""]
    assert parsed == stripped[: len(parsed)]
    assert all(e.isdigit() or e.startswith(("GPU-", "MIG-")) for e in parsed)
    if len(parsed) < len(stripped):
        bad = stripped[len(parsed)]
        assert not bad.isdigit()
        assert not bad.startswith(("GPU-", "MIG-"))


def test_devices_by_pid_that_finds_gpus_ignores_cuda_visible_devices(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The tracked process may see other GPUs than carbontrack's own environment says (the CLI
    # measures a child): what the process uses wins, and the variable is not even parsed.
    gpus = three_gpus()
    gpus[2].processes = [os.getpid()]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7")
    with caplog.at_level(logging.WARNING):
        assert ids(discover(FakeNVML(gpus), devices_by_pid=True)) == [uuid(C)]
    assert caplog.text == ""


def test_run_devices_by_pid_option_sets_it_like_track() -> None:
    from carbontrack.cli import _run as _run_cmd

    parser = argparse.ArgumentParser()
    _run_cmd.configure_parser(parser)
    on = parser.parse_args(["--devices-by-pid", "--", "true"])
    off = parser.parse_args(["--", "true"])
    on.verbosity = off.verbosity = 0
    assert _run_cmd.settings_from_args(on).devices_by_pid is True
    assert _run_cmd.settings_from_args(off).devices_by_pid is False


# -- issue 19: old bindings, superchips, power-only GPUs between edges ---------------------------


def test_a_binding_without_v2_on_a_driver_without_v3_never_gives_0_j_silently(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    # nvidia-ml-py 12.535 (which pyproject once allowed) sends the plain call to _v3; a R470
    # driver lacks it: NVMLError_FunctionNotFound, and there is no _v2 to fall back to. The old
    # code read that as "no process on any GPU", so the GPUs never started counting: 0 J.
    gpus = three_gpus(power=200.0)
    gpus[0].processes = [os.getpid()]
    fake = FakeNVML(gpus, clock=clock, binding="12.535", driver_has_v3=False)
    assert not hasattr(fake, "nvmlDeviceGetComputeRunningProcesses_v2")
    assert not hasattr(fake, "NVMLLibraryMismatchError")
    with caplog.at_level(logging.WARNING):
        report = late_run(fake, clock, steps=4, step_s=1.0, change={})
    assert {d.id for d in report.devices} == {uuid(A), uuid(B), uuid(C)}
    for d in report.devices:
        assert d.energy_j == pytest.approx(200.0 * 4.0)
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert f'pip install "nvidia-ml-py>={backend.MIN_BINDING}"' in warning
    assert "cannot list the processes" in warning


def test_a_driver_without_v3_and_v2_says_to_update_the_driver(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gpus = three_gpus()
    gpus[0].processes = [os.getpid()]
    fake = FakeNVML(gpus, driver_has_v3=False, driver_has_v2=False)
    with caplog.at_level(logging.WARNING):
        found = devices(discover(fake, devices_by_pid=True))
    assert len(found) == 3  # all visible GPUs, not none
    assert "update the NVIDIA driver" in caplog.text
    assert "pip install" not in caplog.text


def test_an_old_binding_on_a_driver_with_v3_still_finds_the_processes() -> None:
    gpus = three_gpus()
    gpus[2].processes = [os.getpid()]
    found = discover(FakeNVML(gpus, binding="12.535"), devices_by_pid=True)
    assert ids(found) == [uuid(C)]


def test_the_dependency_floor_has_the_v2_fallback() -> None:
    text = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert f'"nvidia-ml-py>={backend.MIN_BINDING}"' in text


def superchip_run(clock: FakeClock, gpus: list[FakeGpu], cpu_w: float = 50.0) -> Report:
    from carbontrack.testing import FakeDevice, FakeHardware

    # A Grace meter as hwmon reports it: a CPU device measured by power.
    grace = FakeHardware([FakeDevice("grace", kind="cpu", method="power", watts=cpu_w)])
    settings = make_settings(interval_s=3600.0, write_log=False, verbose=0)
    with FakeNVML(gpus, clock=clock).installed():
        tracker = _tracker.Tracker(settings, plugins=[grace], clock=clock)
        tracker.start()
        for _ in range(4):
            clock.advance(1.0)
            tracker.snapshot()
        return tracker.stop()


def test_a_superchip_module_is_measured_once_and_cpu_devices_are_left_out(
    clock: FakeClock,
) -> None:
    # GH200: NVML's counter covers GPU, HBM, Grace CPU and LPDDR (Zeus PR #172); adding the
    # Grace meter (or the CPU estimate) on top counts the CPU twice.
    report = superchip_run(clock, [gpu(A, 0x3B, name="NVIDIA GH200 480GB", power=600.0, c2c=True)])
    (module,) = report.devices
    assert module.kind == "module"
    assert module.name.endswith("module")
    assert "Grace CPU" in module.detail
    assert module.energy_j == pytest.approx(600.0 * 4.0)
    assert report.energy_j == pytest.approx(600.0 * 4.0)


def test_without_c2c_the_gpu_and_the_cpu_are_both_measured(clock: FakeClock) -> None:
    report = superchip_run(clock, [gpu(A, 0x3B, power=300.0, c2c=False)])
    assert sorted(d.kind for d in report.devices) == ["cpu", "gpu"]
    assert report.energy_j == pytest.approx((300.0 + 50.0) * 4.0)


def test_measuring_some_superchip_modules_warns_that_the_others_cpus_are_missing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    gpus = [gpu(A, 0x1A, c2c=True), gpu(B, 0x3B, c2c=True)]
    with caplog.at_level(logging.WARNING):
        found = devices(discover(FakeNVML(gpus), pid=os.getpid()))
    assert [d.kind for d in found] == ["module"]
    assert "module(s) 1 are not measured" in caplog.text


def fast_trace(seed: int) -> PowerTrace:
    """Power that changes every 0.08-0.3 s between ~90 and ~320 W (much faster than 1 s)."""
    import random

    rng = random.Random(seed)
    steps = []
    for _ in range(200):
        steps.append((rng.uniform(0.1, 0.3), rng.uniform(250.0, 320.0)))
        steps.append((rng.uniform(0.08, 0.2), rng.uniform(90.0, 150.0)))
    return PowerTrace.from_steps(steps)


def one_epoch_error(trace: PowerTrace, monkeypatch: pytest.MonkeyPatch, **kw: object) -> float:
    """Relative error of one 5 s epoch of a power-only GPU read as at default settings: the
    sampler reads every 1 s and the epoch's edges fall between its reads."""
    from carbontrack._plugins import PluginHost, make_plugin_manager
    from carbontrack._sampler import Sampler
    from carbontrack.settings import DEFAULT_INTERVAL_S

    clock = FakeClock(start=0.0)
    one = gpu(A, 0x1A, energy_counter=False, power=trace, **kw)
    fake = FakeNVML([one], clock=clock)
    monkeypatch.setattr(backend, "_wall_s", fake.wall_s)
    with fake.installed():
        host = PluginHost(make_plugin_manager(autoload=False))
        found = host.broadcast("carbontrack_discover_devices", settings=make_settings())
        (device,) = [d for d in found["nvml"] if isinstance(d, Device)]
        sampler = Sampler(host, {"nvml": [device]}, interval_s=DEFAULT_INTERVAL_S, clock=clock)
        clock.advance(3.0)
        sampler.read()  # the run starts
        clock.advance(0.37)
        sampler.read()  # the epoch starts between two ticks
        began, start_j = fake.elapsed_s(), sampler.total_j()
        clock.advance(1.0 - 0.37)
        for _ in range(4):
            sampler.read()  # the background ticks, every interval_s
            clock.advance(DEFAULT_INTERVAL_S)
        clock.advance(0.37)
        sampler.read()  # the epoch ends between two ticks
        ended, end_j = fake.elapsed_s(), sampler.total_j()
        host.broadcast("carbontrack_close_devices", devices=[device])
    assert ended - began == pytest.approx(5.0)
    exact = fake.true_energy_j(one, began, ended)
    return (end_j - start_j) / exact - 1.0


@pytest.mark.parametrize("seed", range(5))
def test_a_power_only_gpu_is_within_2_percent_on_one_5_s_epoch(
    monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    # With the driver's power sample buffer (nvmlDeviceGetSamples): within 2 %. Reading only
    # nvmlDeviceGetPowerUsage, a 1 s average on Ampere and newer, was 9.4 % off (issue 19).
    trace = fast_trace(seed)
    error = one_epoch_error(trace, monkeypatch, power_samples=True, power_average_s=1.0)
    assert abs(error) < 0.02


def test_the_fast_trace_defeats_1_s_power_readings(monkeypatch: pytest.MonkeyPatch) -> None:
    # The fake varies fast enough to matter: without the buffer, reading the instantaneous
    # power every 1 s (GA100 and older GPUs), some epoch is over 2 % off.
    errors = [
        one_epoch_error(fast_trace(seed), monkeypatch, power_average_s=0.0) for seed in range(5)
    ]
    assert max(abs(e) for e in errors) > 0.02


def test_power_buffer_detail_and_fallback_say_how_power_is_read() -> None:
    found = devices(
        discover(
            FakeNVML(
                [
                    gpu(A, 0x1A, energy_counter=False, power_samples=True),
                    gpu(B, 0x3B, energy_counter=False, name="NVIDIA A10", architecture=7),
                ]
            )
        )
    )
    by_id = {d.id: d.detail for d in found}
    assert "nvmlDeviceGetSamples" in by_id[uuid(A)]
    assert "1 s average" in by_id[uuid(B)]


def test_a_process_list_that_fails_is_unknown_not_unused(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    # "Insufficient Permissions" on the process list (a container, a locked-down node) used to
    # read as "no process here": the watched GPUs never started counting, 0 J.
    gpus = three_gpus(power=150.0, errors={"nvmlDeviceGetComputeRunningProcesses": 4})
    fake = FakeNVML(gpus, clock=clock)
    with caplog.at_level(logging.WARNING):
        report = late_run(fake, clock, steps=3, step_s=1.0, change={})
    assert all(d.energy_j == pytest.approx(450.0) for d in report.devices)
    assert "Insufficient Permissions" in caplog.text
    assert "pass gpu_ids" in caplog.text
