"""What the estimate backend costs on this machine: table load, matching, and one read per tick.

Run: ``python benchmarks/bench_estimate.py``. Reads the real ``/proc`` (machine attribution and
process attribution of this process with 4 child processes, CPU and RAM models) and prints
medians.
"""

from __future__ import annotations

import subprocess
import sys
import time

from carbontrack import make_settings
from carbontrack.backends import estimate


def per_call_us(fn: object, n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter_ns() - t0)
    times.sort()
    return times[len(times) // 2] / 1000


def main() -> None:
    model = "Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz"
    t0 = time.perf_counter()
    estimate.match_cpu(model)
    first_ms = (time.perf_counter() - t0) * 1000
    print(f"first match_cpu (reads the table file): {first_ms:.1f} ms")
    print(f"match_cpu, known model: {per_call_us(lambda: estimate.match_cpu(model), 2000):.0f} us")
    words = "Opteron 6234 AMD"  # the same words in another order: the text search, no index
    estimate.match_cpu(words)
    cost = per_call_us(lambda: estimate.match_cpu(words), 200)
    print(f"match_cpu, same words in another order: {cost:.0f} us (median of 200)")
    unknown = "Intel(R) Xeon(R) CPU @ 2.20GHz"  # a VM's model string: in no row
    cost = per_call_us(lambda: estimate.match_cpu(unknown), 200)
    print(f"match_cpu, unknown model: {cost:.0f} us (median of 200)")

    children = [
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) for _ in range(4)
    ]
    try:
        for attribution in ("machine", "process"):
            settings = make_settings(attribution=attribution, components="cpu,ram")
            devices = estimate.carbontrack_discover_devices(settings)
            devs = [d for d in devices if not isinstance(d, estimate.Unavailable)]
            cost = per_call_us(lambda devs=devs: estimate.carbontrack_read_energy(devs), 300)
            kinds = "+".join(d.kind for d in devs)  # type: ignore[union-attr]
            print(f"read_energy ({attribution}, {kinds}): {cost:.0f} us per tick (median of 300)")
    finally:
        for child in children:
            child.kill()
            child.wait()


if __name__ == "__main__":
    main()
