"""The documentation site builds with no warning and its references cover the whole surface.

The site (docs/, Sphinx + MyST + furo) is built once per test session, in a temporary directory,
exactly as CI builds it: ``-W`` (every warning fails), ``--keep-going`` (all of them listed) and
``-n`` (nitpicky: a reference to a carbontrack name that does not exist fails). Then every public
name, every hook and every command and option must have its entry in the built HTML: the
references are generated from the code, so a name added without a docstring or a page is caught.
"""

from __future__ import annotations

import argparse
import html
import importlib
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("sphinx", reason="the docs extra (sphinx, furo, myst-parser) builds the site")
pytest.importorskip("myst_parser")
pytest.importorskip("furo")

import carbontrack
from carbontrack import hookspecs
from carbontrack.cli import build_parser

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"

# carbontrack.testing and every public module in it.
TESTING_MODULES = ("carbontrack.testing",) + tuple(
    f"carbontrack.testing.{p.stem}"
    for p in sorted((REPO / "src" / "carbontrack" / "testing").glob("*.py"))
    if not p.stem.startswith("_")
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-n",
            "-q",
            "-b",
            "html",
            "-d",
            str(out / "doctrees"),
            str(DOCS),
            str(out / "html"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, (
        "sphinx-build -W -n failed (fix the page or docstring it names):\n"
        + proc.stdout[-3000:]
        + proc.stderr[-6000:]
    )
    print(f"site built in {time.monotonic() - started:.1f} s")
    return out / "html"


def _ids(page: Path) -> set[str]:
    return set(re.findall(r'\bid="([^"]+)"', page.read_text(encoding="utf-8")))


def _text(page: Path) -> str:
    raw = page.read_text(encoding="utf-8")
    return html.unescape(re.sub(r"<[^>]+>", "", raw))


def test_every_public_name_has_a_reference_entry(site: Path) -> None:
    ids = _ids(site / "reference" / "api.html")
    names = [n for n in carbontrack.__all__ if n != "__version__"]
    missing = [n for n in names if f"carbontrack.{n}" not in ids]
    assert not missing, f"docs/reference/api.md documents no entry for carbontrack.{missing}"
    assert "carbontrack.__version__" in _text(site / "reference" / "api.html")


def test_every_testing_name_has_a_reference_entry(site: Path) -> None:
    ids = _ids(site / "reference" / "testing.html")
    missing = [
        f"{module}.{name}"
        for module in TESTING_MODULES
        for name in importlib.import_module(module).__all__
        if f"{module}.{name}" not in ids
    ]
    assert not missing, f"docs/reference/testing.md has no entry for {missing} (docstring?)"


def test_every_hook_has_its_contract_in_the_reference(site: Path) -> None:
    page = site / "reference" / "hooks.html"
    ids, text = _ids(page), _text(page)
    hooks = {
        name: fn
        for name, fn in vars(hookspecs).items()
        if callable(fn) and hasattr(fn, f"{hookspecs.PROJECT}_spec")
    }
    assert len(hooks) >= 9
    for name, fn in hooks.items():
        assert f"carbontrack.hookspecs.{name}" in ids, f"hook {name} has no reference entry"
        # The contract, not just the name: the docstring's first sentence is on the page.
        first = " ".join((fn.__doc__ or "").strip().split(".")[0].replace("``", "").split())
        flat = " ".join(text.split())
        assert first, f"{name} has no docstring"
        assert first in flat, f"{name}: contract missing"
        spec = getattr(fn, f"{hookspecs.PROJECT}_spec")
        kind = "firstresult:" if spec.get("firstresult") else "Broadcast:"
        entry = flat[flat.index(f"carbontrack.hookspecs.{name}(") :]
        assert kind in entry[: entry.index(first)], f"{name}: not said to be {kind}"


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_every_command_and_option_is_in_the_cli_reference(site: Path) -> None:
    text = " ".join(_text(site / "reference" / "cli.html").split())
    commands = _subcommands(build_parser())
    assert {"run", "devices", "plugins", "report", "intensity"} <= set(commands)
    for name, parser in commands.items():
        assert f"carbontrack {name}¶" in text, f"command {name} has no section"
        for action in parser._actions:
            for option in action.option_strings:
                assert option in text, f"carbontrack {name} {option} is not in the reference"
            if action.help and action.help != argparse.SUPPRESS:
                assert " ".join(action.help.split()) in text, (
                    f"carbontrack {name}: help of {action.option_strings or action.dest}"
                )


def test_every_page_is_in_the_navigation(site: Path) -> None:
    index = (site / "index.html").read_text(encoding="utf-8")
    pages = sorted(
        p.relative_to(DOCS).with_suffix(".html").as_posix()
        for p in DOCS.rglob("*.md")
        if "_build" not in p.parts
    )
    assert "index.html" in pages
    missing = [p for p in pages if p != "index.html" and f'href="{p}"' not in index]
    assert not missing, f"pages not linked from the front page: {missing}"
