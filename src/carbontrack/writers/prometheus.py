"""The Prometheus exporter: a run's energy, power, CO2eq, epochs and prediction, live.

Switched on by ``prometheus="HOST:PORT"`` (``$CARBONTRACK_PROMETHEUS``, the config file, or
``carbontrack run --prometheus``): serves ``/metrics`` from a private registry while the run
lasts. ``prometheus_push=URL`` pushes the same metrics to a Pushgateway after each epoch and at
the end, for batch jobs too short to be scraped. Needs ``pip install 'carbontrack[prometheus]'``.
"""

from __future__ import annotations

import copy
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from carbontrack.hookspecs import hookimpl
from carbontrack.model import DeviceEnergy, Report, RunInfo
from carbontrack.settings import (
    EXPORTER_ENV,
    Settings,
    parse_host_port,
    parse_push_url,
)

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

    # Annotations only: a run without epochs never loads them (carbontrack._model_later).
    from carbontrack.model import EpochRecord, Prediction, Sample

__all__ = ["DEVICE_LABELS", "JOB", "METRICS", "PrometheusWriter", "with_config_file"]

logger = logging.getLogger(__name__)

#: The Pushgateway job name; each run is its own group (``/metrics/job/carbontrack/run/<id>``)
#: so that runs pushing at once (ranks, parallel jobs) never replace each other's metrics.
JOB = "carbontrack"

#: Labels of every per-device metric, in order.
DEVICE_LABELS = ("run_id", "device", "kind", "method", "backend")

#: Every metric the exporter serves, with its type, as a name (without ``_total``) to help text.
METRICS: dict[str, tuple[str, str]] = {
    "carbontrack_energy_joules": (
        "counter",
        "Energy drawn by the device since the run started (IT energy, before PUE).",
    ),
    "carbontrack_power_watts": (
        "gauge",
        "Mean power of the device over the last sampling interval.",
    ),
    "carbontrack_device_estimated": (
        "gauge",
        "1 when the device's figure is a model estimate (method=model), 0 when measured.",
    ),
    "carbontrack_facility_energy_joules": (
        "counter",
        "Energy of all devices times the PUE (facility energy) since the run started.",
    ),
    "carbontrack_co2eq_grams": (
        "counter",
        "CO2-equivalent emissions of the run so far, from the facility energy.",
    ),
    "carbontrack_carbon_intensity_grams_per_kwh": (
        "gauge",
        "Carbon intensity of the electricity used (gCO2eq per kWh).",
    ),
    "carbontrack_pue_ratio": ("gauge", "Power usage effectiveness applied to device energy."),
    "carbontrack_run_duration_seconds": ("gauge", "Time since the run started."),
    "carbontrack_run_finished": ("gauge", "1 once the run ended and its final report is out."),
    "carbontrack_epochs": ("counter", "Epochs completed."),
    "carbontrack_epochs_planned": ("gauge", "Epochs the run was told it will train."),
    "carbontrack_predicted_energy_joules": (
        "gauge",
        "Predicted device energy of all planned epochs (bound: expected, lower, upper).",
    ),
    "carbontrack_predicted_co2eq_grams": (
        "gauge",
        "Predicted CO2eq of all planned epochs (bound: expected, lower, upper).",
    ),
    "carbontrack_predicted_duration_seconds": (
        "gauge",
        "Predicted duration of all planned epochs (bound: expected, lower, upper).",
    ),
    "carbontrack_prediction_interval_level_ratio": (
        "gauge",
        "Confidence level of the predicted bounds (0.95 for a 95 % prediction interval).",
    ),
}

#: Seconds one push to the Pushgateway may take: at the end of a run this bounds the wait.
PUSH_TIMEOUT_S = 5.0


def _device_key(d: DeviceEnergy) -> tuple[str, str]:
    # Device ids are unique within a plugin only; the backend keeps two plugins apart.
    return (d.backend, d.id)


class _State:
    """What the collector serves; replaced under the exporter's lock, read as a copy.

    A plain class, not attrs: this module loads with every run (the plugin is built in), and
    generating an attrs class costs about half a millisecond per process.
    """

    def __init__(self, *, run_id: str, pue: float = 1.0, epochs_planned: int | None = None) -> None:
        self.run_id = run_id
        self.labels: dict[tuple[str, str], tuple[str, ...]] = {}
        self.energy_j: dict[tuple[str, str], float] = {}
        self.power_w: dict[tuple[str, str], float] = {}
        self.estimated: dict[tuple[str, str], bool] = {}
        self.last_at: float | None = None
        self.last_energy_j: dict[tuple[str, str], float] = {}
        self.co2eq_g = 0.0
        self.facility_energy_j = 0.0
        self.g_per_kwh: float | None = None
        self.pue = pue
        self.duration_s = 0.0
        self.finished = False
        self.epochs = 0
        self.epochs_planned = epochs_planned
        self.prediction: Prediction | None = None

    def copy(self) -> _State:
        """A copy whose dicts are its own (``last_energy_j`` left empty: only updates use it)."""
        new = copy.copy(self)
        new.labels = dict(self.labels)
        new.energy_j = dict(self.energy_j)
        new.power_w = dict(self.power_w)
        new.estimated = dict(self.estimated)
        new.last_energy_j = {}
        return new


class _Collector:
    """A custom prometheus_client collector over one run's ``_State``."""

    def __init__(self, exporter: _Exporter) -> None:
        self._exporter = exporter

    def collect(self) -> Iterator[Any]:
        """Yield the metric families of the run, built from a copy of its state."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        s = self._exporter.state_copy()
        run = [s.run_id]

        def family(name: str, labels: Sequence[str]) -> Any:
            kind, text = METRICS[name]
            cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            return cls(name, text, labels=list(labels))

        energy = family("carbontrack_energy_joules", DEVICE_LABELS)
        power = family("carbontrack_power_watts", DEVICE_LABELS)
        estimated = family("carbontrack_device_estimated", DEVICE_LABELS)
        for key, labels in s.labels.items():
            energy.add_metric(list(labels), s.energy_j.get(key, 0.0))
            if key in s.power_w:
                power.add_metric(list(labels), s.power_w[key])
            estimated.add_metric(list(labels), 1.0 if s.estimated.get(key) else 0.0)
        yield from (energy, power, estimated)

        for name, value in (
            ("carbontrack_facility_energy_joules", s.facility_energy_j),
            ("carbontrack_co2eq_grams", s.co2eq_g),
            ("carbontrack_pue_ratio", s.pue),
            ("carbontrack_run_duration_seconds", s.duration_s),
            ("carbontrack_run_finished", 1.0 if s.finished else 0.0),
            ("carbontrack_epochs", float(s.epochs)),
            ("carbontrack_carbon_intensity_grams_per_kwh", s.g_per_kwh),
            ("carbontrack_epochs_planned", s.epochs_planned),
        ):
            if value is None:
                continue
            metric = family(name, ["run_id"])
            metric.add_metric(run, float(value))
            yield metric

        p = s.prediction
        if p is None:
            return
        for name, bounds in (
            ("carbontrack_predicted_energy_joules", (p.energy_j, p.energy_j_low, p.energy_j_high)),
            ("carbontrack_predicted_co2eq_grams", (p.co2eq_g, p.co2eq_g_low, p.co2eq_g_high)),
            (
                "carbontrack_predicted_duration_seconds",
                (p.duration_s, p.duration_s_low, p.duration_s_high),
            ),
        ):
            metric = family(name, ["run_id", "bound"])
            for bound, value in zip(("expected", "lower", "upper"), bounds, strict=True):
                if value is not None:
                    metric.add_metric([s.run_id, bound], float(value))
            yield metric
        if p.level is not None:
            metric = family("carbontrack_prediction_interval_level_ratio", ["run_id"])
            metric.add_metric(run, float(p.level))
            yield metric


class _Exporter:
    """One run's registry, HTTP server and Pushgateway pusher."""

    def __init__(self, run: RunInfo, settings: Settings) -> None:
        from prometheus_client import CollectorRegistry

        self.run_id = run.run_id
        self._lock = threading.Lock()
        self._state = _State(run_id=run.run_id, pue=settings.pue, epochs_planned=run.epochs)
        for d in run.devices:
            key = (d.backend, d.id)
            self._state.labels[key] = (run.run_id, d.id, d.kind, d.method, d.backend)
            self._state.energy_j[key] = 0.0
            self._state.estimated[key] = d.method == "model"
        # A registry of its own: the process-wide default registry may belong to the user's
        # application, and two runs must never mix their series.
        self.registry: CollectorRegistry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))
        self._server: Any = None
        self.address: tuple[str, int] | None = None
        self._push_url = settings.prometheus_push.rstrip("/") if settings.prometheus_push else None
        self._push_wanted = threading.Event()
        self._push_stop = threading.Event()
        self._push_thread: threading.Thread | None = None
        self._push_warned = False
        self.pushes = 0
        if settings.prometheus is not None:
            self._listen(settings.prometheus)
        if self._push_url is not None:
            self._push_thread = threading.Thread(
                target=self._push_loop, name=f"carbontrack-push-{run.run_id}", daemon=True
            )
            self._push_thread.start()

    # -- serving -------------------------------------------------------------------------------

    def _listen(self, where: str) -> None:
        from prometheus_client import start_http_server

        host, port = parse_host_port(where)
        try:
            self._server, _thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:  # port taken, address not on this machine, name not resolved
            logger.warning(
                "carbontrack: the Prometheus exporter cannot listen on %s (%s); the run goes "
                "on without it. Fix: choose a free port (prometheus='%s:PORT' or "
                "carbontrack run --prometheus %s:PORT)",
                where,
                exc.strerror or exc,
                host,
                host,
            )
            return
        self.address = (host, int(self._server.server_address[1]))
        logger.info("carbontrack: Prometheus metrics at http://%s:%d/metrics", host, port)

    def state_copy(self) -> _State:
        """A copy of the state that the scrape thread may read at leisure."""
        with self._lock:
            return self._state.copy()

    # -- updates (each takes the lock for microseconds; none waits for anything else) -------

    def update_sample(self, sample: Sample) -> None:
        """Fresh per-device figures from the sampler thread; power over the last interval."""
        with self._lock:
            s = self._state
            previous_at = s.last_at
            for d in sample.devices:
                key = _device_key(d)
                if key not in s.labels:
                    s.labels[key] = (sample.run_id, d.id, d.kind, d.method, d.backend)
                    s.estimated[key] = d.method == "model"
                before = s.last_energy_j.get(key)
                if previous_at is not None and before is not None and sample.at > previous_at:
                    s.power_w[key] = max(d.energy_j - before, 0.0) / (sample.at - previous_at)
                s.last_energy_j[key] = d.energy_j
                # A Prometheus counter never goes down.
                s.energy_j[key] = max(s.energy_j.get(key, 0.0), d.energy_j)
            s.last_at = sample.at
            s.co2eq_g = max(s.co2eq_g, sample.co2eq_g)
            s.facility_energy_j = max(s.facility_energy_j, sample.energy_j * s.pue)
            s.g_per_kwh = sample.g_per_kwh
            s.duration_s = max(s.duration_s, sample.duration_s)

    def update_report(self, report: Report) -> None:
        """A checkpoint or the final report: figures weighted over time, the intensity used."""
        with self._lock:
            s = self._state
            for d in report.devices:
                key = _device_key(d)
                if key not in s.labels:
                    s.labels[key] = (report.run_id, d.id, d.kind, d.method, d.backend)
                    s.estimated[key] = d.method == "model"
                s.energy_j[key] = max(s.energy_j.get(key, 0.0), d.energy_j)
            s.co2eq_g = max(s.co2eq_g, report.co2eq_g)
            s.facility_energy_j = max(s.facility_energy_j, report.facility_energy_j)
            s.g_per_kwh = report.intensity.g_per_kwh
            s.pue = report.pue
            s.duration_s = max(s.duration_s, report.duration_s)
            s.epochs = max(s.epochs, len(report.epochs))
            if report.prediction is not None:
                s.prediction = report.prediction
            s.finished = s.finished or report.final

    def update_epoch(self, epoch: EpochRecord, prediction: Prediction | None) -> None:
        """An epoch ended (and maybe a prediction was made after it)."""
        with self._lock:
            self._state.epochs = max(self._state.epochs, epoch.index)
            if prediction is not None:
                self._state.prediction = prediction

    # -- pushing -------------------------------------------------------------------------------

    def push_soon(self) -> None:
        """Ask the pusher thread for a push; returns at once (pushes in a row coalesce)."""
        if self._push_thread is not None:
            self._push_wanted.set()

    def _push_loop(self) -> None:
        while True:
            self._push_wanted.wait()
            if self._push_stop.is_set():
                return
            self._push_wanted.clear()
            self._push()

    def _push(self) -> bool:
        from prometheus_client import push_to_gateway

        assert self._push_url is not None
        try:
            push_to_gateway(
                self._push_url,
                job=JOB,
                registry=self.registry,
                grouping_key={"run": self.run_id},
                timeout=PUSH_TIMEOUT_S,
            )
        except Exception as exc:  # a Pushgateway down or refusing never touches the run
            if not self._push_warned:
                self._push_warned = True
                logger.warning(
                    "carbontrack: pushing metrics to the Pushgateway at %s failed (%s); the run "
                    "goes on, later pushes are tried and their failures logged at debug level",
                    self._push_url,
                    exc,
                )
            else:
                logger.debug("push to %s failed", self._push_url, exc_info=True)
            return False
        self.pushes += 1
        return True

    def close(self) -> None:
        """Push the final figures (bounded wait), stop the pusher and the HTTP server."""
        if self._push_thread is not None:
            self._push_stop.set()
            self._push_wanted.set()
            self._push_thread.join(timeout=PUSH_TIMEOUT_S)
            self._push()
        server = self._server
        self._server = None
        if server is not None:
            # shutdown() waits for the serving loop's next poll (up to half a second): done on
            # a thread of its own so that the end of the run never waits for it.
            def _stop() -> None:
                server.shutdown()
                server.server_close()

            threading.Thread(target=_stop, name=f"carbontrack-prom-stop-{self.run_id}").start()


class PrometheusWriter:
    """The built-in ``prometheus`` plugin: one exporter per run that asked for one."""

    @staticmethod
    def needed_by(settings: Settings) -> bool:
        """Whether a run with ``settings`` exports (``prometheus`` or ``prometheus_push``)."""
        return settings.prometheus is not None or settings.prometheus_push is not None

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._exporters: dict[str, _Exporter] = {}

    def exporter(self, run_id: str) -> _Exporter | None:
        """The exporter of a running run (for tests and tools), else ``None``."""
        return self._exporters.get(run_id)

    @hookimpl
    def carbontrack_run_started(self, run: RunInfo, settings: Settings) -> None:
        """Start serving (and pushing) when the run asked for it."""
        if settings.prometheus is None and settings.prometheus_push is None:
            return
        try:
            exporter = _Exporter(run, settings)
        except ImportError:
            # Settings checked this before the run; a package removed since is still only
            # a warning: the measurement matters more than its export.
            logger.warning(
                "carbontrack: the Prometheus exporter needs the prometheus_client package, "
                "which is not installed; the run goes on without it. Fix: "
                "pip install 'carbontrack[prometheus]'"
            )
            return
        with self._lock:
            self._exporters[run.run_id] = exporter

    @hookimpl
    def carbontrack_sample(self, sample: Sample) -> None:
        """Store the sampler's fresh figures (microseconds; no I/O)."""
        exporter = self._exporters.get(sample.run_id)
        if exporter is not None:
            exporter.update_sample(sample)

    @hookimpl
    def carbontrack_checkpoint(self, report: Report) -> None:
        """Take the checkpoint's time-weighted figures."""
        exporter = self._exporters.get(report.run_id)
        if exporter is not None:
            exporter.update_report(report)

    @hookimpl
    def carbontrack_epoch_ended(
        self, run: RunInfo, epoch: EpochRecord, prediction: Prediction | None
    ) -> None:
        """Count the epoch, keep the prediction, and ask for a push (never waits for it)."""
        exporter = self._exporters.get(run.run_id)
        if exporter is not None:
            exporter.update_epoch(epoch, prediction)
            exporter.push_soon()

    @hookimpl
    def carbontrack_report_ready(self, report: Report) -> None:
        """Serve the final figures, push them, and stop serving."""
        with self._lock:
            exporter = self._exporters.pop(report.run_id, None)
        if exporter is not None:
            exporter.update_report(report)
            exporter.close()


def _config_file() -> Path:
    # The same place as carbontrack.intensity._http.config_path() (a test holds them equal).
    from carbontrack.paths import carbontrack_home

    env = os.environ.get("CARBONTRACK_CONFIG", "").strip()
    return Path(env).expanduser() if env else carbontrack_home() / "config.toml"


def with_config_file(settings: Settings) -> Settings:
    """``settings`` with ``prometheus``/``prometheus_push`` from the config file where neither
    the option nor its environment variable set them.

    Raises ``InvalidOption`` naming the key and the file for a bad value (called as the run
    starts, before any work).
    """
    wanted = [
        name
        for name, env in EXPORTER_ENV.items()
        if getattr(settings, name) is None and not os.environ.get(env, "").strip()
    ]
    if not wanted or not _config_file().is_file():
        return settings
    # Only now: the config reader lives with the HTTP code, which a run without a config file
    # must not load (socket, urllib).
    from carbontrack.intensity._http import config_path, read_config

    config = read_config()
    check = {"prometheus": parse_host_port, "prometheus_push": parse_push_url}
    found = {}
    for name in wanted:
        value = config.get(name)
        if value is not None:
            check[name](value, option=f"{name} in {config_path()}")
            found[name] = value
    return attrs.evolve(settings, **found) if found else settings
