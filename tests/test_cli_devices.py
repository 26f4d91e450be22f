"""``carbontrack devices`` and ``carbontrack run`` against fake RAPL and NVML hardware.

The fakes sit at the hardware boundary: a powercap sysfs tree (``CARBONTRACK_POWERCAP_ROOT``)
whose counters a thread in the test advances in real time, and a fake ``pynvml`` module that the
subprocess imports by name (``CARBONTRACK_NVML_MODULE``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from carbontrack.backends import rapl
from carbontrack.testing.nvml import NVML_MODULE_ENV
from carbontrack.testing.powercap import FakePowercap, two_socket_server
from cli_helpers import carbontrack, cli_env

BACKENDS = ("rapl", "nvml", "powermetrics", "estimate")


def only(env: dict[str, str], *backends: str) -> dict[str, str]:
    """Enable just ``backends`` among the built-in hardware backends."""
    env["CARBONTRACK_DISABLE_PLUGINS"] = ",".join(b for b in BACKENDS if b not in backends)
    env["CARBONTRACK_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    return env


@pytest.fixture
def live_tree(tmp_path: Path) -> Iterator[FakePowercap]:
    """A two-socket powercap tree whose counters follow the real clock (synced every 10 ms)."""
    tree = two_socket_server(tmp_path / "sys", clock=time.monotonic)
    # live() raises its sync thread's priority: a starved thread on a loaded machine left the
    # counters stale at the window's start and the read power 30 % high (seen in CI).
    with tree.live(interval_s=0.01):
        yield tree


def rapl_env(tmp_path: Path, tree: FakePowercap) -> dict[str, str]:
    env = only(cli_env(tmp_path, plugin=False), "rapl")
    env[rapl.POWERCAP_ROOT_ENV] = str(tree.root)
    return env


def backend(data: dict[str, Any], name: str) -> dict[str, Any]:
    found = [b for b in data["backends"] if b["name"] == name]
    assert len(found) == 1, data
    result: dict[str, Any] = found[0]
    return result


# -- RAPL ----------------------------------------------------------------------------------------


def test_devices_lists_rapl_counters_with_the_power_they_read(
    tmp_path: Path, live_tree: FakePowercap
) -> None:
    done = carbontrack("devices", "--json", "--window", "0.5", env=rapl_env(tmp_path, live_tree))
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["window_s"] == 0.5
    devices = {d["id"]: d for d in backend(data, "rapl")["devices"]}
    assert {i: (d["kind"], d["method"]) for i, d in devices.items()} == {
        "package-0": ("cpu", "counter"),
        "package-1": ("cpu", "counter"),
        "dram-0": ("dram", "counter"),
        "dram-1": ("dram", "counter"),
    }
    # two_socket_server draws 120 W and 110 W per package, 14 W and 12 W per DRAM.
    for device_id, watts in (("package-0", 120), ("package-1", 110), ("dram-0", 14)):
        assert devices[device_id]["power_w"] == pytest.approx(watts, rel=0.1)
        assert devices[device_id]["error"] is None
    assert backend(data, "rapl")["unavailable"] == []


def test_devices_text_says_how_each_device_is_read(tmp_path: Path, live_tree: FakePowercap) -> None:
    done = carbontrack("devices", env=rapl_env(tmp_path, live_tree))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "rapl: 4 device(s)"
    package = next(line for line in lines if line.lstrip().startswith("package-0"))
    assert "counter (measured)" in package
    assert float(package.split(" W")[0].split()[-1]) == pytest.approx(120, rel=0.1)
    for blocked in ("nvml", "powermetrics", "estimate"):
        assert f"{blocked}: disabled by CARBONTRACK_DISABLE_PLUGINS" in done.stdout


TAKE_AWAY_ROOT = """
import ctypes, os, sys
if os.geteuid() == 0:
    # Root reads files of any mode: drop the two capabilities that allow it, for good (the
    # bounding set survives exec), so that an unreadable counter is unreadable here too.
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            sys.exit(f"cannot drop capability {cap}: errno {ctypes.get_errno()}")
os.execv(sys.argv[1], sys.argv[1:])
"""


def carbontrack_unprivileged(*args: str, env: dict[str, str]) -> Any:
    """Run carbontrack as a user that file modes apply to (root without its override)."""
    import subprocess

    from cli_helpers import CARBONTRACK

    done = subprocess.run(
        [sys.executable, "-c", TAKE_AWAY_ROOT, *CARBONTRACK, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if done.returncode != 0 and "cannot drop capability" in done.stderr:
        pytest.skip(f"cannot make a file unreadable to root here: {done.stderr.strip()}")
    return done


def test_devices_gives_the_reason_and_exact_fix_for_unreadable_counters(
    tmp_path: Path, live_tree: FakePowercap
) -> None:
    env = rapl_env(tmp_path, live_tree)
    denied = [z for z in live_tree.zones if z.zone_id in ("intel-rapl:0", "intel-rapl:0:0")]
    for zone in denied:
        zone.unreadable()
    done = carbontrack_unprivileged("devices", "--json", env=env)
    assert done.returncode == 0, done.stderr
    rapl_view = backend(json.loads(done.stdout), "rapl")
    # The readable socket is still listed and read.
    assert sorted(d["id"] for d in rapl_view["devices"]) == ["dram-1", "package-1"]
    [unavailable] = rapl_view["unavailable"]
    assert "CVE-2020-8694" in unavailable["reason"]
    for zone in denied:
        assert f"sudo chmod +r {zone.energy_file}" in unavailable["fix"]
    assert rapl.UDEV_RULE in unavailable["fix"]

    text = carbontrack_unprivileged("devices", env=env).stdout
    assert "  cannot read cpu: RAPL energy counters exist" in text
    # The fix is printed whole, every line of it indented under the reason.
    assert "    fix: " + unavailable["fix"].replace("\n", "\n         ") in text


def test_run_with_unreadable_counters_measures_the_rest_and_says_how_to_fix(
    tmp_path: Path, live_tree: FakePowercap
) -> None:
    env = rapl_env(tmp_path, live_tree)
    env["CARBONTRACK_HOME"] = str(tmp_path / "home")
    live_tree.zone("package-0").unreadable()
    done = carbontrack_unprivileged("run", "--json", "--", "sleep", "0.5", env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert sorted(d["id"] for d in report["devices"]) == ["dram-0", "dram-1", "package-1"]
    assert report["partial"] is True
    [unavailable] = report["unavailable"]
    assert f"sudo chmod +r {live_tree.zone('package-0').energy_file}" in unavailable["fix"]
    assert "sudo chmod +r" in done.stderr  # the summary says the fix too


# -- NVML ----------------------------------------------------------------------------------------

FAKE_GPUS = """
import sys
from carbontrack.testing.nvml import FakeGpu, FakeNVML

fake = FakeNVML(
    [
        FakeGpu(uuid="GPU-11111111-2222-3333-4444-555555555555", pci_bus_id="00000000:3B:00.0",
                power=250.0),
        FakeGpu(uuid="GPU-66666666-7777-8888-9999-000000000000", pci_bus_id="00000000:5E:00.0",
                name="Tesla P100-PCIE-16GB", architecture=4, power=100.0, energy_counter=False),
    ],
    init_error={init_error},
)
# importlib hands back whatever the module put in sys.modules under its name.
sys.modules[__name__] = fake
"""


def nvml_env(tmp_path: Path, init_error: int | None = None) -> dict[str, str]:
    site = tmp_path / "fake-nvml"
    site.mkdir(parents=True)
    (site / "fake_gpus.py").write_text(FAKE_GPUS.format(init_error=init_error))
    env = only(cli_env(tmp_path, plugin=False), "nvml")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    env[NVML_MODULE_ENV] = "fake_gpus"
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


def test_devices_lists_nvidia_gpus_with_counter_or_sampled_power(tmp_path: Path) -> None:
    done = carbontrack("devices", "--json", env=nvml_env(tmp_path))
    assert done.returncode == 0, done.stderr
    gpus = {d["name"]: d for d in backend(json.loads(done.stdout), "nvml")["devices"]}
    assert len(gpus) == 2, gpus
    a100 = next(d for name, d in gpus.items() if "A100" in name)
    p100 = next(d for name, d in gpus.items() if "P100" in name)
    assert (a100["kind"], a100["method"]) == ("gpu", "counter")
    assert (p100["kind"], p100["method"]) == ("gpu", "power")
    assert a100["power_w"] == pytest.approx(250, rel=0.05)
    assert p100["power_w"] == pytest.approx(100, rel=0.05)

    text = carbontrack("devices", env=nvml_env(tmp_path / "again")).stdout
    assert "nvml: 2 device(s)" in text
    assert "power (measured, sampled)" in text


def test_devices_says_how_to_fix_nvml_without_permission(tmp_path: Path) -> None:
    done = carbontrack("devices", "--json", env=nvml_env(tmp_path, init_error=4))
    assert done.returncode == 0, done.stderr
    view = backend(json.loads(done.stdout), "nvml")
    assert view["devices"] == []
    [unavailable] = view["unavailable"]
    assert unavailable["kind"] == "gpu"
    assert "nvmlInit failed" in unavailable["reason"]
    assert "/dev/nvidia*" in unavailable["fix"]


def test_run_measures_gpus_and_cpu_together(tmp_path: Path, live_tree: FakePowercap) -> None:
    env = nvml_env(tmp_path)
    env = only(env, "nvml", "rapl")
    env[rapl.POWERCAP_ROOT_ENV] = str(live_tree.root)
    done = carbontrack("run", "--json", "--", "sleep", "0.6", env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert sorted(c["component"] for c in report["components"]) == ["cpu", "gpu"]
    # Summed, never averaged: 120 + 110 + 14 + 12 W of CPU and DRAM, 250 + 100 W of GPUs.
    assert report["energy_j"] == pytest.approx(606 * report["duration_s"], rel=0.1)


# -- everything else -----------------------------------------------------------------------------


def test_devices_reports_a_plugin_that_fails_in_discovery(tmp_path: Path) -> None:
    source = (
        "from carbontrack.testing import FakeHardware\n"
        "plugin = FakeHardware([], name='fakecpu', discover_error=RuntimeError('no bus'))\n"
    )
    done = carbontrack("devices", env=cli_env(tmp_path, plugin_source=source))
    assert done.returncode == 0
    assert "  plugin failed in carbontrack_discover_devices: RuntimeError: no bus" in done.stdout
    assert "Traceback" not in done.stderr


def test_devices_says_when_nothing_can_be_measured(tmp_path: Path) -> None:
    done = carbontrack("devices", env=only(cli_env(tmp_path, plugin=False)))
    assert done.returncode == 0
    assert "nothing can be measured here" in done.stdout


@pytest.mark.parametrize("window", ["0", "-1", "600", "soon"])
def test_devices_rejects_a_bad_window(tmp_path: Path, window: str) -> None:
    done = carbontrack("devices", "--window", window, env=cli_env(tmp_path, plugin=False))
    assert done.returncode == 2
    assert done.stderr.startswith("usage: carbontrack devices")  # as for any invalid value
    assert "--window" in done.stderr


# -- powermetrics (Apple Silicon) ------------------------------------------------------------


def test_devices_lists_apple_silicon_through_a_fake_powermetrics(tmp_path: Path) -> None:
    from carbontrack.backends import powermetrics
    from carbontrack.testing.powermetrics import install_fake_powermetrics

    fake = install_fake_powermetrics(tmp_path / "bin", cpu_w=6.0, gpu_w=2.5, ane_w=0.4)
    env = only(cli_env(tmp_path, plugin=False), "powermetrics")
    env["PATH"] = fake.path_env
    env[powermetrics.FORCE_ENV] = "1"  # this machine is no Mac: the fake stands in for one
    done = carbontrack("devices", "--json", "--window", "1", env=env)
    assert done.returncode == 0, done.stderr
    view = backend(json.loads(done.stdout), "powermetrics")
    assert view["unavailable"] == []
    power = {d["kind"]: d["power_w"] for d in view["devices"]}
    assert power == {
        "cpu": pytest.approx(6.0, rel=0.25),
        "gpu": pytest.approx(2.5, rel=0.25),
        "ane": pytest.approx(0.4, rel=0.25),
    }


@pytest.mark.parametrize("command", ["devices", "plugins"])
def test_a_plugin_that_cannot_load_is_named_with_the_fix(tmp_path: Path, command: str) -> None:
    env = cli_env(tmp_path, plugin_source="raise ImportError('vendor library missing')\n")
    done = carbontrack(command, "--strict", env=env)
    assert done.returncode == 1  # with --strict; listed with its error either way (issue 20)
    assert "plugin 'fakecpu' from carbontrack-fakecpu failed to load" in done.stdout
    assert "CARBONTRACK_DISABLE_PLUGINS=fakecpu" in done.stdout
    assert done.stderr.startswith("carbontrack: plugin 'fakecpu' cannot be loaded")
    assert "Traceback" not in done.stderr + done.stdout
