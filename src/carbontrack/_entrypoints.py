"""Entry points of one group, read straight from the installed distributions' metadata.

``importlib.metadata.entry_points()`` imports the ``email`` package and builds a
``Distribution`` for every installed package: about 20 ms and 2 MiB at the start of every run,
to find the two or three plugins carbontrack loads. This module reads the same files
(``*.dist-info/entry_points.txt`` and ``*.egg-info/entry_points.txt`` on ``sys.path``, the
formats of the packaging specification) with plain string handling, in the order and with the
de-duplication ``importlib.metadata`` uses: the first distribution of a name on ``sys.path`` wins.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from pathlib import Path
from typing import NamedTuple

__all__ = ["EntryPoint", "entry_points"]

# "Distribution-1.0.dist-info" / "distribution-1.0-py3.11.egg-info" / "distribution.egg-info".
_NAME_VERSION = r"^(?P<name>[^-]+?)(?:-(?P<version>[^-]+?))?(?:-py[^-]*)?$"


class EntryPoint(NamedTuple):
    """One entry point: ``name = value`` in ``group`` of the distribution at ``dist_path``.

    A named tuple, not an attrs class: this module is read at every run's start, where each
    attrs class costs about half a millisecond to generate.
    """

    name: str
    value: str
    group: str
    dist_name: str
    dist_path: Path

    def load(self) -> object:
        """Import the module named by ``value`` (``module`` or ``module:attr.attr``)."""
        module_name, _, attr = self.value.partition(":")
        obj: object = importlib.import_module(module_name.strip())
        # An "[extra]" suffix names extras to install; it does not change what loads.
        for part in attr.split("[", 1)[0].strip().split(".") if attr else ():
            obj = getattr(obj, part)
        return obj

    @property
    def dist_version(self) -> str | None:
        """The distribution's version, from its ``METADATA`` / ``PKG-INFO`` header."""
        return self._header("version")

    @property
    def dist_display_name(self) -> str:
        """The distribution's name as its metadata spells it (``carbontrack-hwmon``)."""
        return self._header("name") or self.dist_name

    def _header(self, wanted: str) -> str | None:
        for meta in ("METADATA", "PKG-INFO"):
            try:
                with (self.dist_path / meta).open(encoding="utf-8", errors="replace") as f:
                    for line in f:
                        if not line.strip():
                            break  # the headers end at the first blank line
                        key, _, value = line.partition(":")
                        if key.strip().lower() == wanted:
                            return value.strip()
            except OSError:
                continue
        return None


def _normalise(name: str) -> str:
    # PEP 503 normalisation, as importlib.metadata compares distribution names.
    return re.sub(r"[-_.]+", "-", name).lower()


def _parse(text: str, group: str) -> list[tuple[str, str]]:
    """``(name, value)`` pairs of ``[group]`` in an ``entry_points.txt`` (INI-like) text."""
    found: list[tuple[str, str]] = []
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            continue
        if section == group:
            name, sep, value = line.partition("=")
            if sep and name.strip():
                found.append((name.strip(), value.strip()))
    return found


def entry_points(group: str, path: list[str] | None = None) -> tuple[EntryPoint, ...]:
    """Every entry point of ``group`` installed on ``path`` (default ``sys.path``)."""
    seen: set[str] = set()
    found: list[EntryPoint] = []
    for entry in sys.path if path is None else path:
        directory = entry or "."
        try:
            names = sorted(os.listdir(directory))
        except OSError:  # a zip file, a missing directory: nothing installed there for us
            continue
        for name in names:
            stem, dot, suffix = name.rpartition(".")
            if not dot or suffix not in ("dist-info", "egg-info"):
                continue
            match = re.match(_NAME_VERSION, stem)
            dist_name = match.group("name") if match else stem
            key = _normalise(dist_name)
            if key in seen:
                continue
            # Plain strings and open(), not Path objects: this runs for every installed
            # distribution at every start, and most have no entry point of this group.
            try:
                with open(os.path.join(directory, name, "entry_points.txt"), encoding="utf-8") as f:
                    text = f.read()
            except OSError:
                # No entry points, or an egg-info file rather than a directory: the name is
                # still taken, as importlib.metadata would take it.
                seen.add(key)
                continue
            seen.add(key)
            if group not in text:  # no such section: nothing to parse
                continue
            found.extend(
                EntryPoint(ep_name, value, group, dist_name, Path(directory, name))
                for ep_name, value in _parse(text, group)
            )
    return tuple(found)
