"""Each test gets a fake hwmon tree, its own carbontrack home, and no other backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from carbontrack_hwmon.testing import FakeHwmonTree


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CARBONTRACK_HOME", str(tmp_path / "carbontrack-home"))
    # Only this plugin measures: the tests register it themselves (autoload=False) and the
    # built-in hardware backends are blocked, so every figure comes from the fake tree.
    monkeypatch.setenv("CARBONTRACK_DISABLE_PLUGINS", "rapl,nvml,powermetrics,estimate")
    monkeypatch.delenv("CARBONTRACK_HWMON_INCLUDE", raising=False)
    monkeypatch.delenv("CARBONTRACK_LOCATION", raising=False)


@pytest.fixture
def tree(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeHwmonTree:
    """An empty fake ``/sys/class/hwmon`` that the plugin reads."""
    fake = FakeHwmonTree(tmp_path / "hwmon")
    for key, value in fake.environ.items():
        monkeypatch.setenv(key, value)
    return fake
