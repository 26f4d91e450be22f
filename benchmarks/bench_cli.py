"""What ``carbontrack run`` costs: start-up, time added around a command, CPU while measuring.

Runs the real console script on this machine with its real backends (whatever ``carbontrack
devices`` lists here), so the figures include device discovery. Takes about 30 s.

    python benchmarks/bench_cli.py [--repeat 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCRIPT = Path(sys.executable).with_name("carbontrack")
CARBONTRACK = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "carbontrack"]


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, children included) of one run of argv."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{argv} failed with exit code {proc.returncode}")
    return time.perf_counter() - t0, usage.ru_utime + usage.ru_stime


def medians_ms(argv: list[str], env: dict[str, str], repeat: int) -> tuple[float, float]:
    timed(argv, env)  # warm the file cache and the bytecode cache
    runs = [timed(argv, env) for _ in range(repeat)]
    return (
        statistics.median(w for w, _ in runs) * 1000,
        statistics.median(c for _, c in runs) * 1000,
    )


def cpu_while_measuring(seconds: float, env: dict[str, str]) -> tuple[float, float]:
    """carbontrack's own CPU seconds per second of a run of `sleep` (which uses none)."""
    proc = subprocess.Popen(
        [*CARBONTRACK, "run", "-q", "--no-log", "--", "sleep", str(seconds)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _pid, _status, usage = os.wait4(proc.pid, 0)
    proc.returncode = 0
    cpu = usage.ru_utime + usage.ru_stime
    return cpu, cpu / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the CPU run")
    args = parser.parse_args()
    env = dict(os.environ, CARBONTRACK_HOME=tempfile.mkdtemp(prefix="carbontrack-bench-"))

    devices = subprocess.run(
        [*CARBONTRACK, "devices", "--json", "--window", "0.1"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    used = [
        f"{b['name']}:{d['id']}[{d['method']}]"
        for b in json.loads(devices.stdout)["backends"]
        for d in b["devices"]
        if d["used"]
    ]
    print(f"python {sys.version.split()[0]}, devices here: {', '.join(used) or 'none'}")

    # As installed by pip: bytecode cached (kept out of the source tree).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = tempfile.mkdtemp(prefix="carbontrack-bench-pycache-")
    rows = [
        ("carbontrack --version", [*CARBONTRACK, "--version"]),
        ("true", ["true"]),
        (
            "carbontrack run -q --no-log -- true",
            [*CARBONTRACK, "run", "-q", "--no-log", "--", "true"],
        ),
    ]
    results = {}
    print(f"{'command':<38} {'wall ms':>8} {'CPU ms':>8}   (medians of {args.repeat})")
    for label, argv in rows:
        results[label] = medians_ms(argv, env, args.repeat)
        print(f"{label:<38} {results[label][0]:8.1f} {results[label][1]:8.1f}")
    added = [a - b for a, b in zip(results[rows[2][0]], results["true"], strict=True)]
    print(f"{'added around a command':<38} {added[0]:8.1f} {added[1]:8.1f}")
    cpu, _per_s = cpu_while_measuring(args.seconds, env)
    steady = (cpu - results[rows[2][0]][1] / 1000) / args.seconds
    print(
        f"CPU of carbontrack over a {args.seconds:g} s run of sleep: {cpu * 1000:.0f} ms; "
        f"without start-up and stop: {steady * 100:.2f} % of one core"
    )


if __name__ == "__main__":
    main()
