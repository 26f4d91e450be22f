"""Carbon intensity costs: table load, live look-ups (fresh and cached) and time weighting.

Run: ``python benchmarks/bench_intensity.py``. Live look-ups go to the local fake of Electricity
Maps (``carbontrack.testing.intensity``), so they measure carbontrack's side plus a loopback
round trip, not a real API's latency.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def bench_table() -> None:
    from carbontrack.intensity import _table

    _table.load_table.cache_clear()
    t0 = time.perf_counter()
    table = _table.load_table()
    load = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(10_000):
        table.get("DK")
    lookup = (time.perf_counter() - t0) / 10_000
    print(f"table load ({len(table.rows)} countries): {_ms(load)}; lookup: {lookup * 1e6:.2f} us")


def bench_live() -> None:
    from carbontrack.intensity._live import ElectricityMaps
    from carbontrack.intensity._location import parse_location
    from carbontrack.settings import make_settings
    from carbontrack.testing.intensity import FakeElectricityMaps

    location = parse_location("DE")
    with FakeElectricityMaps() as em:
        settings = make_settings(
            api_keys={"electricitymaps": em.key}, plugin_options=em.plugin_options()
        )
        fresh, cached = [], []
        for i in range(50):
            os.environ["CARBONTRACK_CACHE_DIR"] = tempfile.mkdtemp(prefix=f"ct-bench-{i}-")
            t0 = time.perf_counter()
            ElectricityMaps().carbontrack_carbon_intensity(location, 0.0, 0.0, settings)
            fresh.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            ElectricityMaps().carbontrack_carbon_intensity(location, 0.0, 0.0, settings)
            cached.append(time.perf_counter() - t0)
    print(
        f"Electricity Maps latest via loopback fake: median {_ms(statistics.median(fresh))} "
        f"fresh, {_ms(statistics.median(cached))} from the disk cache (n=50)"
    )


def bench_weighting() -> None:
    from carbontrack._tracker import Tracker
    from carbontrack.model import Intensity, IntensityPoint
    from carbontrack.settings import make_settings

    # A week-long run: the sampler keeps one timeline point per 30 s (20,160), and a 5-minute
    # provider (Energi Data Service) gives 2,016 points.
    week = 7 * 86400.0
    tracker = Tracker(make_settings(verbose=0, write_log=False))
    timeline: deque[tuple[float, float]] = deque(
        (t, t * 100.0) for t in (i * 30.0 for i in range(int(week / 30) + 1))
    )

    class _Sampler:
        def __init__(self) -> None:
            self.timeline = timeline

    t: Any = tracker
    t._sampler = _Sampler()
    t._started, t._started_wall = 0.0, 1_700_000_000.0
    points = tuple(
        IntensityPoint(t._started_wall + s, t._started_wall + s + 300.0, 100.0 + (s // 300) % 50)
        for s in (i * 300.0 for i in range(int(week / 300)))
    )
    t._intensity = Intensity(g_per_kwh=120.0, source="bench", points=points)
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        tracker._weighted_co2_g(week * 100.0, week)
        runs.append(time.perf_counter() - t0)
    print(
        f"energy-weighted CO2eq of a one-week run ({len(timeline)} timeline steps x "
        f"{len(points)} points): median {_ms(statistics.median(runs))}"
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as home:
        os.environ["CARBONTRACK_HOME"] = home
        bench_table()
        bench_live()
        bench_weighting()


if __name__ == "__main__":
    main()
