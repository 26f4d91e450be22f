"""A fake installed plugin distribution: a module plus ``.dist-info`` with an entry point.

Put the returned directory on ``PYTHONPATH`` (and leave ``CARBONTRACK_DISABLE_PLUGIN_AUTOLOAD``
unset) and a fresh process finds the plugin exactly as it finds one installed with pip: this is
how the command line is tested end to end with fake hardware in a subprocess.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

__all__ = ["FAKE_CPU_PLUGIN", "write_plugin_distribution"]

#: Source of a plugin module serving one fake CPU package counter that draws ``WATTS`` watts.
FAKE_CPU_PLUGIN = """\
from carbontrack.testing import FakeDevice, FakeHardware

WATTS = {watts!r}
plugin = FakeHardware([FakeDevice("package-0", kind="cpu", watts=WATTS)], name={name!r})
"""


def write_plugin_distribution(
    root: str | Path,
    *,
    name: str = "fakecpu",
    distribution: str = "carbontrack-fakecpu",
    version: str = "1.2.3",
    source: str | None = None,
    watts: float = 25.0,
) -> Path:
    """Write a plugin distribution under ``root`` and return ``root`` (for ``PYTHONPATH``).

    The module ``{name}_plugin`` gets ``source`` (default: ``FAKE_CPU_PLUGIN`` with ``watts``),
    and the entry point ``{name} = {name}_plugin:plugin`` is declared in the group
    ``carbontrack`` of the distribution ``distribution`` ``version``.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    module = f"{name}_plugin"
    text = source if source is not None else FAKE_CPU_PLUGIN.format(watts=watts, name=name)
    (root / f"{module}.py").write_text(textwrap.dedent(text), encoding="utf-8")
    info = root / f"{distribution.replace('-', '_')}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(
        f"[carbontrack]\n{name} = {module}:plugin\n", encoding="utf-8"
    )
    return root
