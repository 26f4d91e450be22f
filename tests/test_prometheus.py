"""The Prometheus exporter: live /metrics from a private registry, pushes, bad options."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from carbontrack import InvalidOption, make_settings, track
from carbontrack.testing import FakeDevice, FakeHardware

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from carbontrack.testing.pushgateway import FakePushgateway  # noqa: E402

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode("utf-8")
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def named(samples: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


def hardware() -> FakeHardware:
    return FakeHardware(
        [
            FakeDevice("package-0", kind="cpu", watts=40.0),
            FakeDevice("gpu-0", kind="gpu", watts=150.0, method="power"),
            FakeDevice("ram", kind="ram", watts=5.0, method="model"),
        ]
    )


def wait_until(check: object, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.fixture
def port() -> int:
    return free_port()


def test_metrics_are_served_per_device_and_counters_grow_between_scrapes(port: int) -> None:
    opts = {"write_log": False, "verbose": 0, "interval_s": 0.05, "components": "all,ram"}
    with track(plugins=[hardware()], prometheus=f"127.0.0.1:{port}", **opts) as run:
        wait_until(lambda: named(scrape(port), "carbontrack_power_watts"))
        first = scrape(port)
        time.sleep(0.3)
        second = scrape(port)
    energy1 = named(first, "carbontrack_energy_joules_total")
    energy2 = named(second, "carbontrack_energy_joules_total")
    assert len(energy1) == 3
    for labels, joules in energy1.items():
        assert dict(labels)["run_id"] == run.run_id
        assert set(dict(labels)) == {"run_id", "device", "kind", "method", "backend"}
        assert 0 < joules < energy2[labels]
    power = {dict(k)["device"]: v for k, v in named(second, "carbontrack_power_watts").items()}
    assert power["gpu-0"] == pytest.approx(150.0, rel=0.05)
    assert power["package-0"] == pytest.approx(40.0, rel=0.25)
    estimated = {
        dict(k)["device"]: v for k, v in named(second, "carbontrack_device_estimated").items()
    }
    assert estimated == {"package-0": 0.0, "gpu-0": 0.0, "ram": 1.0}
    co2 = named(second, "carbontrack_co2eq_grams_total")
    assert next(iter(co2.values())) > next(
        iter(named(first, "carbontrack_co2eq_grams_total").values())
    )
    assert named(second, "carbontrack_carbon_intensity_grams_per_kwh")


def test_epochs_and_prediction_with_interval_bounds_are_exported(port: int) -> None:
    opts = {"write_log": False, "verbose": 0, "interval_s": 0.05}
    with track(
        plugins=[hardware()], prometheus=str(port), epochs=10, epochs_before_pred=2, **opts
    ) as run:
        for _ in range(3):
            with run.epoch():
                time.sleep(0.05)
        samples = scrape(port)
    assert list(named(samples, "carbontrack_epochs_total").values()) == [3.0]
    assert list(named(samples, "carbontrack_epochs_planned").values()) == [10.0]
    energy = {
        dict(k)["bound"]: v
        for k, v in named(samples, "carbontrack_predicted_energy_joules").items()
    }
    prediction = run.report.prediction
    assert prediction is not None
    assert prediction.energy_j_low is not None
    assert energy["expected"] == pytest.approx(prediction.energy_j, rel=1e-12)
    assert energy["lower"] <= energy["expected"] <= energy["upper"]
    co2 = {
        dict(k)["bound"]: v for k, v in named(samples, "carbontrack_predicted_co2eq_grams").items()
    }
    assert co2["lower"] <= co2["expected"] <= co2["upper"]
    assert named(samples, "carbontrack_prediction_interval_level_ratio")


def test_a_bare_port_listens_on_loopback_only(port: int) -> None:
    with track(plugins=[hardware()], prometheus=str(port), write_log=False, verbose=0) as run:
        from carbontrack._tracker import Tracker

        assert isinstance(run, Tracker)
        writer = run._host.pm.get_plugin("prometheus")
        exporter = writer.exporter(run.run_id)
        assert exporter is not None
        assert exporter.address == ("127.0.0.1", port)


def test_the_server_stops_when_the_run_ends(port: int) -> None:
    with track(plugins=[hardware()], prometheus=str(port), write_log=False, verbose=0):
        scrape(port)

    def refused() -> bool:
        try:
            scrape(port)
        except OSError:
            return True
        return False

    wait_until(refused, timeout_s=5)


def test_a_taken_port_is_one_warning_and_the_run_goes_on(
    port: int, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        with (
            caplog.at_level(logging.WARNING),
            track(
                plugins=[hardware()], prometheus=f"127.0.0.1:{port}", write_log=False, verbose=0
            ) as run,
        ):
            time.sleep(0.05)
    warnings = [r.getMessage() for r in caplog.records if "Prometheus" in r.getMessage()]
    assert len(warnings) == 1
    assert f"127.0.0.1:{port}" in warnings[0]
    assert "goes on" in warnings[0]
    assert run.report.energy_j > 0
    assert not run.report.failures


def test_metrics_never_go_to_the_global_registry(port: int) -> None:
    from prometheus_client import REGISTRY, generate_latest

    with track(plugins=[hardware()], prometheus=str(port), write_log=False, verbose=0):
        scrape(port)
        assert b"carbontrack_" not in generate_latest(REGISTRY)


def test_two_runs_have_registries_of_their_own() -> None:
    p1, p2 = free_port(), free_port()
    opts = {"write_log": False, "verbose": 0, "interval_s": 0.05}
    with (
        track(plugins=[hardware()], prometheus=str(p1), **opts) as a,
        track(
            plugins=[FakeHardware([FakeDevice("x", watts=1.0)])], prometheus=str(p2), **opts
        ) as b,
    ):
        time.sleep(0.15)
        runs_a = {dict(k)["run_id"] for k in named(scrape(p1), "carbontrack_energy_joules_total")}
        runs_b = {dict(k)["run_id"] for k in named(scrape(p2), "carbontrack_energy_joules_total")}
    assert runs_a == {a.run_id}
    assert runs_b == {b.run_id}


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("localhost", "HOST:PORT"),
        ("127.0.0.1:0", "1 to 65535"),
        ("127.0.0.1:70000", "1 to 65535"),
        ("::1:9464", "brackets"),
        ("bad host:9464", "not a host name"),
    ],
)
def test_a_bad_address_is_an_error_naming_it_before_the_run(value: str, fragment: str) -> None:
    with pytest.raises(InvalidOption, match=fragment) as caught:
        track(prometheus=value)
    assert repr(value) in str(caught.value)
    assert "prometheus=" in str(caught.value)


def test_the_environment_variable_turns_it_on_and_is_named_in_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CARBONTRACK_PROMETHEUS", "127.0.0.1:9464")
    assert make_settings().prometheus == "127.0.0.1:9464"
    assert make_settings(prometheus="9999").prometheus == "9999"  # the option wins
    monkeypatch.setenv("CARBONTRACK_PROMETHEUS", "nope")
    with pytest.raises(InvalidOption, match="CARBONTRACK_PROMETHEUS='nope'"):
        make_settings()


def test_the_config_file_key_turns_it_on_and_is_named_in_errors(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, port: int
) -> None:
    config = tmp_path / "config.toml"
    monkeypatch.setenv("CARBONTRACK_CONFIG", str(config))
    config.write_text(f'prometheus = "127.0.0.1:{port}"\n', encoding="utf-8")
    with track(plugins=[hardware()], write_log=False, verbose=0, interval_s=0.05) as run:
        wait_until(lambda: named(scrape(port), "carbontrack_power_watts"))
    assert run.settings.prometheus == f"127.0.0.1:{port}"
    config.write_text('prometheus = "127.0.0.1:x"\n', encoding="utf-8")
    hw = hardware()
    with (
        pytest.raises(InvalidOption, match=r"prometheus in .*config\.toml='127\.0\.0\.1:x'"),
        track(plugins=[hw], write_log=False, verbose=0),
    ):
        pass
    assert hw.reads == 0  # raised before any device was read


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("localhost:9091", "scheme"),
        ("ftp://h:1", "scheme"),
        ("http://h:9091/metrics/job/x", "base URL"),
        ("http://user:secret@h:9091", "without credentials"),
    ],
)
def test_a_bad_push_url_is_an_error_before_the_run(url: str, fragment: str) -> None:
    with pytest.raises(InvalidOption, match=fragment) as caught:
        track(prometheus_push=url)
    assert "secret" not in str(caught.value)


def test_import_carbontrack_and_a_plain_run_do_not_import_prometheus_client() -> None:
    code = (
        "import sys, carbontrack\n"
        "from carbontrack import track\n"
        "from carbontrack.testing import FakeHardware, FakeDevice\n"
        "with track(plugins=[FakeHardware([FakeDevice('x')])], write_log=False, verbose=0):\n"
        "    pass\n"
        "print('prometheus_client' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "False"


# -- Pushgateway ----------------------------------------------------------------------------


@pytest.fixture
def gateway() -> Iterator[FakePushgateway]:
    with FakePushgateway() as gw:
        yield gw


def test_pushes_after_each_epoch_and_the_final_figures_at_the_end(
    gateway: FakePushgateway,
) -> None:
    opts = {"write_log": False, "verbose": 0, "interval_s": 0.05}
    with track(plugins=[hardware()], prometheus_push=gateway.url, epochs=3, **opts) as run:
        for _ in range(3):
            with run.epoch():
                time.sleep(0.05)
            # Each push happens on the pusher's thread; wait for it before the next epoch.
            wait_until(lambda: any(p.status == 200 for p in gateway.pushes))
    assert all(p.method == "PUT" for p in gateway.pushes)
    assert all(p.status == 200 for p in gateway.pushes), [p.status for p in gateway.pushes]
    assert {p.grouping for p in gateway.pushes} == {(("job", "carbontrack"), ("run", run.run_id))}
    assert len(gateway.pushes) >= 2  # at least one epoch push and the final push
    finished = gateway.values("carbontrack_run_finished", run=run.run_id)
    assert list(finished.values()) == [1.0]
    energy = gateway.values("carbontrack_energy_joules_total", run=run.run_id)
    by_device = {dict(k)["device"]: v for k, v in energy.items()}
    final = {d.id: d.energy_j for d in run.report.devices}
    assert by_device == pytest.approx(final)
    assert list(gateway.values("carbontrack_epochs_total").values()) == [3.0]


def test_a_hanging_gateway_never_holds_up_an_epoch(gateway: FakePushgateway) -> None:
    gateway.hang_s = 2.0
    gateway.fail("hang", times=2)
    opts = {"write_log": False, "verbose": 0, "interval_s": 0.05}
    with track(plugins=[hardware()], prometheus_push=gateway.url, epochs=5, **opts) as run:
        started = time.perf_counter()
        for _ in range(4):
            with run.epoch():
                pass
        spent = time.perf_counter() - started
    assert spent < 1.0  # four epochs with a push asked after each; one push alone hangs 2 s
    # The final push still arrives, on the plugin's thread, once the hangs are over; waiting
    # for it keeps that thread from outliving this test and logging into the next one.
    wait_until(
        lambda: list(gateway.values("carbontrack_run_finished", run=run.run_id).values())
        == [1.0],
        timeout_s=20.0,
    )


def test_a_failing_gateway_is_one_warning_and_the_run_goes_on(
    gateway: FakePushgateway, caplog: pytest.LogCaptureFixture
) -> None:
    gateway.fail("500", times=10)
    opts = {"write_log": False, "verbose": 0, "interval_s": 0.05}
    with (
        caplog.at_level(logging.WARNING),
        track(plugins=[hardware()], prometheus_push=gateway.url, epochs=3, **opts) as run,
    ):
        for _ in range(3):
            with run.epoch():
                time.sleep(0.02)
    # Only this gateway's warnings: a run of an earlier test may still be finishing its last
    # push to its own (now closed) gateway on a plugin thread, and log while this test runs.
    warnings = [r.getMessage() for r in caplog.records if gateway.url in r.getMessage()]
    assert len(warnings) == 1
    assert "Pushgateway" in warnings[0]
    assert run.report.energy_j > 0
    assert not run.report.failures


def test_the_fake_gateway_refuses_a_metric_carrying_a_grouping_label(
    gateway: FakePushgateway,
) -> None:
    body = b'# TYPE x gauge\nx{run="a"} 1\n'
    request = urllib.request.Request(f"{gateway.url}/metrics/job/j/run/a", data=body, method="PUT")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)
    assert caught.value.code == 400


def test_the_config_file_is_looked_for_where_the_config_reader_reads_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from carbontrack.intensity._http import config_path
    from carbontrack.writers.prometheus import _config_file

    assert _config_file() == config_path()
    monkeypatch.setenv("CARBONTRACK_CONFIG", str(tmp_path / "elsewhere.toml"))
    assert _config_file() == config_path()


def test_a_run_without_an_exporter_builds_no_per_tick_sample() -> None:
    with track(plugins=[hardware()], write_log=False, verbose=0) as run:
        assert run._sample_hook is False


def test_a_plugin_of_its_own_gets_samples_after_every_read() -> None:
    from carbontrack import hookimpl

    class Collector:
        name = "collector"

        def __init__(self) -> None:
            self.samples: list[object] = []

        @hookimpl
        def carbontrack_sample(self, sample: object) -> None:
            self.samples.append(sample)

    collector = Collector()
    with track(plugins=[hardware(), collector], write_log=False, verbose=0, interval_s=0.02) as run:
        wait_until(lambda: len(collector.samples) >= 3)
    first, last = collector.samples[0], collector.samples[-1]
    assert first.run_id == run.run_id  # type: ignore[attr-defined]
    assert last.energy_j > first.energy_j > 0  # type: ignore[attr-defined]
    assert {d.id for d in last.devices} == {"package-0", "gpu-0"}  # type: ignore[attr-defined]
