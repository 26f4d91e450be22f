"""``import carbontrack`` (and a plain run) never imports a training framework."""

from __future__ import annotations

import subprocess
import sys

FRAMEWORKS = ("torch", "lightning", "pytorch_lightning", "transformers", "keras", "tensorflow")

CHECK = """
import sys
import carbontrack
from carbontrack import track
import carbontrack.integrations
with track(verbose=0, write_log=False, autoload=False):
    pass
loaded = [m for m in {frameworks!r} if m in sys.modules]
assert not loaded, f"imported {{loaded}}"
print("ok")
"""


def test_importing_carbontrack_imports_no_framework() -> None:
    # A fresh interpreter: this test process may have imported the frameworks already.
    result = subprocess.run(
        [sys.executable, "-c", CHECK.format(frameworks=FRAMEWORKS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_a_callback_module_imports_only_its_own_framework() -> None:
    # Keras alone must not pull in Lightning or Transformers (each is seconds of import time).
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, sys; os.environ['KERAS_BACKEND'] = 'torch'\n"
            "import carbontrack.integrations.keras\n"
            "print(sorted(m for m in ('lightning', 'pytorch_lightning', 'transformers') "
            "if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if "No module named 'keras'" in result.stderr:
        import pytest

        pytest.skip("keras is not installed")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
