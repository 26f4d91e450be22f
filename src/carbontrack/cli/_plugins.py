"""``carbontrack plugins``: the installed plugins, their distributions, versions and hooks."""

from __future__ import annotations

import argparse
import json
import sys

from carbontrack._version import __version__

__all__ = ["EPILOG", "configure_parser", "run"]

EPILOG = """\
examples:
  carbontrack plugins
  carbontrack plugins --json
  CARBONTRACK_DISABLE_PLUGINS=nvml carbontrack plugins    # nvml shows as blocked
"""


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Add ``plugins``' options to ``p``."""
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


def run(args: argparse.Namespace) -> int:
    """List the installed plugins; return the exit code."""
    from carbontrack._plugins import list_plugins, make_plugin_manager
    from carbontrack.errors import PluginLoadError

    try:
        infos = list_plugins(make_plugin_manager())
    except PluginLoadError as exc:
        print(f"carbontrack: {exc}", file=sys.stderr)
        return 1
    if args.json:
        rows = [
            {
                "name": i.name,
                "distribution": i.distribution,
                "version": i.version,
                "hooks": list(i.hooks),
                "builtin": i.builtin,
                "blocked": i.blocked,
            }
            for i in infos
        ]
        print(json.dumps({"plugins": rows}, indent=2))
        return 0
    for i in infos:
        if i.blocked:
            print(f"{i.name}: blocked by CARBONTRACK_DISABLE_PLUGINS")
            continue
        if i.builtin:
            origin = f"built-in (carbontrack {__version__})"
        elif i.distribution is not None:
            origin = f"{i.distribution} {i.version}"
        else:
            origin = "registered by the caller"
        hooks = ", ".join(h.removeprefix("carbontrack_") for h in i.hooks) or "no hooks"
        print(f"{i.name}: {origin}")
        print(f"  hooks: {hooks}")
    return 0
