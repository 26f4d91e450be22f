"""The hooks a carbontrack plugin can implement: this file is the plugin author's reference.

A plugin is a module or object with functions named after these hooks and decorated with
``carbontrack.hookimpl``; a package makes it known through an entry point in the group
``carbontrack``. An implementation may accept any subset of a hook's arguments, by name.

Broadcast hooks are called for every plugin, each call on its own: an exception raised by one
plugin (``SystemExit`` included; only ``KeyboardInterrupt`` passes) is logged, recorded as a
``PluginFailure`` in the report and never reaches the user's code or another plugin.
``firstresult`` hooks stop at the first implementation that returns something other than
``None``; one that raises, overruns or returns a value of the wrong type is recorded and the
next one is asked.

Time budgets: every call into a plugin runs on that plugin's own worker thread (one per plugin,
so calls to one plugin never overlap and a stuck plugin blocks no other), and the caller waits
at most the hook's budget, stated in each hook below (``carbontrack._plugins.HOOK_BUDGET_S``).
A call that overruns is abandoned (it finishes on its daemon thread; its answer is dropped),
recorded as a ``PluginFailure`` with one warning naming the plugin, and the plugin's later
calls are skipped (recorded, not waited for) until that call returns. A broadcast asks all
plugins at once and waits one budget in all; a ``firstresult`` hook asks one plugin after
another, each for at most one budget. So one plugin stuck in one hook costs the user's code at
most that hook's budget, once per run.

Values are checked as they cross the boundary: ``Device`` fields of the right types (``id`` a
non-empty str, ``kind`` one of carbontrack's kinds or a lower-case word of the plugin's own,
``method`` one of ``counter``, ``power``, ``model``), readings finite, non-negative and
plausible (at most 1e7 W, 1e18 J, a counter never above its ``wrap_j``), a ``Location`` with an
ISO country code, an ``Intensity`` with finite figures between 0 and 5,000 g/kWh. A value that
fails is recorded as the plugin's failure naming the value, and left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from carbontrack.model import (
        Device,
        EpochRecord,
        Intensity,
        Location,
        Prediction,
        Reading,
        Report,
        RunInfo,
        Sample,
        Unavailable,
    )
    from carbontrack.settings import Settings

PROJECT = "carbontrack"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def carbontrack_discover_devices(settings: Settings) -> Sequence[Device | Unavailable]:
    """Return the devices this plugin can read on this machine.

    :param settings: the run's options (``components``, ``gpu_ids``, ``plugin_options``...).
    :return: a list of ``Device`` for hardware that can be read, plus one ``Unavailable(backend,
        kind, reason, fix)`` for hardware that exists but cannot be read (no permission, missing
        library), where ``fix`` is what the user types to make it readable. Return ``[]`` when
        the hardware is simply not there: never raise for that.

    Called once per run at start, before training begins; slow work (loading a vendor library,
    starting a subprocess) belongs here, within the budget of **3 s** (after it the run starts
    without this plugin's devices). A generator is run out within the same budget. Device ids
    must be unique within the plugin. Report disjoint devices only: energy is summed across
    every device of every plugin, so two devices covering the same watts are counted twice. A
    ``model`` device (an estimate) is dropped by the host when a measured device of the same
    kind exists.
    """


@hookspec
def carbontrack_read_energy(devices: Sequence[Device]) -> Sequence[Reading]:
    """Read the plugin's own devices now, all in one call.

    :param devices: the devices this plugin returned from discovery (only its own, and only
        those still measured).
    :return: one ``Reading`` per device: ``Reading(device.id, joules=<cumulative counter>,
        wrap_j=<counter range or None>)`` for an energy counter, or ``Reading(device.id,
        watts=<instantaneous power>)`` for a power sensor or a model.

    Called from the sampler's background thread every ``interval_s`` (shortened when a counter
    could wrap unseen; the first one 0.1 s after the start) and from the caller's thread at the
    start, at every epoch boundary and at the end, so keep it quick (well under a millisecond
    per device) and never block: the budget is **1 s**. A read that overruns fails for all the
    plugin's devices, and the plugin is not read again until it returns, so after three
    background intervals its devices are dropped and marked partial. A device
    missing from the result counts as a failed read; after three failures in a row it is dropped
    with one warning and the report marks coverage as partial. Counters may start anywhere: only
    differences are used. A counter that goes down is a wrap when ``wrap_j`` is given, else a
    reset (that interval counts nothing).
    """


@hookspec
def carbontrack_close_devices(devices: Sequence[Device]) -> None:
    """Release what discovery acquired (library handles, subprocesses) for these devices.

    Called exactly once per run at the end, on the caller's thread, with the plugin's devices
    (all of them, dropped ones included). Budget: **1 s**, all plugins closed at once.
    """


@hookspec(firstresult=True)
def carbontrack_locate(settings: Settings) -> Location | None:
    """Return where the machine is, or ``None`` to let the next implementation answer.

    :return: ``Location(country=<ISO 3166 alpha-2>, region=<grid zone or None>, source=<how it
        was found>)``. Stops at the first non-None result. The built-in answer reads
        ``settings.location`` (``$CARBONTRACK_LOCATION``); network look-ups must be opt-in.
        Budget: **3 s** per plugin; anything but a ``Location`` or ``None`` is this plugin's
        failure and the next one is asked.
    """


@hookspec(firstresult=True)
def carbontrack_carbon_intensity(
    location: Location, start: float, end: float, settings: Settings
) -> Intensity | None:
    """Return the carbon intensity for ``location`` over ``[start, end]`` (Unix seconds).

    :return: ``Intensity(g_per_kwh, source, basis, year, ...)`` or ``None`` when this provider
        has nothing for that place. Stops at the first non-None result. Live providers may add
        ``points`` (a time series, so each part of the run is weighted by the energy drawn then)
        and ``forecast`` (future points for predictions). The shipped world average answers last
        and is marked ``is_fallback``. Called at start (``start == end``), for predictions and at
        the end; budget: **3 s** per plugin (use a total deadline per request, and cache).
    """


@hookspec
def carbontrack_run_started(run: RunInfo, settings: Settings) -> None:
    """A run started: ``run`` lists its devices, what could not be read, and its location.

    Writers open their files here. Budget: **2 s**, all plugins at once.
    """


@hookspec
def carbontrack_epoch_ended(
    run: RunInfo, epoch: EpochRecord, prediction: Prediction | None, settings: Settings
) -> None:
    """An epoch ended; ``prediction`` is set when a prediction was made after this epoch.

    Called between epochs while the user's code waits: keep it quick. Budget: **1 s**.
    """


@hookspec
def carbontrack_checkpoint(report: Report, settings: Settings) -> None:
    """A periodic snapshot of the running measurement (``report.final`` is ``False``).

    Called from the sampler thread every ``settings.checkpoint_s``, so that a killed process
    loses at most one checkpoint interval of data. Budget: **2 s**.
    """


@hookspec
def carbontrack_sample(sample: Sample, settings: Settings) -> None:
    """The sampler read every device: ``sample`` holds each device's energy so far.

    Called on the sampler's background thread after each read (every ``settings.interval_s``,
    one second by default), for live exporters that need fresher figures than checkpoints
    give. It must return in microseconds and never block, wait or do I/O: store the figures
    and let another thread (a scrape, a push) use them. An implementation that raises is
    recorded and logged once, like any other. Budget: **1 s** (on the sampler thread).
    """


@hookspec
def carbontrack_report_ready(report: Report, settings: Settings) -> None:
    """The run ended and its final, immutable ``report`` is ready: write it, print it, send it.

    Called once per run, after the devices were closed. Budget: **2 s**, all plugins at once
    (the report is final already: a failure here is logged, not in the report).
    """
