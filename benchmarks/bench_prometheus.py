"""What the Prometheus exporter costs: the share of one core it adds at 1 s sampling.

Two measurements, both printed:

1. Per-operation cost: the per-tick path (the tracker builds a ``Sample``, the exporter stores
   it) and one scrape of ``/metrics`` (over HTTP, as Prometheus does), timed over many calls
   (median of repeats). At one tick per second and one scrape every 15 s (Prometheus'
   default scrape interval) the exporter's share of a core is
   ``tick_s * 1 + scrape_s / 15``.
2. End to end: process CPU time (every thread) of a ``DURATION_S`` run sampling every second,
   with and without the exporter (scraped every second, 15 times more often than usual),
   median of ``REPEATS`` runs each; the difference over the wall time is the share of a core.

Run: ``python benchmarks/bench_prometheus.py``. The budget (issue 16) is 0.1 % of a core.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _util import median

from carbontrack import track
from carbontrack.testing import FakeDevice, FakeHardware

DURATION_S = 20.0
REPEATS = 3
BUDGET = 0.001  # 0.1 % of one core


def hardware() -> FakeHardware:
    # Eight devices: a two-socket server with four GPUs (and DRAM), a busy label set.
    return FakeHardware(
        [FakeDevice(f"package-{i}", kind="cpu", watts=100.0) for i in range(2)]
        + [FakeDevice(f"dram-{i}", kind="dram", watts=10.0) for i in range(2)]
        + [FakeDevice(f"gpu-{i}", kind="gpu", watts=300.0) for i in range(4)]
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def per_operation() -> tuple[float, float]:
    """Seconds per tick path (sample + store) and per scrape."""
    port = free_port()
    with track(
        plugins=[hardware()], prometheus=str(port), write_log=False, verbose=0, interval_s=3600
    ) as run:
        exporter = run._host.pm.get_plugin("prometheus").exporter(run.run_id)
        now = run._sampler.read()
        ticks = []
        for _ in range(7):
            n = 2000
            t0 = time.perf_counter()
            for _ in range(n):
                exporter.update_sample(run._sample(now))
            ticks.append((time.perf_counter() - t0) / n)
        scrapes = []
        url = f"http://127.0.0.1:{port}/metrics"
        for _ in range(7):
            n = 50
            t0 = time.process_time()
            for _ in range(n):
                with urllib.request.urlopen(url, timeout=5) as r:
                    r.read()
            # Process time: the server's work and the client's both count, an upper bound.
            scrapes.append((time.process_time() - t0) / n)
    return median(ticks), median(scrapes)


SCRAPER = """
import sys, time, urllib.request
url, every = sys.argv[1], float(sys.argv[2])
while True:
    time.sleep(every)
    try:
        urllib.request.urlopen(url, timeout=5).read()
    except OSError:
        pass
"""


def end_to_end(scrape_every_s: float | None) -> tuple[float, float]:
    """Process CPU seconds of this process (every thread) over ``DURATION_S`` of a run at 1 s
    sampling, steady state (start and stop left out), and the CPU of starting and stopping.
    ``scrape_every_s`` None: no exporter; else a scraper in another process (so that only the
    exporter's side is counted) asks for /metrics that often."""
    port = free_port()
    options = {"prometheus": str(port)} if scrape_every_s is not None else {}
    scraper = None
    c0 = time.process_time()
    with track(plugins=[hardware()], write_log=False, verbose=0, interval_s=1.0, **options):
        if scrape_every_s is not None:
            scraper = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    SCRAPER,
                    f"http://127.0.0.1:{port}/metrics",
                    str(scrape_every_s),
                ]
            )
        c1 = time.process_time()
        time.sleep(DURATION_S)
        c2 = time.process_time()
    c3 = time.process_time()
    if scraper is not None:
        scraper.kill()
        scraper.wait()
    return c2 - c1, (c1 - c0) + (c3 - c2)


def main() -> None:
    tick_s, scrape_s = per_operation()
    share = tick_s * 1.0 + scrape_s / 15.0
    print(f"per tick (Sample built + stored, 8 devices): {tick_s * 1e6:.1f} us")
    print(f"per scrape of /metrics (server + client CPU): {scrape_s * 1e3:.2f} ms")
    print(
        f"share of a core at 1 s sampling, scraped every 15 s: {share * 100:.4f} % "
        f"(budget {BUDGET * 100:.1f} %)"
    )
    end_to_end(15.0)  # imports prometheus_client once, outside the figures
    results = {}
    for label, every in (("without", None), ("scraped every 15 s", 15.0), ("every 1 s", 1.0)):
        runs = [end_to_end(every) for _ in range(REPEATS)]
        results[label] = (median([r[0] for r in runs]), median([r[1] for r in runs]))
    base = results["without"][0]
    print(
        f"end to end, {DURATION_S:.0f} s at 1 s sampling, 8 devices, median of {REPEATS} "
        f"(process CPU, steady state): without the exporter {base * 1e3:.1f} ms"
    )
    for label in ("scraped every 15 s", "every 1 s"):
        cpu, one_off = results[label]
        print(
            f"  with the exporter, {label}: {cpu * 1e3:.1f} ms, "
            f"{(cpu - base) / DURATION_S * 100:.4f} % of a core added; start + stop "
            f"{one_off * 1e3:.1f} ms once (without: {results['without'][1] * 1e3:.1f} ms)"
        )
    print("within budget" if share <= BUDGET else "OVER BUDGET")


if __name__ == "__main__":
    main()
