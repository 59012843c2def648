"""A third-party driver package, as far as Berth can tell: in-memory runtime, network and
volume drivers registered through entry points, never named by Berth itself.

``install`` registers them the way an installed distribution does: it writes a
``.dist-info`` whose ``entry_points.txt`` lists ``memory`` under ``berth.runtimes``,
``berth.networks`` and ``berth.volumes``; a process with that directory (and this
repository) on its ``PYTHONPATH`` finds them through ``importlib.metadata`` like any
other plug-in, and ``BERTH_RUNTIME_DRIVER=memory`` (and so on) selects them.

The runtime is Berth's in-memory test driver (``berth.runtimes.fake``) behind the
plug-in interface: it is handed the network and volume drivers and keeps them where
the agent looks for them, and it "pulls" any image.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from berth.config import Settings
from berth.domain.hostsync import NetworkRef, RegistryAuth, VolumeMount
from berth.networks.base import FirewallSpec, NetworkDriver, NetworkFactory
from berth.runtimes.base import HostFacts, RuntimeFactory
from berth.runtimes.fake import FakeDriver
from berth.volumes.base import VolumeDriver, VolumeFactory, volume_name

__all__ = ["NAME", "MemoryNetworks", "MemoryRuntime", "MemoryVolumes", "install"]

NAME = "memory"
OS = "berth-test-memory-drivers"  # what the runtime reports as its host's OS
REPO = Path(__file__).resolve().parents[2]
_MODULE = "tests.plugins.memory_drivers"


class MemoryNetworks:
    """NetworkDriver that only remembers: the networks made and each container's filtering."""

    def __init__(self) -> None:
        self.networks: set[str] = set()
        self.attached: dict[str, set[str]] = {}
        self.firewalls: dict[str, FirewallSpec] = {}

    async def ensure(self, net: NetworkRef) -> None:
        self.networks.add(net.id)

    def forget(self, network_id: str) -> None:
        self.networks.discard(network_id)

    async def connect(self, uuid: str, net: NetworkRef) -> None:
        await self.ensure(net)
        self.attached.setdefault(uuid, set()).add(net.id)

    async def disconnect(self, uuid: str, network_id: str) -> None:
        self.attached.get(uuid, set()).discard(network_id)

    async def prune(self, keep: set[str]) -> list[str]:
        used = set().union(*self.attached.values()) if self.attached else set()
        gone = sorted(self.networks - used - keep)
        self.networks -= set(gone)
        return gone

    async def write_firewalls(self, changes: Mapping[str, FirewallSpec | None]) -> None:
        for uuid, spec in changes.items():
            if spec is None:
                self.firewalls.pop(uuid, None)
            else:
                self.firewalls[uuid] = spec

    async def firewalled(self) -> set[str]:
        return set(self.firewalls)

    async def close(self) -> None:
        return None


class MemoryVolumes:
    """VolumeDriver that only remembers which volumes exist and whose they are."""

    def __init__(self) -> None:
        self.volumes: dict[str, str | None] = {}  # uuid -> owning container

    async def ensure(self, mount: VolumeMount, project_id: str) -> str:
        self.volumes.setdefault(mount.volume_uuid, mount.owner)
        return volume_name(mount.volume_uuid)

    async def remove(self, volume_uuid: str) -> None:
        self.volumes.pop(volume_uuid, None)

    async def remove_owned_by(self, owner_uuid: str) -> None:
        for uuid in [u for u, o in self.volumes.items() if o == owner_uuid]:
            del self.volumes[uuid]

    async def close(self) -> None:
        return None


class MemoryRuntime(FakeDriver):
    """Berth's in-memory driver, built by a factory and handed its network and volume drivers."""

    def __init__(self, *, networks: NetworkDriver, volumes: VolumeDriver) -> None:
        super().__init__()
        self.networks = networks
        self.volumes = volumes

    async def host_facts(self) -> HostFacts:
        """The fake's small host, telling that it is this plug-in's (``os``)."""
        facts = await super().host_facts()
        return replace(facts, os=OS, os_type="linux", engine=NAME, engine_version="1.0")

    async def ensure_image(
        self, image: str, pull_policy: str | None, auth: RegistryAuth | None = None
    ) -> None:
        self.pullable.add(image)  # every registry has every image
        await super().ensure_image(image, pull_policy, auth)


def runtime(settings: Settings, *, networks: NetworkDriver, volumes: VolumeDriver) -> MemoryRuntime:
    """The ``berth.runtimes`` entry point."""
    return MemoryRuntime(networks=networks, volumes=volumes)


def network(settings: Settings) -> MemoryNetworks:
    """The ``berth.networks`` entry point."""
    return MemoryNetworks()


def volume(settings: Settings) -> MemoryVolumes:
    """The ``berth.volumes`` entry point."""
    return MemoryVolumes()


# What Berth's Kinds declare of their factories, checked statically.
_RUNTIME: RuntimeFactory = runtime
_NETWORK: NetworkFactory = network
_VOLUME: VolumeFactory = volume


def install(where: Path) -> dict[str, str]:
    """Register the drivers in ``where``; the environment a Berth process needs to find them."""
    info = where / "berth_test_memory_drivers-1.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: berth-test-memory-drivers\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text(
        f"[berth.runtimes]\n{NAME} = {_MODULE}:runtime\n\n"
        f"[berth.networks]\n{NAME} = {_MODULE}:network\n\n"
        f"[berth.volumes]\n{NAME} = {_MODULE}:volume\n"
    )
    return {"PYTHONPATH": f"{where}:{REPO}"}
