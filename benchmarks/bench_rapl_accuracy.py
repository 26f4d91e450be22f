"""Accuracy of RAPL energy through counter wraps: the rapl plugin and the sampler on fake trees.

A fake powercap tree (``carbontrack.testing.powercap``) draws a known, varying power on every
package and DRAM zone; the real ``rapl`` plugin and the real sampler read it on a fake clock,
as often as the sampler decides, with each read landing up to 50 % late (a descheduled
thread). Counter ranges are scaled down so that every window holds several wraps of every
counter, and the sampler's base interval is scaled with them (window / 20). The error is
measured minus true energy, per zone kind. Figures are simulated, not measurements of hardware.

Run: ``python benchmarks/bench_rapl_accuracy.py``
"""

from __future__ import annotations

import itertools
import os
import random
import tempfile
import time
from collections.abc import Sequence

import pluggy

from carbontrack import hookspecs
from carbontrack._plugins import PluginHost
from carbontrack._sampler import Sampler
from carbontrack.backends import rapl
from carbontrack.model import Device
from carbontrack.settings import make_settings
from carbontrack.testing import FakeClock
from carbontrack.testing.powercap import FakePowercap, FakeZone

WINDOWS_S = (2.0, 10.0, 60.0, 600.0)
SOCKETS = (1, 2)
WRAPS_PER_WINDOW = 5  # counter ranges are set so each counter wraps about this often
PACKAGE_W = (60.0, 220.0)  # power varies at random between these
DRAM_W = (4.0, 30.0)
SEGMENTS = 40  # power changes this many times per window
LATE = 0.5  # a read lands up to this share of the interval late
LIMIT_PCT = 0.5


def trace(
    rng: random.Random, window_s: float, low: float, high: float
) -> list[tuple[float, float]]:
    """A piecewise-constant power trace: ``(start_s, watts)`` steps over the window."""
    starts = sorted(rng.uniform(0, window_s) for _ in range(SEGMENTS - 1))
    return [(t, rng.uniform(low, high)) for t in [0.0, *starts]]


def power_at(steps: Sequence[tuple[float, float]], t: float) -> float:
    watts = steps[0][1]
    for start, w in steps:
        if start > t:
            break
        watts = w
    return watts


def advance(
    tree: FakePowercap, traces: dict[str, list[tuple[float, float]]], t0: float, t1: float
) -> None:
    """Advance the tree from t0 to t1, cut at every power change so the truth is exact."""
    cuts = sorted({t0, t1, *(s for tr in traces.values() for s, _ in tr if t0 < s < t1)})
    for a, b in itertools.pairwise(cuts):
        for zone in tree:
            zone.watts = power_at(traces[zone.zone_id], a)
        tree.advance(b - a, write=b == t1)


def run_case(window_s: float, sockets: int, rng: random.Random) -> list[tuple[str, ...]]:
    with tempfile.TemporaryDirectory() as base:
        clock = FakeClock()
        tree = FakePowercap(base, clock=clock)
        traces: dict[str, list[tuple[float, float]]] = {}
        zones: list[tuple[str, FakeZone]] = []
        for socket in range(sockets):
            pkg_trace = trace(rng, window_s, *PACKAGE_W)
            dram_trace = trace(rng, window_s, *DRAM_W)
            # Mean power over the window sets the range: about WRAPS_PER_WINDOW wraps.
            pkg_j = sum(power_at(pkg_trace, t) for t in _grid(window_s)) * window_s / 1000
            dram_j = sum(power_at(dram_trace, t) for t in _grid(window_s)) * window_s / 1000
            package = tree.add_package(
                socket,
                0.0,
                dram_watts=0.0,
                range_uj=int(pkg_j / WRAPS_PER_WINDOW * 1e6),
                dram_range_uj=int(dram_j / WRAPS_PER_WINDOW * 1e6),
            )
            assert package.dram is not None
            package.package.start_at(rng.randrange(package.package.range_uj))
            package.dram.start_at(rng.randrange(package.dram.range_uj))
            traces[package.package.zone_id] = pkg_trace
            traces[package.dram.zone_id] = dram_trace
            zones += [("package", package.package), ("dram", package.dram)]
        os.environ[rapl.POWERCAP_ROOT_ENV] = str(tree.root)
        devices = [
            d for d in rapl.carbontrack_discover_devices(make_settings()) if isinstance(d, Device)
        ]
        pm = pluggy.PluginManager(hookspecs.PROJECT)
        pm.add_hookspecs(hookspecs)
        pm.register(rapl, name="rapl")
        sampler = Sampler(PluginHost(pm), {"rapl": devices}, interval_s=window_s / 20, clock=clock)
        start_true = {z.zone_id: z.true_j for _, z in zones}
        sampler.read()
        t = 0.0
        reads = 1
        while t < window_s:
            step = min(sampler.next_interval() * (1 + rng.uniform(0, LATE)), window_s - t)
            advance(tree, traces, t, t + step)
            t += step
            sampler.read()
            reads += 1
        measured = {tot.device.detail.split()[0]: tot.energy_j for tot in sampler.totals()}
        resets = sum(tot.resets for tot in sampler.totals())
        rows = []
        for kind in ("package", "dram"):
            members = [z for k, z in zones if k == kind]
            true_j = sum(z.true_j - start_true[z.zone_id] for z in members)
            got_j = sum(measured[z.zone_id] for z in members)
            wraps = min((z.true_j - start_true[z.zone_id]) / (z.range_uj / 1e6) for z in members)
            error = (got_j - true_j) / true_j * 100
            rows.append(
                (
                    f"{window_s:g}",
                    str(sockets),
                    kind,
                    f"{wraps:.1f}",
                    str(reads),
                    str(resets),
                    f"{true_j:.3f}",
                    f"{got_j:.3f}",
                    f"{error:+.6f}",
                )
            )
        return rows


def _grid(window_s: float) -> list[float]:
    return [(i + 0.5) * window_s / 1000 for i in range(1000)]


def main() -> None:
    rng = random.Random(20201110)  # the date of the powercap permission fix, for repeatability
    header = ("window_s", "sockets", "zone", "min_wraps", "reads", "resets", "true_J")
    header += ("measured_J", "error_%")
    rows = []
    began = time.perf_counter()
    for window in WINDOWS_S:
        for sockets in SOCKETS:
            rows += run_case(window, sockets, rng)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print("RAPL accuracy on fake powercap trees (simulated power, real plugin and sampler)")
    print("  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
    worst = max(abs(float(r[-1])) for r in rows)
    verdict = "within" if worst <= LIMIT_PCT else "OUTSIDE"
    print(f"worst |error| = {worst:.6f} % ({verdict} the {LIMIT_PCT} % target)")
    print(f"ran in {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    main()
