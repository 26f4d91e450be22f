"""`carbontrack report` over 100 MB of binary garbage next to a good run log (issue 21).

Run: ``python benchmarks/bench_report_garbage.py``. Prints the time, the peak traced memory and
the number of warning lines (old code: 811,807 warning lines for 100 MB).
"""

from __future__ import annotations

import argparse
import io
import os
import random
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(size_mb: int = 100) -> None:
    from carbontrack.cli._report import configure_parser, run

    folder = Path(tempfile.mkdtemp(prefix="ct-bench-report-"))
    (folder / "carbontrack-garbage.jsonl").write_bytes(random.Random(21).randbytes(size_mb * 2**20))
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    out, err = io.StringIO(), io.StringIO()
    tracemalloc.start()
    started = time.perf_counter()
    code = run(parser.parse_args([str(folder)]), out=out, err=err)
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    lines = err.getvalue().splitlines()
    print(
        f"report over {size_mb} MB of garbage: exit {code}, {elapsed:.1f} s, peak traced memory "
        f"{peak / 2**20:.1f} MiB, {len(lines)} warning line(s)"
    )
    print("  " + (lines[0][:300] if lines else ""))


if __name__ == "__main__":
    os.environ.setdefault("CARBONTRACK_HOME", tempfile.mkdtemp(prefix="ct-bench-home-"))
    main()
