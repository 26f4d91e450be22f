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
  carbontrack plugins --strict    # exit 1 when a plugin cannot be loaded (it is listed anyway)
"""


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Add ``plugins``' options to ``p``."""
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when a plugin cannot be loaded (by default it is listed with its error, "
        "and the exit code is 0)",
    )


def run(args: argparse.Namespace) -> int:
    """List the installed plugins; return the exit code.

    A plugin that cannot be loaded is listed with its error, and the others as usual; the exit
    code is 1 for it only with ``--strict`` (a broken built-in always gives 1).
    """
    from carbontrack._plugins import PluginInfo, list_plugins, make_plugin_manager
    from carbontrack.errors import PluginLoadError

    broken: list[PluginInfo] = []
    try:
        infos = list_plugins(make_plugin_manager(broken=broken)) + broken
    except PluginLoadError as exc:
        print(f"carbontrack: {exc}", file=sys.stderr)
        return 1
    code = 1 if broken and args.strict else 0
    if args.json:
        rows = [
            {
                "name": i.name,
                "distribution": i.distribution,
                "version": i.version,
                "hooks": list(i.hooks),
                "builtin": i.builtin,
                "blocked": i.blocked,
                "error": i.error,
            }
            for i in infos
        ]
        print(json.dumps({"plugins": rows}, indent=2))
        return code
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
        if i.error is not None:
            print(f"{i.name}: {origin}: BROKEN, not loaded")
            print(f"  error: {i.error}")
            continue
        hooks = ", ".join(h.removeprefix("carbontrack_") for h in i.hooks) or "no hooks"
        print(f"{i.name}: {origin}")
        print(f"  hooks: {hooks}")
    for i in broken:
        print(f"carbontrack: plugin {i.name!r} cannot be loaded (listed above)", file=sys.stderr)
    return code
