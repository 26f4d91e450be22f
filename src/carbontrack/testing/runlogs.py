"""Run logs of long runs, written in seconds, for tests of what reads run logs.

``write_long_run_log`` writes what the run-log writer would write for a run of ``epochs``
epochs over ``hours`` hours, checkpointed every ``checkpoint_s``: the same line types and the
same report layout (built from the real model values and ``Report.to_dict()``), where each
checkpoint holds every epoch so far, as the writer's do. Only its figures are simulated (steady
power with a slow ripple per device); it never stands for a measurement.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

from carbontrack import predict as _predict
from carbontrack._version import __version__
from carbontrack.model import (
    J_PER_KWH,
    SCHEMA_VERSION,
    ComponentEnergy,
    Device,
    DeviceEnergy,
    EpochRecord,
    Intensity,
    Location,
    Report,
    RunInfo,
    _unstructure,
    component_of,
)

__all__ = ["write_long_run_log"]

_DEVICES = (
    Device("package-0", "cpu", "CPU package 0", "rapl", "counter"),
    Device("dram-0", "dram", "DRAM 0", "rapl", "counter"),
    Device("gpu-0", "gpu", "NVIDIA H100 80GB HBM3 (0)", "nvml", "counter"),
    Device("gpu-1", "gpu", "NVIDIA H100 80GB HBM3 (1)", "nvml", "counter"),
)
_WATTS = (120.0, 15.0, 450.0, 430.0)


def _dumps(line: object) -> str:
    return json.dumps(line, separators=(",", ":"), allow_nan=False)


def write_long_run_log(
    path: str | os.PathLike[str],
    *,
    epochs: int = 1000,
    hours: float = 24.0,
    checkpoint_s: float = 60.0,
    devices: Sequence[Device] = _DEVICES,
    watts: Sequence[float] = _WATTS,
    started_at: float = 1_767_225_600.0,  # 2026-01-01T00:00:00Z
    final: bool = True,
    g_per_kwh: float = 250.0,
    pue: float = 1.2,
) -> Path:
    """Write the run log of a simulated ``epochs``-epoch run of ``hours`` hours to ``path``.

    Without ``final`` the log ends at its last checkpoint, like a killed run's.
    """
    path = Path(path)
    duration = hours * 3600.0
    epoch_s = duration / epochs
    intensity = Intensity(g_per_kwh=g_per_kwh, source="simulated", zone="DK")
    location = Location(country="DK", source="simulated")

    def power(i: int, t: float) -> float:
        # A slow ripple so that the chart has something to show; energy is its exact integral.
        return float(watts[i]) * (1.0 + 0.1 * math.sin(t / 900.0 + i))

    def energy(i: int, t: float) -> float:
        w = float(watts[i])
        return w * t - w * 0.1 * 900.0 * (math.cos(t / 900.0 + i) - math.cos(float(i)))

    def by_device(t: float) -> list[float]:
        return [energy(i, t) for i in range(len(devices))]

    def co2(joules: float) -> float:
        return joules * pue / J_PER_KWH * g_per_kwh

    records: list[EpochRecord] = []
    for n in range(epochs):
        t0, t1 = n * epoch_s, (n + 1) * epoch_s
        e0, e1 = by_device(t0), by_device(t1)
        comp: dict[str, float] = {}
        for i, d in enumerate(devices):
            c = component_of(d.kind)
            comp[c] = comp.get(c, 0.0) + e1[i] - e0[i]
        joules = sum(e1) - sum(e0)
        records.append(
            EpochRecord(
                index=n + 1,
                started_at=started_at + t0,
                duration_s=epoch_s,
                energy_j=joules,
                co2eq_g=co2(joules),
                energy_by_component_j=comp,
            )
        )
    prediction = _predict.predict(
        records[:10], total_epochs=epochs, g_per_kwh=g_per_kwh, pue=pue, intensity_source="sim"
    )
    epoch_json = [_dumps(_unstructure(r)) for r in records]

    def report_line(t: float, kind: str) -> str:
        e = by_device(t)
        done = sum(1 for r in records if r.started_at + r.duration_s <= started_at + t + 1e-6)
        dev = tuple(
            DeviceEnergy(d.id, d.kind, d.name, d.backend, d.method, e[i])
            for i, d in enumerate(devices)
        )
        comps: dict[str, list[DeviceEnergy]] = {}
        for d in dev:
            comps.setdefault(component_of(d.kind), []).append(d)
        total = sum(e)
        report = Report(
            run_id="longrun24h",
            started_at=started_at,
            duration_s=t,
            energy_j=total,
            pue=pue,
            facility_energy_j=total * pue,
            co2eq_g=co2(total),
            intensity=intensity,
            location=location,
            devices=dev,
            components=tuple(
                ComponentEnergy(c, sum(d.energy_j for d in m), ("counter",), len(m))
                for c, m in sorted(comps.items())
            ),
            epochs_planned=epochs,
            predictions=(prediction,) if done >= 10 else (),
            final=kind == "report",
            carbontrack_version=__version__,
        )
        # The epochs are spliced in as the writer would have serialised them: building
        # 1,440 reports of up to 1,000 epoch values each would take minutes, not seconds.
        text = _dumps({"type": kind, "report": report.to_dict()})
        return text.replace('"epochs":[]', '"epochs":[' + ",".join(epoch_json[:done]) + "]", 1)

    run = RunInfo(
        run_id="longrun24h",
        started_at=started_at,
        devices=tuple(devices),
        unavailable=(),
        location=location,
        pid=1234,
        epochs=epochs,
        components=("cpu", "gpu"),
    )
    header = {
        "type": "header",
        "schema": SCHEMA_VERSION,
        "carbontrack_version": __version__,
        "run": _unstructure(run),
        "host": "simulated",
        "platform": "simulated",
        "python": "3",
        "argv": ["train.py"],
        "cwd": "/",
        "options": {"epochs": epochs, "components": ["cpu", "gpu"], "interval_s": 1.0, "pue": pue},
    }
    events: list[tuple[float, int, str]] = []
    for n, r in enumerate(records):
        line = {"type": "epoch", "epoch": None, "prediction": None}
        text = _dumps(line).replace('"epoch":null', '"epoch":' + epoch_json[n], 1)
        if n + 1 == 10:
            text = text.replace(
                '"prediction":null', '"prediction":' + _dumps(_unstructure(prediction)), 1
            )
        events.append((r.started_at - started_at + r.duration_s, 0, text))
    t = checkpoint_s
    while t < duration:
        events.append((t, 1, ""))
        t += checkpoint_s
    events.sort(key=lambda e: (e[0], e[1]))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        f.write(_dumps(header) + "\n")
        for at, kind, text in events:
            f.write((text if kind == 0 else report_line(at, "checkpoint")) + "\n")
        if final:
            f.write(report_line(duration, "report") + "\n")
    return path
