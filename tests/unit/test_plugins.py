"""berth.plugins: drivers by name from entry points, and the composition root that wires them."""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterator
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from berth import plugins
from berth.cli.serve import agent_runtime
from berth.config import Settings
from berth.networks.base import NETWORK_DRIVERS
from berth.plugins import Kind, PluginNotFound
from berth.runtimes.base import RUNTIME_DRIVERS
from berth.volumes.base import VOLUME_DRIVERS
from tests.plugins import memory_drivers

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
GROUP = "berth.tests.things"
KIND: Kind[Callable[[], object]] = Kind(GROUP, "thing driver", "thing_driver")


def _installed(monkeypatch: pytest.MonkeyPatch, *eps: tuple[str, str, str]) -> None:
    """Make ``entry_points(group=...)`` see exactly ``eps`` (name, value, group)."""
    found = [EntryPoint(name, value, group) for name, value, group in eps]
    monkeypatch.setattr(
        plugins, "entry_points", lambda group: [ep for ep in found if ep.group == group]
    )
    plugins._scan.cache_clear()  # what was installed before is forgotten


@pytest.fixture(autouse=True)
def _no_kept_scans() -> Iterator[None]:
    """A process keeps its scans per sys.path: each test here starts and ends without."""
    plugins._scan.cache_clear()
    yield
    plugins._scan.cache_clear()


def test_a_kind_loads_the_factory_its_entry_point_names(monkeypatch: pytest.MonkeyPatch) -> None:
    _installed(
        monkeypatch,
        ("plain", "builtins:object", GROUP),
        ("other", "builtins:dict", GROUP),
        ("elsewhere", "builtins:list", "berth.tests.unrelated"),
    )
    assert KIND.names() == ["other", "plain"]
    assert KIND.load("plain") is object


def test_an_unknown_name_names_the_installed_choices_and_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _installed(monkeypatch, ("plain", "builtins:object", GROUP), ("b", "builtins:dict", GROUP))
    with pytest.raises(PluginNotFound) as caught:
        KIND.load("podman")
    message = caught.value.message
    assert "no thing driver named 'podman' is installed" in message
    assert "thing_driver, BERTH_THING_DRIVER" in message
    assert "the installed ones are b, plain" in message
    _installed(monkeypatch)
    with pytest.raises(PluginNotFound, match="the installed ones are none"):
        KIND.load("podman")


def test_a_broken_plugin_is_a_clear_error_and_is_skipped_among_all(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _installed(
        monkeypatch,
        ("ghost", "berth.no_such_module:factory", GROUP),
        ("constant", "berth.runtimes.base:LABEL_UUID", GROUP),
        ("plain", "builtins:object", GROUP),
    )
    with pytest.raises(PluginNotFound, match=r"'ghost' .* cannot be loaded"):
        KIND.load("ghost")
    with pytest.raises(PluginNotFound, match="is not callable"):
        KIND.load("constant")
    assert KIND.load_all() == {"plain": object}
    assert "ghost" in caplog.text and "constant" in caplog.text


def test_a_name_declared_twice_is_the_first_distributions(monkeypatch: pytest.MonkeyPatch) -> None:
    _installed(monkeypatch, ("x", "builtins:object", GROUP), ("x", "builtins:dict", GROUP))
    assert KIND.load("x") is object


def test_installed_drivers_are_read_once_per_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """One scan of the installed distributions serves every later lookup; a distribution
    on a path added since (a plug-in installed there) is found by the next lookup."""
    scans: list[str] = []
    real = plugins.entry_points

    def counted(group: str) -> object:
        scans.append(group)
        return real(group=group)

    monkeypatch.setattr(plugins, "entry_points", counted)
    assert "docker" in RUNTIME_DRIVERS.names()
    RUNTIME_DRIVERS.load("docker")
    RUNTIME_DRIVERS.load_all()
    assert scans == [RUNTIME_DRIVERS.group]
    assert "late" not in KIND.names()

    dist = tmp_path / "late_thing-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: late-thing\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{GROUP}]\nlate = builtins:dict\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert KIND.load("late") is dict
    assert scans == [RUNTIME_DRIVERS.group, GROUP, GROUP]


def test_berths_own_drivers_are_declared_as_the_default_settings_name_them() -> None:
    """What pyproject.toml declares (an install turns it into entry points) loads, and the
    defaults select it; the in-memory fake is not among them."""
    declared = tomllib.loads(PYPROJECT.read_text())["project"]["entry-points"]
    defaults = Settings(agent_host="h")
    for kind, default in (
        (RUNTIME_DRIVERS, defaults.runtime_driver),
        (NETWORK_DRIVERS, defaults.network_driver),
        (VOLUME_DRIVERS, defaults.volume_driver),
    ):
        group = declared[kind.group]
        assert default in group, (kind.group, group)
        for name, value in group.items():
            assert callable(EntryPoint(name, value, kind.group).load())
    assert (defaults.runtime_driver, defaults.network_driver, defaults.volume_driver) == (
        "docker",
        "bridge",
        "local",
    )
    assert not any("fake" in value for group in declared.values() for value in group.values())


def test_the_composition_root_hands_the_runtime_its_network_and_volume_drivers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = "tests.plugins.memory_drivers"
    _installed(
        monkeypatch,
        ("memory", f"{module}:runtime", RUNTIME_DRIVERS.group),
        ("memory", f"{module}:network", NETWORK_DRIVERS.group),
        ("memory", f"{module}:volume", VOLUME_DRIVERS.group),
    )
    settings = Settings(
        agent_host="h", runtime_driver="memory", network_driver="memory", volume_driver="memory"
    )
    runtime = agent_runtime(settings)
    assert isinstance(runtime, memory_drivers.MemoryRuntime)
    assert isinstance(runtime.networks, memory_drivers.MemoryNetworks)
    assert isinstance(runtime.volumes, memory_drivers.MemoryVolumes)
    with pytest.raises(SystemExit, match="no volume driver named 'local' is installed"):
        agent_runtime(settings.model_copy(update={"volume_driver": "local"}))
