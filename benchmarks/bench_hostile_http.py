"""Bounds under hostile intensity APIs (issue 21), measured against local fakes.

Run: ``python benchmarks/bench_hostile_http.py``. Prints, as medians of a few runs:

* the wall time of ``with track(epochs=2)`` around 2 epochs of 0.2 s (0.4 s of work) when the
  live API drips one byte every 0.5 s and ``timeout_s=2`` (issue bound: 8 s; the old code took
  about 150 s), next to the same job with a healthy API;
* the time and peak traced memory of one request to an API sending a 1 GiB answer, with and
  without ``Content-Length`` (old code: read whole, about 2 GB peak);
* the fresh look-up time against a healthy fake (the cost of the deadline thread).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

KEY = "bench-key"


def _job(server: Any, timeout_s: float) -> float:
    from carbontrack import track
    from carbontrack.testing import FakeDevice, FakeHardware

    hw = FakeHardware([FakeDevice("package-0", kind="cpu", watts=20.0)])
    t0 = time.perf_counter()
    with track(
        plugins=[hw],
        epochs=2,
        location="DE",
        api_keys={"electricitymaps": KEY},
        plugin_options=server.plugin_options(timeout_s=timeout_s, cache=False),
        verbose=0,
        write_log=False,
    ) as run:
        for _ in range(2):
            with run.epoch():
                time.sleep(0.2)
    return time.perf_counter() - t0


def bench_drip(repeats: int = 3) -> None:
    from carbontrack.testing.intensity import FakeElectricityMaps

    dripping, healthy = [], []
    for _ in range(repeats):
        with FakeElectricityMaps(key=KEY, drip_s=0.5) as server:
            server.fail("drip", times=100)
            dripping.append(_job(server, 2.0))
        with FakeElectricityMaps(key=KEY) as server:
            healthy.append(_job(server, 2.0))
    print(
        f"2 epochs x 0.2 s, timeout_s=2: dripping API (1 byte / 0.5 s) "
        f"{statistics.median(dripping):.2f} s (max {max(dripping):.2f} s, bound 8 s); "
        f"healthy API {statistics.median(healthy):.2f} s  [{repeats} runs each]"
    )


def bench_huge() -> None:
    from carbontrack.intensity._http import ProviderError, get_json
    from carbontrack.testing.intensity import FakeElectricityMaps

    for kind in ("huge", "huge-unannounced"):
        with FakeElectricityMaps(key=KEY, huge_bytes=2**30) as server:
            server.fail(kind, times=2)
            tracemalloc.start()
            t0 = time.perf_counter()
            try:
                get_json(server.url + "/carbon-intensity/latest", timeout=30.0)
                outcome = "read (!)"
            except ProviderError as exc:
                outcome = str(exc)
            elapsed = time.perf_counter() - t0
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            sent = server.bytes_sent
        print(
            f"1 GiB answer ({kind}): {elapsed:.2f} s, peak traced memory {peak / 2**20:.1f} MiB, "
            f"server sent {sent / 2**20:.0f} MiB before the client left: {outcome}"
        )


def bench_fresh_lookup(repeats: int = 50) -> None:
    from carbontrack.intensity._live import ElectricityMaps
    from carbontrack.intensity._location import parse_location
    from carbontrack.settings import make_settings
    from carbontrack.testing.intensity import FakeElectricityMaps

    location = parse_location("DE")
    times = []
    with FakeElectricityMaps(key=KEY) as em:
        settings = make_settings(
            api_keys={"electricitymaps": KEY}, plugin_options=em.plugin_options()
        )
        for i in range(repeats):
            os.environ["CARBONTRACK_CACHE_DIR"] = tempfile.mkdtemp(prefix=f"ct-bench-{i}-")
            t0 = time.perf_counter()
            ElectricityMaps().carbontrack_carbon_intensity(location, 0.0, 0.0, settings)
            times.append(time.perf_counter() - t0)
    median_ms = statistics.median(times) * 1000
    print(f"fresh live look-up (loopback, deadline thread): median {median_ms:.2f} ms")


def main() -> None:
    os.environ.setdefault("CARBONTRACK_HOME", tempfile.mkdtemp(prefix="ct-bench-home-"))
    os.environ["CARBONTRACK_DISABLE_PLUGINS"] = "rapl,nvml,powermetrics,estimate"
    os.environ["CARBONTRACK_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    bench_drip()
    bench_huge()
    bench_fresh_lookup()


if __name__ == "__main__":
    main()
