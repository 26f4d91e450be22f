"""The carbontrack hooks of the hwmon backend: discover the sensors, then read them.

carbontrack finds this module through the entry point ``hwmon = "carbontrack_hwmon.plugin"``
in the group ``carbontrack`` and registers it under the name ``hwmon``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from carbontrack import Device, Reading, Settings, Unavailable, hookimpl

from carbontrack_hwmon._sensors import INCLUDE_ENV, choose_sensors, hwmon_root, scan

__all__ = [
    "BACKEND",
    "carbontrack_discover_devices",
    "carbontrack_read_energy",
]

#: The plugin's name: ``Device.backend`` of its devices and its entry-point name.
BACKEND = "hwmon"

# The same pattern as RAPL's powercap rule (the kernel's %p is the device path under /sys);
# udev passes the single-quoted part to sh as one argument, so the globs expand there.
_UDEV_RULE = (
    'ACTION=="add", SUBSYSTEM=="hwmon", '
    "RUN+=\"/bin/sh -c 'chmod a+r /sys%p/energy*_input /sys%p/power*_input'\""
)
_UDEV_HINT = (
    '; to keep it after reboots: echo "'
    + _UDEV_RULE.replace('"', '\\"')
    + '" | sudo tee /etc/udev/rules.d/99-carbontrack-hwmon.rules && sudo udevadm control '
    "--reload && sudo udevadm trigger --subsystem-match=hwmon"
)


def _include(settings: Settings) -> frozenset[str]:
    """Opt-in sensor groups from ``$CARBONTRACK_HWMON_INCLUDE`` and ``plugin_options``."""
    names = {n.strip() for n in os.environ.get(INCLUDE_ENV, "").split(",")}
    options = settings.plugin_options.get(BACKEND, {})
    if not isinstance(options, Mapping):
        raise TypeError(
            f"plugin_options['hwmon']={options!r} is not valid: expected a dict such as "
            "{'include': ['system']}"
        )
    value: Any = options.get("include", ())
    names.update(str(n).strip() for n in (value.split(",") if isinstance(value, str) else value))
    return frozenset(n for n in names if n)


@hookimpl
def carbontrack_discover_devices(settings: Settings) -> list[Device | Unavailable]:
    """One ``Device`` per chosen sensor; one ``Unavailable`` per kind with unreadable files.

    No hwmon tree, or no sensor worth reading, is not an error: the result is ``[]``.
    """
    found: list[Device | Unavailable] = []
    denied: dict[str, list[str]] = {}
    for sensor in choose_sensors(scan(hwmon_root()), _include(settings)):
        try:
            _read_file(str(sensor.path))  # a real read: os.access() asks about the real uid
        except PermissionError:
            denied.setdefault(sensor.kind, []).append(str(sensor.path))
            continue
        except OSError:
            pass  # not a permission problem: the reads report it, naming the file
        found.append(
            Device(
                id=sensor.id,
                kind=sensor.kind,
                name=sensor.name,
                backend=BACKEND,
                method=sensor.method,
                detail=str(sensor.path),
                handle=str(sensor.path),
            )
        )
    for kind, paths in denied.items():
        found.append(
            Unavailable(
                backend=BACKEND,
                kind=kind,
                reason=f"hwmon sensors are not readable by this user: {', '.join(paths)}",
                fix=f"sudo chmod a+r {' '.join(paths)}{_UDEV_HINT}",
            )
        )
    return found


def _read_file(path: str) -> bytes:
    # os-level calls: five times cheaper than Path.read_bytes(), and this runs on every tick.
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 64)
    finally:
        os.close(fd)


def _read(device: Device) -> Reading:
    try:
        raw = int(_read_file(device.handle))
    except (OSError, ValueError) as exc:
        return Reading(device.id, error=f"cannot read {device.detail}: {exc}")
    if raw < 0:
        return Reading(device.id, error=f"{device.detail} holds a negative value ({raw})")
    if device.method == "counter":
        # energyN_input is in µJ. Its width is the driver's business (amd_energy keeps 64 bits),
        # so no wrap range is claimed: a counter that goes down counts as a reset.
        return Reading(device.id, joules=raw / 1e6)
    return Reading(device.id, watts=raw / 1e6)  # powerN_* is in µW


@hookimpl
def carbontrack_read_energy(devices: Sequence[Device]) -> list[Reading]:
    """Read every sensor file once: µJ counters as joules, µW power as watts."""
    return [_read(device) for device in devices]
