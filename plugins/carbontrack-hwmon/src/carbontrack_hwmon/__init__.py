"""carbontrack-hwmon: a carbontrack backend for Linux hwmon energy and power sensors.

Install it next to carbontrack and it is used automatically (entry point ``hwmon`` in the group
``carbontrack``). Its hooks are in ``carbontrack_hwmon.plugin``; a fake sysfs tree for tests is
in ``carbontrack_hwmon.testing``.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
