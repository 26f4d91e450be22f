"""The options of a tracked run, validated once, before anything starts.

``Settings`` is frozen: every part of carbontrack (plugins included) reads the same values.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from carbontrack.errors import InvalidOption, InvalidOptionType

__all__ = [
    "ALL_COMPONENTS",
    "COMPONENTS",
    "DEFAULT_INTERVAL_S",
    "DEFAULT_PUE",
    "Settings",
    "make_settings",
]

#: Component names users may ask for. ``ram`` is the optional RAM power model; ``all`` means
#: every measured component (``cpu``, ``gpu``, ``ane`` and any plugin's own kinds) but not ``ram``.
COMPONENTS = ("cpu", "gpu", "ane", "ram")
ALL_COMPONENTS = frozenset({"cpu", "gpu", "ane"})

#: One second between background reads: short enough to catch every RAPL wrap at several hundred
#: watts and to integrate spiky GPU power within 2 %, cheap enough to be invisible.
DEFAULT_INTERVAL_S = 1.0

#: Power usage effectiveness applied by default: 1.56, the average of the latest Uptime Institute
#: Global Data Center Survey (2024, respondents' largest site). Most training runs in a data
#: centre; on a laptop or workstation pass ``pue="none"`` (1.0). The report always gives the
#: device (IT) energy, the PUE and the facility energy side by side.
DEFAULT_PUE = 1.56

#: Longest interval between background reads: counters must be read before they wrap, and a
#: wait of 1e12 s overflows the thread's timer. An hour is longer than any counter lasts.
MAX_INTERVAL_S = 3600.0
#: Longest interval between checkpoints of the run log: a killed run loses at most this much.
MAX_CHECKPOINT_S = 86400.0

#: Longest wait of rank 0 for the other ranks at the end of a job: a wait of 1e12 s overflows
#: the timer (OverflowError at the end of the run), and an hour is past any straggler.
MAX_JOB_WAIT_S = 3600.0

#: ``file_mode`` values (see ``carbontrack._files``): who may read the files carbontrack writes.
FILE_MODES = ("private", "shared")

#: How long rank 0 waits, when the run stops, for the other ranks' figures before it writes the
#: job's report marked partial: long enough for ranks that stop together (DDP ranks leave the
#: training loop within milliseconds of each other), short enough never to hold a job up.
DEFAULT_JOB_WAIT_S = 2.0

ON_BUDGET = ("warn", "raise")
_BOOL = "True or False"
ATTRIBUTIONS = ("machine", "process")


def _fail(option: str, value: object, expected: str, fix: str = "") -> InvalidOption:
    msg = f"{option}={value!r} is not valid: expected {expected}"
    if fix:
        msg += f". {fix}"
    return InvalidOption(msg)


def _check_type(option: str, value: object, types: type | tuple[type, ...], expected: str) -> None:
    # bool is an int subclass; ``epochs=True`` is a mistake, not one epoch.
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise InvalidOptionType(f"{option}={value!r} is not valid: expected {expected}, got a bool")
    if not isinstance(value, types):
        raise InvalidOptionType(
            f"{option}={value!r} is not valid: expected {expected}, got {type(value).__name__}"
        )


def _int_at_least(option: str, minimum: int, *, optional: bool = False) -> Any:
    def check(_inst: object, _attr: object, value: Any) -> None:
        if optional and value is None:
            return
        _check_type(option, value, int, f"an integer >= {minimum}")
        if value < minimum:
            raise _fail(option, value, f"an integer >= {minimum}")

    return check


def _number(
    option: str,
    *,
    minimum: float,
    strict: bool,
    optional: bool = False,
    maximum: float | None = None,
) -> Any:
    bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
    if maximum is not None:
        bound += f" and <= {maximum:g}"

    def check(_inst: object, _attr: object, value: Any) -> None:
        if optional and value is None:
            return
        _check_type(option, value, (int, float), f"a number {bound}")
        too_small = value <= minimum if strict else value < minimum
        too_large = maximum is not None and value > maximum
        if not math.isfinite(value) or too_small or too_large:
            raise _fail(option, value, f"a finite number {bound}")

    return check


def _one_of(option: str, allowed: tuple[str, ...]) -> Any:
    def check(_inst: object, _attr: object, value: Any) -> None:
        if value not in allowed:
            raise _fail(option, value, "one of " + ", ".join(repr(a) for a in allowed))

    return check


def parse_components(value: str | Iterable[str]) -> frozenset[str]:
    """Turn ``"all"``, ``"cpu,gpu"`` or ``["cpu", "gpu"]`` into a set of component names.

    Raises ``InvalidOption`` naming the unknown entries and the valid names.
    """
    if isinstance(value, str):
        names = [n.strip().lower() for n in value.split(",")]
    else:
        try:
            names = [str(n).strip().lower() for n in value]
        except TypeError:
            raise TypeError(
                f"components={value!r} is not valid: expected 'all', a component name, a "
                "comma-separated string or a list of names"
            ) from None
    names = [n for n in names if n]
    if not names:
        raise _fail("components", value, "'all' or some of " + ", ".join(COMPONENTS))
    result: set[str] = set()
    unknown = []
    for name in names:
        if name == "all":
            result |= ALL_COMPONENTS
        elif name in COMPONENTS:
            result.add(name)
        else:
            unknown.append(name)
    if unknown:
        raise _fail(
            "components",
            value,
            "'all' or names from " + ", ".join(repr(c) for c in COMPONENTS),
            f"Unknown: {', '.join(repr(u) for u in unknown)}",
        )
    return frozenset(result)


def _check_on_budget(_inst: object, _attr: object, value: Any) -> None:
    if callable(value) or value in ON_BUDGET:
        return
    raise _fail("on_budget", value, "'warn', 'raise' or a callable taking the Prediction")


def _check_api_keys(_inst: object, _attr: object, value: Any) -> None:
    if not isinstance(value, Mapping):
        # The value is not echoed: a bare string here is most likely the key itself.
        raise TypeError(
            f"api_keys (a {type(value).__name__}) is not valid: expected a dict of provider: key"
        )
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, str) or not v:
            raise _fail("api_keys", {k: "..."}, "provider names and non-empty string keys")


def _of_type(option: str, types: type | tuple[type, ...], expected: str) -> Any:
    def check(_inst: object, _attr: object, value: Any) -> None:
        _check_type(option, value, types, expected)

    return check


def _check_plugin_options(_inst: object, _attr: object, value: Any) -> None:
    # Each plugin checks its own entry (and names its own options in the message).
    if not isinstance(value, Mapping):
        raise InvalidOptionType(
            f"plugin_options={value!r} is not valid: expected a dict of plugin name: dict of "
            f"its options, such as {{'console': {{'equivalents': False}}}}, "
            f"got {type(value).__name__}"
        )


def _check_gpu_ids(_inst: object, _attr: object, value: Any) -> None:
    if value is None:
        return
    if not value:
        raise _fail("gpu_ids", value, "at least one GPU index or UUID, or None for the default")


# A pattern string, not a compiled pattern: ``re`` compiles it on first use and caches it, so
# a run that never needs it never pays for it (docs/performance.md, "Start-up").
_NUMBER_LIKE = r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?"
_GPU_IDS = "GPU indices (integers >= 0) or UUIDs, such as 0, [0, 1], '0,1' or 'GPU-8f3c...'"


def _gpu_id(value: Any, given: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        # 3.5 would be read as "3.5", matching no GPU: a typo to name now, not a silent no-op.
        raise InvalidOptionType(
            f"gpu_ids={given!r} is not valid: expected {_GPU_IDS}, got {type(value).__name__} "
            f"{value!r}"
        )
    if isinstance(value, int) and value < 0:
        raise _fail("gpu_ids", given, _GPU_IDS)
    return str(value).strip()


def _to_gpu_ids(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        parts = tuple(p.strip() for p in value.split(",") if p.strip())
        for part in parts:
            # A number must be an index: "3.5" or "-1" matches no GPU (UUIDs start "GPU-"/"MIG-").
            if re.fullmatch(_NUMBER_LIKE, part) and not part.isdigit():
                raise _fail("gpu_ids", value, _GPU_IDS)
        return parts
    if isinstance(value, int | float | bool):
        return (_gpu_id(value, value),)
    try:
        items = list(value)
    except TypeError:
        raise InvalidOptionType(
            f"gpu_ids={value!r} is not valid: expected {_GPU_IDS}, got {type(value).__name__}"
        ) from None
    return tuple(_gpu_id(v, value) for v in items)


def _to_pue(value: Any) -> Any:
    # A preset name ("none", "uptime-2024", "aws"...) stands for its figure.
    if isinstance(value, str):
        from carbontrack.intensity._pue import pue_preset

        return pue_preset(value)
    return value


#: Where the Prometheus exporter listens when only a port is given: loopback, so that a run's
#: figures are not published to the network unless the user names another address.
PROMETHEUS_DEFAULT_HOST = "127.0.0.1"

# A pattern string, not a compiled pattern: ``re`` compiles it on first use and caches it, so
# a run that never needs it never pays for it (docs/performance.md, "Start-up").
_HOSTNAME = (
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


def parse_host_port(value: object, *, option: str = "prometheus") -> tuple[str, int]:
    """Split ``"HOST:PORT"``, ``"[IPv6]:PORT"``, ``":PORT"`` or ``"PORT"`` into ``(host, port)``.

    A missing host means loopback (``127.0.0.1``). Raises ``InvalidOption`` naming ``option``,
    the value, what is expected and an example.
    """
    expected = (
        "HOST:PORT with a port from 1 to 65535, such as '127.0.0.1:9464' (a bare port listens "
        "on loopback only; '0.0.0.0:9464' listens on every interface)"
    )
    if not isinstance(value, str):
        raise InvalidOptionType(
            f"{option}={value!r} is not valid: expected a string, {expected}, "
            f"got {type(value).__name__}"
        )
    text = value.strip()
    host, port_text = "", text
    if text.startswith("["):
        close = text.find("]")
        if close == -1 or not text[close + 1 :].startswith(":"):
            raise _fail(option, value, expected)
        host, port_text = text[1:close], text[close + 2 :]
        import ipaddress  # here: only an IPv6 address needs it

        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise _fail(option, value, expected, f"{host!r} is not an IPv6 address") from None
    elif ":" in text:
        host, _, port_text = text.rpartition(":")
        if ":" in host:
            raise _fail(option, value, expected, "Write an IPv6 address in brackets: '[::1]:9464'")
        if host and not re.match(_HOSTNAME, host):
            raise _fail(option, value, expected, f"{host!r} is not a host name or IP address")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise _fail(option, value, expected)
    return host or PROMETHEUS_DEFAULT_HOST, int(port_text)


def _needs_prometheus_client(option: str, value: object) -> None:
    import importlib.util  # here: only a run with an exporter asks

    if importlib.util.find_spec("prometheus_client") is None:
        raise InvalidOption(
            f"{option}={value!r} needs the prometheus_client package, which is not installed. "
            "Fix: pip install 'carbontrack[prometheus]'"
        )


def _check_prometheus(_inst: object, _attr: object, value: Any) -> None:
    if value is not None:
        parse_host_port(value)
        _needs_prometheus_client("prometheus", value)


def _check_push_url(_inst: object, _attr: object, value: Any) -> None:
    if value is not None:
        parse_push_url(value)
        _needs_prometheus_client("prometheus_push", value)


def parse_push_url(value: object, *, option: str = "prometheus_push") -> str:
    """Check a Pushgateway base URL (``http(s)://host[:port][/prefix]``); return it without a
    trailing slash. Raises ``InvalidOption`` naming ``option``, the value and an example."""
    from urllib.parse import urlsplit

    expected = "a Pushgateway URL such as 'http://127.0.0.1:9091'"
    if not isinstance(value, str):
        raise InvalidOptionType(
            f"{option}={value!r} is not valid: expected {expected}, got {type(value).__name__}"
        )
    try:
        parts = urlsplit(value.strip())
        parts.port  # noqa: B018 (raises ValueError for a port out of range)
    except ValueError as exc:
        raise _fail(option, value, expected, str(exc)) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _fail(option, value, expected, "Give the scheme (http:// or https://) and the host")
    if "/metrics/job/" in parts.path:
        raise _fail(
            option,
            value,
            expected,
            "Give the Pushgateway's base URL only: carbontrack adds /metrics/job/carbontrack/...",
        )
    if parts.username or parts.password or parts.query or parts.fragment:
        # A URL with a password would end up in logs and run logs.
        raise _fail(option, "(not shown)", f"{expected} without credentials, query or fragment")
    return value.strip().rstrip("/")


def _check_log_dir(path: Path) -> None:
    # A file where the directory should be fails only when the run log is opened, mid-run:
    # name it now. The nearest existing ancestor must be a directory too (log_dir=file/sub).
    where = path
    while not where.exists() and where.parent != where:
        where = where.parent
    if where.exists() and not where.is_dir():
        what = "is an existing file" if where == path else f"is under {where}, an existing file"
        raise _fail(
            "log_dir",
            str(path),
            "a directory (created if missing)",
            f"The path {what}: choose a directory, or move the file away",
        )


def _check_job_id(_inst: object, _attr: object, value: Any) -> None:
    if value is None:
        return
    _check_type("job_id", value, str, "a string shared by every process of the job")
    # The id names files and store keys: path separators or control characters would break both.
    if not value.strip() or any(c in value for c in "/\\\n\r\t\0"):
        raise _fail("job_id", value, "a non-empty string without '/', '\\' or control characters")


def _check_node_name(_inst: object, _attr: object, value: Any) -> None:
    if value is None:
        return
    _check_type("node_name", value, str, "a string such as the node's hostname")
    if not value.strip():
        raise _fail("node_name", value, "a non-empty string such as the node's hostname")


def _to_path(value: Any) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, str | os.PathLike):
        raise TypeError(f"log_dir={value!r} is not valid: expected a path (str or Path) or None")
    return Path(value).expanduser()


@attrs.frozen(kw_only=True)
class Settings:
    """Every option of a tracked run. Build it with ``make_settings(**options)``.

    Plugins receive this object in their hooks; third-party plugins read their own options from
    ``plugin_options`` (keyed by plugin name).
    """

    epochs: int | None = attrs.field(
        default=None, validator=_int_at_least("epochs", 1, optional=True)
    )
    epochs_before_pred: int = attrs.field(
        default=1, validator=_int_at_least("epochs_before_pred", 0)
    )
    monitor_epochs: int = attrs.field(default=1, validator=_int_at_least("monitor_epochs", -1))
    warmup_epochs: int = attrs.field(default=0, validator=_int_at_least("warmup_epochs", 0))
    components: frozenset[str] = attrs.field(default=ALL_COMPONENTS, converter=parse_components)
    interval_s: float = attrs.field(
        default=DEFAULT_INTERVAL_S,
        validator=_number("interval_s", minimum=0, strict=True, maximum=MAX_INTERVAL_S),
    )
    checkpoint_s: float = attrs.field(
        default=60.0,
        validator=_number("checkpoint_s", minimum=0, strict=True, maximum=MAX_CHECKPOINT_S),
    )
    log_dir: Path | None = attrs.field(default=None, converter=_to_path)
    log_file_prefix: str = attrs.field(
        default="", validator=_of_type("log_file_prefix", str, "a string")
    )
    write_log: bool = attrs.field(default=True, validator=_of_type("write_log", bool, _BOOL))
    verbose: int = attrs.field(default=1, validator=_one_of("verbose", (0, 1, 2)))  # type: ignore[arg-type]
    location: str | None = attrs.field(default=None)
    geolocate: bool = attrs.field(default=False, validator=_of_type("geolocate", bool, _BOOL))
    intensity_g_per_kwh: float | None = attrs.field(
        default=None,
        validator=_number("intensity_g_per_kwh", minimum=0, strict=False, optional=True),
    )
    api_keys: Mapping[str, str] = attrs.field(
        factory=dict,
        validator=_check_api_keys,
        repr=lambda keys: repr(dict.fromkeys(keys, "***")),  # never a key in a log or traceback
    )
    pue: float = attrs.field(
        default=DEFAULT_PUE,
        converter=_to_pue,
        validator=_number("pue", minimum=1, strict=False),
    )
    devices_by_pid: bool = attrs.field(
        default=False, validator=_of_type("devices_by_pid", bool, _BOOL)
    )
    pid: int | None = attrs.field(default=None, validator=_int_at_least("pid", 1, optional=True))
    gpu_ids: tuple[str, ...] | None = attrs.field(
        default=None, converter=_to_gpu_ids, validator=_check_gpu_ids
    )
    attribution: str = attrs.field(
        default="machine", validator=_one_of("attribution", ATTRIBUTIONS)
    )
    cpu_tdp_w: float | None = attrs.field(
        default=None, validator=_number("cpu_tdp_w", minimum=0, strict=True, optional=True)
    )
    rapl_psys: bool = attrs.field(default=False, validator=_of_type("rapl_psys", bool, _BOOL))
    budget_co2eq_g: float | None = attrs.field(
        default=None, validator=_number("budget_co2eq_g", minimum=0, strict=True, optional=True)
    )
    budget_kwh: float | None = attrs.field(
        default=None, validator=_number("budget_kwh", minimum=0, strict=True, optional=True)
    )
    on_budget: str | Callable[..., Any] = attrs.field(default="warn", validator=_check_on_budget)
    plugin_options: Mapping[str, Any] = attrs.field(factory=dict, validator=_check_plugin_options)
    prometheus: str | None = attrs.field(default=None, validator=_check_prometheus)
    prometheus_push: str | None = attrs.field(default=None, validator=_check_push_url)
    file_mode: str = attrs.field(default="private", validator=_one_of("file_mode", FILE_MODES))
    # Jobs of many processes (torchrun, srun, mpirun): see carbontrack._job and docs/clusters.md.
    distributed: bool | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(_of_type("distributed", bool, "True, False or None")),
    )
    job_id: str | None = attrs.field(default=None, validator=_check_job_id)
    rank: int | None = attrs.field(default=None, validator=_int_at_least("rank", 0, optional=True))
    local_rank: int | None = attrs.field(
        default=None, validator=_int_at_least("local_rank", 0, optional=True)
    )
    world_size: int | None = attrs.field(
        default=None, validator=_int_at_least("world_size", 1, optional=True)
    )
    node_name: str | None = attrs.field(default=None, validator=_check_node_name)
    job_wait_s: float = attrs.field(
        default=DEFAULT_JOB_WAIT_S,
        validator=_number("job_wait_s", minimum=0, strict=False, maximum=MAX_JOB_WAIT_S),
    )
    #: Where each option not passed explicitly came from (``{"pue": "CARBONTRACK_PUE"}``), so
    #: that the summary can say it: no setting changes a result silently.
    option_sources: Mapping[str, str] = attrs.field(factory=dict, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.log_dir is not None:
            _check_log_dir(self.log_dir)
        if self.location is not None and (not isinstance(self.location, str) or not self.location):
            raise _fail(
                "location", self.location, "a country or zone code such as 'DK' or 'US-CAL-CISO'"
            )
        if self.epochs is not None and self.epochs_before_pred > self.epochs:
            raise _fail(
                "epochs_before_pred",
                self.epochs_before_pred,
                f"at most epochs={self.epochs}",
                "Predict after fewer epochs, or raise epochs",
            )
        if self.epochs is not None and self.warmup_epochs >= self.epochs:
            raise _fail("warmup_epochs", self.warmup_epochs, f"fewer than epochs={self.epochs}")
        if self.rank is not None and self.world_size is not None and self.rank >= self.world_size:
            raise _fail(
                "rank",
                self.rank,
                f"0 <= rank < world_size={self.world_size}",
                "Ranks count from 0: the last of world_size processes is world_size - 1",
            )
        if self.local_rank is not None and self.rank is not None and self.local_rank > self.rank:
            raise _fail("local_rank", self.local_rank, f"at most rank={self.rank}")
        if self.distributed is False and (self.rank is not None or self.world_size is not None):
            raise _fail(
                "distributed",
                False,
                "True or None when rank= or world_size= is given",
                "Drop distributed=False, or drop rank=/world_size= to measure this process alone",
            )
        if self.monitor_epochs == 0:
            raise _fail("monitor_epochs", 0, "-1 (re-predict after every epoch) or an integer >= 1")

    @property
    def tracked_pid(self) -> int:
        """The process whose work is measured: ``pid`` if set (the CLI's child), else this one."""
        return self.pid if self.pid is not None else os.getpid()

    def wants(self, kind: str) -> bool:
        """Whether a device of this kind is measured under ``components``."""
        from carbontrack.model import component_of

        component = component_of(kind)
        if component in COMPONENTS:
            return component in self.components
        # Kinds that only plugins know (``psu``, ``soc``...) are measured under ``all``.
        return self.components >= ALL_COMPONENTS


_FIELD_NAMES = frozenset(f.name for f in attrs.fields(Settings))

#: Environment variables for the exporter options, read when the option is not given.
EXPORTER_ENV = {
    "prometheus": "CARBONTRACK_PROMETHEUS",
    "prometheus_push": "CARBONTRACK_PROMETHEUS_PUSH",
}


def _exporter_defaults(options: dict[str, Any]) -> None:
    # Option, else environment: checked now, naming the variable, so a typo stops the run
    # before any work (or the command) starts. The config file's keys are read when the run
    # starts (``carbontrack.writers.prometheus.with_config_file``), with the location's.
    check = {"prometheus": parse_host_port, "prometheus_push": parse_push_url}
    for name, env_name in EXPORTER_ENV.items():
        if options.get(name) is not None:
            continue
        env = os.environ.get(env_name, "").strip()
        if env:
            check[name](env, option=env_name)
            options[name] = env


def default_file_mode() -> str:
    """``$CARBONTRACK_FILE_MODE``, else ``file_mode`` in the config file, else ``private``."""
    from carbontrack import _files

    env = os.environ.get(_files.FILE_MODE_ENV, "").strip()
    if env:
        if env not in FILE_MODES:
            raise _fail(_files.FILE_MODE_ENV, env, "one of " + ", ".join(map(repr, FILE_MODES)))
        return env
    value = _files.read_config().get("file_mode")
    if value is None:
        return _files.DEFAULT_FILE_MODE
    if value not in FILE_MODES:
        raise _fail(
            f"file_mode in {_files.config_path()}",
            value,
            "one of " + ", ".join(map(repr, FILE_MODES)),
        )
    return str(value)


def _text_number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError("expected a number") from None


def _text_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false (1/0, yes/no, on/off)")


def _text_pue(text: str) -> float | str:
    # A number, or a preset name that the converter turns into its figure (and validates).
    try:
        return float(text)
    except ValueError:
        return text


#: The options of ``track()`` that make sense for a whole program or command, each also read
#: from ``$CARBONTRACK_<NAME>`` and from ``<name>`` in the config file (``$CARBONTRACK_CONFIG``,
#: else ``<home>/config.toml``), in that order, when not passed; ``carbontrack run`` has an
#: option for each. Values go through the same converters and validators as the options; an
#: error names the variable or the file. (``location`` has its own rules: its config-file
#: value answers after plugins, see ``intensity._location``; ``file_mode`` and the exporter
#: options are read by their own code above.)
FROM_ENVIRONMENT: dict[str, Callable[[str], Any]] = {
    "interval_s": _text_number,
    "checkpoint_s": _text_number,
    "components": str,
    "intensity_g_per_kwh": _text_number,
    "pue": _text_pue,
    "gpu_ids": str,
    "devices_by_pid": _text_bool,
    "attribution": str,
    "cpu_tdp_w": _text_number,
    "rapl_psys": _text_bool,
    "log_dir": str,
    "write_log": _text_bool,
    "log_file_prefix": str,
    "geolocate": _text_bool,
}


def env_name(option: str) -> str:
    """The environment variable of ``option``: ``cpu_tdp_w`` -> ``CARBONTRACK_CPU_TDP_W``."""
    return f"CARBONTRACK_{option.upper()}"


def _check_one(option: str, value: Any, origin: str) -> Any:
    """``value`` through ``option``'s own converter and validator; an error names ``origin``
    (the environment variable, or ``"<option> in <config file>"``) instead of the option."""
    try:
        return getattr(Settings(**{option: value}), option)
    except (InvalidOption, TypeError, ValueError) as exc:
        text = str(exc)
        if origin.startswith("CARBONTRACK_") and text.startswith(f"{option}="):
            text = origin + text.removeprefix(option)  # CARBONTRACK_PUE=0.5 is not valid: ...
        else:
            text = f"{origin}: {text}"
        raise InvalidOption(text) from None


def _defaults_from_environment(options: dict[str, Any]) -> dict[str, str]:
    """Fill options not passed from the environment, then the config file; return the sources."""
    sources: dict[str, str] = {}
    config: dict[str, Any] | None = None
    for option, parse in FROM_ENVIRONMENT.items():
        if options.get(option) is not None:
            continue
        name = env_name(option)
        text = os.environ.get(name, "").strip()
        if text:
            try:
                value = parse(text)
            except ValueError as exc:
                raise InvalidOption(f"{name}={text!r} is not valid: {exc}") from None
            options[option] = _check_one(option, value, name)
            sources[option] = name
            continue
        if config is None:
            from carbontrack import _files

            config = _files.read_config() if option != "geolocate" else {}
        if option == "geolocate":
            continue  # the config file's `geolocate` is read where geolocation is asked for
        if option in config:
            from carbontrack import _files

            where = f"{option} in {_files.config_path()}"
            value = config[option]
            options[option] = _check_one(option, value, where)
            sources[option] = f"config file {_files.config_path()}"
    return sources


def make_settings(**options: Any) -> Settings:
    """Validate ``options`` and return ``Settings``; unknown names raise ``TypeError``.

    ``location`` defaults to ``$CARBONTRACK_LOCATION`` when not given; the options in
    ``FROM_ENVIRONMENT`` to ``$CARBONTRACK_<NAME>``, else to the config file's ``<name>``.
    """
    unknown = sorted(set(options) - _FIELD_NAMES)
    if unknown:
        raise TypeError(
            f"unknown option(s) {', '.join(repr(u) for u in unknown)}; valid options are: "
            + ", ".join(sorted(_FIELD_NAMES))
        )
    given = {k for k, v in options.items() if v is not None}
    if options.get("file_mode") is None:
        options["file_mode"] = default_file_mode()
    if options.get("location") is None:
        env = os.environ.get("CARBONTRACK_LOCATION", "").strip()
        if env:
            options["location"] = env
    _exporter_defaults(options)
    sources = _defaults_from_environment(options)
    if sources:
        options["option_sources"] = sources
    settings = Settings(**options)
    if settings.location is not None:
        # An unknown code is a typo to report now, with close matches, not at the start of a
        # run (or after `carbontrack run` has started the command).
        from carbontrack._locations import parse_location

        origin = "location" if "location" in given else "CARBONTRACK_LOCATION"
        parse_location(settings.location, origin=origin)
    return settings
