"""The powermetrics backend against a fake ``powermetrics`` (and ``sudo``) on PATH."""

from __future__ import annotations

import logging
import os
import plistlib
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carbontrack import hookimpl, track
from carbontrack.backends import powermetrics as pm
from carbontrack.model import Device, Reading, RunInfo, Unavailable
from carbontrack.settings import make_settings
from carbontrack.testing.powermetrics import (
    FakePowermetrics,
    fake_macos,
    install_fake_powermetrics,
)

INTERVAL_S = 0.05
FORCE = {"powermetrics": {"force": True}}
QUIET = {"verbose": 0, "write_log": False, "interval_s": INTERVAL_S, "plugin_options": FORCE}
WATTS = {"cpu": 6.19287, "gpu": 2.47156, "ane": 0.35}  # the fake's defaults
LOGGER = "carbontrack.backends.powermetrics"

# The synthetic sample of shared/reference/hardware.md section 3.2, as the stream carries it.
REFERENCE_SAMPLE = b"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0"><dict>
 <key>is_delta</key><true/>  <key>elapsed_ns</key><integer>1003412500</integer>
 <key>hw_model</key><string>Mac14,2</string>  <key>timestamp</key><date>2025-03-14T09:26:53Z</date>
 <key>thermal_pressure</key><string>Nominal</string>
 <key>processor</key><dict>
  <key>clusters</key><array><!-- E-Cluster / P-Cluster dicts omitted --></array>
  <key>cpu_energy</key><integer>6214</integer>  <key>cpu_power</key><real>6192.87</real>
  <key>gpu_energy</key><integer>2480</integer>  <key>gpu_power</key><real>2471.56</real>
  <key>ane_energy</key><integer>0</integer>     <key>ane_power</key><real>0</real>
  <key>combined_power</key><real>8664.43</real>
 </dict>
 <key>gpu</key><dict><key>freq_hz</key><real>1398</real><key>idle_ratio</key><real>0.41</real></dict>
</dict></plist>
"""


class RunWatcher:
    """A plugin that keeps the devices a run started with."""

    name = "watcher"

    def __init__(self) -> None:
        self.devices: tuple[Device, ...] = ()

    @hookimpl
    def carbontrack_run_started(self, run: RunInfo) -> None:
        self.devices = run.devices


def wait_for(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        time.sleep(0.01)


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePowermetrics]:
    """The fake on PATH, the backend enabled, and a check that no fake process outlives a test."""
    fake = install_fake_powermetrics(tmp_path / "bin")
    monkeypatch.setenv("PATH", fake.path_env)
    monkeypatch.setenv("CARBONTRACK_DISABLE_PLUGINS", "rapl,nvml,estimate")
    monkeypatch.delenv(pm.FORCE_ENV, raising=False)
    # Through sudo, as a normal user would run it, even where the tests run as root.
    monkeypatch.setattr(pm, "_running_as_root", lambda: False)
    if os.geteuid() != 0:
        # The fake in the test's directory is the tester's own file, which sudo must never run
        # (issue 21): the trust check itself is tested where the tests run as root (CI).
        monkeypatch.setattr(pm, "trust_problem", lambda _path: None)
    yield fake
    assert fake.leftover_pids() == []


def discover(**options: object) -> list[Device | Unavailable]:
    return pm.discover(make_settings(**{**QUIET, **options}))


def devices_of(found: list[Device | Unavailable]) -> list[Device]:
    return [d for d in found if isinstance(d, Device)]


def session_of(found: list[Device | Unavailable]) -> pm.PowermetricsSession:
    session = devices_of(found)[0].handle
    assert isinstance(session, pm.PowermetricsSession)
    return session


def timed_read(devices: list[Device]) -> tuple[list[Reading], float, float]:
    """The readings and the monotonic times just before and just after the call."""
    before = time.monotonic()
    readings = pm.carbontrack_read_energy(devices)
    return readings, before, time.monotonic()


def assert_energy_between(
    joules: float, watts: float, first: list[float], last: list[float], rel: float = 0.08
) -> None:
    """Check ``joules`` is ``watts`` times the time between two timed reads, within ``rel``.

    Each read stamps its edge somewhere inside its call: the window it measured lies between the
    time from the end of the first call to the start of the last and the time from the start of
    the first to the end of the last. On a loaded machine the test thread can wait tens of ms for
    the GIL or a CPU inside a call (CI saw 2.01 J against 2.44 J: 70 ms of a 0.4 s window), which
    widens this bracket, not the error allowed. ``rel`` covers the fake's sample-edge jitter.
    """
    low = watts * (last[0] - first[1]) * (1 - rel)
    high = watts * (last[1] - first[0]) * (1 + rel)
    assert low <= joules <= high, f"{joules:.4g} J not within [{low:.4g}, {high:.4g}] J"


def emitted(fake: FakePowermetrics, samples: int, kind: str) -> float:
    return sum(float(r["joules"].get(kind, 0.0)) for r in fake.samples()[:samples])


def plugin_warnings(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == LOGGER and r.levelno == logging.WARNING and text in r.getMessage()
    ]


def all_warnings(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    """Warnings from any carbontrack logger (the sampler warns when it drops devices)."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and text in r.getMessage()
    ]


# -- parsing -----------------------------------------------------------------------------------


def test_reference_sample_gives_energy_fields_in_joules() -> None:
    sample = pm.decode_sample(b"\n" + REFERENCE_SAMPLE + b"\n")
    assert sample.joules == {"cpu": 6.214, "gpu": 2.48, "ane": 0.0}
    assert sample.sources == {"cpu": "energy", "gpu": "energy", "ane": "energy"}
    assert sample.elapsed_s == pytest.approx(1.0034125)
    assert sample.hw_model == "Mac14,2"


def test_power_times_elapsed_when_the_sample_has_no_energy_field() -> None:
    # The reference's check: 23.7641 mW over 0.50496 s is 12 mJ.
    doc = {"elapsed_ns": 504_960_000, "processor": {"cpu_power": 23.7641}}
    sample = pm.parse_sample(doc)
    assert sample.joules["cpu"] == pytest.approx(0.012, rel=1e-3)
    assert sample.sources == {"cpu": "power"}


@given(
    mj=st.integers(min_value=0, max_value=10**9),
    mw=st.floats(min_value=0, max_value=1e6),
    ns=st.integers(min_value=0, max_value=10**12),
)
def test_energy_field_wins_over_power(mj: int, mw: float, ns: int) -> None:
    doc = {"elapsed_ns": ns, "processor": {"gpu_energy": mj, "gpu_power": mw, "ane_power": mw}}
    sample = pm.decode_sample(plistlib.dumps(doc))
    assert sample.joules["gpu"] == mj / 1000
    assert sample.joules["ane"] == pytest.approx(mw * ns / 1e12)
    assert "cpu" not in sample.joules


@pytest.mark.parametrize(
    "raw",
    [
        b"\x89 not a plist \xff",
        REFERENCE_SAMPLE[: len(REFERENCE_SAMPLE) // 2],
        plistlib.dumps(["a", "list"]),
        plistlib.dumps({"elapsed_ns": 1}),
        plistlib.dumps({"processor": {"cpu_energy": -5}}),
        plistlib.dumps({"elapsed_ns": -1, "processor": {}}),
    ],
    ids=["garbage", "truncated", "not-a-dict", "no-processor", "negative", "negative-elapsed"],
)
def test_garbled_documents_raise_sample_error(raw: bytes) -> None:
    with pytest.raises(pm.SampleError):
        pm.decode_sample(raw)


def test_command_is_a_fixed_argument_list_through_sudo_n() -> None:
    argv = pm.command("/usr/bin/powermetrics", 0.25, sudo="/usr/bin/sudo")
    assert argv == [
        "/usr/bin/sudo",
        "-n",
        "/usr/bin/powermetrics",
        "-f",
        "plist",
        "-s",
        "cpu_power,gpu_power,ane_power",
        "-i",
        "250",
        "-b",
        "0",
    ]


# -- discovery and streaming -------------------------------------------------------------------


@pytest.mark.skipif(pm._is_apple_silicon(), reason="this machine is an Apple Silicon Mac")
def test_not_discovered_off_apple_silicon_unless_forced(fake: FakePowermetrics) -> None:
    assert pm.discover(make_settings(interval_s=INTERVAL_S)) == []
    assert fake.pids() == []  # nothing was started


def test_environment_variable_forces_discovery(
    fake: FakePowermetrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(pm.FORCE_ENV, "1")
    found = pm.discover(make_settings(interval_s=INTERVAL_S))
    assert [d.id for d in devices_of(found)] == ["cpu", "gpu", "ane"]
    pm.carbontrack_close_devices(devices_of(found))


def test_bad_plugin_options_name_the_value_and_the_fix(fake: FakePowermetrics) -> None:
    with pytest.raises(TypeError, match=r"plugin_options\['powermetrics'\]='yes'.*'force': True"):
        discover(plugin_options={"powermetrics": "yes"})


def test_one_process_through_sudo_n_with_the_tracker_interval(fake: FakePowermetrics) -> None:
    found = discover()
    try:
        # Discovery does not wait for the process to start sampling: wait for it to start.
        wait_for(lambda: len(fake.invocations("powermetrics")) == 1)
        assert fake.invocations("sudo") == [
            ["-n", str(fake.executable), *pm.command("x", INTERVAL_S, sudo=None)[1:]]
        ]
        assert len(fake.invocations("powermetrics")) == 1
    finally:
        pm.carbontrack_close_devices(devices_of(found))


def test_a_long_tracker_interval_does_not_hold_up_the_start(fake: FakePowermetrics) -> None:
    # powermetrics sends its first sample one -i after it starts; discovery does not wait for
    # it. Samples come at most 1 s apart, so the sample in flight at an edge is recent.
    started = time.monotonic()
    found = discover(interval_s=10.0)
    took = time.monotonic() - started
    try:
        assert [d.id for d in devices_of(found)] == ["cpu", "gpu", "ane"]
        wait_for(lambda: len(fake.invocations("powermetrics")) == 1)
        [argv] = fake.invocations("powermetrics")
        assert argv[argv.index("-i") + 1] == "1000"
        assert took < pm.START_WAIT_S + 0.25
        assert "one sample every 1 s" in devices_of(found)[0].detail
    finally:
        pm.carbontrack_close_devices(devices_of(found))


def test_reads_give_the_energy_since_the_first_read(fake: FakePowermetrics) -> None:
    found = discover()
    devices = devices_of(found)
    session = session_of(found)
    assert {(d.id, d.kind, d.method) for d in devices} == {
        ("cpu", "cpu", "counter"),
        ("gpu", "gpu", "counter"),
        ("ane", "ane", "counter"),
    }
    assert all("cpu_energy" in devices[0].detail for d in devices)
    readings, *t0 = timed_read(devices)
    first = {r.device_id: r.joules for r in readings}
    wait_for(lambda: session.samples >= 6)
    readings, *t1 = timed_read(devices)
    later = {r.device_id: r.joules for r in readings}
    pm.carbontrack_close_devices(devices)
    assert first == dict.fromkeys(pm.KINDS, 0.0)  # a counter that starts at the first read
    for kind, watts in WATTS.items():
        # The fake draws constant power, so the energy is the power times the time between the
        # reads' own time stamps.
        assert_energy_between(later[kind], watts, t0, t1)
    assert session.skipped == 0


def test_power_times_elapsed_where_samples_carry_no_energy(fake: FakePowermetrics) -> None:
    fake.configure(energy_fields=False)
    found = discover()
    devices = devices_of(found)
    session = session_of(found)
    assert "cpu_power" in devices[0].detail
    assert "elapsed_ns" in devices[0].detail
    _, *t0 = timed_read(devices)
    wait_for(lambda: session.samples >= 4)
    readings, *t1 = timed_read(devices)
    by_id = {r.device_id: r.joules for r in readings}
    pm.carbontrack_close_devices(devices)
    assert session.first_sample is not None
    assert session.first_sample.sources["gpu"] == "power"
    assert_energy_between(by_id["gpu"], WATTS["gpu"], t0, t1)


def test_documents_written_in_parts_are_not_garbled(fake: FakePowermetrics) -> None:
    fake.configure(split_writes=True)
    found = discover()
    session = session_of(found)
    wait_for(lambda: session.samples >= 4)
    pm.carbontrack_close_devices(devices_of(found))
    assert session.skipped == 0


def test_tracked_run_reports_cpu_gpu_and_ane(fake: FakePowermetrics) -> None:
    with track(**QUIET) as run:
        time.sleep(1.0)
    report = run.report
    by_id = {d.id: d for d in report.devices}
    assert set(by_id) == {"cpu", "gpu", "ane"}
    assert {d.backend for d in report.devices} == {"powermetrics"}
    assert report.methods == ("counter",)
    assert not report.partial
    for kind, watts in WATTS.items():
        # Energy is known at sample edges only: up to one interval off at each end of the run.
        assert by_id[kind].energy_j / report.duration_s == pytest.approx(watts, rel=0.25)


def test_components_choose_the_devices(fake: FakePowermetrics) -> None:
    found = discover(components="cpu")
    assert [d.id for d in devices_of(found)] == ["cpu"]
    pm.carbontrack_close_devices(devices_of(found))
    assert pm.discover(make_settings(**{**QUIET, "components": "ram"})) == []


def test_a_kind_missing_from_the_samples_fails_its_reads_only(fake: FakePowermetrics) -> None:
    # Discovery does not wait for a sample, so a kind that the samples lack is found out when
    # they come: its reads fail with the reason (the sampler drops it), the others measure.
    fake.configure(omit=["ane"])
    found = discover()
    devices = devices_of(found)
    session = session_of(found)
    pm.carbontrack_read_energy(devices)
    wait_for(lambda: session.samples >= 2)
    by_id = {r.device_id: r for r in pm.carbontrack_read_energy(devices)}
    pm.carbontrack_close_devices(devices)
    assert by_id["cpu"].error is None
    assert by_id["gpu"].error is None
    assert "no ane_energy or ane_power" in str(by_id["ane"].error)


def test_a_kind_missing_from_the_samples_is_dropped_from_the_run(
    fake: FakePowermetrics, caplog: pytest.LogCaptureFixture
) -> None:
    fake.configure(omit=["ane"])
    with track(**QUIET) as run:
        wait_for(lambda: any(d.dropped for d in run.snapshot().devices))
    by_id = {d.id: d for d in run.report.devices}
    assert "no ane_energy or ane_power" in str(by_id["ane"].dropped)
    assert by_id["cpu"].dropped is None
    assert by_id["cpu"].energy_j > 0


# -- permission ----------------------------------------------------------------------------------


@pytest.fixture
def slow_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """Room for the fake sudo (a Python script) to start on a loaded machine; real sudo -n
    refuses within milliseconds. Discovery still returns as soon as the process exits."""
    monkeypatch.setattr(pm, "START_WAIT_S", 3.0)


@pytest.mark.usefixtures("slow_start")
def test_refused_sudo_gives_the_sudoers_line_for_this_user(fake: FakePowermetrics) -> None:
    import pwd

    fake.configure(sudo="refuse")
    started = time.monotonic()
    found = discover()
    # Told by the exit, not by waiting out START_WAIT_S (or a sample): never a password prompt.
    assert time.monotonic() - started < 2.0
    assert [u.kind for u in found if isinstance(u, Unavailable)] == ["cpu", "gpu", "ane"]
    assert not devices_of(found)
    unavailable = found[0]
    assert isinstance(unavailable, Unavailable)
    user = pwd.getpwuid(os.getuid()).pw_name
    # The exact arguments carbontrack runs, commas escaped as sudoers(5) requires; no wildcard.
    line = (
        f"{user} ALL=(root) NOPASSWD: {fake.executable} -f plist -s "
        f"cpu_power\\,gpu_power\\,ane_power -i {round(INTERVAL_S * 1000)} -b 0"
    )
    assert f"`{line}`" in unavailable.fix
    assert "sudo visudo -f /etc/sudoers.d/carbontrack" in unavailable.fix
    assert "tee" not in unavailable.fix
    assert "*" not in unavailable.fix
    assert "password is required" in unavailable.reason
    assert fake.invocations("powermetrics") == []


@pytest.mark.usefixtures("slow_start")
def test_refused_sudo_marks_the_run_partial(fake: FakePowermetrics) -> None:
    fake.configure(sudo="refuse")
    with track(**QUIET) as run:
        pass
    assert run.report.partial
    assert {u.kind for u in run.report.unavailable} == {"cpu", "gpu", "ane"}
    assert run.report.devices == ()


def test_a_refusal_after_discovery_fails_the_reads_with_the_sudoers_line(
    fake: FakePowermetrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A sudo slower than START_WAIT_S to refuse (PAM, a directory service): the devices are
    # found, and the reads fail with the same reason and fix, so the run reports them dropped.
    monkeypatch.setattr(pm, "START_WAIT_S", 0.0)
    fake.configure(sudo="refuse")
    found = discover()
    devices = devices_of(found)
    assert devices
    wait_for(lambda: pm.carbontrack_read_energy(devices)[0].error is not None)
    error = str(pm.carbontrack_read_energy(devices)[0].error)
    pm.carbontrack_close_devices(devices)
    assert "password is required" in error
    assert f"NOPASSWD: {fake.executable}" in error


def test_root_runs_powermetrics_without_sudo(
    fake: FakePowermetrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pm, "_running_as_root", lambda: True)
    fake.configure(require_root=False)  # the test process may not really be root
    found = discover()
    wait_for(lambda: len(fake.invocations("powermetrics")) == 1)
    pm.carbontrack_close_devices(devices_of(found))
    assert fake.invocations("sudo") == []
    assert fake.invocations("powermetrics") == [pm.command("x", INTERVAL_S, sudo=None)[1:]]


def test_without_sudo_the_fix_is_to_run_as_root(
    fake: FakePowermetrics, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bare = install_fake_powermetrics(tmp_path / "bare", sudo="missing")
    monkeypatch.setenv("PATH", str(bare.bin_dir))
    found = discover()
    assert all(isinstance(u, Unavailable) for u in found)
    assert "sudo was not found" in found[0].reason  # type: ignore[union-attr]
    assert "run as root" in found[0].fix  # type: ignore[union-attr]


@pytest.mark.skipif(os.path.exists("/usr/bin/powermetrics"), reason="a real powermetrics exists")
def test_forced_without_powermetrics_says_where_it_looked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    found = discover()
    assert found
    assert all(isinstance(u, Unavailable) and "not found" in u.reason for u in found)


# -- faults --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "bad_documents"), [("garbage", 2), ("truncate", 1)])
def test_bad_documents_are_skipped_with_one_warning(
    fake: FakePowermetrics, caplog: pytest.LogCaptureFixture, mode: str, bad_documents: int
) -> None:
    fake.configure(mode=mode, fault_after=2)
    found = discover()
    session = session_of(found)
    _, *t0 = timed_read(devices_of(found))
    wait_for(lambda: session.samples >= 6)
    readings, *t1 = timed_read(devices_of(found))
    pm.carbontrack_close_devices(devices_of(found))
    assert session.skipped == bad_documents
    assert len(plugin_warnings(caplog, "garbled or truncated")) == 1
    # The good samples around the bad ones all count, the bad ones count nothing.
    assert_energy_between(readings[0].joules, WATTS["cpu"], t0, t1)


def test_document_cut_off_by_exit_is_skipped_and_the_exit_reported(
    fake: FakePowermetrics, caplog: pytest.LogCaptureFixture
) -> None:
    fake.configure(mode="stop-mid-document", fault_after=3)
    found = discover()
    devices = devices_of(found)
    session = session_of(found)
    wait_for(lambda: pm.carbontrack_read_energy(devices)[0].error is not None)
    assert session.samples == 3
    assert session.skipped == 1
    assert len(plugin_warnings(caplog, "garbled or truncated")) == 1
    # The exit is the reads' error; the sampler, not the plugin, warns when it drops them.
    assert "exited with status 1" in str(pm.carbontrack_read_energy(devices)[0].error)
    pm.carbontrack_close_devices(devices)


def test_reads_after_an_exit_give_the_last_total_once_then_errors(fake: FakePowermetrics) -> None:
    fake.configure(mode="exit", fault_after=3)
    found = discover()
    devices = devices_of(found)
    session = session_of(found)
    wait_for(lambda: session.read().error is not None)
    # (the read above consumed the one final total; every later read fails, naming the call)
    errors = pm.carbontrack_read_energy(devices)
    assert [r.device_id for r in errors] == ["cpu", "gpu", "ane"]
    assert all(r.error and "powermetrics (pid" in r.error for r in errors)
    assert "fake failure after 3 samples" in str(errors[0].error)
    pm.carbontrack_close_devices(devices)


def test_dead_subprocess_drops_the_devices_and_the_report_is_partial(
    fake: FakePowermetrics, caplog: pytest.LogCaptureFixture
) -> None:
    fake.configure(mode="exit", fault_after=8)
    with track(**QUIET) as run:
        wait_for(lambda: all(d.dropped for d in run.snapshot().devices))
    report = run.report
    assert report.partial
    assert all("exited with status 1" in str(d.dropped) for d in report.devices)
    assert all(c.partial for c in report.components)
    assert sum(d.energy_j for d in report.devices) > 0  # what it measured before dying stays
    # One warning for the three devices, naming the cause.
    (warning,) = all_warnings(caplog, "exited")
    assert "stopped measuring" in warning


@pytest.fixture
def as_root(fake: FakePowermetrics, monkeypatch: pytest.MonkeyPatch) -> FakePowermetrics:
    """powermetrics run directly as root: our own child, which signals reach."""
    monkeypatch.setattr(pm, "_running_as_root", lambda: True)
    fake.configure(require_root=False)  # the test process may not really be root
    return fake


def test_hung_subprocess_never_delays_stop(as_root: FakePowermetrics) -> None:
    fake = as_root
    fake.configure(mode="hang", fault_after=3)
    seen = RunWatcher()
    run = track(plugins=[seen], **QUIET).new_tracker().start()
    wait_for(lambda: any(r.get("hung") for r in fake.records()))
    (session,) = {id(d.handle): d.handle for d in seen.devices}.values()
    started = time.perf_counter()
    session.read()
    assert time.perf_counter() - started < 0.05  # reads return what was summed, never wait
    started = time.perf_counter()
    run.stop()
    assert time.perf_counter() - started < 1.0
    assert fake.leftover_pids(wait_s=0.5) == []


def test_hung_subprocess_fails_reads_so_its_devices_drop(
    as_root: FakePowermetrics, caplog: pytest.LogCaptureFixture
) -> None:
    as_root.configure(mode="hang", fault_after=2)
    with track(**QUIET) as run:
        wait_for(lambda: all(d.dropped for d in run.snapshot().devices))
    assert run.report.partial
    assert all("sent no sample" in str(d.dropped) for d in run.report.devices)
    (warning,) = all_warnings(caplog, "it hangs")
    assert "stopped measuring" in warning


# -- cleanup -------------------------------------------------------------------------------------


def test_close_as_root_terminates_and_reaps_the_process(as_root: FakePowermetrics) -> None:
    found = discover()
    wait_for(lambda: len(as_root.pids()) == 1)  # it started (discovery does not wait for it)
    session = session_of(found)
    proc = session._proc
    assert proc is not None
    started = time.perf_counter()
    pm.carbontrack_close_devices(devices_of(found))
    pm.carbontrack_close_devices(devices_of(found))  # a second close does nothing
    assert time.perf_counter() - started < 1.0
    assert proc.returncode is not None  # reaped, not a zombie
    assert as_root.leftover_pids(wait_s=0.5) == []
    assert len(as_root.pids()) == 1


def sudo_records(fake: FakePowermetrics, key: str) -> list[dict[str, object]]:
    return [r for r in fake.records() if r.get("prog") == "sudo" and key in r]


def test_close_under_sudo_closes_the_pipe_without_signals_or_waiting(
    fake: FakePowermetrics, caplog: pytest.LogCaptureFixture
) -> None:
    # Real sudo is root-owned: our SIGTERM and SIGKILL fail with EPERM (the fake's default
    # sudo="root" logs and ignores TERM, INT and HUP; a SIGKILL shows as no exit record).
    # Closing the pipe ends powermetrics by SIGPIPE at its next sample, and sudo with it.
    found = discover()
    session = session_of(found)
    wait_for(lambda: session.samples >= 1)
    started = time.perf_counter()
    pm.carbontrack_close_devices(devices_of(found))
    took = time.perf_counter() - started
    assert fake.leftover_pids() == []
    assert took < 0.3  # the old stop waited 0.7 s for signals that could not arrive
    assert [r for r in fake.records() if "signal" in r] == []  # nothing signalled
    (exit_record,) = sudo_records(fake, "exit")
    assert exit_record["exit"] == -13  # powermetrics died of SIGPIPE; sudo was not killed
    assert all_warnings(caplog, "powermetrics") == []


def test_no_process_survives_the_interpreter(fake: FakePowermetrics) -> None:
    script = (
        "from carbontrack.backends import powermetrics as pm\n"
        "from carbontrack.settings import make_settings\n"
        f"found = pm.discover(make_settings(interval_s={INTERVAL_S}))\n"
        "assert any(d.kind == 'cpu' for d in found), found\n"
        "import time\n"
        "deadline = time.monotonic() + 20\n"
        "while found[0].handle.samples < 1 and time.monotonic() < deadline:\n"
        "    time.sleep(0.01)  # the process runs (discovery no longer waits for it)\n"
        "# exits without closing the devices\n"
    )
    env = {**os.environ, pm.FORCE_ENV: "1"}
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=30)
    assert fake.pids()
    assert fake.leftover_pids() == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_leaves_the_parents_process_alone(fake: FakePowermetrics) -> None:
    found = discover()
    session = session_of(found)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads (3.12+)
        pid = os.fork()
    if pid == 0:  # the child closes its copy of the devices, as its exit handlers would
        try:
            pm.carbontrack_close_devices(devices_of(found))
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    before = session.samples
    wait_for(lambda: session.samples >= before + 2)  # still streaming to the parent
    pm.carbontrack_close_devices(devices_of(found))


def test_an_executable_that_cannot_start_is_unavailable(
    fake: FakePowermetrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pm, "_running_as_root", lambda: True)
    script = fake.executable.read_text().split("\n", 1)[1]
    fake.executable.write_text("#!/nonexistent/interpreter\n" + script)
    found = discover()
    assert [u.kind for u in found if isinstance(u, Unavailable)] == ["cpu", "gpu", "ane"]
    assert all(f"could not start {fake.executable}" in u.reason for u in found)  # type: ignore[union-attr]


# -- framing and timing as on macOS (issue 19) ---------------------------------------------------

SOC_WATTS = {"cpu_w": 4.0, "gpu_w": 2.0, "ane_w": 0.5}  # 6.5 W in all


def test_a_sample_counts_as_soon_as_its_document_is_complete(fake: FakePowermetrics) -> None:
    # macOS writes the NUL before the *next* sample: a reader waiting for it is an interval late.
    found = discover(interval_s=0.5)
    session = session_of(found)
    try:
        wait_for(lambda: len(fake.samples()) >= 2)  # logged right before it is written
        emitted_at = time.monotonic()
        wait_for(lambda: session.samples >= 2, timeout_s=2.0)
        assert time.monotonic() - emitted_at < 0.25  # not the 0.5 s until the next NUL
    finally:
        pm.carbontrack_close_devices(devices_of(found))


def test_entering_track_is_quick_and_a_short_window_is_within_2_percent(
    fake: FakePowermetrics,
) -> None:
    # Issue 19's figures: samples every 1 s at 4 + 2 + 0.5 W; entering track() took 2.3 s and
    # a 3.9 s window measured 5.0 W (-23 %) when samples were taken at the next NUL.
    fake.configure(**SOC_WATTS)
    tracker = track(**{**QUIET, "interval_s": 1.0}).new_tracker()
    started = time.perf_counter()
    tracker.start()
    entered_s = time.perf_counter() - started
    time.sleep(3.9)
    tracker.stop()
    report = tracker.report
    assert report is not None
    assert entered_s <= 0.3
    assert report.duration_s == pytest.approx(3.9, abs=0.1)
    watts = sum(d.energy_j for d in report.devices) / report.duration_s
    assert watts == pytest.approx(6.5, rel=0.02)


def test_epoch_edges_count_the_sample_in_flight(fake: FakePowermetrics) -> None:
    fake.configure(**SOC_WATTS)
    with track(**{**QUIET, "interval_s": 0.5, "epochs": 2}) as run:
        for _ in range(2):
            with run.epoch():
                time.sleep(1.2)
    epochs = run.report.epochs
    assert len(epochs) == 2
    for epoch in epochs:
        # Each edge falls mid-sample; without the in-flight part an epoch is up to 0.5 s short.
        assert epoch.energy_j / epoch.duration_s == pytest.approx(6.5, rel=0.03)


def test_samples_straddling_the_first_read_count_only_their_part_after_it() -> None:
    clock = [100.0]
    session = pm.PowermetricsSession(["unused"], interval_s=1.0, clock=lambda: clock[0])

    def sample(cpu_mj: int, elapsed_s: float) -> bytes:
        doc = {
            "elapsed_ns": int(elapsed_s * 1e9),
            "processor": {"cpu_energy": cpu_mj, "gpu_energy": 0, "ane_energy": 0},
        }
        return plistlib.dumps(doc)

    session._take(sample(4000, 1.0))  # 99..100 s: before the counter's zero, counts nothing
    clock[0] = 100.25
    assert session.read().joules["cpu"] == 0.0  # the zero: 100.25 s
    clock[0] = 100.5  # 0.25 s in flight at the latest power, 4 W
    assert session.read().joules["cpu"] == pytest.approx(1.0)
    clock[0] = 101.0
    session._take(sample(8000, 1.0))  # 100..101 s at 8 W: 0.75 s of it after the zero
    assert session.read().joules["cpu"] == pytest.approx(6.0)
    clock[0] = 101.5  # in flight: 0.5 s at 8 W
    assert session.read().joules["cpu"] == pytest.approx(10.0)
    clock[0] = 102.0
    session._take(sample(2000, 1.0))  # power fell to 2 W: 8 J, under the 10 J already given
    assert session.read().joules["cpu"] == pytest.approx(10.0)  # never goes down
    clock[0] = 103.0
    session._take(sample(2000, 1.0))
    assert session.read().joules["cpu"] == pytest.approx(10.0)  # 8 + 2 + 0 in flight
    clock[0] = 103.5
    assert session.read().joules["cpu"] == pytest.approx(11.0)


# -- Rosetta -------------------------------------------------------------------------------------


def test_rosetta_python_measures_with_powermetrics(fake: FakePowermetrics) -> None:
    # An x86_64 Python on Apple Silicon sees platform.machine() == "x86_64"; the old check
    # gave it a model estimate. sysctl.proc_translated=1 tells it is Rosetta.
    with fake_macos(machine="x86_64", sysctls={"sysctl.proc_translated": 1, "hw.model": "Mac14,2"}):
        found = discover(plugin_options={})
    devices = devices_of(found)
    try:
        assert [d.id for d in devices] == ["cpu", "gpu", "ane"]
        assert "Rosetta" in devices[0].detail
        assert devices[0].name == "Apple Silicon CPU (Mac14,2)"
    finally:
        pm.carbontrack_close_devices(devices)


def test_intel_mac_is_not_apple_silicon(fake: FakePowermetrics) -> None:
    with fake_macos(machine="x86_64", sysctls={}):  # ENOENT: no proc_translated on Intel Macs
        assert discover(plugin_options={}) == []
    with fake_macos(machine="x86_64", sysctls={"sysctl.proc_translated": 0}):
        assert discover(plugin_options={}) == []


def test_native_arm64_python_is_not_called_rosetta(fake: FakePowermetrics) -> None:
    with fake_macos(machine="arm64", sysctls={"sysctl.proc_translated": 0}):
        found = discover(plugin_options={})
    devices = devices_of(found)
    pm.carbontrack_close_devices(devices)
    assert devices
    assert "Rosetta" not in devices[0].detail


# -- the sudoers fix never grants root (issue 21) ------------------------------------------------


@pytest.mark.skipif(os.geteuid() != 0, reason="chown and the trust check need root")
def test_a_user_owned_powermetrics_first_on_path_is_never_run_or_named_for_sudo(
    fake: FakePowermetrics, tmp_path: Path
) -> None:
    # Old code: `carbontrack devices` printed a NOPASSWD rule naming the user's own file, which
    # its owner could then replace with anything to run as root.
    os.chown(fake.executable, 4321, 4321)
    fake.configure(sudo="refuse")
    found = discover()
    assert fake.invocations("sudo") == []  # not run through sudo at all
    assert [u.kind for u in found if isinstance(u, Unavailable)] == ["cpu", "gpu", "ane"]
    unavailable = found[0]
    assert isinstance(unavailable, Unavailable)
    assert "NOPASSWD" not in unavailable.fix
    assert str(fake.executable) not in unavailable.fix
    assert "owned by uid 4321, not root" in unavailable.reason
    assert "/usr/bin/powermetrics" in unavailable.fix


@pytest.mark.skipif(os.geteuid() != 0, reason="chown and the trust check need root")
def test_a_powermetrics_in_a_directory_others_can_write_is_refused(
    fake: FakePowermetrics,
) -> None:
    folder = Path(fake.executable).parent
    folder.chmod(0o777)  # anyone may swap the file (no sticky bit)
    try:
        found = discover()
    finally:
        folder.chmod(0o755)
    assert fake.invocations("sudo") == []
    unavailable = found[0]
    assert isinstance(unavailable, Unavailable)
    assert f"{folder} is writable by users other than root" in unavailable.reason


def test_the_trust_check_accepts_root_owned_files_in_sticky_directories(tmp_path: Path) -> None:
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)  # like /tmp: others may add files but not replace root's
    tool = sticky / "tool"
    tool.write_text("")
    tool.chmod(0o755)
    if os.geteuid() != 0:
        pytest.skip("needs root-owned files")
    assert pm.trust_problem(str(tool)) is None
    tool.chmod(0o777)
    assert pm.trust_problem(str(tool)) == f"{tool} is writable by users other than root"


def test_the_sudoers_rule_escapes_what_sudoers_requires() -> None:
    fix = pm.sudoers_fix("alice", ["/usr/bin/powermetrics", "-s", "a,b", "-x", "c:d=e!"])
    assert "alice ALL=(root) NOPASSWD: /usr/bin/powermetrics -s a\\,b -x c\\:d\\=e\\!" in fix


@pytest.mark.skipif(os.geteuid() != 0, reason="chown and the trust check need root")
def test_the_devices_command_never_prints_a_rule_for_a_user_owned_powermetrics(
    fake: FakePowermetrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 21's reproduction, through `carbontrack devices` (in process, so that the test can
    # run it as a user that needs sudo).
    from carbontrack.cli._devices import format_text, inspect_devices

    monkeypatch.setenv(pm.FORCE_ENV, "1")
    os.chown(fake.executable, 4321, 4321)
    fake.configure(sudo="refuse")
    views = inspect_devices(window_s=0.1)
    text = format_text(views, 0.1)
    assert "powermetrics" in text
    assert "NOPASSWD" not in text
    assert str(fake.executable) + " -f" not in text
    assert "not root" in text
    assert fake.invocations("sudo") == []
