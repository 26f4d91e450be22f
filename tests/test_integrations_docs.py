"""The framework pages stay true: each example on the page is the real file, and it runs."""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PAGES = {
    "keras": "keras_train.py",
    "lightning": "lightning_train.py",
    "transformers": "transformers_train.py",
}
_REAL = re.compile(r"<!-- real: (\S+) -->\n```\w*\n(.*?)\n```", re.DOTALL)


@pytest.mark.parametrize("framework", sorted(PAGES))
def test_the_page_shows_the_real_example(framework: str) -> None:
    page = (REPO / "docs" / f"{framework}.md").read_text()
    blocks = _REAL.findall(page)
    assert [path for path, _ in blocks] == [f"examples/{PAGES[framework]}"]
    ((path, code),) = blocks
    assert code == (REPO / path).read_text().rstrip("\n")


@pytest.mark.parametrize("framework", sorted(PAGES))
def test_the_example_runs_and_logs_the_figures(framework: str, tmp_path: Path) -> None:
    # find_spec, not an import: importing Keras here would fix its backend for this process.
    if importlib.util.find_spec(framework) is None:
        pytest.skip(f"{framework} is not installed")
    env = {
        **os.environ,
        "EPOCHS": "2",
        # The CPU estimate stands in for hardware counters this machine lacks (it says so).
        "CARBONTRACK_DISABLE_PLUGINS": "rapl,nvml,powermetrics",
        "HF_HUB_OFFLINE": "1",
    }
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / PAGES[framework])],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    energies = ast.literal_eval(lines[-2])
    assert len(energies) == 2
    assert energies[0] > 0
    assert lines[-1].endswith("gCO2eq")
