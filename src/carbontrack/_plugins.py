"""The plugin host: builds a plugin manager and calls every plugin in isolation.

Built-ins are registered first, then the block list ``CARBONTRACK_DISABLE_PLUGINS`` applies,
then entry points of the group ``carbontrack`` load (unless
``CARBONTRACK_DISABLE_PLUGIN_AUTOLOAD`` is set). A plugin that fails to import raises
``PluginLoadError`` at start; one that fails while measuring becomes a ``PluginFailure``.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
from collections.abc import Iterable, Sequence
from typing import Any

import attrs
import pluggy

from carbontrack import _entrypoints, hookspecs
from carbontrack.errors import InvalidOption, PluginLoadError
from carbontrack.model import PluginFailure

__all__ = [
    "BUILTIN_PLUGINS",
    "PluginHost",
    "PluginInfo",
    "blocked_plugins",
    "make_plugin_manager",
]

logger = logging.getLogger(__name__)

#: Built-in plugins as ``(name, "module" or "module:Class")``; a class is instantiated per
#: manager so that stateful plugins (writers) start fresh for every run.
BUILTIN_PLUGINS: tuple[tuple[str, str], ...] = (
    ("location", "carbontrack.intensity._location:SettingLocation"),
    # Both trylast: the one registered later is asked first, so the config file beats geolocation.
    ("geolocate", "carbontrack.intensity._location:GeoLocation"),
    ("location-config", "carbontrack.intensity._location:ConfigLocation"),
    ("world", "carbontrack.intensity._world"),
    ("electricitymaps", "carbontrack.intensity._live:ElectricityMaps"),
    ("carbonintensity-gb", "carbontrack.intensity._live:CarbonIntensityGB"),
    ("energidataservice", "carbontrack.intensity._live:EnergiDataService"),
    ("runlog", "carbontrack.writers.runlog:RunLogWriter"),
    ("csv", "carbontrack.writers.csv:CsvWriter"),
    ("console", "carbontrack.writers.console:ConsoleWriter"),
    ("prometheus", "carbontrack.writers.prometheus:PrometheusWriter"),
    ("nvml", "carbontrack.backends.nvml"),
    ("rapl", "carbontrack.backends.rapl"),
    ("powermetrics", "carbontrack.backends.powermetrics"),
    ("estimate", "carbontrack.backends.estimate"),
)

DISABLE_ENV = "CARBONTRACK_DISABLE_PLUGINS"
NO_AUTOLOAD_ENV = "CARBONTRACK_DISABLE_PLUGIN_AUTOLOAD"


def blocked_plugins() -> frozenset[str]:
    """Plugin names listed (comma-separated) in ``$CARBONTRACK_DISABLE_PLUGINS``."""
    raw = os.environ.get(DISABLE_ENV, "")
    return frozenset(n.strip() for n in raw.split(",") if n.strip())


def _load_object(spec: str) -> object:
    module_name, _, attr = spec.partition(":")
    module = importlib.import_module(module_name)
    if not attr:
        return module
    factory = getattr(module, attr)
    return factory() if isinstance(factory, type) else factory


@attrs.frozen
class PluginInfo:
    """A registered or blocked plugin, as ``carbontrack plugins`` lists it."""

    name: str
    distribution: str | None
    version: str | None
    hooks: tuple[str, ...]
    blocked: bool = False
    builtin: bool = False


_HOOK_PREFIX = f"{hookspecs.PROJECT}_"
_IMPL_MARK = f"{hookspecs.PROJECT}_impl"

# Scanning every installed distribution for entry points costs milliseconds per run; the result
# only changes when sys.path does (or a package is installed mid-process, which needs a restart).
_entry_point_cache: dict[tuple[str, ...], tuple[_entrypoints.EntryPoint, ...]] = {}


def _entry_points() -> Iterable[_entrypoints.EntryPoint]:
    key = tuple(sys.path)
    found = _entry_point_cache.get(key)
    if found is None:
        found = _entrypoints.entry_points(hookspecs.PROJECT)
        _entry_point_cache[key] = found
    return found


def _raw_attribute(plugin: object, name: str) -> object:
    # What getattr_static finds, for the names pluggy would otherwise inspect one by one.
    own = getattr(plugin, "__dict__", None)
    if isinstance(own, dict) and name in own:
        return own[name]
    for klass in type(plugin).__mro__:
        if name in vars(klass):
            return vars(klass)[name]
    return None


class _PluginManager(pluggy.PluginManager):
    """pluggy's manager, registering plugins without inspecting every attribute statically.

    pluggy checks each attribute of a plugin with ``inspect.getattr_static``; a backend module
    has hundreds of names, which made entering ``with track():`` cost tens of milliseconds.
    Every hook is prefixed ``carbontrack_``, so other names only need a cheap look for the
    marker (a marked function with a wrong name must still fail ``check_pending``).
    """

    def parse_hookimpl_opts(self, plugin: object, name: str) -> pluggy.HookimplOpts | None:
        """Parse only hook-named or marked attributes; see the class docstring."""
        if not name.startswith(_HOOK_PREFIX):
            raw = _raw_attribute(plugin, name)
            raw = getattr(raw, "__func__", raw)  # staticmethod / classmethod
            if raw is None or not hasattr(raw, _IMPL_MARK):
                return None
        return super().parse_hookimpl_opts(plugin, name)


def make_plugin_manager(
    *, autoload: bool = True, extra_plugins: Sequence[object] = ()
) -> pluggy.PluginManager:
    """Return a fresh plugin manager with the built-ins, the block list and the entry points.

    ``extra_plugins`` (objects with hook implementations, such as ``carbontrack.testing``'s fake
    hardware) are registered after the built-ins. Raises ``PluginLoadError`` when a plugin
    cannot be imported, naming the plugin, its distribution and the fix.
    """
    pm = _PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for name, spec in BUILTIN_PLUGINS:
        try:
            pm.register(_load_object(spec), name=name)
        except Exception as exc:  # a broken built-in is a bug, but say which one
            raise PluginLoadError(
                f"built-in plugin {name!r} ({spec}) failed to load: {exc}"
            ) from exc
    builtin_names = {name for name, _ in BUILTIN_PLUGINS}
    for index, plugin in enumerate(extra_plugins):
        name = str(getattr(plugin, "name", None) or f"extra-{index}")
        if pm.has_plugin(name):
            # pluggy's own error dumps the whole registry; say which name and how to fix it.
            taken = (
                f"{name!r} is a built-in plugin"
                if name in builtin_names
                else f"two of plugins= are named {name!r}"
            )
            raise InvalidOption(
                f"plugins={list(extra_plugins)!r} is not valid: {taken}; expected a distinct "
                f"name for each: give {plugin!r} its own name= (its `name` attribute)"
            )
        pm.register(plugin, name=name)
    for name in blocked_plugins():
        pm.set_blocked(name)
    if autoload and not os.environ.get(NO_AUTOLOAD_ENV):
        _load_entry_points(pm)
    pm.check_pending()
    return pm


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    for ep in _entry_points():
        if pm.is_blocked(ep.name) or pm.has_plugin(ep.name):
            continue
        try:
            plugin = ep.load()
            if isinstance(plugin, type):
                plugin = plugin()
            pm.register(plugin, name=ep.name)
        except Exception as exc:
            dist = ep.dist_display_name
            raise PluginLoadError(
                f"plugin {ep.name!r} from {dist} failed to load ({type(exc).__name__}: {exc}). "
                f"Fix: reinstall or upgrade it (pip install --upgrade {dist}), or disable it "
                f"with {DISABLE_ENV}={ep.name}"
            ) from exc
        _distributions(pm)[ep.name] = ep


def _distributions(pm: pluggy.PluginManager) -> dict[str, _entrypoints.EntryPoint]:
    # Which entry point (and so which distribution) each autoloaded plugin came from; kept on
    # the manager so that a fresh manager starts with none.
    found: dict[str, _entrypoints.EntryPoint] | None = getattr(pm, "_carbontrack_dists", None)
    if found is None:
        found = {}
        pm._carbontrack_dists = found  # type: ignore[attr-defined]
    return found


def list_plugins(pm: pluggy.PluginManager) -> list[PluginInfo]:
    """Describe every registered plugin and every blocked name, for ``carbontrack plugins``."""
    dists = _distributions(pm)
    builtin_names = {name for name, _ in BUILTIN_PLUGINS}
    infos = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        ep = dists.get(name)
        hooks = tuple(sorted(h.name for h in pm.get_hookcallers(plugin) or ()))
        infos.append(
            PluginInfo(
                name=name,
                distribution=ep.dist_display_name if ep is not None else None,
                version=ep.dist_version if ep is not None else None,
                hooks=hooks,
                builtin=name in builtin_names,
            )
        )
    for name in sorted(blocked_plugins()):
        infos.append(PluginInfo(name=name, distribution=None, version=None, hooks=(), blocked=True))
    return infos


class PluginHost:
    """A typed facade over the hooks: each implementation is called on its own.

    Failures are logged once per (plugin, hook) with the traceback and kept as
    ``PluginFailure`` values for the report.
    """

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self._lock = threading.Lock()
        self._failures: dict[tuple[str, str], PluginFailure] = {}

    @property
    def failures(self) -> tuple[PluginFailure, ...]:
        """Every plugin failure so far, one per plugin and hook, with a count."""
        with self._lock:
            return tuple(self._failures.values())

    def record_failure(self, plugin: str, hook: str, exc: BaseException) -> None:
        """Keep ``exc`` as data; log it (with traceback) the first time only."""
        key = (plugin, hook)
        with self._lock:
            previous = self._failures.get(key)
            error = f"{type(exc).__name__}: {exc}"
            count = previous.count + 1 if previous else 1
            self._failures[key] = PluginFailure(plugin=plugin, hook=hook, error=error, count=count)
        if previous is None:
            logger.warning(
                "plugin %r failed in %s; carbontrack goes on without it", plugin, hook, exc_info=exc
            )

    def _impls(self, hook: str) -> list[pluggy.HookImpl]:
        caller: pluggy.HookCaller = getattr(self.pm.hook, hook)
        # pluggy calls the last registered (and tryfirst) implementations first.
        return list(reversed(caller.get_hookimpls()))

    def _call(self, impl: pluggy.HookImpl, hook: str, kwargs: dict[str, Any]) -> tuple[bool, Any]:
        try:
            return True, impl.function(*(kwargs[name] for name in impl.argnames))
        except Exception as exc:  # isolation boundary: one plugin never breaks another
            self.record_failure(impl.plugin_name, hook, exc)
            return False, None

    def broadcast(self, hook: str, **kwargs: Any) -> dict[str, Any]:
        """Call every implementation of ``hook``; return results by plugin, failures left out."""
        results = {}
        for impl in self._impls(hook):
            ok, value = self._call(impl, hook, kwargs)
            if ok:
                results[impl.plugin_name] = value
        return results

    def first(self, hook: str, **kwargs: Any) -> Any:
        """Return the first non-None result of a ``firstresult`` hook, skipping failed plugins."""
        for impl in self._impls(hook):
            ok, value = self._call(impl, hook, kwargs)
            if ok and value is not None:
                return value
        return None

    def call_one(self, plugin: str, hook: str, **kwargs: Any) -> tuple[bool, Any]:
        """Call ``plugin``'s implementation of ``hook`` only; ``(False, None)`` if it failed."""
        for impl in self._impls(hook):
            if impl.plugin_name == plugin:
                return self._call(impl, hook, kwargs)
        return True, None

    def implementers(self, hook: str) -> list[str]:
        """Names of the plugins that implement ``hook``, in call order."""
        return [impl.plugin_name for impl in self._impls(hook)]
