"""The ``swarm-mode`` reference driver: nodes are Berth containers running ``dockerd`` with TLS.

``create`` and ``update`` are one level-triggered converge: read the node
containers that exist, plan against the desired node groups (``plan.py``), and
act so that every step can be re-run after a crash:

1. create the missing node containers (Docker-in-Docker profile, TLS files from
   the cluster CA in their environment) and wait until their dockerd answers;
2. give each node a server certificate naming its address;
3. ``swarm init`` on the first master unless a manager exists, join the other
   masters as managers and the workers as workers;
4. replace nodes of an older generation (a new image: upgrade; a new CA:
   rotation) one at a time — the new node joins before the old one is drained;
5. retire surplus nodes: drain (the swarm moves their tasks), leave, delete the
   container, remove the swarm node; then wait until ``docker node ls`` shows
   every node Ready.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import TypeVar

import requests

from berth.clusters import pki
from berth.clusters.driver import (
    ClusterSpec,
    DriverInfo,
    Health,
    NodeInfo,
    NodeProvisioner,
    NodeSpec,
    Outcome,
    Report,
)
from berth.clusters.swarm.nodeapi import PORT, Credentials, NodeApi, NodeApiError
from berth.clusters.swarm.plan import Plan, Slot, batches, parse_name, plan

__all__ = ["SwarmModeDriver", "driver", "node_bundle"]

log = logging.getLogger(__name__)
T = TypeVar("T")

VERSION = "1.0.0"
# How long a node container may take to run and answer, and a drain to empty a node.
NODE_START_S = 180.0
DRAIN_S = 60.0
READY_S = 120.0
_ATTEMPTS = 3


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


class _Run:
    """One converge or delete: the spec, the provisioner, the reporter and open clients."""

    def __init__(self, spec: ClusterSpec, nodes: NodeProvisioner, report: Report) -> None:
        self.spec, self.nodes, self.report = spec, nodes, report
        self.creds = Credentials(_control(spec))
        self.apis: dict[str, NodeApi] = {}

    def close(self) -> None:
        for api in self.apis.values():
            api.close()
        self.creds.close()

    # -- node containers

    def node_spec(self, slot: Slot) -> NodeSpec:
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
        )  # fmt: skip

    async def wait_running(self, name: str) -> NodeInfo:
        deadline = time.monotonic() + NODE_START_S
        while True:
            info = await self.nodes.inspect_node(name)
            if info is None:
                raise SwarmError(f"node {name} disappeared")
            if info.status == "Error":
                raise SwarmError(f"node {name} failed: {info.status_reason or 'unknown error'}")
            if info.status == "Running" and info.address:
                return info
            if time.monotonic() > deadline:
                raise SwarmError(f"node {name} is not running after {NODE_START_S:g} s")
            await asyncio.sleep(0.5)

    def api(self, info: NodeInfo) -> NodeApi:
        """A client for a running node, verifying it with the CAs it was started with."""
        if not info.address:
            raise SwarmError(f"node {info.name} has no address")
        api = self.apis.get(info.name)
        if api is None or api.address != info.address:
            bundle = info.environment.get("BERTH_NODE_TLS_CA") or node_bundle(self.spec)
            api = self.apis[info.name] = NodeApi(self.creds, info.address, bundle, info.name)
        return api

    async def bring_up(self, slot: Slot) -> NodeInfo:
        """Create (if missing) and start a node; its dockerd then serves a cert naming its IP."""
        info = await self.nodes.inspect_node(slot.name)
        deadline = time.monotonic() + NODE_START_S
        while info is not None and info.status == "Deleting":  # a dead node being replaced
            if time.monotonic() > deadline:
                raise SwarmError(f"node {slot.name} is still being deleted")
            await asyncio.sleep(0.5)
            info = await self.nodes.inspect_node(slot.name)
        if info is None:
            # Issuing the node's key and certificate is CPU work: off the event loop.
            info = await self.nodes.create_node(await _thread(partial(self.node_spec, slot)))
        info = await self.wait_running(slot.name)
        api = self.api(info)
        await _thread(lambda: api.wait_ready(NODE_START_S))
        address = info.address or ""
        bundle = info.environment.get("BERTH_NODE_TLS_CA") or node_bundle(self.spec)
        if not await _thread(lambda: api.serves_name(self.creds, bundle, address)):
            cert, key = pki.issue(
                _ca(self.spec), slot.name, server=True,
                sans=(address, slot.name, "localhost", "127.0.0.1"),
            )  # fmt: skip
            await _thread(lambda: api.install_certificates(bundle, cert, key))
            # The entrypoint restarts dockerd within a second or two: wait for the new one.
            deadline = time.monotonic() + NODE_START_S
            while not await _thread(lambda: api.serves_name(self.creds, bundle, address)):
                if time.monotonic() > deadline:
                    raise SwarmError(f"node {slot.name} did not take its new certificate")
                await asyncio.sleep(0.5)
        return info

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

    async def join(self, api: NodeApi, manager: NodeApi, as_manager: bool) -> None:
        state = await _thread(api.swarm_state)
        if state.get("LocalNodeState") == "active":
            return
        if state.get("LocalNodeState") not in ("inactive", None, ""):
            await _thread(api.swarm_leave)
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
            try:
                await _thread(lambda: manager.update_node(node_id, availability="drain"))
                deadline = time.monotonic() + DRAIN_S
                while await _thread(lambda: manager.running_tasks_on(node_id)):
                    if time.monotonic() > deadline:
                        break
                    await asyncio.sleep(1)
                spec = next(
                    (n for n in await _thread(manager.nodes) if n["ID"] == node_id), {}
                ).get("Spec", {})
                if spec.get("Role") == "manager":
                    await _thread(lambda: manager.update_node(node_id, role="worker"))
            except Exception as exc:  # a dead node cannot be drained: remove it anyway
                log.info("draining %s: %s", info.name, exc)
        if info.address and info.status == "Running":
            api = self.api(info)
            if await _thread(api.ping):
                try:
                    await _thread(api.swarm_leave)
                except Exception as exc:
                    log.info("%s leaving the swarm: %s", info.name, exc)
        await self.nodes.delete_node(info.name)
        api_gone = self.apis.pop(info.name, None)
        if api_gone is not None:
            api_gone.close()
        if manager is not None and node_id is not None:
            await asyncio.to_thread(manager.remove_node, node_id)

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
        deadline = time.monotonic() + READY_S
        while True:
            listed = await _thread(manager.nodes)
            ready = {n["ID"] for n in listed if n.get("Status", {}).get("State") == "ready"}
            missing = [name for node_id, name in want.items() if node_id not in ready]
            if not missing:
                break
            if time.monotonic() > deadline:
                raise SwarmError(f"nodes not Ready in the swarm: {', '.join(sorted(missing))}")
            await asyncio.sleep(1)
        ids = {name: node_id for node_id, name in want.items()}
        if not prune:
            return ids
        stale = [
            str(n["ID"])
            for n in listed
            if n["ID"] not in want
            and parse_name(self.spec.uuid, n.get("Description", {}).get("Hostname", "")) is not None
        ]
        for node_id in stale:
            await asyncio.to_thread(manager.remove_node, node_id)
        return ids


class SwarmModeDriver:
    """Docker Swarm-mode clusters whose nodes are Docker-in-Docker Berth containers."""

    info = DriverInfo("swarm-mode", "vm", "fedora-atomic", "swarm-mode", VERSION)

    async def create(self, spec: ClusterSpec, nodes: NodeProvisioner, report: Report) -> Outcome:
        """Bring up every node, form the swarm; the same converge as ``update``."""
        return await self._converge(spec, nodes, report)

    async def update(self, spec: ClusterSpec, nodes: NodeProvisioner, report: Report) -> Outcome:
        """Converge: counts, node groups, image (upgrade) and CA (rotation)."""
        return await self._converge(spec, nodes, report)

    async def delete(self, spec: ClusterSpec, nodes: NodeProvisioner, report: Report) -> None:
        """Delete every node container of the cluster (the swarm goes with them)."""
        existing = await nodes.list_nodes()
        if existing:
            await report(f"Deleting {len(existing)} node(s).")
        await asyncio.gather(*(nodes.delete_node(n.name) for n in existing))

    async def health(self, spec: ClusterSpec, nodes: NodeProvisioner) -> Health:
        """Each node: its container runs, its dockerd answers, the swarm sees it Ready."""

        async def quiet(reason: str) -> None:
            return None

        run = _Run(spec, nodes, quiet)
        try:
            return await self._health_with(run)
        finally:
            await asyncio.to_thread(run.close)

    async def _health_with(self, run: _Run) -> Health:
        existing = await run.nodes.list_nodes()
        if not existing:
            return Health("UNKNOWN", {"api": "the cluster has no node"})
        managers = [
            n for n in existing
            if (p := parse_name(run.spec.uuid, n.name)) is not None and "master" in p.group
        ]  # fmt: skip
        reasons: dict[str, str] = {}
        dead: list[str] = []
        states: dict[str, str] = {}
        manager = await run.manager(managers or existing)
        if manager is None:
            reasons["api"] = "no swarm manager answers"
        else:
            reasons["api"] = "ok"
            for node in await _thread(manager.nodes):
                host = node.get("Description", {}).get("Hostname", "")
                if states.get(host) != "ready":  # a replaced node's old entry may linger
                    states[host] = str(node.get("Status", {}).get("State", "unknown"))
        for info in existing:
            if info.status != "Running":
                reasons[info.name] = f"container {info.status}"
                if info.status in ("Stopped", "Error", "Unknown"):
                    dead.append(info.name)
                continue
            if manager is None:
                api = run.api(info)
                answers = await _thread(api.ping)
                reasons[info.name] = "dockerd answers" if answers else "dockerd does not answer"
                continue
            state = states.get(info.name, "not in the swarm")
            reasons[info.name] = "Ready" if state == "ready" else f"swarm: {state}"
        healthy = manager is not None and all(
            r == "Ready" for k, r in reasons.items() if k != "api"
        )
        status = (
            "HEALTHY" if healthy else ("UNKNOWN" if manager is None and not dead else "UNHEALTHY")
        )
        return Health(status, reasons, tuple(dead))

    async def _converge(self, spec: ClusterSpec, nodes: NodeProvisioner, report: Report) -> Outcome:
        # The converge is idempotent: a dropped connection (a dockerd restarting)
        # is retried from the top, a few times, before the operation fails.
        for attempt in range(1, _ATTEMPTS + 1):
            run = _Run(spec, nodes, report)
            try:
                return await self._converge_with(run)
            except NodeApiError as exc:
                raise SwarmError(str(exc)) from exc
            except requests.exceptions.RequestException as exc:
                if attempt == _ATTEMPTS:
                    raise SwarmError(f"a node stopped answering: {exc}") from exc
                await report(f"A node stopped answering ({exc}); retrying.")
                await asyncio.sleep(2)
            finally:
                await asyncio.to_thread(run.close)
        raise AssertionError("unreachable")

    async def _converge_with(self, run: _Run) -> Outcome:
        spec, report = run.spec, run.report
        # Planning is proportional to the node counts: off the event loop (the
        # worker refuses a cluster above the operator's max_nodes_per_cluster first).
        existing = await run.nodes.list_nodes()
        todo: Plan = await _thread(partial(plan, spec, existing))
        masters = [s for s in todo.slots if s.manager]
        if not masters:
            raise SwarmError("a swarm-mode cluster needs at least one master")

        # 1-2. every node of the current generation runs and answers over TLS
        fresh = [s for s, _ in todo.keep] + todo.create
        if todo.create:
            await report(f"Creating {len(todo.create)} node(s): "
                         f"{', '.join(s.name for s in todo.create)}.")  # fmt: skip
        infos = dict(zip(
            [s.name for s in fresh],
            await asyncio.gather(*(run.bring_up(s) for s in fresh)), strict=True,
        ))  # fmt: skip
        olds = [n for _, ns in todo.replace for n in ns]
        running_olds = [n for n in olds if n.status == "Running" and n.address]

        # 3. the swarm: a manager (kept, or being replaced), else init on the first master
        fresh_masters = [infos[s.name] for s in fresh if s.manager]
        manager = await run.manager(fresh_masters + running_olds)
        if manager is None:
            if not fresh_masters:
                raise SwarmError("no master node is running to form the swarm")
            await report(f"Initialising the swarm on {fresh_masters[0].name}.")
            first = run.api(fresh_masters[0])
            await _thread(first.swarm_init)
            manager = first
        to_join = [s for s in fresh if run.apis[s.name] is not manager]
        if to_join:
            await report(f"Joining {len(to_join)} node(s) to the swarm.")
        for slot in sorted(to_join, key=lambda s: not s.manager):
            await run.join(run.api(infos[slot.name]), manager, slot.manager)

        # 4. rolling replace (upgrade / CA rotation), new before old: workers
        #    max_batch_size at a time, masters one by one
        managers_now = fresh_masters + running_olds
        for batch in batches(todo.replace, spec.max_batch_size):
            leaving = ", ".join(n.name for _, previous in batch for n in previous)
            await report(f"Replacing {leaving} by {', '.join(s.name for s, _ in batch)}.")
            news = list(await asyncio.gather(*(run.bring_up(s) for s, _ in batch)))
            current = await run.manager([*managers_now, *news])
            if current is None:
                raise SwarmError("no reachable swarm manager")
            for (slot, _), info in zip(batch, news, strict=True):
                infos[slot.name] = info
                await run.join(run.api(info), current, slot.manager)
            await run.wait_all_ready(current, news)
            for (slot, previous), info in zip(batch, news, strict=True):
                if slot.manager:
                    managers_now.append(info)
                for old in previous:
                    await run.retire(old, managers_now)
                    managers_now = [m for m in managers_now if m.name != old.name]

        # 5. surplus nodes leave (drained first)
        for old in todo.retire:
            await run.retire(old, managers_now)
            managers_now = [m for m in managers_now if m.name != old.name]

        final = await run.manager(managers_now)
        if final is None:
            raise SwarmError("no reachable swarm manager")
        names = {s.name for s in todo.slots}
        await report(f"Waiting for {len(names)} node(s) to be Ready in the swarm.")
        node_ids = await run.wait_all_ready(final, [infos[s.name] for s in todo.slots], prune=True)
        if relabelled := await run.label(final, todo.slots, node_ids):
            await report(f"Set the node labels of {relabelled} node(s).")
        version = await _thread(final.version)
        master_addrs = tuple(infos[s.name].address or "" for s in todo.slots if s.manager)
        node_addrs = tuple(infos[s.name].address or "" for s in todo.slots if not s.manager)
        return Outcome(
            api_address=f"tcp://{master_addrs[0]}:{PORT}",
            master_addresses=master_addrs,
            node_addresses=node_addrs,
            coe_version=str(version.get("Version", "")),
            container_version=str(version.get("ApiVersion", "")),
        )


def driver() -> SwarmModeDriver:
    """The entry point of ``berth.cluster_drivers``."""
    return SwarmModeDriver()
