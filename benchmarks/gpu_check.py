"""Check carbontrack's GPU figures against the GPU itself, on a machine with a real NVIDIA GPU.

Runs a known load on one GPU (a loop of float16 matrix products with torch when torch sees
CUDA; otherwise the GPU is left idle and the table says so) for ``--seconds``, and measures the
same window five ways:

* NVML's energy counter (``nvmlDeviceGetTotalEnergyConsumption``): the reference;
* carbontrack's ``track()`` (the counter, read at the edges by the sampler);
* the driver's power sample buffer (``nvmlDeviceGetSamples``) as carbontrack reads it for
  power-only GPUs (``carbontrack.backends.nvml._PowerBuffer``, read every ``--interval``);
* ``nvmlDeviceGetPowerUsage`` polled every 0.1 s and every 1 s (trapezoid rule): on Ampere and
  newer (except GA100) that reading is a 1 s average;
* ``nvidia-smi --query-gpu=power.draw --format=csv`` polled every 1 s (trapezoid rule).

Prints a Markdown table (energy, mean power, difference from the counter) and writes it to
``--out``. Exits 2 when there is no NVIDIA GPU. Nothing here runs in the test suite.

    python benchmarks/gpu_check.py --seconds 30 --gpu 0 --out gpu_check.md
"""

from __future__ import annotations

import argparse
import itertools
import math
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _trapezoid(points: list[tuple[float, float]], t0: float, t1: float) -> float:
    """Energy (J) of (time s, power W) points over [t0, t1], holding the ends flat."""
    inside = [(t, w) for t, w in points if t0 <= t <= t1]
    if not inside:
        return float("nan")
    inside = [(t0, inside[0][1]), *inside, (t1, inside[-1][1])]
    return sum((w0 + w1) / 2 * (b - a) for (a, w0), (b, w1) in itertools.pairwise(inside))


class Poller(threading.Thread):
    """Calls ``read()`` every ``period_s`` and keeps (monotonic time, watts)."""

    def __init__(self, name: str, period_s: float, read: Callable[[], float]) -> None:
        super().__init__(name=name, daemon=True)
        self.period_s = period_s
        self.read = read
        self.points: list[tuple[float, float]] = []
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        next_t = time.monotonic()
        while not self.stop.is_set():
            try:
                watts = self.read()
                self.points.append((time.monotonic(), watts))
            except Exception as exc:  # a benchmark: note it and go on
                if len(self.errors) < 3:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
            next_t += self.period_s
            self.stop.wait(max(0.0, next_t - time.monotonic()))


def _smi_reader(index: int) -> Callable[[], float] | None:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    argv = [smi, f"--id={index}", "--query-gpu=power.draw", "--format=csv,noheader,nounits"]

    def read() -> float:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=5, check=True).stdout
        return float(out.strip().splitlines()[0])

    return read


def _load(seconds: float, index: int) -> tuple[Callable[[threading.Event], None], str]:
    """A function that loads the GPU until the event is set, and what it does."""
    try:
        import torch
    except ImportError:
        torch = None
    if torch is None or not torch.cuda.is_available():
        return (lambda done: done.wait()), "idle (torch with CUDA is not importable)"
    device = torch.device(f"cuda:{index}")
    a = torch.randn(8192, 8192, device=device, dtype=torch.float16)
    b = torch.randn(8192, 8192, device=device, dtype=torch.float16)

    def run(done: threading.Event) -> None:
        while not done.is_set():
            for _ in range(10):
                torch.matmul(a, b)
            torch.cuda.synchronize(device)

    return run, "torch float16 matmul 8192x8192, back to back"


def main(argv: list[str] | None = None) -> int:  # noqa: PLR0915 (one straight script)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the window")
    parser.add_argument("--gpu", type=int, default=0, help="NVML index of the GPU")
    parser.add_argument("--interval", type=float, default=1.0, help="carbontrack's interval_s")
    parser.add_argument("--out", type=Path, default=Path("gpu_check.md"), help="table file")
    args = parser.parse_args(argv)

    try:
        import pynvml
    except ImportError:
        print("nvidia-ml-py is not installed: pip install nvidia-ml-py", file=sys.stderr)
        return 2
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        print(f"no NVIDIA GPU here (nvmlInit: {exc})", file=sys.stderr)
        return 2

    from carbontrack import track
    from carbontrack.backends import nvml as backend

    handle: Any = pynvml.nvmlDeviceGetHandleByIndex(args.gpu)
    name = pynvml.nvmlDeviceGetName(handle)
    uuid = pynvml.nvmlDeviceGetUUID(handle)
    driver = pynvml.nvmlSystemGetDriverVersion()
    load, what = _load(args.seconds, args.gpu)

    def nvml_w() -> float:
        return float(pynvml.nvmlDeviceGetPowerUsage(handle)) / 1000.0

    pollers = [Poller("nvml-0.1s", 0.1, nvml_w), Poller("nvml-1s", 1.0, nvml_w)]
    smi = _smi_reader(args.gpu)
    if smi is not None:
        pollers.append(Poller("nvidia-smi-1s", 1.0, smi))
    buffer = backend._PowerBuffer()
    buffer_note = ""
    try:
        buffer.update(pynvml, handle)  # its zero: now
    except pynvml.NVMLError as exc:
        buffer_note = f"not available: {exc}"

    done = threading.Event()
    worker = threading.Thread(target=load, args=(done,), daemon=True)
    for p in pollers:
        p.start()
    worker.start()
    time.sleep(2.0)  # let the load settle before the window opens

    buffer_j0 = 0.0 if buffer_note else buffer.update(pynvml, handle)
    counter_j0 = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1000.0
    t0 = time.monotonic()
    with track(
        components="gpu",
        gpu_ids=[uuid],
        interval_s=args.interval,
        write_log=False,
        verbose=0,
        location="DK",
    ) as run:
        end = t0 + args.seconds
        while time.monotonic() < end:
            time.sleep(min(args.interval, max(0.0, end - time.monotonic())))
            if not buffer_note:
                buffer.update(pynvml, handle)
    t1 = time.monotonic()
    counter_j1 = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1000.0
    buffer_j1 = 0.0 if buffer_note else buffer.update(pynvml, handle)
    done.set()
    for p in pollers:
        p.stop.set()
    worker.join(5.0)
    pynvml.nvmlShutdown()

    span = t1 - t0
    reference = counter_j1 - counter_j0
    report = run.report
    rows: list[tuple[str, float, str]] = [
        ("NVML energy counter (reference)", reference, ""),
        ("carbontrack track() (counter at the edges)", report.energy_j if report else 0.0, ""),
    ]
    if buffer_note:
        rows.append(("driver power sample buffer (carbontrack, power-only path)", 0.0, buffer_note))
    else:
        rows.append(
            (
                "driver power sample buffer (carbontrack, power-only path)",
                buffer_j1 - buffer_j0,
                f"{buffer.samples} samples",
            )
        )
    for p in pollers:
        label = {
            "nvml-0.1s": "nvmlDeviceGetPowerUsage every 0.1 s",
            "nvml-1s": "nvmlDeviceGetPowerUsage every 1 s",
            "nvidia-smi-1s": "nvidia-smi power.draw every 1 s",
        }[p.name]
        rows.append((label, _trapezoid(p.points, t0, t1), "; ".join(p.errors)))
    if smi is None:
        rows.append(("nvidia-smi power.draw every 1 s", float("nan"), "nvidia-smi not found"))

    lines = [
        f"GPU {args.gpu}: {name} ({uuid}), driver {driver}; load: {what}; window {span:.1f} s",
        "",
        "| method | energy (J) | mean power (W) | vs counter | note |",
        "|---|---:|---:|---:|---|",
    ]
    for label, joules, note in rows:
        diff = (joules / reference - 1) * 100 if reference > 0 and not math.isnan(joules) else None
        diff_text = f"{diff:+.2f} %" if diff is not None else "n/a"
        lines.append(f"| {label} | {joules:.1f} | {joules / span:.1f} | {diff_text} | {note} |")
    table = "\n".join(lines)
    print(table)
    args.out.write_text(table + "\n")
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
