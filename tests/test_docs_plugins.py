"""docs/plugins.md stays true: every hook documented as specified, the example is the real code."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from carbontrack import hookspecs

REPO = Path(__file__).resolve().parent.parent
GUIDE = REPO / "docs" / "plugins.md"

# A code block copied from a file: ``<!-- real: path -->`` (the whole file) or
# ``<!-- excerpt: path -->`` (a contiguous part of it), then the fenced block.
_COPIED = re.compile(r"<!-- (real|excerpt): (\S+) -->\n```\w*\n(.*?)\n```", re.DOTALL)


def _specs() -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(fn)
        for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(fn, f"{hookspecs.PROJECT}_spec")
    }


def _section(text: str, heading: str) -> str:
    start = text.index(heading) + len(heading)
    end = text.find("\n#", start)
    return text[start : end if end != -1 else len(text)]


def test_every_hook_in_hookspecs_has_a_section_with_its_signature() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    missing = [
        f"### `{name}({', '.join(sig.parameters)})`"
        for name, sig in _specs().items()
        if f"### `{name}({', '.join(sig.parameters)})`" not in text
    ]
    assert not missing, f"docs/plugins.md lacks (or misspells) these hook sections: {missing}"


def test_every_hook_section_says_how_the_hook_is_called() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    for name, sig in _specs().items():
        spec_opts = getattr(getattr(hookspecs, name), f"{hookspecs.PROJECT}_spec")
        body = _section(text, f"### `{name}({', '.join(sig.parameters)})`").strip()
        expected = "`firstresult`." if spec_opts.get("firstresult") else "Broadcast"
        assert body.startswith(expected), f"{name}: the guide should start with {expected!r}"


def test_the_guide_documents_no_hook_that_does_not_exist() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    documented = set(re.findall(r"^### `(carbontrack_\w+)\(", text, flags=re.MULTILINE))
    assert documented == set(_specs())


def test_the_guide_copies_real_code() -> None:
    copies = _COPIED.findall(GUIDE.read_text(encoding="utf-8"))
    assert {path for _kind, path, _block in copies} >= {
        "plugins/carbontrack-hwmon/pyproject.toml",
        "plugins/carbontrack-hwmon/src/carbontrack_hwmon/plugin.py",
        "plugins/carbontrack-hwmon/tests/conftest.py",
    }


@pytest.mark.parametrize(
    ("kind", "path", "block"),
    _COPIED.findall(GUIDE.read_text(encoding="utf-8")),
    ids=lambda value: value if "\n" not in value else "",
)
def test_each_copied_block_matches_its_file(kind: str, path: str, block: str) -> None:
    source = (REPO / path).read_text(encoding="utf-8").rstrip("\n")
    if kind == "real":
        assert block == source, f"docs/plugins.md has an outdated copy of {path}"
    else:
        assert block in source, f"docs/plugins.md has an excerpt of {path} that is not in it"
