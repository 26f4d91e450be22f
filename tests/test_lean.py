"""What a run loads before it needs it: the start-up budget of issue 18, guarded by tests.

Each test here names a module that once cost milliseconds (or MiB) at every start and is now
loaded only when used; the benchmark ``benchmarks/bench_startup.py`` gives the figures.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from carbontrack import _entrypoints
from carbontrack.backends import estimate, nvml

# Modules that a bare ``import carbontrack`` must not load: plugins, tables, network and process
# machinery, and the vendor binding.
NOT_ON_IMPORT = (
    "carbontrack.backends.rapl",
    "carbontrack.backends.nvml",
    "carbontrack.backends.estimate",
    "carbontrack.backends.powermetrics",
    "carbontrack.intensity._http",
    "carbontrack.intensity._live",
    "carbontrack.intensity._table",
    "carbontrack.writers.runlog",
    "carbontrack.writers.csv",
    "pynvml",
    "subprocess",
    "socket",
    "urllib.request",
    "http.client",
    "importlib.metadata",
)

# Modules that a first ``with track(verbose=0, write_log=False)`` on a machine with neither an
# NVIDIA driver nor a config file must not load.
NOT_ON_FIRST_RUN = (
    "pynvml",
    "ctypes",
    "subprocess",
    "socket",
    "email",
    "importlib.metadata",
    "importlib.resources",
    "hashlib",
    "tomllib",
    "uuid",
    "urllib.request",
    "http.client",
    "difflib",
    # Values, modules and tables a run without epochs, jobs or printing never uses.
    "carbontrack._model_later",
    "carbontrack.predict",
    "carbontrack._ledger",
    "carbontrack.equivalents",
    "datetime",
)


def _loaded_after(code: str, watched: tuple[str, ...], env: dict[str, str]) -> list[str]:
    probe = (
        f"{code}\nimport sys, json\nprint(json.dumps([m for m in {watched!r} if m in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    )
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def _clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARBONTRACK_")}
    env["CARBONTRACK_HOME"] = str(tmp_path)
    env["CARBONTRACK_CONFIG"] = str(tmp_path / "no-such-config.toml")
    return env


def test_import_carbontrack_loads_no_plugin_table_or_network_module(tmp_path: Path) -> None:
    assert _loaded_after("import carbontrack", NOT_ON_IMPORT, _clean_env(tmp_path)) == []


@pytest.mark.skipif(
    not nvml.nvml_library_absent(), reason="an NVIDIA driver library is installed here"
)
def test_first_track_loads_only_what_it_uses(tmp_path: Path) -> None:
    code = (
        "from carbontrack import track\n"
        "with track(verbose=0, write_log=False, location='DK'):\n    pass"
    )
    assert _loaded_after(code, NOT_ON_FIRST_RUN, _clean_env(tmp_path)) == []


# -- entry points without importlib.metadata -------------------------------------------------


@pytest.mark.parametrize("group", ["carbontrack", "console_scripts", "pytest11"])
def test_entry_points_match_importlib_metadata_for_installed_packages(group: str) -> None:
    ours = sorted(
        (ep.name, ep.value, ep.dist_display_name) for ep in _entrypoints.entry_points(group)
    )
    theirs = sorted(
        (ep.name, ep.value, ep.dist.metadata["name"] if ep.dist else "")
        for ep in metadata.entry_points(group=group)
    )
    assert ours == theirs


def _dist(root: Path, dirname: str, entry_points: str | None, version: str = "1.0") -> Path:
    path = root / dirname
    path.mkdir(parents=True)
    name = dirname.split("-", maxsplit=1)[0].replace("_", "-")
    (path / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\n")
    if entry_points is not None:
        (path / "entry_points.txt").write_text(entry_points)
    return path


def test_entry_points_follow_path_order_and_take_the_first_distribution_of_a_name(
    tmp_path: Path,
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    _dist(first, "my_plugin-2.0.dist-info", "[carbontrack]\nmine = my_plugin.new\n", "2.0")
    _dist(second, "my_plugin-1.0.dist-info", "[carbontrack]\nmine = my_plugin.old\n")
    _dist(second, "other.egg-info", "# comment\n[other]\nx = y\n\n[carbontrack]\n other = o:P \n")
    found = _entrypoints.entry_points("carbontrack", [str(first), str(second), str(tmp_path / "x")])
    assert [(ep.name, ep.value, ep.dist_version) for ep in found] == [
        ("mine", "my_plugin.new", "2.0"),
        ("other", "o:P", "1.0"),
    ]
    ours = sorted((ep.name, ep.value) for ep in found)
    theirs = sorted(
        (ep.name, ep.value)
        for ep in metadata.distributions(path=[str(first), str(second)])
        for ep in ep.entry_points
        if ep.group == "carbontrack"
    )
    # importlib.metadata lists both versions of my_plugin; entry_points() keeps the first.
    assert set(ours) <= set(theirs)


def test_entry_point_load_follows_attribute_paths(tmp_path: Path) -> None:
    ep = _entrypoints.EntryPoint("x", "os.path:join [extra]", "g", "d", tmp_path)
    assert ep.load() is os.path.join


# -- the NVML library check --------------------------------------------------------------------


def test_nvml_library_is_absent_only_when_no_search_place_has_it(tmp_path: Path) -> None:
    cache = tmp_path / "ld.so.cache"
    cache.write_bytes(b"glibc-ld.so.cache1.1\x00libc.so.6\x00/lib/libc.so.6\x00")
    empty_env: dict[str, str] = {}
    assert nvml.nvml_library_absent(empty_env, cache, default_dirs=()) == sys.platform.startswith(
        "linux"
    )
    # In the linker's cache, in LD_LIBRARY_PATH, in a default directory: present.
    listed = tmp_path / "listed.cache"
    listed.write_bytes(b"\x00libnvidia-ml.so.1\x00/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1\x00")
    assert not nvml.nvml_library_absent(empty_env, listed, default_dirs=())
    lib_dir = tmp_path / "lib"
    lib_dir.mkdir()
    (lib_dir / "libnvidia-ml.so.1").write_bytes(b"")
    assert not nvml.nvml_library_absent({"LD_LIBRARY_PATH": str(lib_dir)}, cache, default_dirs=())
    assert not nvml.nvml_library_absent(empty_env, cache, default_dirs=(str(lib_dir),))
    # No cache to read: never claim absence.
    assert not nvml.nvml_library_absent(empty_env, tmp_path / "missing", default_dirs=())


# -- the CPU table without an index ------------------------------------------------------------


def test_cpu_table_lookup_agrees_with_a_full_index_for_every_row_in_any_word_order() -> None:
    table = estimate.load_tdp_table()
    index: dict[frozenset[str], tuple[str, float] | None] = {}
    for key, row in table.items():
        words = frozenset(key.split())
        index[words] = row if words not in index or index[words] == row else None
    rnd = random.Random(18)
    assert len(table) > 4000
    for name, _tdp_w in table.values():
        words = name.split()
        rnd.shuffle(words)
        for model in (name, " ".join(words)):
            got = estimate.match_cpu(model)
            norm = estimate.normalise_cpu_name(model)
            if norm in table:
                want = (*table[norm], "exact")
            else:
                hit = index.get(frozenset(norm.split()))
                want = None if hit is None else (*hit, "words")
            assert (None if got is None else (got.name, got.tdp_w, got.how)) == want, model


def test_the_values_loaded_later_are_carbontrack_model_values() -> None:
    # Loaded on first use, they must still be the model's: same objects under both names,
    # reprs and pickles naming carbontrack.model, and Report.from_dict able to rebuild them.
    import pickle

    import carbontrack
    from carbontrack import model

    epoch = model.EpochRecord(index=1, started_at=0.0, duration_s=1.0, energy_j=2.0, co2eq_g=0.1)
    assert carbontrack.EpochRecord is model.EpochRecord
    assert type(epoch).__module__ == "carbontrack.model"
    assert pickle.loads(pickle.dumps(epoch)) == epoch
    report = model.Report(
        run_id="r",
        started_at=0.0,
        duration_s=1.0,
        energy_j=2.0,
        pue=1.0,
        facility_energy_j=2.0,
        co2eq_g=0.1,
        intensity=model.Intensity(g_per_kwh=100.0, source="test"),
        location=model.Location(country="DK"),
        epochs=(epoch,),
        command=model.Command(argv=("python",), exit_code=0),
        job=model.JobReport(
            job_id="j",
            rank=0,
            world_size=2,
            node="n",
            scope="job",
            ranks=(
                model.RankEnergy(
                    rank=1,
                    node="n",
                    location=model.Location(country="DK"),
                    devices=(
                        model.DeviceEnergy(
                            id="g",
                            kind="gpu",
                            name="G",
                            backend="b",
                            method="counter",
                            energy_j=1.0,
                        ),
                    ),
                    epochs=(epoch,),
                ),
            ),
            nodes=(model.NodeEnergy("n", 2.0, 0.1, (0, 1), 0),),
        ),
    )
    assert model.Report.from_dict(json.loads(json.dumps(report.to_dict()))) == report
    # In a fresh process, rebuilding loads them first (the type hints name them).
    probe = (
        "import json, sys\nfrom carbontrack.model import Report\n"
        "r = Report.from_dict(json.loads(sys.stdin.read()))\n"
        "print(type(r.epochs[0]).__name__, type(r.command).__name__, r.job.scope,\n"
        "      type(r.job.ranks[0].location).__name__, r.job.ranks[0].devices[0].method)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        input=json.dumps(report.to_dict()),
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.split() == ["EpochRecord", "Command", "job", "Location", "counter"]


# -- built-ins a run does not use are not called ------------------------------------------------

UNUSED_BY_A_PLAIN_RUN = {
    "console",
    "runlog",
    "csv",
    "prometheus",
    "geolocate",
    "electricitymaps",
    "carbonintensity-gb",
    "energidataservice",
}


def test_a_plain_run_starts_no_worker_for_builtins_it_does_not_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from carbontrack import track
    from carbontrack.testing import FakeDevice, FakeHardware

    # No powercap tree, no config file, no Mac: rapl, powermetrics and the config file's
    # location have nothing to say; nvml neither where no driver library is installed.
    monkeypatch.setenv("CARBONTRACK_POWERCAP_ROOT", str(tmp_path / "no-powercap"))
    monkeypatch.setenv("CARBONTRACK_CONFIG", str(tmp_path / "no-config.toml"))
    unused = UNUSED_BY_A_PLAIN_RUN | {"rapl", "powermetrics", "location-config"}
    # The suite blocks the real backends; these are let in, each at a boundary with nothing.
    blocked = ["estimate"]
    if nvml.nvml_library_absent() and "pynvml" not in sys.modules:
        unused |= {"nvml"}
    else:
        # A driver here, or pynvml already imported by another test (then NVML itself is
        # asked, as in any process that imported it): not this test's business.
        blocked.append("nvml")
    monkeypatch.setenv("CARBONTRACK_DISABLE_PLUGINS", ",".join(blocked))
    opts = {"verbose": 0, "write_log": False}
    with track(plugins=[FakeHardware([FakeDevice("x")])], **opts) as run:  # type: ignore[arg-type]
        pass
    workers = set(run._host._workers)
    assert {"fake", "world"} <= workers  # the host did start workers: the check below can fail
    assert workers & unused == set()


def test_a_backend_with_hardware_is_still_called(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from carbontrack import track
    from carbontrack.testing.powercap import FakePowercap

    tree = FakePowercap(tmp_path)
    tree.add_package(0, 50.0)
    monkeypatch.setenv("CARBONTRACK_POWERCAP_ROOT", str(tree.root))
    monkeypatch.setenv("CARBONTRACK_DISABLE_PLUGINS", "nvml,powermetrics,estimate")
    with track(verbose=0, write_log=False, components="cpu") as run:
        pass
    assert "rapl" in run._host._workers
    assert [d.backend for d in run.report.devices] == ["rapl"]
