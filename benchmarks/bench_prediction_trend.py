"""Prediction interval coverage on runs whose epoch energy trends (issue 19).

Synthetic runs: epoch k draws ``1000 J * (1 + slope * k)`` plus Gaussian noise, for several
slopes (0 = no trend), noise levels and run lengths. After 5 epochs the prediction is made and
its 95 % (and 80 %) interval checked against the true total; the same runs are predicted the
old way (the mean of the epochs, interval R·mean ± t·s·sqrt(R + R²/n)) for comparison. Also
prints how often the trend was "modelled" (clear slope) and the median relative width and error.
Pure arithmetic, seeded, deterministic.

    python benchmarks/bench_prediction_trend.py
"""

from __future__ import annotations

import random
import statistics
import time

from carbontrack.model import EpochRecord
from carbontrack.predict import interval_half_width, predict

RUNS = 2000
AFTER = 5
SLOPES = (0.0, 0.005, 0.01, 0.02, 0.04)
NOISES = (0.02, 0.05)
TOTALS = (20, 100)
LEVELS = (0.95, 0.8)


def records(energies: list[float]) -> list[EpochRecord]:
    return [EpochRecord(i + 1, 60.0 * i, 60.0, e, 0.0) for i, e in enumerate(energies)]


def old_interval(seen: list[float], total: int, level: float) -> tuple[float, float]:
    n, rest = len(seen), total - len(seen)
    mean = statistics.fmean(seen)
    half = interval_half_width(statistics.stdev(seen), n, rest, level)
    return sum(seen) + max(rest * mean - half, 0.0), sum(seen) + rest * mean + half


def main() -> None:
    began = time.perf_counter()
    print(f"coverage of the prediction interval after {AFTER} epochs, {RUNS} runs per row")
    header = (
        f"{'slope':>6} {'noise':>5} {'epochs':>6} {'level':>5} | {'new':>5} {'old':>5} | "
        f"{'modelled':>8} {'width':>6} {'err':>5}"
    )
    print(header)
    print("-" * len(header))
    worst = 0.0
    for total in TOTALS:
        for noise in NOISES:
            for slope in SLOPES:
                for level in LEVELS:
                    rng = random.Random(f"{slope}-{noise}-{total}-{level}")
                    new_hits = old_hits = modelled = 0
                    widths, errors = [], []
                    for _ in range(RUNS):
                        energies = [
                            max(rng.gauss(1000.0 * (1 + slope * k), noise * 1000.0), 0.0)
                            for k in range(total)
                        ]
                        truth = sum(energies)
                        seen = energies[:AFTER]
                        p = predict(
                            records(seen), total_epochs=total, g_per_kwh=1.0, pue=1.0, level=level
                        )
                        assert p.energy_j_low is not None
                        assert p.energy_j_high is not None
                        new_hits += p.energy_j_low <= truth <= p.energy_j_high
                        low, high = old_interval(seen, total, level)
                        old_hits += low <= truth <= high
                        modelled += p.trend == "modelled"
                        widths.append((p.energy_j_high - p.energy_j_low) / 2 / truth)
                        errors.append(abs(p.energy_j / truth - 1))
                    new_cov, old_cov = new_hits / RUNS, old_hits / RUNS
                    if slope > 0:
                        worst = max(worst, abs(new_cov - level))
                    print(
                        f"{slope:>6.1%} {noise:>5.0%} {total:>6} {level:>5.0%} | "
                        f"{new_cov:>5.1%} {old_cov:>5.1%} | {modelled / RUNS:>8.0%} "
                        f"±{statistics.median(widths):>5.0%} {statistics.median(errors):>5.1%}"
                    )
    print(
        f"largest distance of the new coverage from nominal on trending runs: {worst * 100:.1f} "
        "points"
    )
    print("width: median half-width of the energy interval / true total; err: median |error|")
    print(f"benchmark took {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    main()
