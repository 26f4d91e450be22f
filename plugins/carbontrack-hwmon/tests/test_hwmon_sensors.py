"""Which hwmon sensors the plugin reports, and how it reads them."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from carbontrack import Device, Reading, Unavailable, make_settings

from carbontrack_hwmon import plugin
from carbontrack_hwmon.testing import FakeHwmonTree

NOBODY = 65534


def discover(**options: Any) -> list[Device | Unavailable]:
    return plugin.carbontrack_discover_devices(settings=make_settings(**options))


def devices(**options: Any) -> list[Device]:
    return [d for d in discover(**options) if isinstance(d, Device)]


def read(device: Device) -> Reading:
    (reading,) = plugin.carbontrack_read_energy(devices=[device])
    return reading


def test_no_hwmon_tree_means_no_devices_and_no_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: os.PathLike[str]
) -> None:
    monkeypatch.setenv("CARBONTRACK_HWMON_ROOT", os.path.join(tmp_path, "absent"))
    assert discover() == []


def test_amd_energy_reports_socket_counters_not_the_cores_inside_them(tree: FakeHwmonTree) -> None:
    tree.add_amd_energy(sockets=2, cores_per_socket=4)
    found = devices()
    assert [d.name for d in found] == ["amd_energy Esocket0", "amd_energy Esocket1"]
    assert {(d.kind, d.method, d.backend) for d in found} == {("cpu", "counter", "hwmon")}


def test_amd_energy_is_skipped_when_rapl_counts_the_same_sockets(
    tree: FakeHwmonTree, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CARBONTRACK_DISABLE_PLUGINS", "nvml,powermetrics,estimate")
    tree.add_amd_energy(sockets=1)
    tree.add_rapl_package()
    assert devices() == []
    # Asked for anyway: taken, with a warning that the sockets now count twice.
    assert [d.name for d in devices(plugin_options={"hwmon": {"include": ["amd_energy"]}})] == [
        "amd_energy Esocket0"
    ]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "CARBONTRACK_DISABLE_PLUGINS=rapl" in warnings[0]


def test_amd_energy_stands_in_when_the_rapl_plugin_is_disabled(
    tree: FakeHwmonTree, caplog: pytest.LogCaptureFixture
) -> None:
    # conftest blocks rapl: readable RAPL counters that nobody reads measure nothing.
    tree.add_amd_energy(sockets=1)
    tree.add_rapl_package()
    assert [d.name for d in devices()] == ["amd_energy Esocket0"]
    assert [d.name for d in devices(plugin_options={"hwmon": {"include": ["amd_energy"]}})] == [
        "amd_energy Esocket0"
    ]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_grace_takes_the_grace_meter_of_each_socket(tree: FakeHwmonTree) -> None:
    tree.add_grace(sockets=2)
    found = devices()
    assert [d.name for d in found] == [
        "power_meter Grace Power Socket 0",
        "power_meter Grace Power Socket 1",
    ]
    assert {(d.kind, d.method) for d in found} == {("cpu", "power")}


def test_grace_without_a_grace_meter_takes_cpu_and_sysio(tree: FakeHwmonTree) -> None:
    tree.add_grace(sockets=1, grace_w=None)
    assert [d.name for d in devices()] == [
        "power_meter CPU Power Socket 0",
        "power_meter SysIO Power Socket 0",
    ]


def test_grace_module_meter_is_never_taken_because_it_holds_the_gpu(tree: FakeHwmonTree) -> None:
    tree.add_grace(sockets=1, grace_w=None, cpu_w=0.0, sysio_w=0.0)
    assert all("Module" not in d.name for d in devices())


def test_whole_machine_meters_are_opt_in(tree: FakeHwmonTree) -> None:
    tree.add_psu()
    chip = tree.add_chip("power_meter")  # an ACPI platform meter without oem_info
    chip.power(1, 500.0)
    assert devices() == []


def test_system_meters_beside_active_backends_warn_that_the_energy_counts_twice(
    tree: FakeHwmonTree, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    tree.add_psu(pin_w=450.0)
    system = {"hwmon": {"include": ["system"]}}
    # conftest blocks every built-in measuring backend: nothing is inside the PSU twice.
    assert [d.kind for d in devices(plugin_options=system)] == ["system"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    # rapl and the CPU estimate active: the PSU input holds what they report.
    monkeypatch.setenv("CARBONTRACK_DISABLE_PLUGINS", "nvml,powermetrics")
    assert [d.kind for d in devices(plugin_options=system)] == ["system"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "rapl, estimate" in warnings[0]
    assert "CARBONTRACK_DISABLE_PLUGINS=rapl,nvml,powermetrics,estimate,amdsmi" in warnings[0]


def test_system_takes_every_psu_input_and_nothing_inside_it(
    tree: FakeHwmonTree, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree.add_psu(pin_w=450.0)
    tree.add_psu(pin_w=430.0)
    tree.add_grace(sockets=1)
    tree.add_chip("power_meter").power(1, 900.0)  # the platform meter: same watts as the PSUs
    monkeypatch.setenv("CARBONTRACK_HWMON_INCLUDE", "system")
    found = devices()
    assert [(d.name, d.kind) for d in found] == [("pmbus pin", "system"), ("pmbus pin", "system")]
    assert [read(d).watts for d in found] == [450.0, 430.0]


@pytest.mark.parametrize("driver", ["ibm-cffps", "ibm_cffps"])
def test_psu_drivers_are_known_by_either_spelling_of_their_name(
    tree: FakeHwmonTree, driver: str
) -> None:
    tree.add_chip(driver).power(1, 300.0, label="pin", average=False)
    found = devices(plugin_options={"hwmon": {"include": ["system"]}})
    assert [(d.name, read(d).watts) for d in found] == [(f"{driver} pin", 300.0)]


def test_system_without_psus_takes_the_acpi_platform_meter(tree: FakeHwmonTree) -> None:
    tree.add_grace(sockets=1)
    tree.add_chip("power_meter").power(1, 900.0)
    found = devices(plugin_options={"hwmon": {"include": "system"}})
    assert [(d.name, read(d).watts) for d in found] == [("power_meter power1", 900.0)]


def test_amdgpu_is_opt_in_and_prefers_average_power(tree: FakeHwmonTree) -> None:
    chip = tree.add_amdgpu(watts=120.0)
    chip.power(1, 95.0, average=False)  # power1_input beside power1_average
    assert devices() == []
    (gpu,) = devices(plugin_options={"hwmon": {"include": ["amdgpu"]}})
    assert (gpu.kind, gpu.method, read(gpu).watts) == ("gpu", "power", 120.0)


def test_other_driver_by_name_gives_its_counters_not_its_power(tree: FakeHwmonTree) -> None:
    chip = tree.add_chip("acme_meter")
    chip.energy(1, 30.0, label="rail A")
    chip.power(1, 30.0, label="rail A")
    assert devices() == []
    (rail,) = devices(plugin_options={"hwmon": {"include": ["acme_meter"]}})
    assert (rail.name, rail.kind, rail.method) == ("acme_meter rail A", "other", "counter")


def test_counter_reads_microjoules_as_joules(tree: FakeHwmonTree) -> None:
    chip = tree.add_amd_energy(sockets=1)
    (socket,) = devices()
    before = read(socket).joules
    tree.advance(2.5)
    after = read(socket).joules
    assert before is not None
    assert after is not None
    assert after - before == pytest.approx(chip.sensors[-1].true_j, abs=1e-6)
    assert read(socket).wrap_j is None


def test_power_reads_microwatts_as_watts(tree: FakeHwmonTree) -> None:
    tree.add_grace(sockets=1, grace_w=251.5)
    (grace,) = devices()
    assert read(grace).watts == 251.5


@pytest.mark.parametrize("content", ["", "not a number\n", "-5\n"])
def test_garbage_in_a_sensor_file_is_a_failed_read_naming_the_file(
    tree: FakeHwmonTree, content: str
) -> None:
    chip = tree.add_amd_energy(sockets=1)
    (socket,) = devices()
    chip.sensors[-1].write_raw(content)
    reading = read(socket)
    assert reading.error is not None
    assert str(chip.sensors[-1].path) in reading.error


def test_a_vanished_sensor_file_is_a_failed_read(tree: FakeHwmonTree) -> None:
    chip = tree.add_amd_energy(sockets=1)
    (socket,) = devices()
    chip.sensors[-1].remove()
    assert "energy" in (read(socket).error or "")


@contextlib.contextmanager
def unprivileged() -> Iterator[None]:
    """Run the body as a user without root's override of file modes (CI runs as root)."""
    if os.geteuid() != 0:
        yield
        return
    try:
        os.seteuid(NOBODY)
    except OSError as exc:  # a sandbox without CAP_SETUID
        pytest.skip(f"cannot drop root privileges here ({exc})")
    try:
        yield
    finally:
        os.seteuid(0)


def test_unreadable_sensors_are_unavailable_with_the_chmod_that_fixes_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A tree that the unprivileged user can walk (pytest's tmp_path is root's alone).
    base = Path(tempfile.mkdtemp(prefix="carbontrack-hwmon-"))
    base.chmod(0o755)
    try:
        tree = FakeHwmonTree(base / "hwmon")
        for key, value in tree.environ.items():
            monkeypatch.setenv(key, value)
        chip = tree.add_amd_energy(sockets=2)
        for sensor in chip.sensors:
            sensor.make_unreadable()
        with unprivileged():
            (entry,) = discover()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    assert isinstance(entry, Unavailable)
    assert entry.kind == "cpu"
    assert entry.fix.startswith("sudo chmod a+r ")
    assert str(chip.sensors[-1].path) in entry.fix


def test_plugin_options_that_are_not_a_dict_are_refused_with_an_example(
    tree: FakeHwmonTree,
) -> None:
    with pytest.raises(TypeError, match=r"plugin_options\['hwmon'\]='system'.*'include'"):
        discover(plugin_options={"hwmon": "system"})


def test_the_lasting_fix_writes_a_valid_udev_rule() -> None:
    # The fix is a shell command: run its echo part and check the rule line it would install.
    import shutil
    import subprocess

    from carbontrack_hwmon.plugin import _UDEV_HINT, _UDEV_RULE

    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("needs bash to run the fix's echo")
    echo = _UDEV_HINT.split("reboots: ", 1)[1].split(" | sudo tee ", 1)[0]
    written = subprocess.run([bash, "-c", echo], capture_output=True, text=True, check=True)
    assert written.stdout.strip() == _UDEV_RULE
    assert _UDEV_RULE == (
        'ACTION=="add", SUBSYSTEM=="hwmon", '
        "RUN+=\"/bin/sh -c 'chmod a+r /sys%p/energy*_input /sys%p/power*_input'\""
    )
