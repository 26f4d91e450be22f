"""Each test gets its own carbontrack home, no other backend, and no real amdsmi."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CARBONTRACK_HOME", str(tmp_path / "carbontrack-home"))
    # Only this plugin measures: the tests register it themselves (autoload=False) and the
    # built-in hardware backends are blocked, so every figure comes from the fake module.
    monkeypatch.setenv("CARBONTRACK_DISABLE_PLUGINS", "rapl,nvml,powermetrics,estimate")
    monkeypatch.setenv("CARBONTRACK_AMDGPU_DRIVER_DIR", str(tmp_path / "no-amdgpu-driver"))
    for variable in ("ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.delenv("CARBONTRACK_AMDSMI_MODULE", raising=False)
    monkeypatch.delenv("CARBONTRACK_LOCATION", raising=False)
