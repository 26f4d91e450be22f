"""The plugin host: built-ins, block list, check_pending, and every impl called in isolation."""

from __future__ import annotations

import pluggy
import pytest

from carbontrack import Device, Location, hookimpl, track
from carbontrack._plugins import BUILTIN_PLUGINS, PluginHost, make_plugin_manager
from carbontrack.settings import make_settings
from carbontrack.testing import FakeDevice, FakeHardware


def test_builtins_are_registered_by_name() -> None:
    pm = make_plugin_manager(autoload=False)
    names = {name for name, _ in BUILTIN_PLUGINS}
    blocked = {"rapl", "nvml", "powermetrics", "estimate"}  # by the test isolation fixture
    for name in names - blocked:
        assert pm.has_plugin(name), name


def test_block_list_blocks_builtins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARBONTRACK_DISABLE_PLUGINS", "console, runlog")
    pm = make_plugin_manager(autoload=False)
    assert pm.is_blocked("console")
    assert pm.get_plugin("console") is None
    assert pm.get_plugin("runlog") is None


def test_misspelled_hook_fails_check_pending() -> None:
    class Typo:
        @hookimpl
        def carbontrack_discover_device(self) -> list[Device]:
            return []

    with pytest.raises(pluggy.PluginValidationError, match="carbontrack_discover_device"):
        make_plugin_manager(autoload=False, extra_plugins=[Typo()])


class _Boom:
    name = "boom"

    @hookimpl
    def carbontrack_discover_devices(self) -> list[Device]:
        raise RuntimeError("discovery exploded")

    @hookimpl
    def carbontrack_locate(self) -> Location:
        raise RuntimeError("locate exploded")


def test_failing_plugin_does_not_affect_others_and_is_recorded() -> None:
    hw = FakeHardware([FakeDevice("pkg", watts=10.0)])
    host = PluginHost(make_plugin_manager(autoload=False, extra_plugins=[hw, _Boom()]))
    found = host.broadcast("carbontrack_discover_devices", settings=make_settings())
    assert [d.id for d in found["fake"]] == ["pkg"]
    assert "boom" not in found
    (failure,) = host.failures
    assert (failure.plugin, failure.hook) == ("boom", "carbontrack_discover_devices")
    assert failure.error == "RuntimeError: discovery exploded"


def test_firstresult_skips_a_failing_plugin() -> None:
    class Sweden:
        @hookimpl
        def carbontrack_locate(self) -> Location:
            return Location(country="SE", source="test")

    # pluggy asks the last registered first: _Boom fails, then Sweden answers.
    host = PluginHost(make_plugin_manager(autoload=False, extra_plugins=[Sweden(), _Boom()]))
    location = host.first("carbontrack_locate", settings=make_settings())
    assert location == Location(country="SE", source="test")
    assert [f.plugin for f in host.failures] == ["boom"]


def test_failure_is_logged_once_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    host = PluginHost(make_plugin_manager(autoload=False, extra_plugins=[_Boom()]))
    for _ in range(3):
        host.broadcast("carbontrack_discover_devices", settings=make_settings())
    logged = [r for r in caplog.records if "boom" in r.getMessage()]
    assert len(logged) == 1
    assert logged[0].exc_info is not None
    assert host.failures[0].count == 3


def test_keyboard_interrupt_passes_through() -> None:
    class Interrupt:
        @hookimpl
        def carbontrack_discover_devices(self) -> list[Device]:
            raise KeyboardInterrupt

    host = PluginHost(make_plugin_manager(autoload=False, extra_plugins=[Interrupt()]))
    with pytest.raises(KeyboardInterrupt):
        host.broadcast("carbontrack_discover_devices", settings=make_settings())


def test_plugin_failure_in_discovery_reaches_the_report_not_the_user() -> None:
    hw = FakeHardware([FakeDevice("pkg", watts=10.0)])
    with track(plugins=[hw, _Boom()], verbose=0, interval_s=0.01) as run:
        pass
    assert [d.id for d in run.report.devices] == ["pkg"]
    assert {(f.plugin, f.hook) for f in run.report.failures} == {
        ("boom", "carbontrack_discover_devices"),
        ("boom", "carbontrack_locate"),
    }


def test_implementations_may_take_a_subset_of_arguments() -> None:
    seen = []

    class Minimal:
        @hookimpl
        def carbontrack_report_ready(self, report: object) -> None:
            seen.append(report)

    with track(plugins=[Minimal()], verbose=0) as run:
        pass
    assert seen == [run.report]


def test_marked_function_without_the_hook_prefix_fails_check_pending() -> None:
    class NoPrefix:
        @hookimpl
        def discover_devices(self) -> list[Device]:
            return []

    with pytest.raises(pluggy.PluginValidationError, match="discover_devices"):
        make_plugin_manager(autoload=False, extra_plugins=[NoPrefix()])


def test_unmarked_attributes_are_not_hooks() -> None:
    class Plain:
        carbontrack_note = "a value, not a hook"

        def helper(self) -> int:
            return 1

    pm = make_plugin_manager(autoload=False, extra_plugins=[Plain()])
    assert pm.get_hookcallers(pm.get_plugin("extra-0")) == []


@pytest.mark.parametrize(
    ("second", "fragment"),
    [
        (FakeHardware([FakeDevice("b")]), "two of plugins= are named 'fake'"),
        (FakeHardware([FakeDevice("b")], name="console"), "'console' is a built-in plugin"),
    ],
)
def test_extra_plugins_with_a_taken_name_are_refused_with_the_fix(
    second: FakeHardware, fragment: str
) -> None:
    plugins = [FakeHardware([FakeDevice("a")]), second]
    with pytest.raises(ValueError, match=fragment) as info:
        track(plugins=plugins, verbose=0, write_log=False).__enter__()
    assert "name=" in str(info.value)  # says how to fix it
