"""The command line: a thin argparse layer over the public API.

The only place in carbontrack that configures logging or installs signal handlers (for the child
it runs).
"""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
from collections.abc import Sequence
from types import FrameType
from typing import Any

from carbontrack._version import __version__

__all__ = ["main"]

EPILOG_RUN = """examples:
  carbontrack run -- python train.py --epochs 10
  carbontrack run --components gpu --location DK -- python train.py
  carbontrack run --log-dir runs/ --json report.json -- ./train.sh
"""


def _add_tracking_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--interval", type=float, metavar="S", help="seconds between reads (default 1)")
    p.add_argument(
        "--components", metavar="LIST", help="'all' (default), or a comma list of cpu,gpu,ane,ram"
    )
    p.add_argument("--location", metavar="CODE", help="country or zone, e.g. DK or US-CAL-CISO")
    p.add_argument("--pue", type=float, help="power usage effectiveness of the site (default 1.0)")
    p.add_argument("--log-dir", metavar="DIR", help="where the run log goes")
    p.add_argument("--epochs", type=int, help="planned epochs (for predictions)")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary on stderr")
    p.add_argument("-v", "--verbose", action="store_true", help="say more while measuring")


def _options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for name, key in (
        ("interval", "interval_s"),
        ("components", "components"),
        ("location", "location"),
        ("pue", "pue"),
        ("log_dir", "log_dir"),
        ("epochs", "epochs"),
    ):
        value = getattr(args, name)
        if value is not None:
            options[key] = value
    options["verbose"] = 0 if args.quiet else (2 if args.verbose else 1)
    return options


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``carbontrack``."""
    parser = argparse.ArgumentParser(
        prog="carbontrack",
        description="Measure the energy and CO2eq of code, and predict it for training runs.",
    )
    parser.add_argument("--version", action="version", version=f"carbontrack {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser(
        "run",
        help="run a command and measure it",
        description="Run CMD as a child process and measure the machine while it runs.",
        epilog=EPILOG_RUN,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_tracking_options(run)
    run.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")
    return parser


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import attrs

    from carbontrack import Tracker, track

    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        parser.error("run: no command given; usage: carbontrack run [options] -- CMD [ARGS...]")
    options = _options(args)
    try:
        factory = track(**options)
    except (ValueError, TypeError) as exc:
        parser.error(f"run: {exc}")
    try:
        child = subprocess.Popen(cmd)
    except FileNotFoundError:
        print(f"carbontrack: command not found: {cmd[0]}", file=sys.stderr)
        return 127
    except PermissionError:
        print(f"carbontrack: permission denied (not executable?): {cmd[0]}", file=sys.stderr)
        return 126

    def forward(signum: int, _frame: FrameType | None) -> None:
        # The child decides what a signal means; we keep measuring until it exits.
        child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    tracker = None
    try:
        tracker = Tracker(attrs.evolve(factory.settings, pid=child.pid))
        try:
            tracker.start()
        except Exception as exc:  # measuring must never change what the child does
            print(f"carbontrack: cannot measure: {exc}", file=sys.stderr)
            tracker = None
        returncode = child.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if tracker is not None and tracker.running:
            try:
                tracker.stop()
            except Exception as exc:
                logging.getLogger(__name__).warning("carbontrack: report failed: %s", exc)
    return 128 + -returncode if returncode < 0 else returncode


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``carbontrack`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    if args.command == "run":
        return _run(args, parser)
    parser.print_help()
    return 0 if argv is None and len(sys.argv) <= 1 else 2
