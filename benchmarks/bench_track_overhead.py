"""Cost of entering and leaving ``with track():`` with no hardware, and of the sampler.

Targets: enter+exit <= 30 ms; at a 1 s interval with 16 fake devices the sampler uses at most
0.1 % of one core; a CPU-bound pure-Python workload runs at most 1 % slower tracked.
"""

from __future__ import annotations

import contextlib
import os
import time

from _util import median

from carbontrack import track
from carbontrack._plugins import PluginHost, make_plugin_manager
from carbontrack._sampler import Sampler
from carbontrack.model import Device
from carbontrack.testing import FakeDevice, FakeHardware


def enter_exit_ms(runs: int = 30) -> float:
    # The real built-in backends run their discovery (they find nothing readable here).
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        with track(verbose=0, write_log=False):
            pass
        times.append(time.perf_counter() - start)
    return median(times) * 1000


FIRST_USE = """
import time
from carbontrack import track
start = time.perf_counter()
with track(verbose=0, write_log=False):
    pass
print(time.perf_counter() - start)
"""


def first_use_ms(runs: int = 5) -> float:
    # The first run in a process also loads pluggy, the plugins and their data tables.
    import subprocess
    import sys

    times = [
        float(
            subprocess.run(
                [sys.executable, "-c", FIRST_USE], check=True, capture_output=True, text=True
            ).stdout
        )
        for _ in range(runs)
    ]
    return median(times) * 1000


def sampler_tick_cpu_s(devices: int = 16, ticks: int = 2000) -> float:
    hw = FakeHardware(
        [FakeDevice(f"d{i}", kind="gpu" if i % 2 else "cpu", watts=50.0) for i in range(devices)]
    )
    host = PluginHost(make_plugin_manager(autoload=False, extra_plugins=[hw]))
    devs = [Device(id=d, kind="cpu", name=d, backend="fake", method="counter") for d in hw.devices]
    sampler = Sampler(host, {"fake": devs}, interval_s=1.0)
    start = time.process_time()
    for _ in range(ticks):
        sampler.tick()
    return (time.process_time() - start) / ticks


def epoch_boundary_us(boundaries: int = 300) -> float:
    # An epoch boundary reads every plugin's devices on the caller's thread and calls the
    # writers' epoch_ended hook (the run log is written): what a training loop pays per epoch.
    import tempfile

    hw = FakeHardware([FakeDevice(f"d{i}", watts=50.0) for i in range(16)], name="fake")
    times = []
    with (
        tempfile.TemporaryDirectory() as log_dir,
        track(plugins=[hw], verbose=0, log_dir=log_dir, interval_s=1.0) as run,
    ):
        for _ in range(boundaries):
            start = time.perf_counter()
            run.epoch_start()
            run.epoch_end()
            times.append(time.perf_counter() - start)
    return median(times) * 1e6


def workload(n: int = 15_000_000) -> int:
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def slowdown(tick_cpu_s: float, rounds: int = 6) -> dict[str, float]:
    hw = FakeHardware([FakeDevice(f"d{i}", watts=50.0) for i in range(16)])
    # "again" repeats the untracked run: its ratio to "plain" is the machine's noise floor.
    wall: dict[str, list[float]] = {"plain": [], "tracked": [], "again": []}
    cpu: dict[str, list[float]] = {"plain": [], "tracked": [], "again": []}
    sampler_share = []
    modes = ["plain", "tracked", "again"]
    for round_ in range(rounds):
        # The first run after a pause is slower on this VM: a discarded warm-up, then the order
        # rotates every round so that each mode takes each position equally often.
        workload()
        for mode in modes[round_ % 3 :] + modes[: round_ % 3]:
            with contextlib.ExitStack() as stack:
                if mode == "tracked":
                    run = stack.enter_context(
                        track(plugins=[hw], verbose=0, write_log=False, interval_s=1.0)
                    )
                    ticks0 = run._sampler.ticks  # the benchmark reads the engine's tick count
                start, start_cpu = time.perf_counter(), time.thread_time()
                workload()
                elapsed = time.perf_counter() - start
                wall[mode].append(elapsed)
                cpu[mode].append(time.thread_time() - start_cpu)
                if mode == "tracked":
                    sampler_share.append((run._sampler.ticks - ticks0) * tick_cpu_s / elapsed)

    def ratio(times: dict[str, list[float]], mode: str = "tracked") -> float:
        # Median of each round's ratio: a round's runs went back to back, under the same noise.
        pairs = zip(times["plain"], times[mode], strict=True)
        return median([t / p for p, t in pairs]) - 1

    return {
        "plain_s": median(wall["plain"]),
        "tracked_s": median(wall["tracked"]),
        "wall": ratio(wall),
        "cpu": ratio(cpu),
        "noise_wall": ratio(wall, "again"),
        "noise_cpu": ratio(cpu, "again"),
        "sampler": max(sampler_share),
    }


def main() -> None:
    os.environ.setdefault("CARBONTRACK_DISABLE_PLUGIN_AUTOLOAD", "1")
    print(f"with track(): enter+exit, no hardware: median {enter_exit_ms():.2f} ms (target <= 30)")
    print(f"first with track() in a fresh process (loads plugins, tables): {first_use_ms():.1f} ms")
    print(
        f"epoch boundary (epoch_start + epoch_end, 16 fake devices, run log written): median "
        f"{epoch_boundary_us():.0f} us"
    )
    tick = sampler_tick_cpu_s()
    print(
        f"sampler, 16 fake devices: {tick * 1e6:.1f} us CPU per tick -> "
        f"{tick / 1.0 * 100:.4f} % of one core at a 1 s interval (target <= 0.1 %)"
    )
    r = slowdown(tick)
    print(
        f"CPU-bound workload: untracked median {r['plain_s']:.3f} s, tracked median "
        f"{r['tracked_s']:.3f} s; slowdown (median of per-round ratios, target <= 1 %): "
        f"wall clock {r['wall'] * 100:+.2f} %, main-thread CPU time {r['cpu'] * 100:+.2f} %"
    )
    print(
        f"same, untracked vs untracked (the machine's noise floor): wall clock "
        f"{r['noise_wall'] * 100:+.2f} %, main-thread CPU time {r['noise_cpu'] * 100:+.2f} %"
    )
    print(
        f"sampler ticks x CPU per tick during the tracked workload: at most "
        f"{r['sampler'] * 100:.4f} % of its duration (the cost tracking adds)"
    )


if __name__ == "__main__":
    main()
