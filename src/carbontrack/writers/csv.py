"""CSV files for spreadsheets and pandas: one row per run, one row per epoch, across runs.

``<log_dir>/<prefix>carbontrack-runs.csv`` gains a row when a run ends, and
``<log_dir>/<prefix>carbontrack-epochs.csv`` a row when an epoch ends. Several processes may
append to the same files: the header is created atomically and each row is one ``write``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from carbontrack import _files
from carbontrack.hookspecs import hookimpl
from carbontrack.model import J_PER_KWH, Report, RunInfo, component_of
from carbontrack.paths import log_dir
from carbontrack.settings import Settings

if TYPE_CHECKING:
    # Annotations only: a run without epochs never loads them (carbontrack._model_later).
    from carbontrack.model import EpochRecord, Prediction

__all__ = [
    "COMPONENT_COLUMNS",
    "EPOCH_COLUMNS",
    "RUN_COLUMNS",
    "CsvWriter",
    "epoch_row",
    "epochs_csv_path",
    "run_row",
    "runs_csv_path",
]

logger = logging.getLogger(__name__)

#: Components with a column of their own; energy of any other component is in ``other_energy_j``
#: (and always in ``energy_j``).
COMPONENT_COLUMNS = ("cpu", "gpu", "ane", "ram")

_COMPONENT_ENERGY = (*(f"{c}_energy_j" for c in COMPONENT_COLUMNS), "other_energy_j")

#: Columns of the runs file, in order.
RUN_COLUMNS: tuple[str, ...] = (
    "run_id",
    "started_at",
    "duration_s",
    "energy_j",
    "energy_kwh",
    "pue",
    "facility_energy_kwh",
    "co2eq_g",
    "g_per_kwh",
    "intensity_source",
    "intensity_basis",
    "location",
    "methods",
    "estimated",
    "partial",
    "epochs",
    *_COMPONENT_ENERGY,
)

#: Columns of the epochs file, in order; ``predicted_*`` are empty when no prediction was made
#: after the epoch.
EPOCH_COLUMNS: tuple[str, ...] = (
    "run_id",
    "epoch",
    "started_at",
    "duration_s",
    "energy_j",
    "co2eq_g",
    *_COMPONENT_ENERGY,
    "predicted_epochs",
    "predicted_duration_s",
    "predicted_energy_j",
    "predicted_co2eq_g",
    "predicted_co2eq_g_low",
    "predicted_co2eq_g_high",
    "predicted_level",
    "predicted_g_per_kwh",
)

Cell = str | int | float | bool | None


def runs_csv_path(settings: Settings) -> Path:
    """``<log_dir>/<prefix>carbontrack-runs.csv``."""
    return log_dir(settings) / f"{settings.log_file_prefix}carbontrack-runs.csv"


def epochs_csv_path(settings: Settings) -> Path:
    """``<log_dir>/<prefix>carbontrack-epochs.csv``."""
    return log_dir(settings) / f"{settings.log_file_prefix}carbontrack-epochs.csv"


def iso_utc(ts: float) -> str:
    # Second resolution is what a spreadsheet shows; the run log keeps the exact Unix time.
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _by_component(energy: Mapping[str, float]) -> dict[str, Cell]:
    cells: dict[str, Cell] = {f"{c}_energy_j": None for c in COMPONENT_COLUMNS}
    other: float | None = None
    for name, joules in energy.items():
        column = f"{component_of(name)}_energy_j"
        if column in cells:
            cells[column] = float(cells[column] or 0.0) + joules
        else:
            other = (other or 0.0) + joules
    cells["other_energy_j"] = other
    return cells


def run_row(report: Report) -> dict[str, Cell]:
    """The runs-file row of ``report`` (column name to value; ``None`` is an empty cell)."""
    where = report.location
    location = "/".join(p for p in (where.country, where.region) if p) or None
    return {
        "run_id": report.run_id,
        "started_at": iso_utc(report.started_at),
        "duration_s": report.duration_s,
        "energy_j": report.energy_j,
        "energy_kwh": report.energy_j / J_PER_KWH,
        "pue": report.pue,
        "facility_energy_kwh": report.facility_energy_j / J_PER_KWH,
        "co2eq_g": report.co2eq_g,
        "g_per_kwh": report.intensity.g_per_kwh,
        "intensity_source": report.intensity.source,
        "intensity_basis": report.intensity.basis,
        "location": location,
        "methods": "+".join(report.methods),
        "estimated": report.estimated,
        "partial": report.partial,
        "epochs": len(report.epochs),
        **_by_component({c.component: c.energy_j for c in report.components}),
    }


def epoch_row(run_id: str, epoch: EpochRecord, prediction: Prediction | None) -> dict[str, Cell]:
    """The epochs-file row of ``epoch`` (and of the prediction made after it, if any)."""
    p = prediction
    return {
        "run_id": run_id,
        "epoch": epoch.index,
        "started_at": iso_utc(epoch.started_at),
        "duration_s": epoch.duration_s,
        "energy_j": epoch.energy_j,
        "co2eq_g": epoch.co2eq_g,
        **_by_component(epoch.energy_by_component_j),
        "predicted_epochs": p.epochs if p else None,
        "predicted_duration_s": p.duration_s if p else None,
        "predicted_energy_j": p.energy_j if p else None,
        "predicted_co2eq_g": p.co2eq_g if p else None,
        "predicted_co2eq_g_low": p.co2eq_g_low if p else None,
        "predicted_co2eq_g_high": p.co2eq_g_high if p else None,
        "predicted_level": p.level if p else None,
        "predicted_g_per_kwh": p.g_per_kwh if p else None,
    }


def _cell(value: Cell) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)  # str(float) is the shortest text that reads back to the same float


def _encode(cells: Sequence[str]) -> bytes:
    buf = io.StringIO()
    import csv  # only when a CSV file is written

    csv.writer(buf).writerow(cells)  # excel dialect: RFC 4180 quoting, CRLF line ends
    return buf.getvalue().encode("utf-8")


def _append(path: Path, data: bytes, file_mode: str = "private") -> None:
    # O_APPEND and a single write(): rows from other processes land whole, never interleaved.
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | _files.NOFOLLOW
    fd = os.open(path, flags, _files.modes(file_mode)[0])
    try:
        _files.apply_mode(fd, file_mode)  # one policy for every file of the log directory
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _create_with_header(path: Path, header: bytes, file_mode: str = "private") -> None:
    """Create ``path`` holding ``header`` unless it exists, without a moment where another
    process could see it empty (and put a row before the header)."""
    _files.make_dirs(path.parent, file_mode)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        _files.apply_mode(fd, file_mode)  # mkstemp makes 0600; "shared" opens it to the group
        with os.fdopen(fd, "wb") as f:
            f.write(header)
        try:
            os.link(tmp, path)  # atomic, and fails if another process created it first
        except FileExistsError:
            pass
        except OSError:
            # No hard links on this file system: exclusive create is the next best thing.
            with contextlib.suppress(FileExistsError):
                made = os.open(
                    path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _files.modes(file_mode)[0]
                )
                with os.fdopen(made, "wb") as f:
                    _files.apply_mode(made, file_mode)
                    f.write(header)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _first_line(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.readline()


class CsvWriter:
    """Appends runs and epochs to the two CSV files in the log directory (``write_log``)."""

    @staticmethod
    def needed_by(settings: Settings) -> bool:
        """Whether a run with ``settings`` writes the CSV files (``write_log``)."""
        return settings.write_log

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Files whose header was checked, mapped to the file rows really go to.
        self._targets: dict[Path, Path] = {}

    def _target(self, path: Path, header: bytes, file_mode: str) -> Path:
        """The file to append to: ``path``, or a numbered sibling when ``path`` has other
        columns (written by another carbontrack version), so that no row lands under a header
        that does not describe it."""
        target = self._targets.get(path)
        if target is not None and target.exists():
            return target
        candidate, n = path, 1
        while True:
            _create_with_header(candidate, header, file_mode)
            # Line ends may differ (a file saved again by an editor); the columns may not.
            if _first_line(candidate).rstrip(b"\r\n") == header.rstrip(b"\r\n"):
                break
            n += 1
            candidate = path.with_name(f"{path.stem}.{n}{path.suffix}")
        if candidate != path:
            logger.warning(
                "%s has other columns than this carbontrack version writes; appending to %s "
                "instead (merge or move the old file away to go back to one file)",
                path,
                candidate,
            )
        self._targets[path] = candidate
        return candidate

    def _write(
        self, path: Path, columns: Sequence[str], row: Mapping[str, Cell], file_mode: str
    ) -> None:
        header = _encode(columns)
        data = _encode([_cell(row[c]) for c in columns])
        with self._lock:
            _append(self._target(path, header, file_mode), data, file_mode)

    @hookimpl
    def carbontrack_epoch_ended(
        self, run: RunInfo, epoch: EpochRecord, prediction: Prediction | None, settings: Settings
    ) -> None:
        """Append the epoch (and the prediction made after it) to the epochs file."""
        if settings.write_log:
            row = epoch_row(run.run_id, epoch, prediction)
            self._write(epochs_csv_path(settings), EPOCH_COLUMNS, row, settings.file_mode)

    @hookimpl
    def carbontrack_report_ready(self, report: Report, settings: Settings) -> None:
        """Append the run to the runs file."""
        if settings.write_log:
            self._write(runs_csv_path(settings), RUN_COLUMNS, run_row(report), settings.file_mode)
