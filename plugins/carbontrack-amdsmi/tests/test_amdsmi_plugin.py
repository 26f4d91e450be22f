"""The amdsmi backend against a fake ``amdsmi`` module: discovery, reading, faults."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from carbontrack import Device, Reading, Tracker, Unavailable, make_settings
from carbontrack.testing import FakeClock

from carbontrack_amdsmi.plugin import AmdSmiPlugin
from carbontrack_amdsmi.testing import NO_PERM, FakeAmdGpu, FakeAmdSmi


def gpu(bdf: str, uuid: str | None = None, **kwargs: Any) -> FakeAmdGpu:
    return FakeAmdGpu(bdf, uuid or f"uuid-{bdf}", **kwargs)


@pytest.fixture
def two_gpus() -> Iterator[FakeAmdSmi]:
    fake = FakeAmdSmi([gpu("0000:c1:00.0", watts=300.0), gpu("0000:c2:00.0", watts=200.0)])
    with fake.installed():
        yield fake


def discover(plugin: AmdSmiPlugin | None = None, **options: Any) -> list[Device | Unavailable]:
    plugin = plugin or AmdSmiPlugin()
    return plugin.carbontrack_discover_devices(settings=make_settings(**options))


def names(found: list[Device | Unavailable]) -> list[str]:
    return [f"{d.id} {d.name}" for d in found if isinstance(d, Device)]


def test_no_amdsmi_and_no_amdgpu_driver_means_no_devices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "amdsmi", None)  # import amdsmi raises ImportError
    assert discover() == []


def test_no_amdsmi_with_the_amdgpu_driver_loaded_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "amdsmi", None)
    monkeypatch.setenv("CARBONTRACK_AMDGPU_DRIVER_DIR", str(tmp_path))
    (entry,) = discover()
    assert isinstance(entry, Unavailable)
    assert (entry.backend, entry.kind) == ("amdsmi", "gpu")
    assert "pip install /opt/rocm/share/amd_smi" in entry.fix


@pytest.mark.parametrize(
    ("code", "fix_says"), [(NO_PERM, "usermod -aG render,video"), (8, "ROCM_PATH")]
)
def test_init_failure_is_unavailable_with_the_fix_for_its_cause(
    code: int, fix_says: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CARBONTRACK_AMDGPU_DRIVER_DIR", str(tmp_path))  # amdgpu is loaded
    fake = FakeAmdSmi([gpu("0000:c1:00.0")], init_error=code)
    with fake.installed():
        (entry,) = discover()
    assert isinstance(entry, Unavailable)
    assert fix_says in entry.fix


def test_init_failure_without_the_amdgpu_driver_means_no_devices_and_no_noise() -> None:
    # amdsmi installed (a ROCm image) on a machine without AMD GPUs: nothing to report.
    fake = FakeAmdSmi([], init_error=8)
    with fake.installed():
        assert discover() == []


def test_gpus_with_energy_counters_are_counter_devices(two_gpus: FakeAmdSmi) -> None:
    found = discover()
    assert names(found) == [
        "gpu0 AMD Instinct MI300X (0000:c1:00.0)",
        "gpu1 AMD Instinct MI300X (0000:c2:00.0)",
    ]
    assert {(d.kind, d.method, d.backend) for d in found if isinstance(d, Device)} == {
        ("gpu", "counter", "amdsmi")
    }


@pytest.mark.parametrize("legacy_key", [False, True])
def test_counter_is_accumulator_times_resolution_in_joules(legacy_key: bool) -> None:
    fake = FakeAmdSmi(
        [gpu("0000:c1:00.0", resolution_uj=15.3, start_accumulator=10**9, legacy_key=legacy_key)],
        clock=FakeClock(),  # no time passes: the counter stays where it started
    )
    with fake.installed():
        plugin = AmdSmiPlugin()
        devices = [d for d in discover(plugin) if isinstance(d, Device)]
        (reading,) = plugin.carbontrack_read_energy(devices=devices)
    assert reading.joules is not None
    assert reading.joules == pytest.approx(10**9 * 15.3 / 1e6, rel=1e-6)
    assert reading.wrap_j == pytest.approx(2.0**64 * 15.3 / 1e6)


def test_without_an_energy_counter_socket_power_is_sampled() -> None:
    fake = FakeAmdSmi([gpu("0000:c1:00.0", energy=False, watts=275.0)])
    with fake.installed():
        plugin = AmdSmiPlugin()
        (device,) = discover(plugin)
        assert isinstance(device, Device)
        assert device.method == "power"
        assert plugin.carbontrack_read_energy(devices=[device]) == [Reading("gpu0", watts=275.0)]


def test_a_gpu_with_neither_counter_nor_power_is_unavailable() -> None:
    fake = FakeAmdSmi([gpu("0000:c1:00.0", energy=False, power=False)])
    with fake.installed():
        (entry,) = discover()
    assert isinstance(entry, Unavailable)
    assert "virtual machine" in entry.reason


def test_the_silent_die_of_an_mi250_is_covered_by_its_partner() -> None:
    even = gpu("0000:c1:00.0", market_name="AMD Instinct MI250X")
    odd = gpu("0000:c2:00.0", market_name="AMD Instinct MI250X", energy=False, power=False)
    with FakeAmdSmi([even, odd]).installed():
        found = discover()
    assert names(found) == ["gpu0 AMD Instinct MI250X (0000:c1:00.0)"]


def test_devices_follow_hip_order_not_bdf_order() -> None:
    first_bdf = gpu("0000:c1:00.0", hip_id=1)
    second_bdf = gpu("0000:c2:00.0", hip_id=0)
    with FakeAmdSmi([first_bdf, second_bdf]).installed():
        assert [n.split(" (")[1] for n in names(discover())] == ["0000:c2:00.0)", "0000:c1:00.0)"]


def test_without_enumeration_info_hip_order_is_kfd_node_order() -> None:
    first_bdf = gpu("0000:c1:00.0", kfd_node=7)
    second_bdf = gpu("0000:c2:00.0", kfd_node=3)
    with FakeAmdSmi([first_bdf, second_bdf], enumeration_info=False).installed():
        assert names(discover())[0].endswith("(0000:c2:00.0)")


def three_gpus() -> FakeAmdSmi:
    return FakeAmdSmi(
        [gpu(f"0000:c{i}:00.0", uuid=f"{i}{i}{i}{i}-uuid-of-gpu-{i}") for i in (1, 2, 3)]
    )


@pytest.mark.parametrize(
    ("environ", "visible"),
    [
        ({"ROCR_VISIBLE_DEVICES": "2"}, ["gpu0 c3"]),
        ({"HIP_VISIBLE_DEVICES": "1,2"}, ["gpu0 c2", "gpu1 c3"]),
        ({"CUDA_VISIBLE_DEVICES": "0"}, ["gpu0 c1"]),
        ({"ROCR_VISIBLE_DEVICES": "1,2", "HIP_VISIBLE_DEVICES": "1"}, ["gpu0 c3"]),
        ({"HIP_VISIBLE_DEVICES": "2", "CUDA_VISIBLE_DEVICES": "0"}, ["gpu0 c3"]),
        ({"ROCR_VISIBLE_DEVICES": "GPU-2222-uuid-of-gpu-2"}, ["gpu0 c2"]),
        ({"HIP_VISIBLE_DEVICES": ""}, []),
    ],
)
def test_only_the_gpus_the_process_sees_are_measured(
    monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], visible: list[str]
) -> None:
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    with three_gpus().installed():
        found = discover()
    assert [
        f"{d.id} {d.name.split('(0000:')[1][:2]}" for d in found if isinstance(d, Device)
    ] == visible


def test_gpu_ids_pick_among_the_visible_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIP_VISIBLE_DEVICES", "1,2")
    with three_gpus().installed():
        found = discover(gpu_ids=[1])
    assert names(found) == ["gpu1 AMD Instinct MI300X (0000:c3:00.0)"]


def test_no_gpu_component_means_the_library_is_never_loaded(two_gpus: FakeAmdSmi) -> None:
    assert discover(components="cpu") == []
    assert two_gpus.calls == []


def test_close_shuts_the_library_down(two_gpus: FakeAmdSmi) -> None:
    plugin = AmdSmiPlugin()
    devices = [d for d in discover(plugin) if isinstance(d, Device)]
    plugin.carbontrack_close_devices(devices=devices)
    assert two_gpus.calls[-1] == "amdsmi_shut_down"
    assert not two_gpus.initialised


def test_discovery_without_devices_shuts_the_library_down_itself() -> None:
    fake = FakeAmdSmi([gpu("0000:c1:00.0", energy=False, power=False)])
    with fake.installed():
        discover()
    assert fake.calls[-1] == "amdsmi_shut_down"


def test_a_bug_in_the_bindings_propagates_to_the_host_after_shutting_down() -> None:
    fake = FakeAmdSmi(
        [gpu("0000:c1:00.0")], raise_in={"amdsmi_get_processor_handles": RuntimeError("bug")}
    )
    with fake.installed(), pytest.raises(RuntimeError, match="bug"):
        discover()
    assert not fake.initialised


def test_a_failed_read_names_the_call_and_the_gpu() -> None:
    fake = FakeAmdSmi([gpu("0000:c1:00.0", fail_reads=[2])])  # read 1 is discovery's probe
    with fake.installed():
        plugin = AmdSmiPlugin()
        devices = [d for d in discover(plugin) if isinstance(d, Device)]
        (reading,) = plugin.carbontrack_read_energy(devices=devices)
    assert reading.error is not None
    assert "amdsmi_get_energy_count" in reading.error
    assert "0000:c1:00.0" in reading.error


def test_the_module_can_be_named_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARBONTRACK_AMDSMI_MODULE", "vendored_amdsmi")
    monkeypatch.setitem(sys.modules, "amdsmi", None)
    with FakeAmdSmi([gpu("0000:c1:00.0")]).installed("vendored_amdsmi"):
        assert names(discover()) == ["gpu0 AMD Instinct MI300X (0000:c1:00.0)"]


def test_a_tracked_run_measures_the_energy_the_gpus_drew() -> None:
    clock = FakeClock()
    fake = FakeAmdSmi(
        [gpu("0000:c1:00.0", watts=300.0), gpu("0000:c2:00.0", watts=120.0, energy=False)],
        clock=clock,
    )
    settings = make_settings(write_log=False, verbose=0)
    with fake.installed():
        with Tracker(settings, plugins=[AmdSmiPlugin()], autoload=False, clock=clock) as run:
            clock.advance(60.0)
        report = run.report
    by_id = {d.id: d for d in report.devices}
    # The counter is exact to one step of its resolution; the power GPU is constant here.
    assert by_id["gpu0"].energy_j == pytest.approx(300.0 * 60.0, abs=15.3e-6)
    assert by_id["gpu0"].method == "counter"
    assert by_id["gpu1"].energy_j == pytest.approx(120.0 * 60.0)
    assert by_id["gpu1"].method == "power"
    assert report.energy_j == pytest.approx(fake.true_energy_j, abs=15.3e-6)
    assert not fake.initialised


def test_a_gpu_that_keeps_failing_is_dropped_and_the_other_keeps_measuring() -> None:
    clock = FakeClock()
    broken = gpu("0000:c1:00.0", watts=300.0, fail_reads=range(4, 100))
    healthy = gpu("0000:c2:00.0", watts=200.0)
    fake = FakeAmdSmi([broken, healthy], clock=clock)
    settings = make_settings(write_log=False, verbose=0)
    tracker = Tracker(settings, plugins=[AmdSmiPlugin()], autoload=False, clock=clock)
    with fake.installed(), tracker as run:
        clock.advance(10.0)
        for _ in range(4):
            run.snapshot()
        clock.advance(10.0)
    by_id = {d.id: d for d in run.report.devices}
    assert by_id["gpu0"].dropped is not None
    assert "amdsmi_get_energy_count" in by_id["gpu0"].dropped
    assert by_id["gpu1"].dropped is None
    assert by_id["gpu1"].energy_j == pytest.approx(200.0 * 20.0, abs=15.3e-6)
    assert run.report.partial
