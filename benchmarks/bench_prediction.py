"""Accuracy of the prediction on scripted runs with known per-epoch energy.

Four kinds of 100-epoch run (constant, noisy, a slow first epoch, a trend), each predicted
after 1, 2 and 5 epochs: the error of the predicted total energy against the true total (mean
absolute error over many seeded runs), and how often the prediction interval held the truth.
Then the coverage of the interval at several levels over many noisy runs, which should match
the level. Pure arithmetic on epoch records (no hardware), seeded, deterministic.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable

from carbontrack.model import EpochRecord
from carbontrack.predict import predict

EPOCHS = 100
MEAN_J = 1000.0
RUNS = 400
COVERAGE_RUNS = 4000
AFTER = (1, 2, 5)

Script = Callable[[random.Random], list[float]]


def constant(_rng: random.Random) -> list[float]:
    return [MEAN_J] * EPOCHS


def noisy(rng: random.Random) -> list[float]:
    # Independent epochs, 10 % standard deviation (data loading, shared nodes).
    return [max(rng.gauss(MEAN_J, 0.1 * MEAN_J), 0.0) for _ in range(EPOCHS)]


def slow_warmup(rng: random.Random) -> list[float]:
    # The first epoch costs 3x (compilation, cache warm-up), then 5 % noise.
    energies = [max(rng.gauss(MEAN_J, 0.05 * MEAN_J), 0.0) for _ in range(EPOCHS)]
    energies[0] *= 3.0
    return energies


def trend(rng: random.Random) -> list[float]:
    # Each epoch 0.5 % dearer than the last (growing curriculum), 5 % noise.
    return [max(rng.gauss(MEAN_J * 1.005**i, 0.05 * MEAN_J), 0.0) for i in range(EPOCHS)]


def records(energies: list[float]) -> list[EpochRecord]:
    return [EpochRecord(i + 1, 60.0 * i, 60.0, e, 0.0) for i, e in enumerate(energies)]


def accuracy(script: Script, after: int, warmup: int, runs: int) -> tuple[float, float, str]:
    """Mean absolute error %, mean signed error %, and interval coverage of ``runs`` runs."""
    rng = random.Random(f"{script.__name__}-{after}-{warmup}")
    errors, hits, with_interval = [], 0, 0
    for _ in range(runs):
        energies = script(rng)
        truth = sum(energies)
        recs = records(energies)
        if after <= warmup:
            return float("nan"), float("nan"), "n/a"
        p = predict(recs[:after], total_epochs=EPOCHS, g_per_kwh=1.0, pue=1.0, warmup_epochs=warmup)
        errors.append((p.energy_j - truth) / truth * 100)
        if p.energy_j_low is not None and p.energy_j_high is not None:
            with_interval += 1
            hits += p.energy_j_low <= truth <= p.energy_j_high
    coverage = f"{hits / with_interval:.1%}" if with_interval else "none"
    return statistics.fmean(abs(e) for e in errors), statistics.fmean(errors), coverage


def main() -> None:
    started = time.perf_counter()
    print(f"prediction error of total energy, {EPOCHS}-epoch runs ({RUNS} seeded runs each)")
    print(f"{'run':<22} {'after':>5} {'mean |err|':>11} {'mean err':>9} {'95% covers':>11}")
    cases: list[tuple[str, Script, int]] = [
        ("constant", constant, 0),
        ("noisy (10 % sd)", noisy, 0),
        ("slow warm-up", slow_warmup, 0),
        ("slow warm-up, skip 1", slow_warmup, 1),
        ("trend (+0.5 %/epoch)", trend, 0),
    ]
    for name, script, warmup in cases:
        for after in AFTER:
            runs = 1 if script is constant else RUNS
            mae, bias, coverage = accuracy(script, after, warmup, runs)
            if coverage == "n/a":
                print(f"{name:<22} {after:>5} {'(all warm-up: no prediction)':>33}")
                continue
            print(f"{name:<22} {after:>5} {mae:>10.2f}% {bias:>+8.2f}% {coverage:>11}")

    print()
    print(f"interval coverage over {COVERAGE_RUNS} noisy runs (10 % sd), nominal vs actual")
    print(f"{'level':>6} " + " ".join(f"{'n=' + str(n):>7}" for n in (2, 3, 5, 10, 20)))
    for level in (0.8, 0.95, 0.99):
        row = []
        for n in (2, 3, 5, 10, 20):
            rng = random.Random(f"coverage-{level}-{n}")
            hits = 0
            for _ in range(COVERAGE_RUNS):
                energies = noisy(rng)
                p = predict(
                    records(energies[:n]), total_epochs=EPOCHS, g_per_kwh=1.0, pue=1.0, level=level
                )
                assert p.energy_j_low is not None
                assert p.energy_j_high is not None
                hits += p.energy_j_low <= sum(energies) <= p.energy_j_high
            row.append(f"{hits / COVERAGE_RUNS:>7.1%}")
        print(f"{level:>6.0%} " + " ".join(row))
    print(f"\n(took {time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
