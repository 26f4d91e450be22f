"""The plugin host: builds a plugin manager and calls every plugin in isolation.

Built-ins are registered first, then the block list ``CARBONTRACK_DISABLE_PLUGINS`` applies,
then entry points of the group ``carbontrack`` load (unless
``CARBONTRACK_DISABLE_PLUGIN_AUTOLOAD`` is set). A plugin that fails to import raises
``PluginLoadError`` at start; one that fails while measuring becomes a ``PluginFailure``.
"""

from __future__ import annotations

import contextvars
import importlib
import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import pluggy

try:
    # The C queue itself: queue.py would also import heapq and build classes the workers never
    # use, most of a millisecond at every start (docs/performance.md, "Start-up").
    from _queue import Empty, SimpleQueue
except ImportError:  # an interpreter without the C module
    from queue import Empty, SimpleQueue

from carbontrack import _entrypoints, hookspecs
from carbontrack._lookup import new_lookup
from carbontrack.errors import InvalidOption, PluginLoadError
from carbontrack.model import check_intensity, check_location

if TYPE_CHECKING:
    from carbontrack.model import PluginFailure

__all__ = [
    "BUILTIN_PLUGINS",
    "HOOK_BUDGET_S",
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

_BUILTIN_NAMES = frozenset(name for name, _ in BUILTIN_PLUGINS)

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


class PluginInfo(NamedTuple):
    """A registered or blocked plugin, as ``carbontrack plugins`` lists it.

    A named tuple, not an attrs class: this module loads at every run's start, where each attrs
    class costs about half a millisecond to generate.
    """

    name: str
    distribution: str | None
    version: str | None
    hooks: tuple[str, ...]
    blocked: bool = False
    builtin: bool = False
    #: Why the plugin could not be loaded (``make_plugin_manager(broken=...)``), else ``None``.
    error: str | None = None


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
    *,
    autoload: bool = True,
    extra_plugins: Sequence[object] = (),
    broken: list[PluginInfo] | None = None,
) -> pluggy.PluginManager:
    """Return a fresh plugin manager with the built-ins, the block list and the entry points.

    ``extra_plugins`` (objects with hook implementations, such as ``carbontrack.testing``'s fake
    hardware) are registered after the built-ins. Raises ``PluginLoadError`` when a plugin
    cannot be imported, naming the plugin, its distribution and the fix; with a ``broken``
    list (the listing commands), each such plugin is appended to it instead, with its
    ``error``, and the others load.
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
        _load_entry_points(pm, broken)
    pm.check_pending()
    return pm


def _load_entry_points(pm: pluggy.PluginManager, broken: list[PluginInfo] | None) -> None:
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
            error = PluginLoadError(
                f"plugin {ep.name!r} from {dist} failed to load ({type(exc).__name__}: {exc}). "
                f"Fix: reinstall or upgrade it (pip install --upgrade {dist}), or disable it "
                f"with {DISABLE_ENV}={ep.name}"
            )
            if broken is None:
                raise error from exc
            if pm.has_plugin(ep.name):  # registered, then failed (a bad hook): take it out
                pm.unregister(name=ep.name)
            broken.append(
                PluginInfo(
                    name=ep.name,
                    distribution=dist,
                    version=ep.dist_version,
                    hooks=(),
                    error=str(error),
                )
            )
            continue
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


#: The most time carbontrack gives one call into one plugin, per hook, in seconds. After it the
#: caller goes on without that plugin (its answer, if it ever comes, is dropped), records a
#: ``PluginFailure`` and skips the plugin's later calls until the stuck one returns. A broadcast
#: calls every plugin at once, so the whole broadcast waits at most one budget; a ``firstresult``
#: hook asks plugins one after another, each for at most one budget. The hook docs in
#: ``hookspecs.py`` state these bounds to plugin authors.
HOOK_BUDGET_S: dict[str, float] = {
    "carbontrack_discover_devices": 3.0,
    "carbontrack_read_energy": 1.0,
    "carbontrack_close_devices": 1.0,
    "carbontrack_locate": 3.0,
    "carbontrack_carbon_intensity": 3.0,
    "carbontrack_run_started": 2.0,
    "carbontrack_epoch_ended": 1.0,
    "carbontrack_checkpoint": 2.0,
    "carbontrack_sample": 1.0,
    "carbontrack_report_ready": 2.0,
}
DEFAULT_BUDGET_S = 2.0

#: A plugin's worker thread ends after this many idle seconds (a new one starts on demand), so
#: hosts that are never closed (a CLI command's) leave no thread behind for long.
WORKER_IDLE_S = 30.0


class PluginTimeout(Exception):
    """A plugin did not return from a hook within its budget (``HOOK_BUDGET_S``)."""


class PluginStuck(Exception):
    """A plugin was not called: an earlier call of it has not returned yet."""


class _Call:
    """One call into a plugin, run on the plugin's worker thread; ``done`` is released after."""

    __slots__ = (
        "abandoned",
        "args",
        "at",
        "clock",
        "context",
        "done",
        "error",
        "function",
        "hook",
        "materialize",
        "ok",
        "running",
        "started",
        "value",
    )

    def __init__(self, function: Any, args: tuple[Any, ...], hook: str, materialize: bool) -> None:
        self.function = function
        self.args = args
        self.hook = hook
        self.materialize = materialize
        self.done = threading.Lock()
        self.done.acquire()
        self.ok = False
        self.value: Any = None
        self.error: BaseException | None = None
        self.started = 0.0
        self.context: contextvars.Context | None = None
        self.running = False
        self.abandoned = False
        self.clock: Callable[[], float] | None = None
        self.at: float | None = None

    def run(self) -> None:
        self.started = time.monotonic()
        try:
            if self.clock is not None:
                self.at = self.clock()
            if self.context is not None:
                value = self.context.run(self.function, *self.args)
            else:
                value = self.function(*self.args)
            if self.materialize:
                # A generator is run here, on the worker: one that hangs or raises halfway is
                # bounded and isolated like the call itself.
                value = _materialize(value)
            self.value = value
            self.ok = True
        except BaseException as exc:  # isolation boundary: SystemExit too (see _call)
            self.error = exc
        finally:
            self.done.release()


def _materialize(value: Any) -> Any:
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        return value  # left for the caller's validation to reject with the value named
    return list(value)


class _Worker:
    """One daemon thread per plugin: its calls run in order, and a stuck one blocks only it."""

    def __init__(self, plugin: str, lock: threading.Lock) -> None:
        self.plugin = plugin
        self._lock = lock  # the host's: guards thread, queue hand-over and stuck
        self.queue: SimpleQueue[_Call | None] = SimpleQueue()
        self.thread: threading.Thread | None = None
        #: The call that overran its budget and has not returned (later calls are skipped).
        self.stuck: _Call | None = None

    def submit(self, call: _Call) -> None:
        with self._lock:
            self.queue.put(call)
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self._serve, name=f"carbontrack-plugin-{self.plugin}", daemon=True
                )
                self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                call = self.queue.get(timeout=WORKER_IDLE_S)
            except Empty:
                with self._lock:
                    if self.queue.empty():
                        self.thread = None
                        return
                continue
            if call is None:
                with self._lock:
                    self.thread = None
                return
            with self._lock:
                # A call whose caller stopped waiting (it queued behind a stuck one) is not run
                # late: a close or a run_started after the run ended would do harm.
                skip = call.abandoned
                call.running = not skip
            if skip:
                call.done.release()
                continue
            call.run()
            with self._lock:
                if self.stuck is call:
                    self.stuck = None
                    recovered = True
                else:
                    recovered = False
            if recovered:
                logger.info(
                    "carbontrack: plugin %r returned from %s after %.1f s; it is called again",
                    self.plugin,
                    call.hook,
                    time.monotonic() - call.started,
                )

    def stop(self) -> None:
        with self._lock:
            if self.thread is not None:
                self.queue.put(None)


_live_hosts: weakref.WeakSet[PluginHost] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # Worker threads do not survive a fork; the child starts fresh ones on demand.
    for host in list(_live_hosts):
        host._forget_workers()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class PluginHost:
    """A typed facade over the hooks: each implementation is called on its own, with a deadline.

    Every call into a plugin runs on that plugin's own daemon worker thread while the caller
    waits at most the hook's budget (``HOOK_BUDGET_S``): a plugin that hangs costs the caller
    one budget, once, and never blocks another plugin. Failures (an exception, ``SystemExit``,
    an overrun budget, a skipped call) are logged once per (plugin, hook) and kept as
    ``PluginFailure`` values for the report. ``KeyboardInterrupt`` passes through.
    """

    def __init__(
        self,
        pm: pluggy.PluginManager,
        budgets: Mapping[str, float] | None = None,
        plugin_budgets: Mapping[tuple[str, str], float] | None = None,
    ) -> None:
        self.pm = pm
        self.budgets = dict(HOOK_BUDGET_S if budgets is None else budgets)
        #: ``(plugin, hook)`` -> seconds, where one plugin's call may take longer than the hook's
        #: budget (the built-in live providers wait up to the user's HTTP ``timeout_s``). Used
        #: when that plugin alone is called: ``first`` and ``call_one``.
        self.plugin_budgets = dict(plugin_budgets or {})
        self._lock = threading.Lock()
        self._workers_lock = threading.Lock()
        self._workers: dict[str, _Worker] = {}
        self._failures: dict[tuple[str, str], PluginFailure] = {}
        _live_hosts.add(self)

    @property
    def failures(self) -> tuple[PluginFailure, ...]:
        """Every plugin failure so far, one per plugin and hook, with a count."""
        with self._lock:
            return tuple(self._failures.values())

    def record_failure(
        self, plugin: str, hook: str, exc: BaseException, *, log: bool = True
    ) -> None:
        """Keep ``exc`` as data; log it (with traceback) the first time only."""
        key = (plugin, hook)
        with self._lock:
            previous = self._failures.get(key)
            error = f"{type(exc).__name__}: {exc}"
            if previous is not None and isinstance(exc, PluginStuck):
                error = previous.error  # the overrun that made it stuck says more
            count = previous.count + 1 if previous else 1
            from carbontrack.model import PluginFailure  # loaded by the first failure only

            self._failures[key] = PluginFailure(plugin=plugin, hook=hook, error=error, count=count)
        if previous is None and log:
            if isinstance(exc, PluginTimeout):
                logger.warning("carbontrack: plugin %r %s: %s", plugin, hook, exc)
            else:
                logger.warning(
                    "plugin %r failed in %s; carbontrack goes on without it",
                    plugin,
                    hook,
                    exc_info=exc,
                )

    def stuck(self) -> dict[str, str]:
        """Plugins with a call that overran its budget and has not returned: name -> hook."""
        with self._workers_lock:
            return {name: w.stuck.hook for name, w in self._workers.items() if w.stuck is not None}

    def _impls(self, hook: str) -> list[pluggy.HookImpl]:
        caller: pluggy.HookCaller = getattr(self.pm.hook, hook)
        # pluggy calls the last registered (and tryfirst) implementations first.
        return list(reversed(caller.get_hookimpls()))

    def _worker(self, plugin: str) -> _Worker:
        worker = self._workers.get(plugin)
        if worker is None:
            with self._workers_lock:
                worker = self._workers.setdefault(plugin, _Worker(plugin, self._workers_lock))
        return worker

    def _submit(
        self,
        impl: pluggy.HookImpl,
        hook: str,
        kwargs: Mapping[str, Any],
        context: contextvars.Context | None = None,
        clock: Callable[[], float] | None = None,
    ) -> _Call | None:
        """Start ``impl`` on its worker; None when no call is made: the plugin is stuck
        (recorded as its failure) or says this run does not need it (``_not_needed``)."""
        if self._not_needed(impl, kwargs):
            return None
        worker = self._worker(impl.plugin_name)
        stuck = worker.stuck
        if stuck is not None:
            self.record_failure(
                impl.plugin_name,
                hook,
                PluginStuck(
                    f"not called: its {stuck.hook} call has not returned for "
                    f"{time.monotonic() - stuck.started:.1f} s"
                ),
                log=False,  # the overrun itself was the one warning about this plugin
            )
            return None
        call = _Call(
            impl.function,
            tuple(kwargs[name] for name in impl.argnames),
            hook,
            materialize=hook in _MATERIALIZED,
        )
        if context is not None:
            call.context = context.copy()  # copies share the look-up's state
        call.clock = clock
        worker.submit(call)
        return call

    def _collect(self, impl: pluggy.HookImpl, call: _Call, deadline: float) -> tuple[bool, Any]:
        """Wait for ``call`` until ``deadline``; turn what went wrong into a failure."""
        worker = self._worker(impl.plugin_name)
        while not call.done.acquire(timeout=min(max(deadline - time.monotonic(), 0.0), 0.05)):
            # Slices of 50 ms (only while a call is slow): a call queued behind one that has
            # just been found stuck gives up at once instead of waiting out its own budget.
            with self._workers_lock:
                # Under the lock the worker takes around a call: either the call is done by now
                # (use its answer), or it is marked here and the worker sees the mark.
                if not call.done.locked():
                    break
                overran = time.monotonic() >= deadline
                behind = worker.stuck if not call.running else None
                if call.running and overran:
                    worker.stuck = call
                elif overran or behind is not None:
                    call.abandoned = True  # never started: the worker drops it
                else:
                    continue
            if call.running:
                error: Exception = PluginTimeout(
                    f"no answer within its {self._budget(call.hook):g} s budget; carbontrack "
                    "goes on without it and skips the plugin's calls until this one returns"
                )
            else:
                blocker = behind.hook if behind is not None else "another call"
                error = PluginStuck(
                    f"not called: it was still busy in {blocker} (over its time budget)"
                )
            self.record_failure(impl.plugin_name, call.hook, error, log=call.running)
            return False, None
        if call.ok:
            return True, call.value
        exc = call.error
        assert exc is not None
        if isinstance(exc, KeyboardInterrupt):
            raise exc  # the user's Ctrl-C, wherever it landed, is theirs
        # Exception, and SystemExit too: a plugin must never end the user's process.
        self.record_failure(impl.plugin_name, call.hook, exc)
        return False, None

    def _budget(self, hook: str, plugin: str | None = None) -> float:
        if plugin is not None and (plugin, hook) in self.plugin_budgets:
            return self.plugin_budgets[plugin, hook]
        return self.budgets.get(hook, DEFAULT_BUDGET_S)

    def _not_needed(self, impl: pluggy.HookImpl, kwargs: Mapping[str, Any]) -> bool:
        """Whether a built-in says a run with these settings never uses it (a writer the run
        does not write with, a provider without a key, geolocation not asked for).

        Such a call would only return None; skipping it spares a worker thread's start, a
        quarter of a millisecond each at a run's start (docs/performance.md, "Start-up").
        Asked at every call, so settings changed mid-run (``set_api_keys``) count.
        """
        settings = kwargs.get("settings")
        if settings is None or impl.plugin_name not in _BUILTIN_NAMES:
            return False
        needed_by = getattr(impl.plugin, "needed_by", None)
        if needed_by is None:
            return False
        try:
            return not needed_by(settings)
        except Exception:  # then call it, and let the call itself fail where it will
            logger.debug("needed_by of %r failed", impl.plugin_name, exc_info=True)
            return False

    def _call(
        self,
        impl: pluggy.HookImpl,
        hook: str,
        kwargs: Mapping[str, Any],
        context: contextvars.Context | None = None,
    ) -> tuple[bool, Any]:
        deadline = time.monotonic() + self._budget(hook, impl.plugin_name)
        call = self._submit(impl, hook, kwargs, context)
        if call is None:
            return False, None
        return self._collect(impl, call, deadline)

    def broadcast(self, hook: str, **kwargs: Any) -> dict[str, Any]:
        """Call every implementation of ``hook`` at once; return results by plugin, failures
        left out. Waits at most the hook's budget in all."""
        deadline = time.monotonic() + self._budget(hook)
        calls = [(impl, self._submit(impl, hook, kwargs)) for impl in self._impls(hook)]
        results = {}
        for impl, call in calls:
            if call is None:
                continue
            ok, value = self._collect(impl, call, deadline)
            if ok:
                results[impl.plugin_name] = value
        return results

    def first(self, hook: str, **kwargs: Any) -> Any:
        """Return the first non-None result of a ``firstresult`` hook, skipping failed plugins.

        Each plugin is asked in turn for at most the hook's budget, so a stuck plugin never
        hides the answer of the next one."""
        check = _RESULT_CHECKS.get(hook)
        lookup = new_lookup()
        for impl in self._impls(hook):
            ok, value = self._call(impl, hook, kwargs, lookup)
            if ok and value is not None:
                problem = check(value) if check is not None else None
                if problem is None:
                    return value
                # Recorded against the plugin that answered, not whoever trips over it later.
                self.record_failure(impl.plugin_name, hook, TypeError(problem))
        return None

    def call_one(self, plugin: str, hook: str, **kwargs: Any) -> tuple[bool, Any]:
        """Call ``plugin``'s implementation of ``hook`` only; ``(False, None)`` if it failed."""
        for impl in self._impls(hook):
            if impl.plugin_name == plugin:
                return self._call(impl, hook, kwargs)
        return True, None

    def call_each(
        self,
        hook: str,
        kwargs_by_plugin: Mapping[str, Mapping[str, Any]],
        *,
        clock: Callable[[], float] | None = None,
    ) -> dict[str, tuple[bool, Any, float | None]]:
        """Call each named plugin's ``hook`` with its own arguments, all at once; waits at most
        the hook's budget in all. Returns ``(ok, value, at)`` by plugin, where ``at`` is
        ``clock()`` read on the worker just before the plugin was called (None without a
        clock, or when the plugin was not called): a reading's time, free of hand-over delay."""
        deadline = time.monotonic() + self._budget(hook)
        impls = {impl.plugin_name: impl for impl in self._impls(hook)}
        calls = []
        out: dict[str, tuple[bool, Any, float | None]] = {}
        for plugin, kwargs in kwargs_by_plugin.items():
            impl = impls.get(plugin)
            if impl is None:
                out[plugin] = (True, None, None)
                continue
            calls.append((plugin, impl, self._submit(impl, hook, kwargs, clock=clock)))
        for plugin, impl, call in calls:
            if call is None:
                out[plugin] = (False, None, None)
            else:
                ok, value = self._collect(impl, call, deadline)
                out[plugin] = (ok, value, call.at)
        return out

    def implementers(self, hook: str) -> list[str]:
        """Names of the plugins that implement ``hook``, in call order."""
        return [impl.plugin_name for impl in self._impls(hook)]

    def close(self) -> None:
        """End the worker threads once their calls are done (a stuck one when it returns)."""
        with self._workers_lock:
            workers = list(self._workers.values())
        for worker in workers:
            worker.stop()

    def _forget_workers(self) -> None:
        self._workers_lock = threading.Lock()
        self._lock = threading.Lock()
        self._workers = {}


#: Hooks whose result is a sequence that a plugin may give as a generator: it is run out on the
#: worker, under the budget.
_MATERIALIZED = frozenset({"carbontrack_discover_devices", "carbontrack_read_energy"})

#: Checks of a ``firstresult`` answer: one that fails is the answering plugin's failure, and the
#: next plugin is asked.
_RESULT_CHECKS: dict[str, Callable[[object], str | None]] = {
    "carbontrack_locate": check_location,
    "carbontrack_carbon_intensity": check_intensity,
}
