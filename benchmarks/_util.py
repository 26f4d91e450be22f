"""Small helpers shared by the benchmarks (medians, RSS)."""

from __future__ import annotations

import statistics
from pathlib import Path


def median(values: list[float]) -> float:
    """The median of ``values``."""
    return statistics.median(values)


def rss_bytes() -> int:
    """Resident set size of this process now (Linux /proc), in bytes."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    import os

    return pages * os.sysconf("SC_PAGE_SIZE")
