"""How close the NVML backend's GPU energy is to the exact energy of a spiky training power trace.

Runs carbontrack's real NVML plugin and sampler against ``carbontrack.testing.nvml.FakeNVML``
replaying a synthetic training trace (steps of 0.18-0.32 s alternating ~290 W compute and
~140 W data/optimizer phases, evaluation and checkpoint pauses) on a fake clock, and compares:

* counter-based energy (Volta and newer; counter refreshed every 100 ms or 20 ms, the range
  reported for real GPUs) with the trace's exact energy;
* power-sampled energy (pre-Volta GPUs: instantaneous power, trapezoid rule) at several
  intervals, to find the interval power-only GPUs need for 2 %.

Errors are taken per 60-s epoch (boundaries off the sampling grid) and over the whole 10-minute
run, worst case over 10 traces. All figures are simulated; no GPU is involved.

    python benchmarks/bench_nvml_accuracy.py
    python benchmarks/bench_nvml_accuracy.py --real 120   # on a machine with NVIDIA GPUs

``--real SECONDS`` measures the real GPUs instead, while you run a GPU workload next to it:
for each GPU with an energy counter it compares NVML's own counter over the window with the
power read through NVML every 0.05 s and every 1 s (trapezoid rule). On Ampere and newer
(except GA100) the power reading is a 1-s average, so this says how well sampling works on that
GPU, not on a pre-Volta one.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import time

os.environ.setdefault("CARBONTRACK_DISABLE_PLUGINS", "rapl,powermetrics,estimate")
os.environ.setdefault("CARBONTRACK_DISABLE_PLUGIN_AUTOLOAD", "1")

from carbontrack._plugins import PluginHost, make_plugin_manager
from carbontrack._sampler import Sampler
from carbontrack.model import Device
from carbontrack.settings import DEFAULT_INTERVAL_S, make_settings
from carbontrack.testing import FakeClock
from carbontrack.testing.nvml import FakeGpu, FakeNVML, PowerTrace

RUN_S = 600.0
EPOCH_S = 60.0
TRACES = 10
INTERVALS_S = (2.0, 1.0, 0.5, 0.25, 0.1, 0.05)
TARGET = 0.02


def training_trace(seed: int) -> PowerTrace:
    """A spiky power trace of one GPU training a model (seconds from 0 to RUN_S + 10)."""
    rng = random.Random(seed)
    steps: list[tuple[float, float]] = [(rng.uniform(2.0, 6.0), rng.gauss(65.0, 3.0))]  # idle
    t = steps[0][0]
    next_eval = rng.uniform(40.0, 60.0)
    while t < RUN_S + 10.0:
        if t >= next_eval:  # evaluation or checkpoint: lower, flatter power
            pause = rng.uniform(3.0, 6.0)
            steps.append((pause, rng.gauss(150.0, 15.0)))
            t += pause
            next_eval = t + rng.uniform(40.0, 60.0)
            continue
        step = rng.uniform(0.18, 0.32)
        compute = step * rng.uniform(0.75, 0.9)
        steps.append((compute, max(30.0, rng.gauss(290.0, 20.0))))
        steps.append((step - compute, max(30.0, rng.gauss(140.0, 25.0))))
        t += step
    return PowerTrace.from_steps(steps)


def measure(
    trace: PowerTrace, *, counter: bool, interval_s: float, seed: int, refresh_s: float = 0.1
) -> list[float]:
    """Relative errors per epoch, then of the whole run (last entry), for one configuration."""
    rng = random.Random(seed + 1000)
    clock = FakeClock(start=0.0)
    gpu = FakeGpu(
        uuid="GPU-bench",
        pci_bus_id="00000000:1A:00.0",
        power=trace,
        energy_counter=counter,
        power_average_s=0.0,  # pre-Volta GPUs report instantaneous power
        energy_update_s=refresh_s,
    )
    fake = FakeNVML([gpu], clock=clock)
    with fake.installed():
        host = PluginHost(make_plugin_manager(autoload=False))
        found = host.broadcast("carbontrack_discover_devices", settings=make_settings())
        devices = [d for d in found.get("nvml", []) if isinstance(d, Device)]
        assert devices
        assert devices[0].method == ("counter" if counter else "power")
        sampler = Sampler(host, {"nvml": devices}, interval_s=interval_s, clock=clock)
        # The run starts at a random phase of the trace; epochs end off the sampling grid.
        start = rng.uniform(5.0, 10.0)
        clock.advance(start)
        sampler.read()
        edges = [start + EPOCH_S * (i + 1) + rng.uniform(-0.5, 0.5) for i in range(9)]
        edges.append(start + RUN_S)
        ticks = [start + interval_s * k for k in range(1, int(RUN_S / interval_s) + 1)]
        times = sorted(set(ticks) | set(edges))
        totals = {start: 0.0}
        for t in times:
            clock.advance(t - clock())
            sampler.read()
            if t in edges:
                totals[t] = sampler.total_j()
        host.broadcast("carbontrack_close_devices", devices=devices)
    assert fake.shutdown_count == fake.init_count
    errors = []
    bounds = [start, *edges]
    for a, b in itertools.pairwise(bounds):
        exact = fake.true_energy_j(gpu, a, b)
        errors.append(abs((totals[b] - totals[a]) - exact) / exact)
    exact_run = fake.true_energy_j(gpu, start, start + RUN_S)
    errors.append(abs(totals[start + RUN_S] - exact_run) / exact_run)
    return errors


def main() -> None:
    began = time.perf_counter()
    traces = [training_trace(seed) for seed in range(TRACES)]
    mean_w = sum(tr.energy_j(RUN_S) for tr in traces) / len(traces) / RUN_S
    print(f"trace: {RUN_S:.0f} s training, mean {mean_w:.0f} W, {TRACES} traces, 60 s epochs")

    for refresh in (0.1, 0.02):
        counter = [
            measure(tr, counter=True, interval_s=DEFAULT_INTERVAL_S, seed=s, refresh_s=refresh)
            for s, tr in enumerate(traces)
        ]
        worst_epoch = max(max(e[:-1]) for e in counter)
        worst_run = max(e[-1] for e in counter)
        print(
            f"counter (mJ, refreshed every {refresh * 1000:.0f} ms), read every "
            f"{DEFAULT_INTERVAL_S:g} s: worst epoch error {worst_epoch:.4%}, worst run error "
            f"{worst_run:.4%}"
        )

    needed = None
    for interval in INTERVALS_S:
        results = [
            measure(tr, counter=False, interval_s=interval, seed=s) for s, tr in enumerate(traces)
        ]
        worst_epoch = max(max(e[:-1]) for e in results)
        worst_run = max(e[-1] for e in results)
        mark = " (default)" if interval == DEFAULT_INTERVAL_S else ""
        print(
            f"power sampled every {interval:g} s{mark}: worst epoch error {worst_epoch:.2%}, "
            f"worst run error {worst_run:.2%}"
        )
        if needed is None and worst_epoch <= TARGET:
            needed = interval
    if needed is None:
        print(f"no interval tried keeps every epoch within {TARGET:.0%}")
    else:
        print(
            f"largest interval tried that keeps every 60 s epoch within {TARGET:.0%}: {needed:g} s"
        )
    print(f"benchmark took {time.perf_counter() - began:.1f} s")


def real(seconds: float) -> None:
    """Compare NVML's energy counter with sampled NVML power on this machine's GPUs."""
    from carbontrack.backends import nvml as backend

    found = backend.discover(make_settings())
    devices = [d for d in found if isinstance(d, Device)]
    for item in found:
        if not isinstance(item, Device):
            print(f"unavailable: {item.reason}")
    counters = [d for d in devices if d.method == "counter"]
    if not counters:
        print("no NVIDIA GPU with an energy counter here: nothing to compare")
        backend.carbontrack_close_devices(devices)
        return
    nvml = counters[0].handle.session.nvml
    per_second = 20  # fine samples every 0.05 s; every 20th one is a 1 s sample

    def powers() -> list[float]:
        return [nvml.nvmlDeviceGetPowerUsage(d.handle.handle) / 1000.0 for d in counters]

    first = backend.carbontrack_read_energy(counters)
    t0 = time.monotonic()
    fine_w = coarse_w = powers()
    fine_t = coarse_t = t0
    fine_j = [0.0] * len(counters)
    coarse_j = [0.0] * len(counters)
    for n in range(1, max(1, round(seconds)) * per_second + 1):
        time.sleep(max(0.0, t0 + n / per_second - time.monotonic()))
        now, w = time.monotonic(), powers()
        for i in range(len(counters)):
            fine_j[i] += (fine_w[i] + w[i]) / 2 * (now - fine_t)
        fine_w, fine_t = w, now
        if n % per_second == 0:
            for i in range(len(counters)):
                coarse_j[i] += (coarse_w[i] + w[i]) / 2 * (now - coarse_t)
            coarse_w, coarse_t = w, now
    last = backend.carbontrack_read_energy(counters)
    backend.carbontrack_close_devices(devices)
    for i, d in enumerate(counters):
        if first[i].joules is None or last[i].joules is None:
            print(f"{d.name}: a counter read failed: {first[i].error or last[i].error}")
            continue
        counted = last[i].joules - first[i].joules
        print(
            f"{d.name}: NVML counter {counted:.1f} J over {fine_t - t0:.1f} s; NVML power every "
            f"0.05 s {fine_j[i]:.1f} J ({(fine_j[i] - counted) / counted:+.2%}), every 1 s "
            f"{coarse_j[i]:.1f} J ({(coarse_j[i] - counted) / counted:+.2%})"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--real", type=float, metavar="SECONDS", help="measure the real GPUs")
    args = parser.parse_args()
    if args.real:
        real(args.real)
    else:
        main()
