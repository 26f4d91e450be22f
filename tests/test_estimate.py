"""The estimate backend: model-string matching, the curve, attribution, the fallback rule."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import time
from importlib.resources import files
from pathlib import Path

import pytest

from carbontrack import Tracker, Unavailable, make_settings
from carbontrack.backends import estimate
from carbontrack.backends.estimate import (
    DEFAULT_W_PER_THREAD,
    IDLE_SHARE,
    RAM_W_PER_GB,
    CpuInfo,
    cpu_power_w,
    match_cpu,
    normalise_cpu_name,
    read_cpu_info,
    resolve_tdp,
)
from carbontrack.model import Device, Reading
from carbontrack.settings import Settings
from carbontrack.testing import FakeClock, FakeDevice, FakeHardware
from carbontrack.testing.procfs import FakeProcFS, fake_sysctl

GOLD_6248 = "Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz"


@pytest.fixture
def proc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeProcFS:
    """A bare-metal-like Linux box with no RAPL: one Xeon Gold 6248 socket, 4 CPUs."""
    fake = FakeProcFS(tmp_path / "machine")
    for key, value in fake.env().items():
        monkeypatch.setenv(key, value)
    # rapl stays enabled: it reads the fake powercap directory, which has no counter.
    monkeypatch.setenv("CARBONTRACK_DISABLE_PLUGINS", "nvml,powermetrics")
    monkeypatch.setattr(platform, "system", lambda: "Linux")
    return fake


def use(monkeypatch: pytest.MonkeyPatch, fake: FakeProcFS) -> FakeProcFS:
    for key, value in fake.env().items():
        monkeypatch.setenv(key, value)
    return fake


def discover(**options: object) -> list[Device | Unavailable]:
    return list(estimate.carbontrack_discover_devices(make_settings(**options)))


def only_device(found: list[Device | Unavailable], kind: str = "cpu") -> Device:
    devices = [d for d in found if isinstance(d, Device) and d.kind == kind]
    assert len(devices) == 1, found
    return devices[0]


def watts(device: Device) -> float:
    (reading,) = estimate.carbontrack_read_energy([device])
    assert reading.watts is not None, reading
    return reading.watts


def shipped_rows() -> dict[str, float]:
    text = files("carbontrack.backends").joinpath("data", "cpu_tdp.csv").read_text("utf-8")
    return {row["name"]: float(row["tdp_w"]) for row in csv.DictReader(io.StringIO(text))}


# -- matching real model strings ----------------------------------------------------------------

# Real strings as /proc/cpuinfo, sysctl or cloud VMs print them, and the table row they must find.
REAL_MODELS = [
    ("Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz", "Intel Xeon Gold 6248"),
    ("Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz", "Intel Xeon Gold 6148"),
    ("Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz", "Intel Xeon Gold 6130"),
    ("Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz", "Intel Xeon Gold 6338"),
    ("Intel(R) Xeon(R) Silver 4214R CPU @ 2.40GHz", "Intel Xeon Silver 4214R"),
    ("Intel(R) Xeon(R) Platinum 8380 CPU @ 2.30GHz", "Intel Xeon Platinum 8380"),
    ("Intel(R) Xeon(R) Platinum 8168 CPU @ 2.70GHz", "Intel Xeon Platinum 8168"),
    ("Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz", "Intel Xeon Platinum 8259CL"),
    ("Intel(R) Xeon(R) Platinum 8480+", "Intel Xeon Platinum 8480+"),
    ("INTEL(R) XEON(R) PLATINUM 8592+", "Intel Xeon Platinum 8592+"),
    ("Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz", "Intel Xeon E5-2680 v4"),
    ("Intel(R) Xeon(R) CPU E5-2686 v4 @ 2.30GHz", "Intel Xeon E5-2686 v4"),
    ("Intel(R) Xeon(R) CPU E5-2698 v4 @ 2.20GHz", "Intel Xeon E5-2698 v4"),
    ("Intel(R) Xeon(R) W-2145 CPU @ 3.70GHz", "Intel Xeon W-2145"),
    ("Intel(R) Xeon(R) E-2288G CPU @ 3.70GHz", "Intel Xeon E-2288G"),
    ("Intel(R) Core(TM) i7-10700 CPU @ 2.90GHz", "Intel Core i7-10700"),
    ("Intel(R) Core(TM) i9-9900K CPU @ 3.60GHz", "Intel Core i9-9900K"),
    ("Intel(R) Core(TM) i5-8250U CPU @ 1.60GHz", "Intel Core i5-8250U"),
    ("11th Gen Intel(R) Core(TM) i7-1185G7 @ 3.00GHz", "Intel Core i7-1185G7"),
    ("Intel(R) Core(TM) Ultra 7 155H", "Intel Core Ultra 7 155H"),
    ("Intel(R) Core(TM)2 Duo CPU     E8400  @ 3.00GHz", "Intel Core 2 Duo E8400"),
    ("Intel(R) Pentium(R) CPU G4560 @ 3.50GHz", "Intel Pentium G4560"),
    ("Intel(R) Celeron(R) N4000 CPU @ 1.10GHz", "Intel Celeron N4000"),
    ("Intel(R) Atom(TM) CPU C3558 @ 2.20GHz", "Intel Atom C3558"),
    ("AMD EPYC 7742 64-Core Processor", "AMD EPYC 7742"),
    ("AMD EPYC 7763 64-Core Processor", "AMD EPYC 7763"),
    ("AMD EPYC 7543 32-Core Processor", "AMD EPYC 7543"),
    ("AMD EPYC 7302P 16-Core Processor", "AMD EPYC 7302P"),
    ("AMD EPYC 9654 96-Core Processor", "AMD EPYC 9654"),
    ("AMD EPYC 9754 128-Core Processor", "AMD EPYC 9754"),
    ("AMD EPYC 7B12", "AMD EPYC 7B12"),
    ("AMD Ryzen 9 5950X 16-Core Processor", "AMD Ryzen 9 5950X"),
    ("AMD Ryzen 7 5800X 8-Core Processor", "AMD Ryzen 7 5800X"),
    ("AMD Ryzen 5 3600 6-Core Processor", "AMD Ryzen 5 3600"),
    ("AMD Ryzen 9 7950X 16-Core Processor", "AMD Ryzen 9 7950X"),
    ("AMD Ryzen Threadripper 3970X 32-Core Processor", "AMD Ryzen Threadripper 3970X"),
    ("AMD Ryzen Threadripper PRO 5995WX 64-Cores", "AMD Ryzen Threadripper PRO 5995WX"),
    ("AMD Ryzen 7 PRO 4750U with Radeon Graphics", "AMD Ryzen 7 PRO 4750U"),
    ("AMD Ryzen 5 5600G with Radeon Graphics", "AMD Ryzen 5 5600G"),
    ("AMD Ryzen 7 7840U w/ Radeon 780M Graphics", "AMD Ryzen 7 7840U"),
    ("AMD Ryzen AI 9 HX 370 w/ Radeon 890M", "AMD Ryzen AI 9 HX 370"),
    ("AMD Athlon Silver 3050U with Radeon Graphics", "AMD Athlon Silver 3050U"),
    ("AMD Opteron(tm) Processor 6234", "AMD Opteron 6234"),
    ("AMD Opteron(TM) Processor 6272", "AMD Opteron 6272"),
    ("Apple M1", "Apple M1"),
    ("Apple M2", "Apple M2"),
    ("Apple M2 Pro", "Apple M2 Pro"),
    ("Apple M2 Max", "Apple M2 Max"),
    ("Apple M3 Max", "Apple M3 Max"),
    ("Apple M4 Pro", "Apple M4 Pro"),
]


def test_at_least_thirty_real_models_from_each_family_are_covered() -> None:
    families = ("Xeon", "EPYC", "Core", "Ryzen", "Apple M")
    assert len(REAL_MODELS) >= 30
    for family in families:
        assert sum(family in real for real, _ in REAL_MODELS) >= 3, family


@pytest.mark.parametrize(("real", "row"), REAL_MODELS)
def test_real_model_string_matches_its_table_row(real: str, row: str) -> None:
    found = match_cpu(real)
    assert found is not None, real
    assert found.name == row
    assert found.tdp_w == shipped_rows()[row]


def test_matched_tdps_are_the_rated_figures() -> None:
    # Spot checks against the vendors' spec sheets (Intel ARK, AMD, CodeCarbon for Apple).
    assert match_cpu(GOLD_6248).tdp_w == 150  # type: ignore[union-attr]
    assert match_cpu("AMD EPYC 7742 64-Core Processor").tdp_w == 225  # type: ignore[union-attr]
    assert match_cpu("Intel(R) Core(TM) i7-10700 CPU @ 2.90GHz").tdp_w == 65  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "unknown",
    [
        "Intel(R) Xeon(R) Processor @ 2.50GHz",  # a VM hiding the model
        "Intel(R) Xeon(R) CPU @ 2.20GHz",  # Google Cloud
        "AMD EPYC 7R32",  # AWS custom part, not in the table
        "Apple M1 Pro",  # not in the table: must not borrow the M1's 10 W
        "Neoverse-N1",
        "",
        "   ",
    ],
)
def test_unknown_model_is_not_matched(unknown: str) -> None:
    assert match_cpu(unknown) is None


def test_a_near_miss_is_another_chip() -> None:
    plain = match_cpu("Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz")
    refresh = match_cpu("Intel(R) Xeon(R) Gold 6248R CPU @ 3.00GHz")
    assert plain is not None
    assert refresh is not None
    assert (plain.name, refresh.name) == ("Intel Xeon Gold 6248", "Intel Xeon Gold 6248R")
    assert plain.tdp_w != refresh.tdp_w


def test_word_order_does_not_matter() -> None:
    found = match_cpu("Opteron 6234 AMD")
    assert found is not None
    assert (found.name, found.how) == ("AMD Opteron 6234", "words")


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        (GOLD_6248, "intel xeon gold 6248"),
        ("AMD EPYC 7742 64-Core Processor", "amd epyc 7742"),
        ("12th Gen Intel(R) Core(TM) i9-12900K", "intel core i9-12900k"),
        ("AMD Ryzen 7 7840U w/ Radeon 780M Graphics", "amd ryzen 7 7840u"),
        ("Intel® Core™ i5-8250U Processor", "intel core i5-8250u"),
    ],
)
def test_normalisation_keeps_only_identifying_words(raw: str, normal: str) -> None:
    assert normalise_cpu_name(raw) == normal


def test_table_keys_are_the_normalised_names() -> None:
    text = files("carbontrack.backends").joinpath("data", "cpu_tdp.csv").read_text("utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) > 4000
    assert all(row["key"] == normalise_cpu_name(row["name"]) for row in rows)
    assert len({row["key"] for row in rows}) == len(rows)


def test_table_records_its_source_licence_and_date() -> None:
    data = files("carbontrack.backends").joinpath("data")
    meta = json.loads(data.joinpath("cpu_tdp_meta.json").read_text("utf-8"))
    assert meta["license"] == "MIT"
    assert meta["rows"] == len(shipped_rows())
    assert len(meta["input_sha256"]) == 64
    assert meta["retrieved_at"][:2] == "20"
    assert "MIT License" in data.joinpath(meta["license_file"]).read_text("utf-8")


def test_build_script_regenerates_the_shipped_table(tmp_path: Path) -> None:
    import runpy

    rows = shipped_rows()
    # A CodeCarbon-style input: the shipped rows, one bare model number and one bad TDP.
    source = tmp_path / "cpu_power.csv"
    with source.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerows([["Name", "TDP"], ["6234", "115"], ["Intel Broken", "abc"]])
        writer.writerows([name, f"{tdp:g}"] for name, tdp in rows.items())
    script = Path(__file__).resolve().parent.parent / "scripts" / "build_cpu_tdp.py"
    namespace = runpy.run_path(str(script))
    assert namespace["main"](["--input", str(source), "--out", str(tmp_path / "out")]) == 0
    rebuilt = (tmp_path / "out" / "cpu_tdp.csv").read_text(encoding="utf-8")
    shipped = files("carbontrack.backends").joinpath("data", "cpu_tdp.csv").read_text("utf-8")
    assert rebuilt == shipped


# -- the curve ----------------------------------------------------------------------------------


def test_curve_is_idle_share_at_rest_and_tdp_at_full_load() -> None:
    assert cpu_power_w(150, 0.0) == pytest.approx(150 * IDLE_SHARE)
    assert cpu_power_w(150, 1.0) == pytest.approx(150)
    assert pytest.approx(0.74 / 3.5) == IDLE_SHARE


def test_curve_is_linear_in_utilisation() -> None:
    low, mid, high = (cpu_power_w(100, u) for u in (0.2, 0.5, 0.8))
    assert mid - low == pytest.approx(high - mid)
    assert mid == pytest.approx(100 * (IDLE_SHARE + (1 - IDLE_SHARE) * 0.5))


def test_curve_clamps_out_of_range_utilisation() -> None:
    assert cpu_power_w(100, 1.7) == cpu_power_w(100, 1.0)
    assert cpu_power_w(100, -0.3) == cpu_power_w(100, 0.0)


def test_idle_weight_shares_only_the_idle_floor() -> None:
    assert cpu_power_w(100, 0.0, idle_weight=0.0) == 0.0
    assert cpu_power_w(100, 0.25, idle_weight=0.5) == pytest.approx(
        100 * (IDLE_SHARE * 0.5 + (1 - IDLE_SHARE) * 0.25)
    )


# -- TDP choice ---------------------------------------------------------------------------------


def cpu(model: str = GOLD_6248, sockets: int = 1, threads: int = 40) -> CpuInfo:
    return CpuInfo(model=model, sockets=sockets, threads=threads, virtual=False, source="test")


def test_user_tdp_wins_over_the_table() -> None:
    choice = resolve_tdp(make_settings(cpu_tdp_w=95.5), cpu())
    assert (choice.total_w, choice.known_model) == (95.5, True)
    assert "cpu_tdp_w" in choice.source


def test_every_socket_counts() -> None:
    choice = resolve_tdp(make_settings(), cpu(sockets=2, threads=80))
    assert choice.total_w == 2 * 150
    assert "2 x 150 W" in choice.source


def test_unknown_model_gets_the_per_thread_default_and_says_so() -> None:
    choice = resolve_tdp(make_settings(), cpu(model="Mystery CPU 9000", threads=12))
    assert choice.total_w == 12 * DEFAULT_W_PER_THREAD
    assert not choice.known_model
    assert "not in carbontrack's CPU table" in choice.source
    assert "cpu_tdp_w" in choice.source


@pytest.mark.parametrize("bad", [0, -65, math.nan, math.inf])
def test_non_positive_or_non_finite_tdp_is_a_value_error(bad: float) -> None:
    with pytest.raises(ValueError, match="cpu_tdp_w"):
        make_settings(cpu_tdp_w=bad)


def test_tdp_of_the_wrong_type_is_refused() -> None:
    with pytest.raises(TypeError, match="cpu_tdp_w"):
        make_settings(cpu_tdp_w="150")


# -- reading the machine ------------------------------------------------------------------------


def test_cpuinfo_gives_model_sockets_threads_and_vm_flag(tmp_path: Path) -> None:
    fake = FakeProcFS(tmp_path, model=GOLD_6248, sockets=2, threads_per_socket=3, hypervisor=True)
    info = read_cpu_info(fake.proc)
    assert (info.model, info.sockets, info.threads, info.virtual) == (GOLD_6248, 2, 6, True)


def test_without_proc_the_model_comes_from_sysctl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    fake_sysctl(bin_dir, {"machdep.cpu.brand_string": "Apple M2 Pro", "hw.packages": "1"})
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    (tmp_path / "empty").mkdir()
    info = read_cpu_info(tmp_path / "empty")
    assert (info.model, info.sockets) == ("Apple M2 Pro", 1)
    assert resolve_tdp(make_settings(), info).total_w == 35


def test_machine_utilisation_comes_from_proc_stat(proc: FakeProcFS) -> None:
    device = only_device(discover())
    proc.cpu_time(busy=300, idle=100)  # 75 % busy since discovery
    assert watts(device) == pytest.approx(cpu_power_w(150, 0.75))
    proc.cpu_time(busy=0, idle=400)  # then idle
    assert watts(device) == pytest.approx(150 * IDLE_SHARE)


def test_steal_time_is_neither_busy_nor_idle(proc: FakeProcFS) -> None:
    device = only_device(discover())
    proc.cpu_time(busy=100, idle=100, steal=800)
    assert watts(device) == pytest.approx(cpu_power_w(150, 0.5))


def test_no_elapsed_tick_repeats_the_last_figure(proc: FakeProcFS) -> None:
    device = only_device(discover())
    proc.cpu_time(busy=50, idle=50)
    first = watts(device)
    assert watts(device) == first


def test_proc_stat_vanishing_is_a_failed_read_naming_the_file(proc: FakeProcFS) -> None:
    device = only_device(discover())
    (proc.proc / "stat").unlink()
    (reading,) = estimate.carbontrack_read_energy([device])
    assert reading.watts is None
    assert reading.error is not None
    assert str(proc.proc / "stat") in reading.error


# -- process attribution ------------------------------------------------------------------------


@pytest.fixture
def tree(proc: FakeProcFS) -> FakeProcFS:
    """Process 100 (tracked) with child 101 and grandchild 102; 200 is someone else's."""
    proc.add_process(100, 1, utime=10)
    proc.add_process(101, 100, utime=5)
    proc.add_process(102, 101)
    proc.add_process(200, 1, utime=999)
    return proc


def test_process_attribution_counts_the_tree_only(tree: FakeProcFS) -> None:
    device = only_device(discover(attribution="process", pid=100))
    tree.process_time(100, utime=50)
    tree.process_time(102, stime=50)  # the grandchild counts
    tree.process_time(200, utime=200)  # an unrelated process does not
    tree.cpu_time(busy=300, idle=100)
    # Tree: 100 of 400 ticks (u = 0.25) and 100 of the 300 busy ticks (a third of the idle floor).
    expected = cpu_power_w(150, 100 / 400, idle_weight=100 / 300)
    assert watts(device) == pytest.approx(expected)


def test_process_and_machine_attribution_differ_on_a_shared_machine(tree: FakeProcFS) -> None:
    machine = only_device(discover())
    process = only_device(discover(attribution="process", pid=100))
    tree.process_time(101, utime=40)
    tree.process_time(200, utime=360)
    tree.cpu_time(busy=400, idle=0)
    assert watts(machine) == pytest.approx(150)
    assert watts(process) == pytest.approx(cpu_power_w(150, 0.1, idle_weight=0.1))


def test_without_children_files_the_tree_is_found_by_scanning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, proc: FakeProcFS
) -> None:
    scanned = use(monkeypatch, FakeProcFS(tmp_path / "scan", children_files=False))
    scanned.add_process(100, 1)
    scanned.add_process(101, 100)
    scanned.add_process(200, 1)
    assert not (scanned.proc / "100" / "task" / "100" / "children").exists()
    device = only_device(discover(attribution="process", pid=100))
    scanned.process_time(101, utime=100)
    scanned.process_time(200, utime=100)
    scanned.cpu_time(busy=200, idle=200)
    assert watts(device) == pytest.approx(cpu_power_w(150, 0.25, idle_weight=0.5))


def test_a_reaped_child_keeps_its_cpu_time_in_the_tree(tree: FakeProcFS) -> None:
    device = only_device(discover(attribution="process", pid=100))
    tree.process_time(102, utime=100)
    tree.exit_process(102)  # reaped by 101: its ticks move to 101's cutime
    tree.cpu_time(busy=100, idle=300)
    assert watts(device) == pytest.approx(cpu_power_w(150, 0.25, idle_weight=1.0))


def test_tracked_process_gone_repeats_the_last_figure(tree: FakeProcFS) -> None:
    device = only_device(discover(attribution="process", pid=100))
    tree.process_time(100, utime=100)
    tree.cpu_time(busy=100, idle=100)
    before = watts(device)
    for pid in (102, 101, 100):
        tree.exit_process(pid)
    tree.cpu_time(busy=0, idle=200)
    assert watts(device) == before


def test_process_attribution_for_a_missing_pid_falls_back_to_the_machine(
    proc: FakeProcFS,
) -> None:
    device = only_device(discover(attribution="process", pid=4242))
    assert "process 4242's CPU time cannot be read here" in device.detail
    proc.cpu_time(busy=100, idle=100)
    assert watts(device) == pytest.approx(cpu_power_w(150, 0.5))


def test_without_proc_this_process_uses_os_times(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, proc: FakeProcFS
) -> None:
    monkeypatch.setenv("CARBONTRACK_PROC_ROOT", str(tmp_path / "no-proc"))
    device = only_device(discover(attribution="process"))
    assert "os.times()" in device.detail
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:  # this process works: its share is above zero
        pass
    assert 0 < watts(device) <= DEFAULT_W_PER_THREAD * (os.cpu_count() or 1)


def test_without_proc_the_machine_uses_the_load_average(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, proc: FakeProcFS
) -> None:
    monkeypatch.setenv("CARBONTRACK_PROC_ROOT", str(tmp_path / "no-proc"))
    device = only_device(discover())
    assert "os.getloadavg()" in device.detail
    threads = os.cpu_count() or 1
    expected = cpu_power_w(DEFAULT_W_PER_THREAD * threads, os.getloadavg()[0] / threads)
    assert watts(device) == pytest.approx(expected, rel=0.5)


# -- labels, reasons and fixes ------------------------------------------------------------------


def test_device_is_a_labelled_cpu_model(proc: FakeProcFS) -> None:
    device = only_device(discover())
    assert (device.kind, device.method, device.backend) == ("cpu", "model", "estimate")
    assert "Intel(R) Xeon(R) Gold 6248" in device.name
    assert "TDP 150 W" in device.detail
    assert "Intel Xeon Gold 6248" in device.detail


def test_no_powercap_tree_gives_the_reason_and_the_fix(proc: FakeProcFS) -> None:
    detail = only_device(discover()).detail
    assert "Not measured: this machine or container exposes no CPU energy counter" in detail
    assert "Fix: measure on bare metal" in detail
    # /sys/class/powercap holds only links into /sys/devices/virtual/powercap (which container
    # runtimes mask): the command mounts the zones themselves and points carbontrack at them.
    assert (
        "docker run -v /sys/devices/virtual/powercap:/host-powercap:ro "
        "-e CARBONTRACK_POWERCAP_ROOT=/host-powercap" in detail
    )


def test_in_a_vm_the_reason_says_so_and_warns_about_the_chip_tdp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, proc: FakeProcFS
) -> None:
    use(monkeypatch, FakeProcFS(tmp_path / "vm", hypervisor=True))
    detail = only_device(discover()).detail
    assert "a virtual machine exposes no CPU energy counter" in detail
    assert "set cpu_tdp_w to your share" in detail
    assert "docker" not in detail  # a VM has no RAPL to mount


def test_in_a_vm_a_few_vcpus_are_not_charged_the_whole_chip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, proc: FakeProcFS
) -> None:
    # 4 vCPUs of a Xeon Gold 6248 (150 W for 20 cores): 4 x 4 W, not 150 W.
    fake = use(monkeypatch, FakeProcFS(tmp_path / "vm", hypervisor=True, threads_per_socket=4))
    cpu = estimate.read_cpu_info(fake.proc)
    tdp = estimate.resolve_tdp(make_settings(), cpu)
    assert tdp.total_w == 4 * estimate.DEFAULT_W_PER_THREAD
    assert "less than the whole chip's 150 W" in tdp.source
    assert "in a VM: 4 vCPUs" in only_device(discover()).detail


def test_on_bare_metal_the_table_tdp_stands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, proc: FakeProcFS
) -> None:
    fake = use(monkeypatch, FakeProcFS(tmp_path / "metal", threads_per_socket=4))
    cpu = estimate.read_cpu_info(fake.proc)
    assert estimate.resolve_tdp(make_settings(), cpu).total_w == 150.0


def test_masked_rapl_zones_are_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, proc: FakeProcFS
) -> None:
    use(monkeypatch, FakeProcFS(tmp_path / "ctr", masked_rapl_zones=["intel-rapl:0"]))
    detail = only_device(discover()).detail
    assert "Not measured: the RAPL zones in" in detail
    assert "-e CARBONTRACK_POWERCAP_ROOT=/host-powercap" in detail


def test_with_rapl_zones_the_rapl_backend_gives_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, proc: FakeProcFS
) -> None:
    use(monkeypatch, FakeProcFS(tmp_path / "rapl", rapl_zones=["intel-rapl:0"]))
    assert "Not measured" not in only_device(discover()).detail


def test_disabled_rapl_plugin_is_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, proc: FakeProcFS
) -> None:
    use(monkeypatch, FakeProcFS(tmp_path / "rapl", rapl_zones=["intel-rapl:0"]))
    monkeypatch.setenv("CARBONTRACK_DISABLE_PLUGINS", "rapl,nvml,powermetrics")
    detail = only_device(discover()).detail
    assert "Not measured: the rapl plugin is disabled" in detail


def test_other_systems_say_nothing_is_read_there(
    monkeypatch: pytest.MonkeyPatch, proc: FakeProcFS
) -> None:
    monkeypatch.setattr(platform, "system", lambda: "Windows")
    assert "Not measured: carbontrack reads no CPU energy counter on Windows" in (
        only_device(discover()).detail
    )


def test_unknown_model_detail_says_per_thread_default_once(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    proc: FakeProcFS,
    caplog: pytest.LogCaptureFixture,
) -> None:
    use(monkeypatch, FakeProcFS(tmp_path / "vm", model="Intel(R) Xeon(R) Processor @ 2.50GHz"))
    with caplog.at_level("INFO", logger="carbontrack.backends.estimate"):
        device = only_device(discover())
    assert "TDP 16 W (4 logical CPUs x 4 W default; model not in carbontrack's" in device.detail
    assert len([r for r in caplog.records if "default" in r.getMessage()]) == 1


# -- RAM ----------------------------------------------------------------------------------------


def test_ram_model_is_off_by_default(proc: FakeProcFS) -> None:
    assert [d.kind for d in discover() if isinstance(d, Device)] == ["cpu"]


def test_ram_model_uses_installed_memory(proc: FakeProcFS) -> None:
    device = only_device(discover(components="cpu,ram"), kind="ram")
    assert (device.method, device.backend) == ("model", "estimate")
    assert watts(device) == pytest.approx(RAM_W_PER_GB * 16 * 1024**3 / 1e9)


def test_ram_model_for_a_process_uses_its_resident_memory(tree: FakeProcFS) -> None:
    page = os.sysconf("SC_PAGE_SIZE")
    tree.processes[101].rss_pages = 250_000
    tree.process_time(101)  # rewrite its stat file
    device = only_device(discover(components="ram", attribution="process", pid=100), "ram")
    assert watts(device) == pytest.approx(RAM_W_PER_GB * 250_000 * page / 1e9)


# -- through the tracker: the fallback rule and the summary -------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def run_for(tracker: Tracker, clock: FakeClock, proc: FakeProcFS, seconds: int) -> None:
    """Run ``seconds`` of fake time with a quarter of the machine busy, reading every second.

    The reads are ``snapshot()`` calls on this thread (settings use a one-hour interval so that
    the background thread never reads in between).
    """
    tracker.start()
    for _ in range(seconds):
        proc.cpu_time(busy=100, idle=300)
        clock.advance(1.0)
        tracker.snapshot()
    tracker.stop()


def settings(**options: object) -> Settings:
    return make_settings(interval_s=3600.0, **options)


def test_estimate_is_used_when_nothing_measures_the_cpu(
    proc: FakeProcFS, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    tracker = Tracker(settings(write_log=False), autoload=False, clock=clock)
    run_for(tracker, clock, proc, seconds=10)
    report = tracker.report
    (cpu_part,) = [c for c in report.components if c.component == "cpu"]
    assert cpu_part.methods == ("model",)
    assert cpu_part.estimated
    assert report.estimated
    assert report.energy_j == pytest.approx(10 * cpu_power_w(150, 0.25), rel=0.05)
    err = capsys.readouterr().err
    assert "ESTIMATED (model, not a measurement)" in err
    assert err.count("Not measured:") == 1
    assert err.count("Fix:") == 1


def test_a_measured_cpu_drops_the_estimate(proc: FakeProcFS, clock: FakeClock) -> None:
    measured = FakeHardware([FakeDevice("package-0", kind="cpu", watts=40.0)], clock=clock)
    tracker = Tracker(
        settings(write_log=False, verbose=0), plugins=[measured], autoload=False, clock=clock
    )
    run_for(tracker, clock, proc, seconds=5)
    report = tracker.report
    assert [d.backend for d in report.devices] == ["fake"]
    assert not report.estimated
    assert report.energy_j == pytest.approx(5 * 40.0)


def test_a_measured_gpu_does_not_drop_the_cpu_estimate(proc: FakeProcFS, clock: FakeClock) -> None:
    gpu = FakeHardware([FakeDevice("gpu-0", kind="gpu", watts=100.0)], clock=clock)
    tracker = Tracker(
        settings(write_log=False, verbose=0), plugins=[gpu], autoload=False, clock=clock
    )
    run_for(tracker, clock, proc, seconds=5)
    methods = {c.component: c.methods for c in tracker.report.components}
    assert methods == {"cpu": ("model",), "gpu": ("counter",)}


def test_reason_from_rapl_is_printed_once_beside_the_estimate(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    proc: FakeProcFS,
    clock: FakeClock,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with_zones = use(monkeypatch, FakeProcFS(tmp_path / "rapl", rapl_zones=["intel-rapl:0"]))
    denied = Unavailable("rapl", "cpu", "energy_uj is readable by root only", "sudo chmod ...")
    rapl_like = FakeHardware([], name="rapl-like", unavailable=[denied], clock=clock)
    tracker = Tracker(settings(write_log=False), plugins=[rapl_like], autoload=False, clock=clock)
    run_for(tracker, clock, with_zones, seconds=3)
    err = capsys.readouterr().err
    assert err.count("energy_uj is readable by root only") == 1
    assert err.count("Fix:") == 1
    assert "ESTIMATE CPU estimate" in err


def test_run_log_header_carries_the_method_and_detail(proc: FakeProcFS, clock: FakeClock) -> None:
    from carbontrack.writers.runlog import read_run_log

    tracker = Tracker(settings(verbose=0), autoload=False, clock=clock)
    run_for(tracker, clock, proc, seconds=2)
    home = Path(os.environ["CARBONTRACK_HOME"])
    (log,) = home.rglob("*.jsonl")
    lines, problems = read_run_log(log)
    assert not problems
    (device,) = lines[0]["run"]["devices"]
    assert device["method"] == "model"
    assert "Not measured:" in device["detail"]
    final = lines[-1]["report"]
    assert [d["method"] for d in final["devices"]] == ["model"]


def test_reading_an_unknown_handle_is_an_error_not_an_exception() -> None:
    device = Device(id="x", kind="cpu", name="x", backend="estimate", method="model")
    (reading,) = estimate.carbontrack_read_energy([device])
    assert isinstance(reading, Reading)
    assert reading.error


def test_ram_model_without_any_memory_figure_is_left_out(
    monkeypatch: pytest.MonkeyPatch, proc: FakeProcFS, caplog: pytest.LogCaptureFixture
) -> None:
    (proc.proc / "meminfo").unlink()
    monkeypatch.delattr(os, "sysconf")  # as on Windows
    with caplog.at_level("WARNING", logger="carbontrack.backends.estimate"):
        found = discover(components="cpu,ram")
    assert [d.kind for d in found if isinstance(d, Device)] == ["cpu"]
    assert "no RAM estimate: installed memory unknown" in caplog.text
