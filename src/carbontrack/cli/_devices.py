"""``carbontrack devices``: what every backend finds here, how it reads it, and what it reads now.

Each backend's devices are read twice, ``--window`` seconds apart, to show the power they see;
hardware that exists but cannot be read is listed with the reason and the exact fix.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from carbontrack.model import Device, Reading, Unavailable, check_device, component_of

if TYPE_CHECKING:
    from carbontrack._plugins import PluginHost
    from carbontrack.settings import Settings

__all__ = ["BackendView", "DeviceView", "configure_parser", "inspect_devices", "run"]

EPILOG = """\
examples:
  carbontrack devices                 # what can be measured here, and how to fix what cannot
  carbontrack devices --window 2      # average the power over 2 s
  carbontrack devices --json | jq '.backends[].devices[]'
"""

_METHOD_WORDS = {
    "counter": "counter (measured)",
    "power": "power (measured, sampled)",
    "model": "model (ESTIMATE)",
}


@attrs.frozen
class DeviceView:
    """One device as ``devices`` shows it: what it is, how it is read, the power read now."""

    id: str
    kind: str
    name: str
    method: str
    shared: bool
    detail: str
    power_w: float | None
    error: str | None
    used: bool
    note: str = ""


@attrs.frozen
class BackendView:
    """One backend (a plugin that discovers devices) and everything it said."""

    name: str
    devices: tuple[DeviceView, ...] = ()
    unavailable: tuple[Unavailable, ...] = ()
    failures: tuple[str, ...] = ()
    blocked: bool = False
    #: The plugin could not be loaded: why (its other fields are empty).
    error: str | None = None


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Add ``devices``' options to ``p``."""
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when a plugin cannot be loaded (by default it is listed with its error)",
    )
    p.add_argument(
        "--window",
        type=float,
        default=0.5,
        metavar="S",
        help="seconds between the two reads that give the power now (default 0.5)",
    )


def _power(
    first: Reading | None, second: Reading | None, dt_s: float
) -> tuple[float | None, str | None]:
    from carbontrack._sampler import counter_delta

    for r in (second, first):
        if r is not None and r.error is not None:
            return None, r.error
    if second is None:
        return None, "the backend returned no reading for this device"
    if second.watts is not None:
        if first is not None and first.watts is not None:
            return (first.watts + second.watts) / 2, None
        return second.watts, None
    if first is None or first.joules is None or second.joules is None:
        return None, "only one counter reading; no power over the window"
    joules, reset = counter_delta(first.joules, second.joules, second.wrap_j)
    if reset:
        return None, "the counter went backwards (reset) during the window; run again"
    return (joules / dt_s if dt_s > 0 else None), None


def _discover_all(
    host: PluginHost, backends: list[str], settings: Settings
) -> tuple[dict[str, list[Device]], dict[str, list[Unavailable]]]:
    """Each backend's devices and what it cannot read; garbage becomes the plugin's failure."""
    found: dict[str, list[Device]] = {}
    unavailable: dict[str, list[Unavailable]] = {}
    for name in backends:
        _ok, items = host.call_one(name, "carbontrack_discover_devices", settings=settings)
        if items is not None and not isinstance(items, list):  # the host runs out iterables
            host.record_failure(
                name,
                "carbontrack_discover_devices",
                TypeError(f"returned {items!r:.100}, not a list of Device"),
            )
            items = None
        for item in items or ():
            problem = check_device(item)
            if problem is not None:  # listed under the plugin's failures, naming the value
                host.record_failure(name, "carbontrack_discover_devices", TypeError(problem))
            elif isinstance(item, Device):
                found.setdefault(name, []).append(item)
            elif isinstance(item, Unavailable):
                unavailable.setdefault(name, []).append(item)
    return found, unavailable


def inspect_devices(
    *,
    window_s: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    extra_plugins: Sequence[object] = (),
) -> list[BackendView]:
    """Discover every backend's devices, read each twice ``window_s`` apart, and close them.

    Raises ``PluginLoadError`` when a plugin cannot be loaded.
    """
    from carbontrack._plugins import PluginHost, PluginInfo, blocked_plugins, make_plugin_manager
    from carbontrack.settings import COMPONENTS, make_settings

    # One plugin that cannot be imported is listed with its error; the others are inspected.
    broken: list[PluginInfo] = []
    pm = make_plugin_manager(extra_plugins=extra_plugins, broken=broken)
    host = PluginHost(pm)
    # Every kind, the optional RAM model included: this command shows what *could* be measured.
    # Backends that sample (powermetrics) take ten samples per window: a sample more or less
    # inside the window then moves the power shown by about a tenth, not a half.
    settings = make_settings(
        components=COMPONENTS, write_log=False, verbose=0, interval_s=max(window_s / 10, 0.05)
    )
    default = make_settings()
    backends = host.implementers("carbontrack_discover_devices")
    found, unavailable = _discover_all(host, backends, settings)

    def read_all() -> tuple[dict[str, float], dict[tuple[str, str], Reading]]:
        out: dict[tuple[str, str], Reading] = {}
        now = clock()
        # All plugins at once, each timed on its own worker as it is called: a slow thread
        # hand-over must not stretch or shrink the window a power figure is divided by.
        results = host.call_each(
            "carbontrack_read_energy",
            {name: {"devices": devices} for name, devices in found.items()},
            clock=clock,
        )
        at: dict[str, float] = {}
        for name, (_ok, result, stamp) in results.items():
            at[name] = now if stamp is None else stamp
            for r in result or ():
                if isinstance(r, Reading):
                    out[(name, r.device_id)] = r
        return at, out

    try:
        t0, first = read_all()
        sleep(window_s)
        t1, second = read_all()
    finally:
        for name, devices in found.items():
            host.call_one(name, "carbontrack_close_devices", devices=devices)

    # The host's rule for runs: an estimate stands in only where nothing of its kind is measured.
    measured = {d.kind for devs in found.values() for d in devs if d.method != "model"}
    failures: dict[str, list[str]] = {}
    for f in host.failures:
        failures.setdefault(f.plugin, []).append(f"{f.hook}: {f.error}")
    views = []
    for name in backends:
        device_views = []
        for d in found.get(name, ()):
            window = t1.get(name, window_s) - t0.get(name, 0.0)
            power, error = _power(first.get((name, d.id)), second.get((name, d.id)), window)
            used = d.method != "model" or d.kind not in measured
            note = "" if used else f"not used: {d.kind} is measured by another backend"
            if used and not default.wants(d.kind):
                # Not measured by a run with the default components: not "used".
                used = False
                note = (
                    f"not used by default: only with --components including {component_of(d.kind)}"
                )
            device_views.append(
                DeviceView(
                    id=d.id,
                    kind=d.kind,
                    name=d.name,
                    method=d.method,
                    shared=d.shared,
                    detail=d.detail,
                    power_w=power,
                    error=error,
                    used=used,
                    note=note,
                )
            )
        views.append(
            BackendView(
                name=name,
                devices=tuple(device_views),
                unavailable=tuple(unavailable.get(name, ())),
                failures=tuple(failures.get(name, ())),
            )
        )
    for info in broken:
        views.append(BackendView(name=info.name, error=info.error))
    # A blocked plugin is never loaded, so whether it is a backend is unknown: list them all.
    for name in sorted(blocked_plugins()):
        if name not in backends:
            views.append(BackendView(name=name, blocked=True))
    return views


def _wrap(text: str, indent: int, width: int) -> str:
    pad = " " * indent
    return textwrap.fill(
        text, width=width, initial_indent=pad, subsequent_indent=pad, break_on_hyphens=False
    )


def format_text(views: Sequence[BackendView], window_s: float, width: int = 100) -> str:
    """The human-readable listing; prose wrapped at ``width`` (fixes never: they are commands)."""
    lines: list[str] = []
    for v in views:
        if v.blocked:
            lines.append(
                f"{v.name}: disabled by CARBONTRACK_DISABLE_PLUGINS (remove it there to use it)"
            )
            continue
        if v.error is not None:
            lines.append(f"{v.name}: BROKEN, not loaded")
            lines.append(_wrap(f"error: {v.error}", 2, width))
            continue
        if v.devices:
            lines.append(f"{v.name}: {len(v.devices)} device(s)")
        elif v.unavailable:
            lines.append(f"{v.name}: found hardware it cannot read")
        else:
            lines.append(f"{v.name}: no devices found")
        for d in v.devices:
            if d.error is not None:
                power = f"unreadable: {d.error}"
            elif d.power_w is None:
                power = "power unknown"
            else:
                power = f"{d.power_w:.1f} W"
            extra = []
            if d.shared:
                extra.append("shared")
            if d.note:
                extra.append(d.note)
            tail = f" ({'; '.join(extra)})" if extra else ""
            lines.append(
                f"  {d.id:<14} {d.kind:<5} {_METHOD_WORDS.get(d.method, d.method):<26} "
                f"{power:>10}  {d.name}{tail}"
            )
            if d.detail:
                lines.append(_wrap(d.detail, 17, width))
        for u in v.unavailable:
            lines.append(_wrap(f"cannot read {u.kind}: {u.reason}", 2, width))
            lines.append("    fix: " + u.fix.replace("\n", "\n         "))
        for f in v.failures:
            lines.append(f"  plugin failed in {f}")
    if not views:
        lines.append("no backend is installed or enabled")
    used = [d for v in views for d in v.devices if d.used and d.error is None]
    if not used:
        lines.append("nothing can be measured here: a run would report no energy (see the fixes)")
    elif all(d.method == "model" for d in used):
        lines.append("only estimates here: no energy counter or power sensor can be read")
    lines.append(f"(power averaged over {window_s:g} s)")
    return "\n".join(lines)


def to_json(views: Sequence[BackendView], window_s: float) -> dict[str, Any]:
    """The JSON form: ``{"window_s": ..., "backends": [...]}``."""
    return {
        "window_s": window_s,
        "backends": [attrs.asdict(v, recurse=True) for v in views],
    }


def run(args: argparse.Namespace) -> int:
    """Print what can be measured here: 0, or 1 with ``--strict`` when a plugin cannot be
    loaded (it is listed with its error either way)."""
    from carbontrack.errors import PluginLoadError

    window = args.window
    if not window > 0 or window > 60:
        message = (
            f"--window {window!r} is not valid: expected seconds between 0 and 60, "
            "e.g. --window 0.5"
        )
        parser = getattr(args, "command_parser", None)
        if parser is not None:
            parser.error(message)  # the usage line, and exit 2
        print(f"carbontrack devices: error: {message}", file=sys.stderr)
        return 2
    try:
        views = inspect_devices(window_s=window)
    except PluginLoadError as exc:
        print(f"carbontrack: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(to_json(views, window), indent=2, allow_nan=False))
    else:
        width = min(shutil.get_terminal_size((100, 24)).columns, 100)
        print(format_text(views, window, max(width, 60)))
    broken = [v.name for v in views if v.error is not None]
    for name in broken:
        print(f"carbontrack: plugin {name!r} cannot be loaded (listed above)", file=sys.stderr)
    return 1 if broken and args.strict else 0
