"""Cost and timing of the powermetrics backend, run against the fake ``powermetrics``.

Measures: decoding one realistic sample; one ``carbontrack_read_energy`` call; the reader
thread's CPU per second of streaming; ``close`` for a healthy and a hung process; and how far a
tracked run's energy is from the fake's true watts x duration (the edge effect of energy known
only at sample boundaries). Figures come from a simulated source: they time carbontrack's code,
not the accuracy of powermetrics.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from _util import median

from carbontrack import track
from carbontrack.backends import powermetrics as pm
from carbontrack.model import Device
from carbontrack.settings import make_settings
from carbontrack.testing.powermetrics import FakePowermetrics, install_fake_powermetrics

WATTS = 6.19287 + 2.47156 + 0.35  # the fake's default cpu + gpu + ane


def _sample_bytes(fake: FakePowermetrics) -> bytes:
    import subprocess

    cmd = [str(fake.executable), "-f", "plist", "-s", pm.SAMPLERS, "-i", "10", "-n", "1"]
    env = {**os.environ, "FAKE_SUDO_ROOT": "1"}
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=30).stdout
    return out.split(b"\x00")[0]


def decode_us(raw: bytes, runs: int = 2000) -> float:
    start = time.perf_counter()
    for _ in range(runs):
        pm.decode_sample(raw)
    return (time.perf_counter() - start) / runs * 1e6


def _devices(interval_s: float) -> list[Device]:
    found = pm.discover(make_settings(interval_s=interval_s))
    devices = [d for d in found if isinstance(d, Device)]
    if not devices:
        raise SystemExit(f"the fake powermetrics was not discovered: {found}")
    return devices


def read_us(runs: int = 20000) -> float:
    devices = _devices(0.1)
    try:
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            pm.carbontrack_read_energy(devices)
            times.append(time.perf_counter() - start)
        return median(times) * 1e6
    finally:
        pm.carbontrack_close_devices(devices)


def reader_cpu_percent(interval_s: float, seconds: float = 3.0) -> float:
    devices = _devices(interval_s)
    try:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        time.sleep(seconds)  # only the reader thread works meanwhile
        return (time.process_time() - cpu0) / (time.perf_counter() - wall0) * 100
    finally:
        pm.carbontrack_close_devices(devices)


def close_ms(fake: FakePowermetrics, mode: str, runs: int = 5) -> float:
    fake.configure(mode=mode, fault_after=2)
    times = []
    for _ in range(runs):
        devices = _devices(0.05)
        time.sleep(0.3)  # past fault_after: a hung fake ignores SIGTERM by now
        start = time.perf_counter()
        pm.carbontrack_close_devices(devices)
        times.append(time.perf_counter() - start)
    fake.configure(mode="normal")
    return max(times) * 1000


def run_error_percent(interval_s: float, seconds: float) -> float:
    options = {"verbose": 0, "write_log": False, "interval_s": interval_s}
    with track(autoload=False, **options) as run:
        time.sleep(seconds)
    report = run.report
    truth = WATTS * report.duration_s
    return (report.energy_j - truth) / truth * 100


def issue_19_window(fake: FakePowermetrics, runs: int = 3) -> tuple[list[float], list[float]]:
    """Issue 19's check: 4 + 2 + 0.5 W at 1 s samples framed as macOS frames them. Returns the
    seconds spent entering ``track()`` and the error of a 3.9 s window against 6.5 W."""
    fake.configure(cpu_w=4.0, gpu_w=2.0, ane_w=0.5)
    entered, errors = [], []
    for _ in range(runs):
        tracker = track(autoload=False, verbose=0, write_log=False, interval_s=1.0).new_tracker()
        start = time.perf_counter()
        tracker.start()
        entered.append(time.perf_counter() - start)
        time.sleep(3.9)
        report = tracker.stop()
        errors.append((report.energy_j / report.duration_s / 6.5 - 1) * 100)
    fake.configure(cpu_w=6.19287, gpu_w=2.47156, ane_w=0.35)
    return entered, errors


def main() -> None:
    os.environ["CARBONTRACK_DISABLE_PLUGINS"] = "rapl,nvml,estimate"
    os.environ[pm.FORCE_ENV] = "1"
    with tempfile.TemporaryDirectory() as tmp:
        fake = install_fake_powermetrics(Path(tmp) / "bin")
        os.environ["PATH"] = fake.path_env
        raw = _sample_bytes(fake)
        print(f"decode one sample ({len(raw)} bytes of plist): {decode_us(raw):.1f} us")
        print(f"carbontrack_read_energy, 3 devices: median {read_us():.2f} us (never blocks)")
        for interval in (1.0, 0.1):
            print(
                f"reader thread at one sample every {interval:g} s: "
                f"{reader_cpu_percent(interval):.3f} % of one core"
            )
        print(f"close, healthy process: worst of 5 {close_ms(fake, 'normal'):.0f} ms")
        print(f"close, hung process ignoring SIGTERM: worst of 5 {close_ms(fake, 'hang'):.0f} ms")
        for interval, seconds in ((0.1, 1.0), (0.1, 5.0), (1.0, 10.0)):
            err = run_error_percent(interval, seconds)
            print(
                f"tracked run of {seconds:g} s, samples every {interval:g} s: energy "
                f"{err:+.2f} % from watts x duration (simulated)"
            )
        entered, errors = issue_19_window(fake)
        print(
            "issue 19 (4 + 2 + 0.5 W, 1 s samples, macOS framing): entering track() "
            f"{', '.join(f'{e * 1000:.0f}' for e in entered)} ms; 3.9 s window "
            f"{', '.join(f'{e:+.2f}' for e in errors)} % from 6.5 W"
        )
        # Through a root-owned sudo that ignores the caller's signals, as a normal user runs it.
        pm._running_as_root = lambda: False  # type: ignore[assignment]
        print(
            f"close through sudo (pipe closed, no signals): worst of 5 "
            f"{close_ms(fake, 'normal'):.0f} ms"
        )
        left = fake.leftover_pids()
        print(f"fake processes left over: {len(left)}")


if __name__ == "__main__":
    main()
