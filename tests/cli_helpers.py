"""Helpers for the command-line tests: run the real console script in a subprocess."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
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


def default_signals() -> None:
    """``preexec_fn`` for a carbontrack that a test signals: the signals' default actions.

    A test runner started in the background by a script (``pytest &``: SIGINT and SIGQUIT
    ignored, POSIX "Asynchronous Lists") or under ``nohup`` (SIGHUP ignored) passes the ignored
    signals on to every child, and carbontrack rightly leaves an ignored signal ignored: the
    command never got the test's SIGINT (seen in a ``nohup pytest &`` run).
    """
    for s in (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(s, signal.SIG_DFL)


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


def run_in_terminal(
    args: list[str],
    env: dict[str, str],
    *,
    columns: int = 80,
    rows: int = 12,
    term: str = "xterm",
    timeout: float = TIMEOUT,
) -> tuple[int, bytes]:
    """Run ``carbontrack ARGS`` with stdout and stderr on one pseudo-terminal of the given size
    (as in an interactive shell); return the exit code and every byte the terminal received."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    proc = subprocess.Popen(
        [*CARBONTRACK, *args],
        env={**env, "TERM": term},
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    try:
        out = read_terminal(master, proc, timeout=timeout)
    finally:
        os.close(master)
    return proc.wait(timeout=timeout), out


def read_terminal(
    master: int,
    proc: subprocess.Popen[Any],
    *,
    until: tuple[bytes, ...] = (),
    timeout: float = TIMEOUT,
) -> bytes:
    """What the terminal whose master end is ``master`` receives: up to the first of ``until``
    when given, else until every writer is gone or ``proc`` has ended with nothing left to
    read; ``timeout`` seconds at most."""
    import select
    import time

    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not any(marker in out for marker in until):
        if select.select([master], [], [], 0.1)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer of the terminal is gone
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    return out


def start_on_terminal(
    argv: list[str], env: dict[str, str], *, reset_signals: bool = True
) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``argv`` in a session of its own with stdin, stdout and stderr on a new
    pseudo-terminal; return the process and the terminal's master end (the caller closes it).
    ``reset_signals`` gives the child default dispositions (``default_signals``)."""
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen(
        argv,
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        preexec_fn=default_signals if reset_signals else None,
    )
    os.close(slave)
    return proc, master


def screen_lines(output: bytes, *, columns: int = 80, rows: int = 12) -> list[str]:
    """What a VT100 terminal of that size shows after ``output``: the scrollback, then the
    screen, one string per row (trailing blanks removed)."""
    import pyte

    screen = pyte.HistoryScreen(columns, rows, history=10_000)
    stream = pyte.ByteStream(screen)
    stream.feed(output)
    history = [
        "".join(line[x].data for x in range(columns)).rstrip() for line in screen.history.top
    ]
    return history + [line.rstrip() for line in screen.display]
