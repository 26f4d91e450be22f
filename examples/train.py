"""A small, dependency-free training loop: logistic regression by SGD on synthetic data.

Run it under carbontrack to measure it:  carbontrack run -- python examples/train.py
It needs no GPU and no readable energy counters (carbontrack then estimates, and says so).
Set EPOCHS / SAMPLES in the environment to make it longer or shorter.
"""

from __future__ import annotations

import math
import os
import random


def make_data(n: int, dim: int, rng: random.Random) -> list[tuple[list[float], int]]:
    """Points around two centres, labelled by which centre they came from."""
    data = []
    for _ in range(n):
        label = rng.random() < 0.5
        centre = 1.0 if label else -1.0
        data.append(([centre + rng.gauss(0, 1.5) for _ in range(dim)], int(label)))
    return data


def train_one_epoch(w: list[float], data: list[tuple[list[float], int]], lr: float) -> float:
    """One pass of SGD; returns the mean log-loss."""
    total = 0.0
    for x, y in data:
        z = sum(wi * xi for wi, xi in zip(w, x, strict=True))
        p = 1.0 / (1.0 + math.exp(-max(min(z, 30.0), -30.0)))
        total -= math.log(p if y else 1.0 - p)
        g = p - y
        for i, xi in enumerate(x):
            w[i] -= lr * g * xi
    return total / len(data)


def main() -> None:
    epochs = int(os.environ.get("EPOCHS", "5"))
    samples = int(os.environ.get("SAMPLES", "20000"))
    rng = random.Random(0)
    data = make_data(samples, dim=16, rng=rng)
    w = [0.0] * 16
    for epoch in range(1, epochs + 1):
        rng.shuffle(data)
        loss = train_one_epoch(w, data, lr=0.01)
        print(f"epoch {epoch}/{epochs}: loss {loss:.4f}", flush=True)


if __name__ == "__main__":
    main()
