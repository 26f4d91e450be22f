"""Sphinx configuration of carbontrack's documentation (MyST Markdown pages, furo theme).

Built by ``sphinx-build -W --keep-going -n docs docs/_build/html`` in CI and by
tests/test_docs_site.py: every warning fails the build, and with ``-n`` (nitpicky) so does every
reference to a carbontrack name that does not exist.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

from carbontrack import __version__  # noqa: E402  (after the path is set)

project = "carbontrack"
author = "carbontrack developers"
copyright = "carbontrack developers"
version = release = __version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "carbontrack_cli",
    "carbontrack_site",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# Option names must stay as typed: no "--" turned into a dash, no curly quotes in code words.
smartquotes = False

html_theme = "furo"
html_title = f"carbontrack {release}"

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
# Links to files outside docs/ (the plugin packages, the changelog) go to the repository.
myst_url_schemes = ["http", "https", "mailto"]

# -- reference: autodoc ---------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_class_signature = "separated"
autodoc_default_options = {"members": True, "show-inheritance": False}
python_use_unqualified_type_names = True

# -n: a reference to a carbontrack name that does not exist fails the build. Names from the
# standard library and dependencies cannot be resolved offline (no intersphinx: the build must
# not need the network), so references to them are not checked.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(collections\.abc|typing|typing_extensions|types|pathlib|argparse|logging)\..*"),
    (r"py:.*", r"(attrs|attr|pluggy|threading|subprocess|datetime|enum|io|os|http)\..*"),
    (r"py:.*", r"(int|float|str|bytes|bool|object|None|dict|list|tuple|set|frozenset|type)"),
    (r"py:.*", r"(Any|Callable|Sequence|Mapping|Iterable|Iterator|Collection|Literal)"),
    (r"py:.*", r"(ctypes|pluggy)\..*|PluginManager.*"),
    # Private helpers and type variables in signatures are not part of the documented API.
    (r"py:.*", r"carbontrack\.(\w+\.)*_\w+|(carbontrack\.(\w+\.)*)?(P|R|T|Watts)"),
    (r"py:.*", r"(Path|PathLike|TextIO|BinaryIO|Self|NoReturn|ExitStack|TracebackType)"),
    # The CSV writer's cell type alias (str | int | float | bool | None), shown by name where
    # autodoc cannot evaluate a signature whose other names are imported for type checking only.
    (r"py:class", r"Cell"),
]
