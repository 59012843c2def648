"""One converge, delete or health poll of a swarm-mode cluster: the steps it takes on nodes.

A ``Run`` holds the spec, the node provisioner, the reporter and the node clients
(from the ``ConnectNodes`` factory the driver was handed); each step (bring a node
up, find a manager, join, retire, label, wait until Ready) can be re-run after a
crash. ``converge.py`` puts the steps in order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import requests

from berth.clusters import pki
from berth.clusters.driver import ClusterSpec, NodeInfo, NodeProvisioner, NodeSpec, Report
from berth.clusters.swarm.nodeapi import PORT, VXLAN_OVERHEAD, ConnectNodes, NodeApi
from berth.clusters.swarm.plan import Slot, parse_name
from berth.domain.addresses import ip_literal

__all__ = ["Run", "SwarmError", "Timeouts", "api_address", "endpoint", "node_bundle"]

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long the driver waits, in seconds (tests shorten them)."""

    # A node container to run and its dockerd to answer (and take a new certificate).
    node_start: float = 180.0
    # A drained node's tasks to move elsewhere.
    drain: float = 60.0
    # Every node to be Ready in the swarm.
    ready: float = 120.0
    # Between two looks at a node container or a dockerd, and at the swarm.
    poll: float = 0.5
    swarm_poll: float = 1.0
    # Before a converge is retried after a node stopped answering.
    retry_pause: float = 2.0


class SwarmError(Exception):
    """A step of the swarm-mode driver failed (the message becomes the status_reason)."""


def node_bundle(spec: ClusterSpec) -> str:
    """The CAs a node trusts for clients: the cluster CA (users) and the control CA (Berth)."""
    return spec.ca_cert_pem.strip() + "\n" + spec.control_ca_cert_pem.strip() + "\n"


def _ca(spec: ClusterSpec) -> pki.CertificateAuthority:
    if not spec.ca_cert_pem or not spec.ca_key_pem:
        raise SwarmError("the cluster has no CA")
    return pki.CertificateAuthority(spec.ca_cert_pem, spec.ca_key_pem)


def _control(spec: ClusterSpec) -> pki.CertificateAuthority:
    if not spec.control_ca_cert_pem or not spec.control_ca_key_pem:
        raise SwarmError("the cluster has no control CA")
    return pki.CertificateAuthority(spec.control_ca_cert_pem, spec.control_ca_key_pem)


async def _thread(fn: Callable[[], T]) -> T:
    return await asyncio.to_thread(fn)


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def endpoint(info: NodeInfo) -> str | None:
    """Where the node's port 2376 is published: ``<host address>:<host port>``, if known."""
    port = info.published.get(PORT)
    if not port or not info.host_address:
        return None
    return _hostport(info.host_address, port)


def api_address(info: NodeInfo) -> str:
    """The cluster's ``api_address`` when ``info`` is its first master.

    Where the node's host publishes 2376, when that is an address others reach
    (not loopback: an all-in-one's agent address); else ``<node address>:2376``,
    which the node's own host and its network's members reach.
    """
    host = info.host_address or ""
    literal = ip_literal(host)
    remote = host != "localhost" and not (literal is not None and literal.is_loopback)
    published = endpoint(info)
    if published and remote:
        return f"tcp://{published}"
    return f"tcp://{_hostport(info.address or '', PORT)}"


class Run:
    """One converge or delete: the spec, the provisioner, the reporter and open clients."""

    def __init__(
        self, spec: ClusterSpec, nodes: NodeProvisioner, report: Report,
        connect: ConnectNodes, timeouts: Timeouts,
    ) -> None:  # fmt: skip
        self.spec, self.nodes, self.report, self.timeouts = spec, nodes, report, timeouts
        self.clients = connect(_control(spec))
        self.apis: dict[str, NodeApi] = {}

    def close(self) -> None:
        """Close every node client and forget the credentials."""
        for api in self.apis.values():
            api.close()
        self.clients.close()

    # -- node containers

    def node_spec(self, slot: Slot) -> NodeSpec:
        """The container of ``slot``: dockerd with a certificate from the cluster CA."""
        cert, key = pki.issue(_ca(self.spec), slot.name, server=True,
                              sans=(slot.name, "localhost", "127.0.0.1"))  # fmt: skip
        env = {
            "BERTH_NODE_TLS_CA": node_bundle(self.spec),
            "BERTH_NODE_TLS_CERT": cert,
            "BERTH_NODE_TLS_KEY": key,
            "BERTH_NODE_LABELS": f"berth.nodegroup={slot.group.name},berth.role={slot.group.role}",
        }
        registry = self.spec.insecure_registry or self.spec.labels.get("insecure_registry", "")
        if registry:
            env["BERTH_NODE_INSECURE_REGISTRIES"] = registry
        storage = self.spec.labels.get("docker_storage_driver", "")
        if storage in ("overlay2", "vfs"):
            env["BERTH_NODE_STORAGE_DRIVER"] = storage
        return NodeSpec(
            name=slot.name, image=slot.group.image, cpu=slot.group.cpu,
            memory_mb=slot.group.memory_mb, environment=env, publish=(PORT,), profile="dind",
            group=slot.group.name,
            availability_zone=slot.group.labels.get("availability_zone") or None,
        )  # fmt: skip

    async def wait_running(self, name: str) -> NodeInfo:
        """The node once its container runs with an address; SwarmError if it never does."""
        deadline = time.monotonic() + self.timeouts.node_start
        while True:
            info = await self.nodes.inspect_node(name)
            if info is None:
                raise SwarmError(f"node {name} disappeared")
            if info.status == "Error":
                raise SwarmError(f"node {name} failed: {info.status_reason or 'unknown error'}")
            if info.status == "Running" and info.address:
                return info
            if time.monotonic() > deadline:
                raise SwarmError(f"node {name} is not running after {self.timeouts.node_start:g} s")
            await asyncio.sleep(self.timeouts.poll)

    def api(self, info: NodeInfo) -> NodeApi:
        """A client for a running node, verifying it with the CAs it was started with.

        It dials the port the node's host publishes (``endpoint``); a provisioner
        that reports none leaves the node's own address.
        """
        if not info.address:
            raise SwarmError(f"node {info.name} has no address")
        via = endpoint(info) or f"{info.address}:{PORT}"
        api = self.apis.get(info.name)
        if api is None or api.address != info.address or api.endpoint != via:
            bundle = info.environment.get("BERTH_NODE_TLS_CA") or node_bundle(self.spec)
            api = self.clients.connect(info.address, bundle, info.name, via)
            self.apis[info.name] = api
        return api

    async def _not_deleting(self, name: str) -> NodeInfo | None:
        """The node's container, once it is not a dead one being deleted (to be replaced)."""
        info = await self.nodes.inspect_node(name)
        deadline = time.monotonic() + self.timeouts.node_start
        while info is not None and info.status == "Deleting":
            if time.monotonic() > deadline:
                raise SwarmError(f"node {name} is still being deleted")
            await asyncio.sleep(self.timeouts.poll)
            info = await self.nodes.inspect_node(name)
        return info

    async def bring_up(self, slot: Slot) -> NodeInfo:
        """Create (if missing) and start a node; its dockerd then serves a cert naming its IP."""
        info = await self._not_deleting(slot.name)
        if info is None:
            # Issuing the node's key and certificate is CPU work: off the event loop.
            info = await self.nodes.create_node(await _thread(partial(self.node_spec, slot)))
        info = await self.wait_running(slot.name)
        api = self.api(info)
        await _thread(lambda: api.wait_ready(self.timeouts.node_start))
        await self._certify_address(slot, info, api)
        return info

    async def _certify_address(self, slot: Slot, info: NodeInfo, api: NodeApi) -> None:
        """Give the node a server certificate that also names its address and its host's
        (where users reach it), unless it has one."""
        names = [n for n in (info.address, info.host_address) if n]
        bundle = info.environment.get("BERTH_NODE_TLS_CA") or node_bundle(self.spec)

        def serves_all() -> bool:
            return all(api.serves_name(bundle, name) for name in names)

        if await _thread(serves_all):
            return
        sans = tuple(dict.fromkeys((*names, slot.name, "localhost", "127.0.0.1")))
        cert, key = pki.issue(_ca(self.spec), slot.name, server=True, sans=sans)
        await _thread(lambda: api.install_certificates(bundle, cert, key))
        # The entrypoint restarts dockerd within a second or two: wait for the new one.
        deadline = time.monotonic() + self.timeouts.node_start
        while not await _thread(serves_all):
            if time.monotonic() > deadline:
                raise SwarmError(f"node {slot.name} did not take its new certificate")
            await asyncio.sleep(self.timeouts.poll)

    # -- swarm

    async def manager(self, candidates: list[NodeInfo], exclude: str = "") -> NodeApi | None:
        """A reachable manager of the swarm among the candidates (not ``exclude``)."""
        for info in candidates:
            if info.name == exclude or not info.address:
                continue
            api = self.api(info)
            try:
                state = await _thread(api.swarm_state)
            except Exception:
                continue
            if state.get("LocalNodeState") == "active" and state.get("ControlAvailable"):
                return api
        return None

    async def gateway_bridge(self, api: NodeApi) -> None:
        """Before a node enters the swarm: its ``docker_gwbridge`` takes the node's MTU.

        (A bridge, NATed out of the node's ``eth0``: no header is added on the way.)
        """
        mtu = await _thread(api.inner_mtu)
        if mtu is not None:
            await _thread(lambda: api.ensure_gateway_bridge(mtu))

    async def ingress(self, manager: NodeApi, infos: list[NodeInfo]) -> None:
        """The swarm's ``ingress`` overlay is made for the nodes' MTU (its interfaces get
        VXLAN's 50 bytes less), not for 1500."""
        found = [await _thread(self.api(i).inner_mtu) for i in infos if i.address]
        mtus = [m for m in found if m is not None]
        if not mtus:
            return
        mtu = min(mtus)
        if await _thread(lambda: manager.ensure_ingress(mtu)):
            await self.report(
                f"Made the swarm's ingress network again for MTU {mtu} "
                f"({mtu - VXLAN_OVERHEAD} inside)."
            )

    async def join(self, api: NodeApi, manager: NodeApi, as_manager: bool) -> None:
        """Join the node to the manager's swarm (as a manager or worker), unless it is in one."""
        state = await _thread(api.swarm_state)
        if state.get("LocalNodeState") == "active":
            return
        if state.get("LocalNodeState") not in ("inactive", None, ""):
            await _thread(api.swarm_leave)
        await self.gateway_bridge(api)
        tokens = await _thread(manager.join_tokens)
        token = tokens["Manager" if as_manager else "Worker"]
        await _thread(lambda: api.swarm_join(manager.address, token))

    async def retire(self, info: NodeInfo, managers: list[NodeInfo]) -> None:
        """Drain, leave, delete the container, and forget the swarm node."""
        await self.report(f"Draining and removing node {info.name}.")
        manager = await self.manager(managers, exclude=info.name)
        node_id = None
        if manager is not None:
            for node in await _thread(manager.nodes):
                if node.get("Description", {}).get("Hostname") == info.name:
                    node_id = node["ID"]
        if manager is not None and node_id is not None:
            await self._drain(manager, node_id, info.name)
        if info.address and info.status == "Running":
            await self._leave(info)
        await self.nodes.delete_node(info.name)
        api_gone = self.apis.pop(info.name, None)
        if api_gone is not None:
            api_gone.close()
        if manager is not None and node_id is not None:
            await asyncio.to_thread(manager.remove_node, node_id)

    async def _drain(self, manager: NodeApi, node_id: str, name: str) -> None:
        """Drain a swarm node (its tasks move elsewhere) and demote it if it is a manager."""
        try:
            await _thread(lambda: manager.update_node(node_id, availability="drain"))
            deadline = time.monotonic() + self.timeouts.drain
            while await _thread(lambda: manager.running_tasks_on(node_id)):
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(self.timeouts.swarm_poll)
            spec = next((n for n in await _thread(manager.nodes) if n["ID"] == node_id), {}).get(
                "Spec", {}
            )
            if spec.get("Role") == "manager":
                await _thread(lambda: manager.update_node(node_id, role="worker"))
                await self._demoted(manager, node_id, name)
        except SwarmError:
            raise
        except Exception as exc:  # a dead node cannot be drained: remove it anyway
            log.info("draining %s: %s", name, exc)

    async def _demoted(self, manager: NodeApi, node_id: str, name: str) -> None:
        """Wait until a demoted manager is out of raft (no ``ManagerStatus``).

        A demotion only changes the node's spec; swarmkit's role manager takes the
        node out of raft afterwards (handing leadership over first when it leads).
        A manager that leaves before that still counts as a raft member: with two
        managers, the one left is no majority and the swarm has no leader for good
        (measured: an upgrade of a one-master cluster, CI of stop 22).
        """
        deadline = time.monotonic() + self.timeouts.drain
        while time.monotonic() < deadline:
            try:
                nodes = await _thread(manager.nodes)
            except requests.exceptions.RequestException as exc:  # an election: ask again
                log.info("waiting for %s to leave raft: %s", name, exc)
            else:
                if not any(n["ID"] == node_id and n.get("ManagerStatus") for n in nodes):
                    return
            await asyncio.sleep(self.timeouts.swarm_poll)
        raise SwarmError(f"node {name} was demoted but is still a swarm manager; try again")

    async def _leave(self, info: NodeInfo) -> None:
        """The node leaves the swarm itself, when its dockerd still answers."""
        api = self.api(info)
        if await _thread(api.ping):
            try:
                await _thread(api.swarm_leave)
            except Exception as exc:
                log.info("%s leaving the swarm: %s", info.name, exc)

    async def label(self, manager: NodeApi, slots: list[Slot], node_ids: dict[str, str]) -> int:
        """Give each node its swarm labels: the group's node_labels, its group and role.

        ``node_ids`` maps node names to swarm node IDs (as ``wait_all_ready`` returns
        them). Returns how many nodes' labels changed.
        """
        changed = 0
        for slot in slots:
            node_id = node_ids[slot.name]
            labels = {
                **slot.group.node_labels,
                "berth.nodegroup": slot.group.name,
                "berth.role": slot.group.role,
            }
            if await _thread(partial(manager.set_labels, node_id, labels)):
                changed += 1
        return changed

    async def wait_all_ready(
        self, manager: NodeApi, nodes: list[NodeInfo], prune: bool = False
    ) -> dict[str, str]:
        """Wait until the swarm lists each of ``nodes`` Ready (by its own node ID).

        Returns the swarm node ID of each node, by name.

        With ``prune``, swarm entries of this cluster that none of ``nodes`` is (a
        node removed while the driver was down, a dead node replaced under the same
        name by auto-healing) are removed.
        """
        want: dict[str, str] = {}
        for info in nodes:
            state = await _thread(self.api(info).swarm_state)
            want[str(state.get("NodeID") or "")] = info.name
        deadline = time.monotonic() + self.timeouts.ready
        while True:
            listed = await _thread(manager.nodes)
            ready = {n["ID"] for n in listed if n.get("Status", {}).get("State") == "ready"}
            missing = [name for node_id, name in want.items() if node_id not in ready]
            if not missing:
                break
            if time.monotonic() > deadline:
                raise SwarmError(f"nodes not Ready in the swarm: {', '.join(sorted(missing))}")
            await asyncio.sleep(self.timeouts.swarm_poll)
        if prune:
            await self._prune(manager, listed, want)
        return {name: node_id for node_id, name in want.items()}

    async def _prune(self, manager: NodeApi, listed: list[dict[str, Any]],
                     want: dict[str, str]) -> None:  # fmt: skip
        """Remove this cluster's swarm entries that are none of the nodes in ``want``."""
        stale = [
            str(n["ID"])
            for n in listed
            if n["ID"] not in want
            and parse_name(self.spec.uuid, n.get("Description", {}).get("Hostname", "")) is not None
        ]
        for node_id in stale:
            await asyncio.to_thread(manager.remove_node, node_id)
