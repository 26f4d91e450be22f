"""A Sphinx directive that renders carbontrack's command line from its argparse parsers.

``.. carbontrack-cli::`` (no arguments, inside an ``eval-rst`` block) builds
``carbontrack.cli.build_parser()`` and writes, for the program and for every subcommand, its
usage line, description, every option (flags, metavar, choices, default, help) and its epilog
of examples. Nothing is copied by hand, so the reference cannot drift from what
``carbontrack COMMAND --help`` prints.
"""

from __future__ import annotations

import argparse
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse has no public way to list subparsers
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _flags(action: argparse.Action) -> str:
    if not action.option_strings:
        return action.metavar if isinstance(action.metavar, str) else action.dest
    metavar = ""
    if action.nargs != 0:
        if action.metavar is not None:
            metavar = str(action.metavar)
        elif action.choices is not None:
            metavar = "{" + ",".join(map(str, action.choices)) + "}"
        else:
            metavar = action.dest.upper()
        if action.nargs == "?":
            metavar = f"[{metavar}]"
    return ", ".join(f"{opt} {metavar}".strip() for opt in action.option_strings)


def _option_rows(parser: argparse.ArgumentParser) -> list[tuple[str, str]]:
    rows = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            continue
        if action.help == argparse.SUPPRESS:
            continue
        text = action.help or ""
        if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
            text += f" (one of: {', '.join(map(str, action.choices))})"
        if action.default not in (None, False, argparse.SUPPRESS, 0) and action.nargs != 0:
            text += f" (default: {action.default})"
        rows.append((_flags(action), text))
    return rows


class CarbontrackCli(SphinxDirective):
    """Render the whole ``carbontrack`` command line."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        from carbontrack.cli import build_parser

        root = build_parser()
        lines: list[str] = []
        self._command(lines, "carbontrack", root, level="=")
        for name, sub in _subcommands(root).items():
            self._command(lines, f"carbontrack {name}", sub, level="-")
        container = nodes.section()
        container.document = self.state.document
        # Used inside ```{eval-rst}``` on a MyST page, so the state parses reStructuredText.
        nested_parse_with_titles(self.state, StringList(lines, source="carbontrack-cli"), container)
        return list(container.children)

    def _command(
        self,
        lines: list[str],
        title: str,
        parser: argparse.ArgumentParser,
        level: str,
    ) -> None:
        # reStructuredText, parsed in place (the directive works in MyST and rST pages alike).
        heading = f"``{title}``"
        lines += [heading, level * len(heading), ""]
        usage = parser.format_usage().removeprefix("usage: ").strip()
        lines += ["::", "", *("   " + u for u in usage.splitlines()), ""]
        if parser.description:
            lines += ["::", "", *("   " + d for d in parser.description.splitlines()), ""]
        subs = _subcommands(parser)
        if subs:
            lines += ["Commands: " + ", ".join(f"``{n}``" for n in subs) + " (below).", ""]
        rows = _option_rows(parser)
        if rows:
            lines += [".. list-table::", "   :header-rows: 1", "   :widths: 35 65", ""]
            lines += ["   * - option", "     - meaning"]
            for flags, text in rows:
                lines += [f"   * - ``{flags}``", f"     - {_escape(text) or '-'}"]
            lines += [""]
        if parser.epilog:
            lines += ["::", "", *("   " + e for e in parser.epilog.splitlines()), ""]


def _escape(text: str) -> str:
    # Help texts are plain text: keep rST from reading `*`, backquotes or `|` as markup.
    for char in ("\\", "*", "`", "|", "_"):
        text = text.replace(char, "\\" + char)
    return " ".join(text.split())


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("carbontrack-cli", CarbontrackCli)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
