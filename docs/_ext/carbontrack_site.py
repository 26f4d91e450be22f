"""Site helpers: a toctree of the pages no other toctree lists, and root-name references.

``{carbontrack-other-pages}`` lists every page of docs/ that no earlier toctree on the same page
names, so that a guide another contributor adds is in the navigation at once (and the build,
run with ``-W``, does not fail on "document isn't included in any toctree").

The public classes are documented under their public names (``carbontrack.Report``), while
signatures name where they are defined (``carbontrack.model.Report``); a reference to the latter
is resolved to the former when the name is exported by ``carbontrack``.

``carbontrack-other-names MODULE`` documents every name of ``MODULE.__all__`` that the page
has not documented yet, and ``carbontrack-other-modules PACKAGE`` every submodule: the
reference grows with the code.

Each hook's reference entry starts with how it is called (broadcast or ``firstresult``), read
from its ``hookspec`` marker, so the page says what the code does.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.directives.other import TocTree
from sphinx.environment import BuildEnvironment
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles


class OtherPages(TocTree):
    """A toctree of every page not named by an earlier toctree of this page."""

    def run(self) -> list[nodes.Node]:
        named = {
            docname
            for toctree in self.state.document.findall(addnodes.toctree)
            for _title, docname in toctree["entries"]
        }
        rest = sorted(d for d in self.env.found_docs if d not in named and d != self.env.docname)
        self.content = StringList(rest, source="carbontrack-other-pages")
        return super().run()


def _documented_here(directive: SphinxDirective) -> set[str]:
    """Python objects and modules already described on this page (the page is read in order;
    each ``eval-rst`` block is parsed on its own, so the domain is asked, not the document)."""
    domain: Any = directive.env.get_domain("py")
    here = directive.env.docname
    objects = {name for name, entry in domain.objects.items() if entry.docname == here}
    modules = {f"module-{name}" for name, entry in domain.modules.items() if entry.docname == here}
    return objects | modules


def _exported_by_root(name: str, obj: object) -> bool:
    import carbontrack

    return name in carbontrack.__all__ and getattr(carbontrack, name) is obj


class OtherNames(SphinxDirective):
    """Document every name in ``MODULE.__all__`` that no earlier entry of this page documents.

    So a name added to the public API appears in the reference at once, from its docstring,
    even before someone files it under the right heading.
    """

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        module_name = self.arguments[0]
        module = importlib.import_module(module_name)
        done = _documented_here(self)
        lines: list[str] = []
        for name in sorted(getattr(module, "__all__", [])):
            full = f"{module_name}.{name}"
            if name.startswith("__") or full in done:
                continue
            obj = getattr(module, name)
            if module_name != "carbontrack" and _exported_by_root(name, obj):
                continue  # documented under its public name, carbontrack.<name>
            if isinstance(obj, type):
                kind = "autoexception" if issubclass(obj, BaseException) else "autoclass"
            elif callable(obj) and inspect.isroutine(obj):
                kind = "autofunction"
            else:
                kind = "autodata"
            lines += [f".. {kind}:: {full}", ""]
        return self._parse(lines)

    def _parse(self, lines: list[str]) -> list[nodes.Node]:
        container = nodes.section()
        container.document = self.state.document
        nested_parse_with_titles(
            self.state, StringList(lines, source=self.get_source_info()[0]), container
        )
        return list(container.children)


class OtherModules(OtherNames):
    """An ``automodule`` section for every submodule of PACKAGE not yet documented here."""

    def run(self) -> list[nodes.Node]:
        package = importlib.import_module(self.arguments[0])
        done = _documented_here(self)
        lines: list[str] = []
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
            full = f"{package.__name__}.{info.name}"
            if info.name.startswith("_") or f"module-{full}" in done:
                continue
            title = f"``{full}``"
            lines += [title, "-" * len(title), "", f".. automodule:: {full}", "   :members:", ""]
        return self._parse(lines)


def _public_alias(
    app: Sphinx, env: BuildEnvironment, node: addnodes.pending_xref, contnode: nodes.Element
) -> nodes.Element | None:
    if node.get("refdomain") != "py":
        return None
    target = str(node.get("reftarget", ""))
    if not target.startswith("carbontrack."):
        return None
    import carbontrack

    name = target.rsplit(".", 1)[-1]
    public = f"carbontrack.{name}"
    if name not in carbontrack.__all__ or public == target:
        return None
    domain = env.get_domain("py")
    alias = node.deepcopy()
    alias["reftarget"] = public
    result: nodes.Element | None = domain.resolve_xref(
        env, node["refdoc"], app.builder, node["reftype"], public, alias, contnode
    )
    return result


def _hook_kind(  # noqa: PLR0917 (the signature Sphinx calls)
    app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """Start each hook's entry with how pluggy calls it, read from the hook's own spec."""
    if what != "function" or not name.startswith("carbontrack.hookspecs."):
        return
    spec = getattr(obj, "carbontrack_spec", None)
    if spec is None:
        return
    if spec.get("firstresult"):
        kind = (
            "*firstresult*: implementations are asked in turn until one returns something "
            "other than ``None``; that answer is used."
        )
    else:
        kind = "*Broadcast*: every implementation is called; results are collected."
    lines[:0] = [kind, ""]


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("carbontrack-other-pages", OtherPages)
    app.add_directive("carbontrack-other-names", OtherNames)
    app.add_directive("carbontrack-other-modules", OtherModules)
    app.connect("missing-reference", _public_alias)
    app.connect("autodoc-process-docstring", _hook_kind)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
