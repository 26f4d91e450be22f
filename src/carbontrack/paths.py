"""Where carbontrack writes: one function per place, resolved at call time, created on write."""

from __future__ import annotations

import time
from pathlib import Path

from carbontrack import _files
from carbontrack.settings import Settings

__all__ = ["carbontrack_home", "log_dir", "run_log_path"]

HOME_ENV = "CARBONTRACK_HOME"


def carbontrack_home() -> Path:
    """``$CARBONTRACK_HOME`` if set, else the platform's user data directory for carbontrack."""
    return _files.carbontrack_home()


def log_dir(settings: Settings) -> Path:
    """The directory for run logs: the ``log_dir`` option, else ``<home>/logs``."""
    return settings.log_dir if settings.log_dir is not None else carbontrack_home() / "logs"


def run_log_path(settings: Settings, run_id: str, started_at: float) -> Path:
    """The run log of one run: ``<log_dir>/<prefix>carbontrack-<UTC time>-<run id>.jsonl``."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started_at))
    return log_dir(settings) / f"{settings.log_file_prefix}carbontrack-{stamp}-{run_id}.jsonl"
