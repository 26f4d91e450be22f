"""The command line: a thin argparse layer over the public API.

The only place in carbontrack that configures logging or installs signal handlers (for the child
it runs). Commands: ``run``, ``devices``, ``plugins``, ``report``, ``intensity``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from carbontrack._version import __version__

__all__ = ["COMMANDS", "build_parser", "configure_logging", "main"]

DESCRIPTION = """\
Measure the energy and CO2eq of code, and predict it for training runs.

examples:
  carbontrack run -- python train.py        measure a command (options after -- are its own)
  carbontrack devices                       what can be measured here, and how to fix the rest
  carbontrack plugins                       installed plugins, their versions and hooks
  carbontrack intensity --location DK       the carbon intensity a run would use now
  carbontrack report                        summarise run logs

`carbontrack COMMAND --help` shows each command's options and more examples.
"""

EPILOG_REPORT = """\
examples:
  carbontrack report                          # the runs in carbontrack's log directory
  carbontrack report runs/ old/carbontracker/ # our *.jsonl logs and carbontracker's logs
  carbontrack report --format csv > runs.csv  # one row per run, for a spreadsheet
  carbontrack report --json | jq .total
"""

EPILOG_INTENSITY = """\
examples:
  carbontrack intensity
  carbontrack intensity --location DK
"""

#: Every command, in the order ``--help`` lists them: ``(command, module, help, epilog)``. Each
#: module has ``configure_parser(p)`` and ``run(args)``; ``epilog`` None means the module's
#: ``EPILOG``. ``run`` is dispatched by ``_main`` itself (its ``run`` also takes the parser).
_COMMANDS = (
    (
        "run",
        "carbontrack.cli._run",
        "run a command and measure the machine while it runs",
        None,
    ),
    (
        "devices",
        "carbontrack.cli._devices",
        "list what can be measured here, the power read now, and how to fix the rest",
        None,
    ),
    (
        "plugins",
        "carbontrack.cli._plugins",
        "list installed plugins with their distributions, versions and hooks",
        None,
    ),
    (
        "report",
        "carbontrack.cli._report_view",
        "summarise run logs: energy, CO2eq, predictions",
        EPILOG_REPORT,
    ),
    (
        "intensity",
        "carbontrack.cli._intensity",
        "the carbon intensity a run would use now: value, source, basis, forecast",
        EPILOG_INTENSITY,
    ),
)

_Handler = Callable[[argparse.Namespace], int]


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_mutually_exclusive_group()
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="say more (-v: what is measured, -vv: debug log with tracebacks)",
    )
    group.add_argument("-q", "--quiet", action="store_true", help="only errors on stderr")
    return common


def _sub(
    sub: Any, name: str, *, help: str, epilog: str, common: argparse.ArgumentParser
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help,
        description=help[0].upper() + help[1:] + ".",
        epilog=epilog,
        parents=[common],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # So that an unknown option is reported with this command's usage line, not the program's.
    parser.set_defaults(command_parser=parser)
    return parser


#: Every command's name.
COMMANDS = tuple(entry[0] for entry in _COMMANDS)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser of ``carbontrack``; with ``only``, of that command alone.

    A command's own parser is the same either way; building just the one that runs spares
    ``carbontrack run`` importing every other command's module at each start.
    """
    parser = argparse.ArgumentParser(
        prog="carbontrack",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"carbontrack {__version__}")
    common = _common()
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    for name, module_name, help_text, epilog in _COMMANDS:
        if only not in (None, name):
            continue
        module = importlib.import_module(module_name)
        p = _sub(
            sub,
            name,
            help=help_text,
            epilog=module.EPILOG if epilog is None else epilog,
            common=common,
        )
        module.configure_parser(p)
        if name == "run":
            p.usage = "carbontrack run [options] -- CMD [ARGS...]"
        else:
            p.set_defaults(handler=module.run)
    return parser


# -- logging -----------------------------------------------------------------------------------


class _Formatter(logging.Formatter):
    """``carbontrack: message``; tracebacks only when debugging (-vv), never at default level."""

    def __init__(self, tracebacks: bool) -> None:
        super().__init__("%(message)s")
        self._tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        if not self._tracebacks and (record.exc_info or record.exc_text):
            record = logging.makeLogRecord(record.__dict__)
            record.exc_info = None
            record.exc_text = None
        text = super().format(record)
        return text if text.startswith("carbontrack") else f"carbontrack: {text}"


def configure_logging(verbosity: int, stream: Any = None) -> None:
    """Send log records to stderr: errors only (0), warnings (1), info (2), debug (3)."""
    level = {0: logging.ERROR, 1: logging.WARNING, 2: logging.INFO}.get(verbosity, logging.DEBUG)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(_Formatter(tracebacks=verbosity >= 3))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


# -- entry point -------------------------------------------------------------------------------


def _prepare_argv(argv: Sequence[str]) -> tuple[list[str], list[str] | None]:
    """Take the command of ``run`` off at the first ``--``, before argparse sees it."""
    from carbontrack.cli._run import split_command

    argv = list(argv)
    if argv and argv[0] == "run":
        return split_command(argv)
    return argv, None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``carbontrack`` console script; returns the exit code."""
    try:
        code = _main(argv)
        sys.stdout.flush()  # here, so that a reader gone away is caught below, not at exit
    except BrokenPipeError:
        # `carbontrack plugins | head -1`: the reader has what it wanted. End quietly with
        # the code a shell tool killed by SIGPIPE gives, and let nothing flush to the pipe again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 128 + signal.SIGPIPE
    return code


def _main(argv: Sequence[str] | None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    if raw == ["--version"]:  # answered before the parser imports every command's module
        print(f"carbontrack {__version__}")
        return 0
    own, child = _prepare_argv(raw)
    # The first word names the command (the program itself takes no option but --version):
    # build that command's parser only. Anything else gets the whole parser and its errors.
    parser = build_parser(own[0] if own and own[0] in COMMANDS else None)
    args, unknown = parser.parse_known_args(own)
    if unknown:
        where: argparse.ArgumentParser = getattr(args, "command_parser", parser)
        where.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command is None:
        parser.print_help(sys.stderr)
        print("\ncarbontrack: error: no command given (choose one above)", file=sys.stderr)
        return 2
    args.verbosity = 0 if args.quiet else 1 + args.verbose
    configure_logging(args.verbosity)
    if args.command == "run":
        from carbontrack.cli import _run

        if child is not None:
            # A command named before the `--` owns that `--` too: `run python -- x`.
            args.cmd = [*args.cmd, "--", *child] if args.cmd else child
        run_parser: argparse.ArgumentParser = args.command_parser
        return _run.run(args, run_parser)
    handler: _Handler = args.handler
    return handler(args)
