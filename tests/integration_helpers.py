"""What the framework-callback tests share: fake hardware that draws real power, and checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from carbontrack.integrations._core import METRICS
from carbontrack.model import Report
from carbontrack.testing import FakeDevice, FakeHardware
from carbontrack.writers.runlog import read_run_log

# A short sampling interval so that even a sub-second training gets several ticks.
QUIET: dict[str, Any] = {"verbose": 0, "interval_s": 0.01}


def fake_hardware() -> FakeHardware:
    """A CPU package counter and a sampled GPU: energy advances with real time, as on hardware."""
    return FakeHardware(
        [
            FakeDevice("package-0", kind="cpu", watts=65.0),
            FakeDevice("gpu0", kind="gpu", method="power", watts=150.0),
        ]
    )


def linear_regression(base: type) -> type:
    """A LightningModule class on ``base`` (``lightning.pytorch``'s or the older
    ``pytorch_lightning``'s) fitting a linear regression: the smallest model a Trainer runs."""
    import torch

    class LinearRegression(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)

        def loss(self, batch: Any) -> Any:
            x, y = batch
            return torch.nn.functional.mse_loss(self.layer(x), y)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            return self.loss(batch)

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.01)

    return LinearRegression


def assert_options_checked_like_track(callback_class: type) -> None:
    """A wrong option fails when the callback is built, with ``track()``'s own error."""
    import pytest

    from carbontrack import InvalidOption, track

    with pytest.raises(InvalidOption) as from_track:
        track(epochs=0)
    with pytest.raises(InvalidOption) as from_callback:
        callback_class(epochs=0)
    assert str(from_callback.value) == str(from_track.value)


def assert_finished_run(report: Report | None, log_dir: Path, *, epochs: int) -> Report:
    """The run is over: a final report with ``epochs`` epochs, energy, and a closed run log."""
    assert report is not None
    assert report.final
    assert len(report.epochs) == epochs
    assert report.energy_j > 0
    (log,) = log_dir.glob("*.jsonl")
    lines, problems = read_run_log(log)
    assert not problems
    assert lines[-1]["type"] == "report"
    assert len([line for line in lines if line["type"] == "epoch"]) == epochs
    return report


def assert_logged_figures(rows: list[dict[str, Any]], report: Report) -> None:
    """``rows`` (one per epoch, as the framework recorded them) carry the run's figures so far.

    Energy and CO2 only grow, never pass the final report's, and the predicted CO2eq appears
    from the epoch of the first prediction on.
    """
    assert rows
    energies = [row["carbontrack/energy_kwh"] for row in rows]
    co2 = [row["carbontrack/co2eq_g"] for row in rows]
    assert all(isinstance(v, float) for v in energies + co2)
    assert energies == sorted(energies)
    assert co2 == sorted(co2)
    assert 0 < energies[-1] <= report.energy_kwh
    assert 0 < co2[-1] <= report.co2eq_g
    assert all(row["carbontrack/power_w"] > 0 for row in rows)
    first = report.predictions[0]
    predicted = [row.get("carbontrack/predicted_co2eq_g") for row in rows]
    assert predicted[: first.after_epoch - 1] == [None] * (first.after_epoch - 1)
    assert predicted[first.after_epoch - 1] == first.co2eq_g
    assert rows[first.after_epoch - 1]["carbontrack/predicted_energy_kwh"] > 0
    for row in rows:
        assert set(k for k in row if k.startswith("carbontrack/")) <= set(METRICS)
