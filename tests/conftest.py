"""Test isolation: no installed plugins, no real hardware backends, no writes to the real home."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import os

import pytest
from hypothesis import settings

# Shared, noisy machines: a slow example is not a failure; correctness is what is tested.
settings.register_profile("carbontrack", deadline=None)
settings.load_profile("carbontrack")

# Real hardware backends are disabled by default so that a test's figures come only from the
# fakes it sets up; backend tests re-enable theirs (monkeypatch.setenv) with a fake boundary.
REAL_BACKENDS = "rapl,nvml,powermetrics,estimate"

# torchrun's and torch.distributed's variables (carbontrack._job reads these).
_LAUNCHER_VARS = frozenset(
    {
        "RANK",
        "LOCAL_RANK",
        "WORLD_SIZE",
        "LOCAL_WORLD_SIZE",
        "GROUP_RANK",
        "NODE_RANK",
        "TORCHELASTIC_RUN_ID",
        "TORCHELASTIC_RESTART_COUNT",
        "MPI_LOCALRANKID",
        "MPI_LOCALNRANKS",
    }
)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.setenv("CARBONTRACK_HOME", str(tmp_path / "carbontrack-home"))
    monkeypatch.setenv("CARBONTRACK_DISABLE_PLUGINS", REAL_BACKENDS)
    monkeypatch.setenv("CARBONTRACK_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.delenv("CARBONTRACK_LOCATION", raising=False)
    monkeypatch.delenv("CARBONTRACK_PROMETHEUS", raising=False)
    monkeypatch.delenv("CARBONTRACK_PROMETHEUS_PUSH", raising=False)
    # A suite run under a launcher (srun pytest, a CI runner in a Slurm job) must not turn
    # every test's run into one rank of a job.
    for name in list(os.environ):
        if name in _LAUNCHER_VARS or name.startswith(("SLURM_", "OMPI_", "PMI_", "PMIX_")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("CARBONTRACK_NODE_NAME", raising=False)
    return
