"""How much ``import carbontrack`` adds to a bare interpreter start (median of N, alternating).

Target: at most 50 ms. Also checks that heavy modules are not imported.
"""

from __future__ import annotations

import subprocess
import sys
import time

from _util import median

RUNS = 10


def _time(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


def main() -> None:
    bare, imported, api = [], [], []
    for _ in range(RUNS):
        bare.append(_time("pass"))
        imported.append(_time("import carbontrack"))
        api.append(_time("from carbontrack import track"))
    added_ms = (median(imported) - median(bare)) * 1000
    api_ms = (median(api) - median(bare)) * 1000
    heavy = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, carbontrack; print(sorted(m for m in ('pynvml', 'subprocess', "
            "'urllib.request', 'http.client', 'plistlib') if m in sys.modules))",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    print(f"bare interpreter start:       median {median(bare) * 1000:7.1f} ms over {RUNS}")
    print(f"with import carbontrack:      median {median(imported) * 1000:7.1f} ms over {RUNS}")
    print(f"added by import carbontrack:  {added_ms:7.1f} ms (target <= 50 ms)")
    print(f"added by from carbontrack import track: {api_ms:7.1f} ms (attrs, logging, values)")
    print(f"heavy modules imported:       {heavy}")


if __name__ == "__main__":
    main()
