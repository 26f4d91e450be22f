"""Whole-process cost of carbontrack against the floor of its own dependencies.

Three figures, each a difference of medians measured interleaved in one run (bytecode cached):

1. ``from carbontrack import track; with track(verbose=0, write_log=False): pass`` as a script,
   against ``import pluggy, attrs, logging, platformdirs`` (target: at most 30 ms more);
2. ``carbontrack run -- python -c pass`` against ``python -c pass`` (target: at most 150 ms more);
3. the peak RSS of the first process of (1) and (2) (target: at most 25 MiB).

Usage: ``python benchmarks/bench_startup.py [RUNS]`` (default 11). Peak RSS comes from
``os.wait4`` (the kernel's ``ru_maxrss`` of the child), so no external tool is needed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _util import median

TRACK_SCRIPT = "from carbontrack import track\nwith track(verbose=0, write_log=False):\n    pass\n"
FLOOR_CODE = "import pluggy, attrs, logging, platformdirs"


def _run(argv: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (user + system, children included) and peak RSS (bytes)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{argv} exited {proc.returncode}")
    cpu = usage.ru_utime + usage.ru_stime
    return elapsed, cpu, usage.ru_maxrss * 1024  # ru_maxrss is in KiB on Linux


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 11
    carbontrack = shutil.which("carbontrack", path=str(Path(sys.executable).parent))
    if carbontrack is None:
        raise SystemExit("the carbontrack console script is not installed beside this python")
    with tempfile.TemporaryDirectory() as home:
        script = Path(home) / "track_pass.py"
        script.write_text(TRACK_SCRIPT)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CARBONTRACK_")}
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # the figures are for cached bytecode
        env["CARBONTRACK_HOME"] = home
        cases = {
            "floor": [sys.executable, "-c", FLOOR_CODE],
            "track": [sys.executable, str(script)],
            "bare": [sys.executable, "-c", "pass"],
            "run": [carbontrack, "run", "-q", "--no-log", "--", sys.executable, "-c", "pass"],
        }
        for argv in cases.values():  # warm-up: writes bytecode, fills the page cache
            _run(argv, env)
        times: dict[str, list[float]] = {name: [] for name in cases}
        cpus: dict[str, list[float]] = {name: [] for name in cases}
        rss: dict[str, list[int]] = {name: [] for name in cases}
        for _ in range(runs):
            for name, argv in cases.items():  # interleaved, so drift hits every case alike
                elapsed, cpu, peak = _run(argv, env)
                times[name].append(elapsed)
                cpus[name].append(cpu)
                rss[name].append(peak)
    ms = {name: median(values) * 1000 for name, values in times.items()}
    cpu_ms = {name: median(values) * 1000 for name, values in cpus.items()}
    mib = {name: median([float(v) for v in values]) / 2**20 for name, values in rss.items()}
    print(f"medians of {runs} interleaved runs, bytecode cached, python {sys.version.split()[0]}")
    for name, argv in cases.items():
        shown = " ".join(Path(a).name if i == 0 else a for i, a in enumerate(argv))
        print(
            f"  {name:5s} wall {ms[name]:7.1f} ms  CPU {cpu_ms[name]:7.1f} ms  "
            f"peak RSS {mib[name]:5.1f} MiB  {shown!r}"
        )
    track_added = ms["track"] - ms["floor"]
    run_added = ms["run"] - ms["bare"]
    track_cpu = cpu_ms["track"] - cpu_ms["floor"]
    run_cpu = cpu_ms["run"] - cpu_ms["bare"]
    # Wall time is the target; CPU time is steadier where other jobs share the machine.
    print(
        f"track() script over the dependency floor: wall {track_added:6.1f} ms, "
        f"CPU {track_cpu:6.1f} ms (target <= 30 ms)"
    )
    print(
        f"carbontrack run over the bare command:    wall {run_added:6.1f} ms, "
        f"CPU {run_cpu:6.1f} ms (target <= 150 ms)"
    )
    print(
        f"peak RSS of the first process: track {mib['track']:.1f} MiB, "
        f"run {mib['run']:.1f} MiB (target <= 25 MiB)"
    )


if __name__ == "__main__":
    main()
