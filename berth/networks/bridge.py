"""The built-in network driver: Docker bridge networks and iptables, on one host.

Each Berth network is a bridge network ``berth-net-<id>`` of the engine (Docker,
or Podman's service through its Docker-compatible API), labelled with its
project and this agent's owner, created when the first container needs it and
pruned once none uses it. Berth keeps networks apart and enforces security
groups itself, in its own chain at the top of forwarded traffic
(``berth.networks.forward``), the same on both engines: Docker isolates its
bridge networks too, but netavark 1.4 (Podman on Debian 12) does not do so
reliably and accepts every Podman subnet's traffic before Docker's hook. A
security group is one chain per container (``berth.networks.firewall``),
written with ``iptables-restore --noflush`` so a chain is replaced in one atomic
step. The host's own services are kept out of reach by
``berth.networks.hostguard``: every bridge of this owner (named
``brt-<11 hex>``) is guarded in ``INPUT`` and isolated before a container can
join it, and both are re-checked whenever unused networks are pruned.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import docker
import docker.errors
import requests

from berth import errors
from berth.config import Settings
from berth.domain.hostsync import NetworkRef, RemoteMember
from berth.networks.base import FirewallSpec, NetworkFactory, network_id_of, network_name
from berth.networks.hostguard import HostPort, allowed_host_ports, bridge_name
from berth.networks.hostrules import HostRules

__all__ = ["BridgeNetworks", "driver"]

log = logging.getLogger(__name__)
T = TypeVar("T")

LABEL_NETWORK = "berth.network"
LABEL_PROJECT = "berth.project"
LABEL_OWNER = "berth.owner"
OPTION_BRIDGE = "com.docker.network.bridge.name"


class BridgeNetworks:
    """NetworkDriver over a Docker engine's bridge driver and the host's iptables.

    ``owner`` (the agent's host name) labels the networks created and the jump
    rules written, so agents sharing one engine or kernel never remove each
    other's. ``host_ports``: the ports on the host itself that containers may
    still reach (everything else on the host's addresses is rejected).
    """

    def __init__(
        self,
        base_url: str = "unix:///var/run/docker.sock",
        *,
        owner: str,
        iptables: str = "iptables",
        host_ports: Sequence[HostPort] = (),
    ) -> None:
        self._base_url = base_url
        self._owner = owner
        self._rules = HostRules(
            owner=owner, iptables=iptables, host_ports=host_ports, podman=self._is_podman
        )
        self._api: Any = None
        self._lock = threading.Lock()
        self._create_lock = asyncio.Lock()
        # Networks this driver saw or made: ensure() asks the engine only for
        # others (one engine call less per create). A network removed behind
        # its back makes the container create fail; forget() then re-checks.
        self._known: set[str] = set()
        self._podman: bool | None = None  # the engine's kind, asked once

    # -- the engine

    def _client(self) -> Any:
        with self._lock:
            if self._api is None:
                self._api = docker.APIClient(base_url=self._base_url, version="auto")
            return self._api

    async def _run(self, call: Callable[[Any], T]) -> T:
        try:
            return await asyncio.to_thread(lambda: call(self._client()))
        except docker.errors.APIError as exc:
            raise errors.BerthError(f"docker engine error: {exc.explanation or exc}") from exc
        except (docker.errors.DockerException, requests.RequestException) as exc:
            raise errors.HostUnavailable(
                f"the docker engine at {self._base_url} does not answer: {exc}"
            ) from exc

    async def close(self) -> None:
        """Release the engine connection."""
        if self._api is not None:
            self._api.close()

    async def _find(self, name: str) -> dict[str, Any] | None:
        found: list[dict[str, Any]] = await self._run(lambda api: api.networks(names=[name]))
        return next((n for n in found if n.get("Name") == name), None)

    async def ensure(self, net: NetworkRef) -> None:
        """Create ``berth-net-<id>`` unless it exists (one creation at a time per agent)."""
        name = network_name(net.id)
        if name in self._known:
            return
        async with self._create_lock:
            found = await self._find(name)
            if found is not None:
                if (found.get("Labels") or {}).get(LABEL_OWNER) == self._owner:
                    bridge = await self._bridge_of(found)
                    await self._guard({bridge: net.id})
                    await self._created(net, bridge)
                self._known.add(name)
                return
            labels = {
                LABEL_NETWORK: net.id,
                LABEL_PROJECT: net.project_id,
                LABEL_OWNER: self._owner,
            }
            # Guarded and isolated before it exists: no container is ever on it unguarded.
            bridge = bridge_name(self._owner, net.id)
            await self._guard({bridge: net.id})
            extra = self._network_params(net)
            options = {OPTION_BRIDGE: bridge, **extra.pop("options", {})}
            try:
                await self._run(
                    lambda api: api.create_network(
                        name,
                        driver="bridge",
                        labels=labels,
                        options=options,
                        check_duplicate=True,
                        **extra,
                    )
                )
            except errors.BerthError:
                if await self._find(name) is None:  # not a concurrent create by another agent
                    raise
            await self._created(net, bridge)
            self._known.add(name)
            log.info("created network %s for project %s", name, net.project_id)

    async def _is_podman(self) -> bool:
        """Whether the engine is a Podman service (its version names Podman's components)."""
        if self._podman is None:
            version: dict[str, Any] = await self._run(lambda api: api.version())
            names = [str(c.get("Name", "")) for c in version.get("Components") or []]
            self._podman = any(name.startswith("Podman") for name in names)
        return self._podman

    async def _bridge_of(self, network: Mapping[str, Any]) -> str:
        """The Linux bridge of one of this owner's networks, as the engine lists it.

        Docker lists the bridge name Berth gave (networks of an older Berth have
        Docker's ``br-<12 of id>``). Podman's Docker-compatible listing leaves the
        options out: there it is the name Berth gives, which Podman honours."""
        named = (network.get("Options") or {}).get(OPTION_BRIDGE)
        if named:
            return str(named)
        net_id = network_id_of(str(network.get("Name")))
        if net_id is not None and await self._is_podman():
            return bridge_name(self._owner, net_id)
        return f"br-{str(network.get('Id'))[:12]}"

    def _network_params(self, net: NetworkRef) -> dict[str, Any]:
        """Extra ``create_network`` arguments (``options`` merged): none, the engine's IPAM."""
        return {}

    async def _created(self, net: NetworkRef, bridge: str) -> None:
        """``net`` exists on the engine as ``bridge`` (made now or found): nothing more here."""

    async def program(self, remote: Mapping[str, Sequence[RemoteMember]]) -> None:
        """Members on other hosts: a per-host bridge does not reach them (nothing to do)."""

    def forget(self, network_id: str) -> None:
        """Ask the engine again next time: ``network_id`` may be gone."""
        self._known.discard(network_name(network_id))

    async def connect(self, uuid: str, net: NetworkRef) -> None:
        """Attach ``berth-<uuid>`` to the network; already attached is success."""
        await self.ensure(net)
        name = network_name(net.id)
        # An address leased by the control plane (overlay) is taken, not picked by the engine.
        fixed = {"ipv4_address": net.address} if net.address else {}
        try:
            await self._run(
                lambda api: api.connect_container_to_network(f"berth-{uuid}", name, **fixed)
            )
        except errors.BerthError as exc:
            if "already exists" in exc.message:
                return
            if "private (none) mode" not in exc.message:
                raise
            # Created with no network (all were detached): leave "none" to join one.
            await self._run(
                lambda api: api.disconnect_container_from_network(f"berth-{uuid}", "none")
            )
            await self._run(
                lambda api: api.connect_container_to_network(f"berth-{uuid}", name, **fixed)
            )

    async def disconnect(self, uuid: str, network_id: str) -> None:
        """Detach ``berth-<uuid>`` from the network; not attached (or gone) is success."""
        name = network_name(network_id)
        try:
            await self._run(
                lambda api: api.disconnect_container_from_network(f"berth-{uuid}", name)
            )
        except errors.BerthError as exc:
            if "not connected" not in exc.message and "not found" not in exc.message.lower():
                raise

    async def prune(self, keep: set[str]) -> list[str]:
        """Remove this owner's unused networks that are not in ``keep``."""
        mine = await self._owned()
        removed = []
        bridges: dict[str, str] = {}
        for entry in mine:
            net_id = network_id_of(str(entry.get("Name")))
            if net_id is None:
                continue
            bridge = await self._bridge_of(entry)
            bridges[bridge] = net_id
            if net_id in keep:
                continue
            try:
                if not await self._remove_if_unused(str(entry["Id"])):
                    continue
            except errors.BerthError as exc:
                log.debug("network %s not pruned: %s", entry.get("Name"), exc.message)
                continue
            removed.append(net_id)
            del bridges[bridge]
            log.info("removed unused network %s", entry.get("Name"))
        await self._sync_guard(bridges)
        await self._pruned(set(bridges.values()))
        return removed

    async def _pruned(self, present: set[str]) -> None:
        """After a prune: ``present`` are the ids of this owner's networks left on the engine."""

    async def _owned(self) -> list[dict[str, Any]]:
        """This owner's networks on the engine, as it lists them."""
        found: list[dict[str, Any]] = await self._run(
            lambda api: api.networks(filters={"label": [f"{LABEL_OWNER}={self._owner}"]})
        )
        return found

    async def _remove_if_unused(self, ident: str) -> bool:
        detail: dict[str, Any] = await self._run(lambda api: api.inspect_network(ident))
        if detail.get("Containers"):
            return False
        self._known.discard(str(detail.get("Name")))
        await self._run(lambda api: api.remove_network(ident))
        return True

    # -- iptables (berth.networks.hostrules)

    async def write_firewalls(self, changes: Mapping[str, FirewallSpec | None]) -> None:
        """Replace or remove the chains and jumps of ``changes``: one ``iptables-restore`` run.

        One run for every container that changed since the last sync (each run
        forks the agent and has the kernel swap the whole filter table; 20
        containers started together used to cost 20 of them). The chains are
        replaced and the jumps changed in one atomic step; on Podman, Berth's entry
        is put back first in ``FORWARD`` in the same step when something got above
        it (``berth.networks.forward``).
        """
        await self._rules.write_firewalls(changes)

    async def firewalled(self) -> set[str]:
        """The uuids of the containers this owner filters."""
        return await self._rules.firewalled()

    async def _guard(self, add: dict[str, str]) -> None:
        """Guard and isolate the bridges of ``add`` (``{bridge: network id}``) besides those
        already."""
        await self._rules.guard(add)

    async def _sync_guard(self, bridges: dict[str, str]) -> None:
        """Make the guard and the isolation exactly ``bridges`` (this owner's networks on the
        engine), repairing what changed behind the driver's back."""
        await self._rules.sync_bridges(bridges)


def driver(settings: Settings) -> BridgeNetworks:
    """The ``bridge`` entry point: bridge networks on the engine at ``docker_url``, keeping
    containers off the host's own services except the ports the operator allows (and the
    registries they pull from)."""
    registries = [*([settings.image_store] if settings.image_store else [])]
    host_ports = allowed_host_ports(
        settings.container_host_ports_allowlist,
        [*registries, *settings.image_registry_allowlist],
    )
    return BridgeNetworks(settings.docker_url, owner=settings.agent_host, host_ports=host_ports)


_ENTRY_POINT: NetworkFactory = driver  # so mypy checks the entry point against the Protocol
