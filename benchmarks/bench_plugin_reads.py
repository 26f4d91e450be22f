"""What one ``carbontrack_read_energy`` call costs per device in the two plugin packages.

The hook contract asks for well under a millisecond per device. hwmon reads files of a fake tree
in a temporary folder (a real sysfs attribute costs about the same system calls); amdsmi runs
against the fake module, so this is the plugin's own overhead without ``libamd_smi``'s.
Run: python benchmarks/bench_plugin_reads.py
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from carbontrack_amdsmi.plugin import AmdSmiPlugin
from carbontrack_amdsmi.testing import FakeAmdGpu, FakeAmdSmi
from carbontrack_hwmon import plugin as hwmon
from carbontrack_hwmon.testing import FakeHwmonTree

from carbontrack import Device, make_settings

CALLS = 2000


def per_device_us(read: Callable[[], object], devices: int) -> float:
    """Median over 5 rounds of ``CALLS`` calls, in µs per device."""
    rounds = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(CALLS):
            read()
        rounds.append((time.perf_counter() - t0) / CALLS / devices * 1e6)
    return sorted(rounds)[2]


def bench_hwmon(folder: Path) -> tuple[int, float]:
    tree = FakeHwmonTree(folder / "hwmon")
    tree.add_amd_energy(sockets=2)
    tree.add_grace(sockets=2)
    os.environ.update(tree.environ)
    found = hwmon.carbontrack_discover_devices(settings=make_settings())
    devices = [d for d in found if isinstance(d, Device)]
    return len(devices), per_device_us(
        lambda: hwmon.carbontrack_read_energy(devices=devices), len(devices)
    )


def bench_amdsmi() -> tuple[int, float]:
    gpus = [FakeAmdGpu(f"0000:c{i}:00.0", f"uuid-{i}", energy=i % 2 == 0) for i in range(8)]
    with FakeAmdSmi(gpus).installed():
        plugin = AmdSmiPlugin()
        found = plugin.carbontrack_discover_devices(settings=make_settings())
        devices = [d for d in found if isinstance(d, Device)]
        result = per_device_us(
            lambda: plugin.carbontrack_read_energy(devices=devices), len(devices)
        )
        plugin.carbontrack_close_devices(devices=devices)
    return len(devices), result


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        n, us = bench_hwmon(Path(folder))
    print(f"hwmon:  {n} devices (2 counters, 2 power meters), {us:.1f} µs per device per read")
    n, us = bench_amdsmi()
    print(f"amdsmi: {n} GPUs (4 counters, 4 power), fake module: {us:.1f} µs per device per read")


if __name__ == "__main__":
    main()
