"""Immutable values that plugins, the engine and the writers exchange.

Units live in field names (``energy_j``, ``power_w``, ``g_per_kwh``); conversions happen at the
edges only. ``Report.to_dict()`` / ``Report.from_dict()`` round-trip through JSON.
"""

from __future__ import annotations

import math
import re
import types
import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, Union, get_args, get_origin

import attrs

from carbontrack._model_base import METHODS, DeviceEnergy, Location

# Re-exported for annotations elsewhere (carbontrack.testing, plugins), as before the move.
from carbontrack._model_base import Method as Method  # noqa: PLC0414

if TYPE_CHECKING:
    from carbontrack._model_later import (
        Command,
        EpochRecord,
        JobInfo,
        JobReport,
        NodeEnergy,
        PluginFailure,
        Prediction,
        RankEnergy,
        Sample,
    )

__all__ = [
    "METHODS",
    "SCHEMA_VERSION",
    "Command",
    "ComponentEnergy",
    "Device",
    "DeviceEnergy",
    "EpochRecord",
    "Intensity",
    "IntensityPoint",
    "JobInfo",
    "JobReport",
    "Location",
    "NodeEnergy",
    "PluginFailure",
    "Prediction",
    "RankEnergy",
    "Reading",
    "Report",
    "RunInfo",
    "Sample",
    "Unavailable",
    "check_device",
    "check_intensity",
    "check_kind",
    "check_location",
    "component_of",
]

#: Version of the report layout; bumped when a field changes meaning or disappears.
SCHEMA_VERSION = 1


J_PER_KWH = 3.6e6

# Device kinds that belong to a broader component: DRAM is measured with the CPU packages
# (as in carbontracker, ``components="cpu"`` covers both), and so is RAPL's ``psys`` platform
# zone, which covers packages and DRAM together.
_KIND_TO_COMPONENT = {"dram": "cpu", "psys": "cpu"}


def component_of(kind: str) -> str:
    """Return the component (``cpu``, ``gpu``, ...) that a device kind is counted under."""
    return _KIND_TO_COMPONENT.get(kind, kind)


#: Values a plain run never builds, defined in ``carbontrack._model_later`` and loaded on first
#: use (each attrs class costs about half a millisecond per process to generate).
_LATER = frozenset(
    {
        "Command",
        "JobInfo",
        "EpochRecord",
        "JobReport",
        "NodeEnergy",
        "PluginFailure",
        "Prediction",
        "RankEnergy",
        "Sample",
    }
)


def _load_later() -> None:
    from carbontrack import _model_later

    for name in _LATER:
        globals()[name] = getattr(_model_later, name)


def __getattr__(name: str) -> Any:
    if name in _LATER:
        _load_later()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _finite_non_negative(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    if not math.isfinite(value) or value < 0:
        name = f"{type(instance).__name__}.{attribute.name}"
        msg = f"{name} must be a finite number >= 0, got {value!r}"
        raise ValueError(msg)


@attrs.frozen
class Device:
    """One piece of hardware a plugin can read.

    ``id`` is unique within the plugin (for example ``package-0``); ``kind`` says what it is
    (``cpu``, ``dram``, ``gpu``, ``ane``, ``ram``, or a plugin's own word); ``method`` says how
    its energy is obtained. ``shared`` marks hardware also used by others (a MIG slice's parent
    GPU). ``handle`` is the plugin's private data and never leaves the process.
    """

    id: str
    kind: str
    name: str
    backend: str
    method: Method = attrs.field(validator=attrs.validators.in_(METHODS))
    shared: bool = False
    detail: str = ""
    handle: Any = attrs.field(default=None, eq=False, repr=False)


@attrs.frozen
class Unavailable:
    """Hardware that exists here but cannot be read, with the reason and the exact fix."""

    backend: str
    kind: str
    reason: str
    fix: str


@attrs.frozen
class Reading:
    """One read of one device: a cumulative counter (``joules``), instantaneous power
    (``watts``), or the ``error`` that prevented the read (naming the file or call at fault).

    For counters, ``wrap_j`` is the range after which the counter wraps to zero, or ``None``
    when it never wraps (a counter that goes down is then a reset).
    """

    device_id: str
    joules: float | None = attrs.field(default=None, validator=_finite_non_negative)
    watts: float | None = attrs.field(default=None, validator=_finite_non_negative)
    wrap_j: float | None = attrs.field(default=None, validator=_finite_non_negative)
    error: str | None = None

    def __attrs_post_init__(self) -> None:
        given = [v is not None for v in (self.joules, self.watts, self.error)]
        if sum(given) != 1:
            msg = (
                f"Reading for {self.device_id!r} needs exactly one of joules= (a counter), "
                f"watts= (power) or error=, got joules={self.joules!r}, watts={self.watts!r}, "
                f"error={self.error!r}"
            )
            raise ValueError(msg)


@attrs.frozen
class IntensityPoint:
    """Carbon intensity over ``[start_ts, end_ts)`` (Unix seconds); ``is_forecast`` marks a
    provider's forecast rather than a measured (or estimated past) value."""

    start_ts: float
    end_ts: float
    g_per_kwh: float
    is_forecast: bool = False


@attrs.frozen
class Intensity:
    """Carbon intensity of the electricity used, and where the figure comes from.

    ``g_per_kwh`` is the value for the whole window; ``points`` (when a provider has a time
    series) lets the engine weight each part of the run by the energy drawn then. ``forecast``
    holds future points, used by predictions. ``is_fallback`` marks a figure used because nothing
    better was known (the world average), which reports say plainly.
    """

    g_per_kwh: float = attrs.field(validator=_finite_non_negative)
    source: str
    basis: str = "lifecycle"
    year: int | None = None
    zone: str | None = None
    is_fallback: bool = False
    note: str = ""
    points: tuple[IntensityPoint, ...] = ()
    forecast: tuple[IntensityPoint, ...] = ()


@attrs.frozen
class ComponentEnergy:
    """Energy of one component (``cpu`` covers packages and DRAM), summed over its devices."""

    component: str
    energy_j: float
    methods: tuple[str, ...]
    devices: int
    partial: bool = False

    @property
    def estimated(self) -> bool:
        """True when any part of this figure comes from a model rather than a measurement."""
        return "model" in self.methods


@attrs.frozen
class RunInfo:
    """What a run measures, known once it starts; given to writers at the start."""

    run_id: str
    started_at: float
    devices: tuple[Device, ...]
    unavailable: tuple[Unavailable, ...]
    location: Location
    pid: int
    epochs: int | None
    components: tuple[str, ...]
    job: JobInfo | None = None
    job_sequence: int = 0


@attrs.frozen
class Report:
    """The result of a tracked run (``final``) or a checkpoint of it while it runs.

    ``energy_j`` is what the devices drew; ``facility_energy_j = energy_j * pue``; ``co2eq_g``
    is computed from the facility energy. ``partial`` is true when a device was dropped
    mid-run or hardware was found that could not be read.
    """

    run_id: str
    started_at: float
    duration_s: float
    energy_j: float
    pue: float
    facility_energy_j: float
    co2eq_g: float
    intensity: Intensity
    location: Location
    devices: tuple[DeviceEnergy, ...] = ()
    components: tuple[ComponentEnergy, ...] = ()
    epochs: tuple[EpochRecord, ...] = ()
    epochs_planned: int | None = None
    predictions: tuple[Prediction, ...] = ()
    unavailable: tuple[Unavailable, ...] = ()
    failures: tuple[PluginFailure, ...] = ()
    warnings: tuple[str, ...] = ()
    partial: bool = False
    final: bool = True
    command: Command | None = None
    carbontrack_version: str = ""
    schema: int = SCHEMA_VERSION
    job: JobReport | None = None

    @property
    def energy_kwh(self) -> float:
        """Device (IT) energy in kWh."""
        return self.energy_j / J_PER_KWH

    @property
    def facility_energy_kwh(self) -> float:
        """Energy including the data-centre overhead (PUE), in kWh."""
        return self.facility_energy_j / J_PER_KWH

    @property
    def methods(self) -> tuple[str, ...]:
        """Every method behind the figure, in the order counter, power, model."""
        used = {d.method for d in self.devices}
        return tuple(m for m in METHODS if m in used)

    @property
    def estimated(self) -> bool:
        """True when some of the energy is a model estimate rather than a measurement."""
        return "model" in self.methods

    @property
    def prediction(self) -> Prediction | None:
        """The latest prediction, if any was made."""
        return self.predictions[-1] if self.predictions else None

    def methodology(self) -> str:
        """A paragraph for a paper's methods section: what was measured, how, and the caveats."""
        return _methodology(self)

    def to_dict(self) -> dict[str, Any]:
        """Return plain JSON-compatible data; ``Report.from_dict`` rebuilds an equal report."""
        return typing.cast(dict[str, Any], _unstructure(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Report:
        """Rebuild a report from ``to_dict()`` output (after a JSON round trip)."""
        return _structure(cls, data)


_METHOD_TEXT = {
    "counter": "the difference of cumulative hardware energy counters read at the start and end "
    "of the run and of each epoch (wraps and resets handled)",
    "power": "instantaneous power sampled periodically and integrated with the trapezoid rule",
    "model": "a model estimate (rated power times utilisation), not a measurement",
}


def _methodology(r: Report) -> str:
    kwh = r.energy_j / J_PER_KWH
    parts = [
        f"Energy use was recorded with carbontrack {r.carbontrack_version or '(unknown version)'} "
        f"over {r.duration_s:.0f} s" + (f" and {len(r.epochs)} epochs" if r.epochs else "") + "."
    ]
    for comp in r.components:
        members = [d for d in r.devices if component_of(d.kind) == comp.component]
        backends = ", ".join(sorted({d.backend for d in members}))
        how = "; ".join(_METHOD_TEXT[m] for m in comp.methods)
        parts.append(
            f"The {comp.component} figure ({len(members)} device(s), via {backends}) is {how}"
            + (
                ", and is partial: some hardware could not be measured for the whole run"
                if comp.partial
                else ""
            )
            + "."
        )
    if not r.components:
        parts.append("No device could be measured, so no energy figure is available.")
    parts.append(
        f"Device energies were summed ({kwh:.4g} kWh) and multiplied by a power usage "
        f"effectiveness of {r.pue:g} ({r.facility_energy_j / J_PER_KWH:.4g} kWh)."
    )
    i = r.intensity
    where = r.location.region or r.location.country or "an unknown location"
    year = f", {i.year}" if i.year else ""
    kind = (
        "the world average, as the location was not known"
        if i.is_fallback
        else f"the value for {where}"
    )
    series = ", weighted over time by the energy drawn" if i.points else ""
    parts.append(
        f"Emissions ({r.co2eq_g:.4g} gCO2eq) use a carbon intensity of {i.g_per_kwh:.1f} "
        f"gCO2eq/kWh ({i.basis} basis{year}; {i.source}), {kind}{series}."
    )
    if r.estimated:
        parts.append("Modelled figures carry a larger, unquantified uncertainty than measurements.")
    p = r.prediction
    if p is not None and p.level is not None and p.co2eq_g_low is not None:
        parts.append(
            f"The prediction after {p.after_epoch} epoch(s) for {p.epochs} epochs was "
            f"{p.co2eq_g:.4g} gCO2eq with a {p.level:.0%} prediction interval of "
            f"{p.co2eq_g_low:.4g} to {p.co2eq_g_high:.4g} gCO2eq, assuming epochs like those "
            "observed (Anthony et al. 2020, with a Student t interval)."
        )
    return " ".join(parts)


# -- checks of values that cross the plugin boundary --------------------------------------------
# A plugin can return anything (attrs validators can be bypassed, a hook can return 42): the host
# checks each value with these before it reaches the engine, and records a violation as that
# plugin's failure instead of letting it raise in the user's code or spoil a figure.

#: Device kinds carbontrack knows; a plugin may use its own word (``psu``, ``soc``...) if it is a
#: lower-case name that is not a variant of one of these (``CPU`` would escape de-duplication).
KNOWN_KINDS = frozenset({"cpu", "dram", "gpu", "ane", "ram", "psys"})
# A pattern string, not a compiled pattern: ``re`` compiles it on first use and caches it, so
# a run that never needs it never pays for it (docs/performance.md, "Start-up").
_KIND_RE = r"[a-z][a-z0-9_-]{0,31}"

#: The highest carbon intensity any grid has come near is ~1,100 g/kWh (lignite); a figure
#: above this is garbage, not data.
MAX_G_PER_KWH = 5_000.0


def _plain_str(value: object, what: str, *, empty: bool = True) -> str | None:
    if not isinstance(value, str):
        return f"{what}={value!r:.100} is not a str"
    if not empty and not value:
        return f"{what} is empty"
    return None


def check_device(value: object) -> str | None:
    """Why ``value`` is not a usable ``Device`` or ``Unavailable``, or None when it is."""
    if isinstance(value, Unavailable):
        for field in ("backend", "kind", "reason", "fix"):
            problem = _plain_str(getattr(value, field), f"Unavailable.{field}")
            if problem:
                return problem
        return None
    if not isinstance(value, Device):
        return f"returned {value!r:.100}, not a Device or Unavailable"
    problem = (
        _plain_str(value.id, "Device.id", empty=False)
        or _plain_str(value.name, "Device.name")
        or _plain_str(value.backend, "Device.backend")
        or _plain_str(value.detail, "Device.detail")
        or check_kind(value.kind)
    )
    if problem:
        return problem
    if value.method not in METHODS:
        return f"Device.method={value.method!r:.100} is not one of {', '.join(METHODS)}"
    if not isinstance(value.shared, bool):
        return f"Device.shared={value.shared!r:.100} is not a bool"
    return None


def check_kind(kind: object) -> str | None:
    """Why ``kind`` is not a usable device kind, or None."""
    if not isinstance(kind, str):
        return f"Device.kind={kind!r:.100} is not a str"
    if kind in KNOWN_KINDS:
        return None
    if kind.strip().lower() in KNOWN_KINDS:
        return f"Device.kind={kind!r} is not a kind: write {kind.strip().lower()!r}"
    if not re.fullmatch(_KIND_RE, kind):
        return (
            f"Device.kind={kind!r:.100} is not a kind: expected one of "
            f"{', '.join(sorted(KNOWN_KINDS))} or a lower-case word of the plugin's own"
        )
    return None


def _check_number(value: object, what: str, high: float) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"{what}={value!r:.100} is not a number"
    if not math.isfinite(value) or value < 0 or value > high:
        return f"{what}={value!r} is not between 0 and {high:g}"
    return None


def check_location(value: object) -> str | None:
    """Why ``value`` is not a usable ``Location`` (or None), or None when it is."""
    if value is None:
        return None
    if not isinstance(value, Location):
        return f"returned {value!r:.100}, not a Location"
    if value.country is not None and (
        not isinstance(value.country, str) or not re.fullmatch(r"[A-Z]{2}", value.country)
    ):
        return f"Location.country={value.country!r:.100} is not an ISO 3166 alpha-2 code"
    if value.region is not None and not isinstance(value.region, str):
        return f"Location.region={value.region!r:.100} is not a str"
    return _plain_str(value.source, "Location.source")


def check_intensity(value: object) -> str | None:
    """Why ``value`` is not a usable ``Intensity`` (or None), or None when it is."""
    if value is None:
        return None
    if not isinstance(value, Intensity):
        return f"returned {value!r:.100}, not an Intensity"
    problem = _check_number(value.g_per_kwh, "Intensity.g_per_kwh", MAX_G_PER_KWH) or _plain_str(
        value.source, "Intensity.source"
    )
    if problem:
        return problem
    for field in ("points", "forecast"):
        points = getattr(value, field)
        if not isinstance(points, tuple | list):
            return f"Intensity.{field}={points!r:.100} is not a tuple of IntensityPoint"
        for point in points:
            if not isinstance(point, IntensityPoint):
                return f"Intensity.{field} holds {point!r:.100}, not an IntensityPoint"
            problem = _check_number(point.g_per_kwh, f"Intensity.{field} g_per_kwh", MAX_G_PER_KWH)
            for ts in (point.start_ts, point.end_ts):
                if problem is None and (
                    isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts)
                ):
                    problem = f"Intensity.{field} time {ts!r:.100} is not a finite number"
            if problem:
                return problem
    return None


T = TypeVar("T")


def _unstructure(value: Any) -> Any:
    if attrs.has(type(value)):
        return {
            f.name: _unstructure(getattr(value, f.name))
            for f in attrs.fields(type(value))
            if f.eq  # ``handle`` and other private data are left out
        }
    if isinstance(value, tuple | list):
        return [_unstructure(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _unstructure(v) for k, v in value.items()}
    return value


_hints_namespace: dict[str, Any] = {}


def _hint_namespace() -> dict[str, Any]:
    # The names the values' annotations use, wherever the values are defined: this module's,
    # and those of carbontrack._model_later (loaded here), whose classes say they are this
    # module's but whose annotations use that module's imports (Literal, Mapping...).
    if not _hints_namespace:
        from carbontrack import _model_later

        _load_later()
        _hints_namespace.update({**vars(_model_later), **globals()})
    return _hints_namespace


def _structure(cls: type[T], data: Any) -> T:
    hints = typing.get_type_hints(cls, globalns=_hint_namespace())
    kwargs = {}
    for f in attrs.fields(cls):  # type: ignore[arg-type]
        if f.name in data:
            kwargs[f.name] = _structure_value(hints[f.name], data[f.name])
    return cls(**kwargs)


def _structure_value(tp: Any, value: Any) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        if value is None:
            return None
        inner = [a for a in get_args(tp) if a is not type(None)]
        return _structure_value(inner[0], value)
    if origin is tuple:
        (item, _ellipsis) = get_args(tp)
        return tuple(_structure_value(item, v) for v in value)
    if origin in (Mapping, dict):
        _, item = get_args(tp)
        return {k: _structure_value(item, v) for k, v in value.items()}
    if isinstance(tp, type) and attrs.has(tp):
        return _structure(tp, value)
    if tp is float and isinstance(value, int):
        return float(value)
    return value
