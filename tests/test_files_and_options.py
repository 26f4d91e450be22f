"""Issue 21 (secrets and permissions, bad options, config files) and issue 20 item 9 (one
permission policy for every file of a log directory). Each test reproduces a break of the old
code."""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from carbontrack import track
from carbontrack._files import MAX_CONFIG_BYTES
from carbontrack.errors import InvalidOption
from carbontrack.intensity import _http
from carbontrack.settings import MAX_CHECKPOINT_S, MAX_INTERVAL_S, make_settings
from carbontrack.testing import FakeDevice, FakeHardware


def _hw() -> FakeHardware:
    return FakeHardware([FakeDevice("package-0", kind="cpu", watts=10.0)])


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)  # the common default, which let the old code write 0644/0755
    try:
        yield
    finally:
        os.umask(old)


def _run(log_dir: Path, **options: Any) -> None:
    hw = _hw()
    with (
        track(
            plugins=[hw], log_dir=log_dir, verbose=0, interval_s=0.01, epochs=1, **options
        ) as run,
        run.epoch(),
    ):
        time.sleep(0.02)


# -- permissions -------------------------------------------------------------------------------


@pytest.mark.usefixtures("umask_022")
def test_every_file_of_a_log_dir_is_private_by_default(tmp_path: Path) -> None:
    # Old code: the run log 0644 in 0755 directories (it holds host, cwd and argv), the CSVs
    # 0600: two policies in one directory.
    log_dir = tmp_path / "new" / "logs"
    _run(log_dir)
    files = sorted(p for p in log_dir.iterdir() if p.is_file())
    assert {p.suffix for p in files} == {".jsonl", ".csv"}
    assert len(files) == 3
    assert {p.name: _mode(p) for p in files} == {p.name: 0o600 for p in files}
    assert _mode(log_dir) == 0o700
    assert _mode(log_dir.parent) == 0o700  # every directory carbontrack created


@pytest.mark.usefixtures("umask_022")
def test_shared_mode_opens_every_file_to_the_group(tmp_path: Path) -> None:
    log_dir = tmp_path / "team"
    _run(log_dir, file_mode="shared")
    files = [p for p in log_dir.iterdir() if p.is_file()]
    assert len(files) == 3
    assert {_mode(p) for p in files} == {0o660}
    assert _mode(log_dir) == 0o2770


def test_an_existing_directory_keeps_its_mode(tmp_path: Path) -> None:
    log_dir = tmp_path / "project"
    log_dir.mkdir()
    log_dir.chmod(0o755)
    _run(log_dir)
    assert _mode(log_dir) == 0o755  # never lock a user's own directory
    assert {_mode(p) for p in log_dir.iterdir()} == {0o600}


def test_an_own_file_with_another_mode_is_brought_to_the_policy(tmp_path: Path) -> None:
    _run(tmp_path)
    [runs] = tmp_path.glob("*runs.csv")
    runs.chmod(0o644)  # as an older version (or another mode) left it
    _run(tmp_path)
    assert _mode(runs) == 0o600
    assert len(runs.read_text().splitlines()) == 3  # header and two runs


def test_file_mode_from_the_environment_and_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CARBONTRACK_FILE_MODE", "shared")
    assert make_settings().file_mode == "shared"
    monkeypatch.setenv("CARBONTRACK_FILE_MODE", "public")
    with pytest.raises(InvalidOption, match=r"CARBONTRACK_FILE_MODE='public'.*'private', 'shared'"):
        make_settings()
    monkeypatch.delenv("CARBONTRACK_FILE_MODE")
    config = tmp_path / "config.toml"
    config.write_text('file_mode = "shared"\n')
    monkeypatch.setenv("CARBONTRACK_CONFIG", str(config))
    assert make_settings().file_mode == "shared"
    assert make_settings(file_mode="private").file_mode == "private"  # the option wins
    with pytest.raises(InvalidOption, match=r"file_mode='group'"):
        make_settings(file_mode="group")


def test_the_intensity_cache_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache" / "intensity"
    monkeypatch.setenv("CARBONTRACK_CACHE_DIR", str(cache))
    with pytest.MonkeyPatch.context() as m:
        m.setattr(os, "umask", os.umask)  # keep the test's umask untouched
        old = os.umask(0o022)
        try:
            _http.cache_put("https://example.invalid/x", {"zone": "DK"})
        finally:
            os.umask(old)
    [entry] = cache.glob("*.json")
    assert _mode(entry) == 0o600
    assert _mode(cache) == 0o700
    assert _http.cache_get("https://example.invalid/x", 60) == {"zone": "DK"}


# -- config files ------------------------------------------------------------------------------


def _within(limit_s: float, call: Any) -> Any:
    box: list[Any] = []

    def work() -> None:
        try:
            box.append(call())
        except BaseException as exc:
            box.append(exc)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(limit_s)
    assert not worker.is_alive(), f"still reading after {limit_s} s"
    return box[0]


def test_a_config_pointing_at_dev_zero_is_refused_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # Old code: MemoryError into user code after reading 1.9 GB.
    monkeypatch.setenv("CARBONTRACK_CONFIG", "/dev/zero")
    hw = _hw()
    result = _within(
        5, lambda: track(plugins=[hw], verbose=0, write_log=False).new_tracker().start()
    )
    assert isinstance(result, InvalidOption), result
    assert "/dev/zero" in str(result)
    assert "character device" in str(result)
    assert "CARBONTRACK_CONFIG" in str(result)
    assert hw.reads == 0


def test_a_config_fifo_is_refused_without_blocking(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Old code: opening the FIFO blocked for ever (no writer).
    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)
    monkeypatch.setenv("CARBONTRACK_CONFIG", str(fifo))
    result = _within(5, _http.read_config)
    assert isinstance(result, InvalidOption), result
    assert "FIFO" in str(result)


def test_an_oversized_config_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config.toml"
    config.write_text("# padding\n" * (MAX_CONFIG_BYTES // 10 + 1))
    monkeypatch.setenv("CARBONTRACK_CONFIG", str(config))
    with pytest.raises(InvalidOption, match=r"config\.toml.*bytes"):
        _http.read_config()


def test_a_config_directory_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARBONTRACK_CONFIG", str(tmp_path))
    with pytest.raises(InvalidOption, match="a directory"):
        make_settings()


def test_a_regular_config_is_still_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config.toml"
    config.write_text('location = "DK"\n[api_keys]\nelectricitymaps = "k"\n')
    monkeypatch.setenv("CARBONTRACK_CONFIG", str(config))
    assert _http.read_config() == {"location": "DK", "api_keys": {"electricitymaps": "k"}}


# -- options refused before anything starts ----------------------------------------------------


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"gpu_ids": 3.5}, r"gpu_ids=3\.5 is not valid: expected GPU indices"),
        ({"gpu_ids": [0, 1.5]}, r"gpu_ids=\[0, 1\.5\] is not valid.*got float 1\.5"),
        ({"gpu_ids": -1}, r"gpu_ids=-1 is not valid"),
        ({"gpu_ids": True}, r"gpu_ids=True is not valid"),
        ({"gpu_ids": "0,3.5"}, r"gpu_ids='0,3\.5' is not valid"),
        (
            {"interval_s": 1e12},
            rf"interval_s=1000000000000.0 is not valid: expected .*<= {MAX_INTERVAL_S:g}",
        ),
        ({"checkpoint_s": 1e12}, rf"checkpoint_s=1000000000000.0 .*<= {MAX_CHECKPOINT_S:g}"),
        ({"job_wait_s": 1e12}, r"job_wait_s=1000000000000.0 .*<= 3600"),
    ],
)
def test_bad_options_are_refused_naming_the_option(options: dict[str, Any], match: str) -> None:
    hw = _hw()
    with pytest.raises(InvalidOption, match=match):
        track(plugins=[hw], verbose=0, write_log=False, **options)
    assert hw.reads == 0


def test_good_gpu_ids_still_work() -> None:
    assert make_settings(gpu_ids=[0, "1"]).gpu_ids == ("0", "1")
    assert make_settings(gpu_ids="GPU-8f3c,1").gpu_ids == ("GPU-8f3c", "1")
    assert make_settings(gpu_ids=2).gpu_ids == ("2",)
    assert make_settings(interval_s=MAX_INTERVAL_S).interval_s == MAX_INTERVAL_S


def test_a_log_dir_that_is_a_file_is_refused_before_the_run(tmp_path: Path) -> None:
    # Old code: accepted; the run failed only when the run log was opened.
    existing = tmp_path / "results.txt"
    existing.write_text("mine")
    hw = _hw()
    with pytest.raises(InvalidOption, match=r"log_dir=.*results\.txt.*existing file"):
        track(plugins=[hw], verbose=0, log_dir=existing)
    with pytest.raises(InvalidOption, match=r"log_dir=.*under .*results\.txt, an existing file"):
        track(plugins=[hw], verbose=0, log_dir=existing / "logs")
    assert hw.reads == 0
    assert existing.read_text() == "mine"


def test_the_run_log_header_still_reads_back(tmp_path: Path) -> None:
    _run(tmp_path)
    [log] = tmp_path.glob("*.jsonl")
    assert json.loads(log.read_text().splitlines()[0])["type"] == "header"


# -- the command line --------------------------------------------------------------------------


def test_cli_json_report_and_run_log_follow_the_file_mode(tmp_path: Path) -> None:
    from cli_helpers import carbontrack, cli_env

    env = cli_env(tmp_path)
    private = tmp_path / "out" / "report.json"
    done = carbontrack("run", "--json", str(private), "--", "true", env=env)
    assert done.returncode == 0, done.stderr
    assert _mode(private) == 0o600  # old code: 0644 (write_text under umask 022)
    logs = Path(env["CARBONTRACK_HOME"]) / "logs"
    assert {_mode(p) for p in logs.iterdir()} == {0o600}
    shared = tmp_path / "team"
    done = carbontrack(
        "run",
        "--file-mode",
        "shared",
        "--log-dir",
        str(shared),
        "--json",
        str(shared / "r.json"),
        "--",
        "true",
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert {_mode(p) for p in shared.iterdir()} == {0o660}


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--interval", "1e12"], "--interval"),
        (["--gpu-ids", "-1"], "--gpu-ids"),
        (["--file-mode", "public"], "--file-mode"),
    ],
)
def test_cli_bad_options_exit_2_before_the_command(
    tmp_path: Path, argv: list[str], named: str
) -> None:
    from cli_helpers import carbontrack, cli_env

    marker = tmp_path / "ran"
    done = carbontrack("run", *argv, "--", "touch", str(marker), env=cli_env(tmp_path))
    assert done.returncode == 2
    assert named in done.stderr
    assert not marker.exists()


def test_cli_refuses_a_config_that_is_a_device(tmp_path: Path) -> None:
    from cli_helpers import carbontrack, cli_env

    env = {**cli_env(tmp_path), "CARBONTRACK_CONFIG": "/dev/zero"}
    marker = tmp_path / "ran"
    done = carbontrack("run", "--", "touch", str(marker), env=env)
    assert done.returncode == 2, done.stderr
    assert "/dev/zero" in done.stderr
    assert "character device" in done.stderr
    assert not marker.exists()


# -- a run entered in one thread and exited in another ------------------------------------------


def test_a_run_exited_in_another_thread_ends(tmp_path: Path) -> None:
    # Old code: AttributeError ('_thread._local' object has no attribute 'stack') and the run,
    # with its sampler thread, kept running.
    run = track(plugins=[_hw()], verbose=0, log_dir=tmp_path, interval_s=0.01)
    tracker = run.__enter__()
    errors: list[BaseException] = []

    def leave() -> None:
        try:
            run.__exit__(None, None, None)
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=leave)
    worker.start()
    worker.join(10)
    assert errors == []
    assert not tracker.running
    assert tracker.report.duration_s >= 0
    assert not [t for t in threading.enumerate() if t.name.startswith("carbontrack-sampler")]
    with run as again:  # the same object still works in the first thread
        pass
    assert not again.running


def test_a_symlink_planted_in_a_shared_log_dir_is_never_written_through(tmp_path: Path) -> None:
    # In a shared directory another member could plant a link at a name carbontrack writes
    # (a report's temporary file, a log) pointing at a file of yours: it must stay untouched.
    from carbontrack import _files

    shared = tmp_path / "team"
    shared.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (shared / f".report.json.{os.getpid()}.tmp").symlink_to(victim)
    _files.write_bytes(shared / "report.json", b"{}", "shared")
    assert victim.read_text() == "precious\n"
    assert (shared / "report.json").read_bytes() == b"{}"
    (shared / "carbontrack-x.jsonl").symlink_to(victim)
    with pytest.raises(OSError, match="symbolic links"):  # ELOOP: not followed
        _files.open_append(shared / "carbontrack-x.jsonl", "shared")
    assert victim.read_text() == "precious\n"
