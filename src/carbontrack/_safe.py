"""The isolation boundary inside carbontrack itself: log a failure, never raise it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("carbontrack")


def safe(fn: Callable[[], Any], what: str) -> Any:
    """Run ``fn``; on ``Exception`` log ``what`` failed (with traceback) and return None."""
    try:
        return fn()
    except Exception:
        logger.warning("carbontrack: %s failed; measurement goes on", what, exc_info=True)
        return None
