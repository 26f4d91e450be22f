"""The plugin host with real installed plugin packages (plugins/carbontrack-hwmon and
plugins/carbontrack-amdsmi): entry points, the block list, isolation, load errors, listing.

These tests need both packages installed (``pip install -e plugins/carbontrack-hwmon -e
plugins/carbontrack-amdsmi``, as the README's test command does) and re-enable entry-point
loading, which the suite's conftest turns off.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import attrs
import carbontrack_amdsmi
import carbontrack_hwmon
import pytest
from carbontrack_amdsmi.plugin import AmdSmiPlugin
from carbontrack_amdsmi.testing import FakeAmdGpu, FakeAmdSmi
from carbontrack_hwmon.testing import FakeHwmonTree

from carbontrack import PluginLoadError, Tracker, make_settings
from carbontrack._plugins import PluginHost, list_plugins, make_plugin_manager
from carbontrack.testing import FakeClock, FakeDevice, FakeHardware
from carbontrack.testing.distribution import write_plugin_distribution
from carbontrack.testing.nvml import FakeGpu, FakeNVML
from carbontrack.testing.powercap import FakePowercap, amd_zen

# Built-in hardware backends stay off unless a test brings the fake they read.
OTHER_BUILTINS = "nvml,powermetrics,estimate"


@pytest.fixture(autouse=True)
def _autoload(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CARBONTRACK_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.setenv("CARBONTRACK_DISABLE_PLUGINS", f"rapl,{OTHER_BUILTINS}")
    for variable in ("ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.delenv("CARBONTRACK_HWMON_INCLUDE", raising=False)


@attrs.define
class Machine:
    """Fake hardware for one test, all on one clock."""

    clock: FakeClock
    hwmon: FakeHwmonTree
    amdsmi: FakeAmdSmi
    powercap: FakePowercap | None = None

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.hwmon.advance(seconds)
        if self.powercap is not None:
            self.powercap.sync()


def _set(monkeypatch: pytest.MonkeyPatch, environ: dict[str, str]) -> None:
    for key, value in environ.items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def epyc_with_mi300x(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Machine]:
    """An AMD EPYC socket (RAPL readable, amd_energy loaded) with two MI300X GPUs (each with
    its amdgpu hwmon chip too): the same watts are visible three ways, and must count once."""
    clock = FakeClock()
    powercap = amd_zen(tmp_path / "sys", clock=clock, watts=180.0)
    hwmon = FakeHwmonTree(tmp_path / "hwmon", powercap_root=powercap.root)
    hwmon.add_amd_energy(sockets=1, socket_w=180.0)
    hwmon.add_amdgpu(watts=300.0)
    hwmon.add_amdgpu(watts=300.0)
    gpus = [FakeAmdGpu(f"0000:{bus}:00.0", f"uuid-{bus}", watts=300.0) for bus in ("c1", "c2")]
    amdsmi = FakeAmdSmi(gpus, clock=clock)
    _set(monkeypatch, hwmon.environ)
    monkeypatch.setenv("CARBONTRACK_DISABLE_PLUGINS", OTHER_BUILTINS)
    with amdsmi.installed():
        yield Machine(clock=clock, hwmon=hwmon, amdsmi=amdsmi, powercap=powercap)


@pytest.fixture
def grace_hopper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Machine]:
    """A GH200: Grace power meters in hwmon, the Hopper GPU through NVML, no RAPL, no AMD."""
    clock = FakeClock()
    hwmon = FakeHwmonTree(tmp_path / "hwmon")
    hwmon.add_grace(sockets=1, module_w=700.0, grace_w=250.0)
    nvml = FakeNVML(
        [FakeGpu("GPU-6d3c1f9a", "00000009:01:00.0", name="NVIDIA GH200 120GB", power=400.0)],
        clock=clock,
    )
    _set(monkeypatch, hwmon.environ)
    monkeypatch.setenv("CARBONTRACK_DISABLE_PLUGINS", "rapl,powermetrics,estimate")
    with nvml.installed(), FakeAmdSmi([], clock=clock).installed() as amdsmi:
        yield Machine(clock=clock, hwmon=hwmon, amdsmi=amdsmi)


def run_for(machine: Machine, seconds: float, **options: object) -> Tracker:
    settings = make_settings(write_log=False, verbose=0, **options)
    with Tracker(settings, clock=machine.clock) as run:
        machine.advance(seconds)
    return run


# -- discovery and listing --------------------------------------------------------------------


def test_installed_packages_are_found_through_their_entry_points() -> None:
    pm = make_plugin_manager()
    assert pm.get_plugin("hwmon") is carbontrack_hwmon.plugin
    assert isinstance(pm.get_plugin("amdsmi"), AmdSmiPlugin)


def test_each_manager_gets_a_fresh_instance_of_a_class_plugin() -> None:
    assert make_plugin_manager().get_plugin("amdsmi") is not make_plugin_manager().get_plugin(
        "amdsmi"
    )


def test_listing_names_each_package_with_its_installed_version() -> None:
    infos = {i.name: i for i in list_plugins(make_plugin_manager())}
    hwmon, amdsmi = infos["hwmon"], infos["amdsmi"]
    assert (hwmon.distribution, hwmon.version) == (
        "carbontrack-hwmon",
        metadata.version("carbontrack-hwmon"),
    )
    assert hwmon.version == carbontrack_hwmon.__version__
    assert (amdsmi.distribution, amdsmi.version) == (
        "carbontrack-amdsmi",
        carbontrack_amdsmi.__version__,
    )
    assert not hwmon.builtin
    assert not amdsmi.blocked


def test_listing_shows_the_hooks_each_package_implements() -> None:
    infos = {i.name: i for i in list_plugins(make_plugin_manager())}
    assert infos["hwmon"].hooks == ("carbontrack_discover_devices", "carbontrack_read_energy")
    assert infos["amdsmi"].hooks == (
        "carbontrack_close_devices",
        "carbontrack_discover_devices",
        "carbontrack_read_energy",
    )


def test_disable_plugins_blocks_one_package_and_leaves_the_other(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CARBONTRACK_DISABLE_PLUGINS", f"rapl,{OTHER_BUILTINS},hwmon")
    pm = make_plugin_manager()
    assert not pm.has_plugin("hwmon")
    assert pm.is_blocked("hwmon")
    assert pm.has_plugin("amdsmi")
    infos = {i.name: i for i in list_plugins(pm)}
    assert infos["hwmon"].blocked


def test_a_blocked_package_measures_nothing(
    epyc_with_mi300x: Machine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CARBONTRACK_DISABLE_PLUGINS", f"{OTHER_BUILTINS},amdsmi")
    run = run_for(epyc_with_mi300x, 10.0)
    assert {d.backend for d in run.report.devices} == {"rapl"}
    assert epyc_with_mi300x.amdsmi.calls == []


def test_disabling_autoload_keeps_installed_packages_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARBONTRACK_DISABLE_PLUGIN_AUTOLOAD", "1")
    pm = make_plugin_manager()
    assert not pm.has_plugin("hwmon")
    assert not pm.has_plugin("amdsmi")


# -- measuring beside the built-ins -----------------------------------------------------------


def test_a_tracked_run_sums_plugin_and_builtin_devices_counting_each_watt_once(
    epyc_with_mi300x: Machine,
) -> None:
    run = run_for(epyc_with_mi300x, 60.0)
    report = run.report
    assert sorted((d.backend, d.kind, d.method) for d in report.devices) == [
        ("amdsmi", "gpu", "counter"),
        ("amdsmi", "gpu", "counter"),
        ("rapl", "cpu", "counter"),
    ]
    # amd_energy repeats RAPL's socket and amdgpu repeats amdsmi's GPUs: neither is added.
    truth = 180.0 * 60.0 + epyc_with_mi300x.amdsmi.true_energy_j
    assert report.energy_j == pytest.approx(truth, rel=1e-6)


def test_on_grace_hopper_hwmon_measures_grace_and_nvml_the_gpu(grace_hopper: Machine) -> None:
    run = run_for(grace_hopper, 60.0)
    by_backend = {d.backend: d for d in run.report.devices}
    assert sorted(by_backend) == ["hwmon", "nvml"]
    grace = by_backend["hwmon"]
    assert (grace.name, grace.method) == ("power_meter Grace Power Socket 0", "power")
    # The Module meter (Grace + GPU) is not taken: the GPU is NVML's.
    assert grace.energy_j == pytest.approx(250.0 * 60.0)
    assert by_backend["nvml"].energy_j == pytest.approx(400.0 * 60.0, rel=1e-3)


def test_devices_command_lists_plugin_devices_beside_builtin_ones(
    epyc_with_mi300x: Machine, capsys: pytest.CaptureFixture[str]
) -> None:
    from carbontrack.cli import main

    assert main(["devices", "--json", "--window", "0.01"]) == 0
    backends = {b["name"]: b for b in json.loads(capsys.readouterr().out)["backends"]}
    assert [d["id"] for d in backends["amdsmi"]["devices"]] == ["gpu0", "gpu1"]
    assert [d["kind"] for d in backends["rapl"]["devices"]] == ["cpu"]
    assert backends["hwmon"]["devices"] == []  # amd_energy and amdgpu are measured elsewhere


def test_devices_command_lists_grace_from_hwmon_beside_the_nvml_gpu(
    grace_hopper: Machine, capsys: pytest.CaptureFixture[str]
) -> None:
    from carbontrack.cli import main

    assert main(["devices", "--json", "--window", "0.01"]) == 0
    backends = {b["name"]: b for b in json.loads(capsys.readouterr().out)["backends"]}
    (grace,) = backends["hwmon"]["devices"]
    assert (grace["name"], grace["method"], grace["power_w"]) == (
        "power_meter Grace Power Socket 0",
        "power",
        250.0,
    )
    assert [d["kind"] for d in backends["nvml"]["devices"]] == ["gpu"]


# -- isolation --------------------------------------------------------------------------------


def test_a_plugin_that_raises_in_discovery_is_reported_and_the_others_measure(
    epyc_with_mi300x: Machine,
) -> None:
    broken = FakeHardware(name="broken", discover_error=RuntimeError("no such bus"))
    settings = make_settings(write_log=False, verbose=0)
    with Tracker(settings, plugins=[broken], clock=epyc_with_mi300x.clock) as run:
        epyc_with_mi300x.advance(10.0)
    (failure,) = run.report.failures
    assert (failure.plugin, failure.hook) == ("broken", "carbontrack_discover_devices")
    assert "no such bus" in failure.error
    assert {d.backend for d in run.report.devices} == {"rapl", "amdsmi"}
    assert run.report.energy_j == pytest.approx(
        180.0 * 10.0 + epyc_with_mi300x.amdsmi.true_energy_j, rel=1e-6
    )


def test_a_bug_in_an_installed_package_is_isolated_from_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    hwmon = FakeHwmonTree(tmp_path / "hwmon")
    hwmon.add_grace(sockets=1, grace_w=250.0)
    _set(monkeypatch, hwmon.environ)
    buggy = FakeAmdSmi(
        [FakeAmdGpu("0000:c1:00.0", "uuid-c1")],
        clock=clock,
        raise_in={"amdsmi_get_processor_handles": ZeroDivisionError("division by zero")},
    )
    settings = make_settings(write_log=False, verbose=0)
    with buggy.installed(), Tracker(settings, clock=clock) as run:
        clock.advance(10.0)
    assert [(f.plugin, f.hook) for f in run.report.failures] == [
        ("amdsmi", "carbontrack_discover_devices")
    ]
    assert [d.backend for d in run.report.devices] == ["hwmon"]
    assert run.report.energy_j == pytest.approx(250.0 * 10.0)


def test_a_plugin_that_raises_while_reading_is_dropped_and_the_others_keep_measuring(
    epyc_with_mi300x: Machine,
) -> None:
    flaky = FakeHardware(
        [FakeDevice("psu", kind="system", watts=50.0)],
        name="flaky",
        clock=epyc_with_mi300x.clock,
        read_error_at=range(2, 1000),
    )
    settings = make_settings(write_log=False, verbose=0)
    with Tracker(settings, plugins=[flaky], clock=epyc_with_mi300x.clock) as run:
        for _ in range(4):
            epyc_with_mi300x.advance(5.0)
            run.snapshot()
    report = run.report
    (failure,) = report.failures
    assert (failure.plugin, failure.hook) == ("flaky", "carbontrack_read_energy")
    assert failure.count >= 3
    by_backend = {d.backend: d for d in report.devices}
    assert by_backend["flaky"].dropped is not None
    assert report.partial
    measured = sum(d.energy_j for d in report.devices if d.backend in ("rapl", "amdsmi"))
    assert measured == pytest.approx(180.0 * 20.0 + epyc_with_mi300x.amdsmi.true_energy_j, rel=1e-6)


def test_an_isolated_failure_is_kept_once_with_a_count() -> None:
    host = PluginHost(make_plugin_manager(extra_plugins=[FakeHardware(name="x")]))
    for _ in range(3):
        host.record_failure("x", "carbontrack_read_energy", OSError("gone"))
    (failure,) = host.failures
    assert failure.count == 3


# -- a package that cannot be imported ---------------------------------------------------------


def test_a_package_that_fails_to_import_stops_the_run_before_it_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = write_plugin_distribution(
        tmp_path / "site",
        name="brokenvendor",
        distribution="carbontrack-brokenvendor",
        version="0.3.1",
        source="import vendor_sdk_that_is_not_installed\n",
    )
    monkeypatch.syspath_prepend(str(site))
    started = []
    with pytest.raises(PluginLoadError) as caught, Tracker(make_settings(verbose=0)) as run:
        started.append(run)  # never reached: the error comes before any measuring
    message = str(caught.value)
    assert "'brokenvendor'" in message
    assert "carbontrack-brokenvendor" in message
    assert "vendor_sdk_that_is_not_installed" in message
    assert "CARBONTRACK_DISABLE_PLUGINS=brokenvendor" in message
    assert started == []


def test_a_package_that_fails_to_import_can_be_blocked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = write_plugin_distribution(
        tmp_path / "site", name="brokenvendor", source="raise RuntimeError('bad build')\n"
    )
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(PluginLoadError, match="RuntimeError: bad build"):
        make_plugin_manager()
    monkeypatch.setenv("CARBONTRACK_DISABLE_PLUGINS", f"rapl,{OTHER_BUILTINS},brokenvendor")
    pm = make_plugin_manager()
    assert pm.has_plugin("hwmon")
    assert pm.has_plugin("amdsmi")
