"""Helpers for the command-line tests: run the real console script in a subprocess."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from importlib import metadata
from pathlib import Path
from typing import Any

from carbontrack.testing.distribution import write_plugin_distribution

# Every subprocess imports carbontrack afresh: cache its bytecode (outside the source tree) even
# where PYTHONDONTWRITEBYTECODE is set, which makes each start twice as fast.
PYCACHE = Path(tempfile.mkdtemp(prefix="carbontrack-cli-pycache-"))
atexit.register(shutil.rmtree, PYCACHE, ignore_errors=True)

SCRIPT = Path(sys.executable).with_name("carbontrack")
CARBONTRACK = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "carbontrack"]
WATTS = 25.0
TIMEOUT = 30


def cli_env(
    tmp_path: Path, *, plugin_source: str | None = None, plugin: bool = True
) -> dict[str, str]:
    """The environment of a carbontrack subprocess: the test's isolation, plus the fake plugin.

    Every other installed entry-point plugin is blocked so that no real hardware is read.
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    if not plugin:
        return env
    root = write_plugin_distribution(tmp_path / "site", watts=WATTS, source=plugin_source)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    env.pop("CARBONTRACK_DISABLE_PLUGIN_AUTOLOAD", None)
    others = {ep.name for ep in metadata.entry_points(group="carbontrack")} - {"fakecpu"}
    blocked = {*env.get("CARBONTRACK_DISABLE_PLUGINS", "").split(","), *others} - {""}
    env["CARBONTRACK_DISABLE_PLUGINS"] = ",".join(sorted(blocked))
    return env


def carbontrack(*args: str, env: dict[str, str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CARBONTRACK, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        **kwargs,
    )


def py(code: str) -> list[str]:
    """A child command: this Python running ``code``."""
    return [sys.executable, "-c", textwrap.dedent(code)]
