"""``carbontrack run --prometheus``: a real console-script run scraped while its command runs."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from cli_helpers import CARBONTRACK, TIMEOUT, carbontrack, cli_env, py

pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families

# The command prints, waits until the test says stop (a file appears), prints again and exits 3.
CHILD = """
import os, sys, time
print("ready", flush=True)
deadline = time.monotonic() + 25
while not os.path.exists(sys.argv[1]) and time.monotonic() < deadline:
    time.sleep(0.02)
print("bye", flush=True)
sys.exit(3)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def energy_by_device(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode("utf-8")
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "carbontrack_energy_joules_total":
                out[f"{s.labels['backend']}/{s.labels['device']}"] = s.value
    return out


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return cli_env(tmp_path)


def test_metrics_are_scraped_during_a_real_run_and_grow(
    env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    stop = tmp_path / "stop"
    proc = subprocess.Popen(
        [
            *CARBONTRACK,
            "run",
            "--interval",
            "0.1",
            "--prometheus",
            f"127.0.0.1:{port}",
            "--",
            *py(CHILD),
            str(stop),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        deadline = time.monotonic() + 15
        first: dict[str, float] = {}
        while time.monotonic() < deadline:
            first = energy_by_device(port)
            if first and all(v > 0 for v in first.values()):
                break
            time.sleep(0.1)
        time.sleep(0.5)
        second = energy_by_device(port)
    finally:
        stop.touch()
        out, err = proc.communicate(timeout=TIMEOUT)
    assert first, "no per-device energy counter was served"
    for device, joules in first.items():
        assert joules > 0, device
        assert second[device] > joules, device
    assert out == "bye\n"  # the rest of the command's output, unchanged
    assert proc.returncode == 3
    assert "gCO2eq" in err


def test_exit_code_and_output_are_those_of_a_run_without_the_exporter(
    env: dict[str, str], tmp_path: Path
) -> None:
    stop = tmp_path / "stop"
    stop.touch()
    plain = carbontrack("run", "--", *py(CHILD), str(stop), env=env)
    port = free_port()
    exported = carbontrack("run", "--prometheus", str(port), "--", *py(CHILD), str(stop), env=env)
    assert (exported.returncode, exported.stdout) == (plain.returncode, plain.stdout)
    assert exported.stdout == "ready\nbye\n"
    assert exported.returncode == 3


def test_a_taken_port_is_a_warning_and_the_command_runs(
    env: dict[str, str], tmp_path: Path
) -> None:
    stop = tmp_path / "stop"
    stop.touch()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = carbontrack(
            "run", "--prometheus", f"127.0.0.1:{port}", "--", *py(CHILD), str(stop), env=env
        )
    assert done.returncode == 3
    assert done.stdout == "ready\nbye\n"
    warnings = [line for line in done.stderr.splitlines() if "Prometheus exporter" in line]
    assert len(warnings) == 1
    assert f"127.0.0.1:{port}" in warnings[0]
    assert "gCO2eq" in done.stderr  # measured all the same


def test_a_bad_address_stops_before_the_command_runs(env: dict[str, str], tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    done = carbontrack(
        "run", "--prometheus", "127.0.0.1:http", "--", *py(f"open({str(marker)!r}, 'w')"), env=env
    )
    assert done.returncode == 2
    assert "--prometheus '127.0.0.1:http' is not valid" in done.stderr
    assert not marker.exists()


def test_the_environment_variable_is_named_when_wrong(env: dict[str, str], tmp_path: Path) -> None:
    env["CARBONTRACK_PROMETHEUS"] = "here:and:there"
    done = carbontrack("run", "--", *py("pass"), env=env)
    assert done.returncode == 2
    assert "CARBONTRACK_PROMETHEUS='here:and:there'" in done.stderr
