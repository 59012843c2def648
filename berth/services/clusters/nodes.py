"""The node provisioner cluster drivers are handed: node containers through the container use cases.

Nodes are ordinary Berth containers created with the cluster owner's context,
so the owner's project, quotas and policies apply; they carry the label
``berth.cluster`` with the cluster UUID. A node asking for the ``dind`` profile
gets the Docker-in-Docker options (``node_profile``, an internal-only container
field the Zun API never accepts; see docs/clusters.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from berth import errors
from berth.clusters.driver import NodeInfo, NodeSpec
from berth.domain.addresses import ip_literal, split_host_port
from berth.domain.cluster_settings import ClusterSettings
from berth.domain.context import RequestContext
from berth.services.clusters.lifecycle import ProvisionerFactory
from berth.services.containers import containers
from berth.services.containers.containers import NewContainer
from berth.services.env import Env
from berth.services.images import refs
from berth.services.networks import security_groups
from berth.store import clusters as repo
from berth.store import hosts as hosts_repo
from berth.store.db import Session
from berth.store.tables import ClusterRow, ContainerRow

__all__ = ["CLUSTER_LABEL", "NODEGROUP_LABEL", "ContainerNodes", "node_rows", "provisioner_for"]

log = logging.getLogger(__name__)

CLUSTER_LABEL = "berth.cluster"
NODEGROUP_LABEL = "berth.nodegroup"


async def node_rows(
    session: Session, project_id: str | None, cluster_uuid: str
) -> list[ContainerRow]:
    """The node containers of cluster ``cluster_uuid`` (in its owner's project), by name."""
    return await repo.node_containers(session, project_id, cluster_uuid, CLUSTER_LABEL)


def _published(row: ContainerRow) -> dict[int, int]:
    """The node's host ports by container port (Zun's ``ports`` follow ``exposed_ports``)."""
    exposed = list(row.exposed_ports or {})
    ports = list(row.ports or [])
    if len(exposed) != len(ports):  # not all published yet: none is known for sure
        return {}
    return {int(key.split("/")[0]): int(port) for key, port in zip(exposed, ports, strict=True)}


def _host_address(agent_url: str | None) -> str | None:
    """The address a host is reached at: the host part of its agent's URL.

    That is where the control plane reaches the host's agent, so it reaches the
    ports the host publishes there too. An unspecified address (``0.0.0.0``) says
    nothing about where the host is: None.
    """
    if not agent_url:
        return None
    host, _ = split_host_port(agent_url)
    literal = ip_literal(host)
    if not host or (literal is not None and literal.is_unspecified):
        return None
    return host


def _info(row: ContainerRow, host_addresses: Mapping[str, str | None]) -> NodeInfo:
    address = None
    for entries in (row.addresses or {}).values():
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict) and entry.get("addr"):
                address = str(entry["addr"])
                break
    return NodeInfo(
        row.name,
        row.status,
        address,
        published=_published(row),
        host_address=host_addresses.get(row.host or ""),
        image=row.image,
        environment=dict(row.environment or {}),
        status_reason=row.status_reason,
    )


async def _host_addresses(session: Session, rows: list[ContainerRow]) -> dict[str, str | None]:
    """The address of each host that runs one of ``rows``, by host name."""
    found: dict[str, str | None] = {}
    for name in {r.host for r in rows if r.host}:
        host = await hosts_repo.by_hostname(session, name)
        found[name] = _host_address(host.agent_url if host is not None else None)
    return found


class ContainerNodes:
    """A NodeProvisioner over the container service, acting as the cluster owner."""

    def __init__(
        self,
        env: Env,
        owner: RequestContext,
        cluster_uuid: str,
        glance_images: Mapping[str, str] | None = None,
        removal_wait: float = 60.0,
    ) -> None:
        self.env, self.owner, self.cluster_uuid = env, owner, cluster_uuid
        # How long delete_node waits for the host to confirm the removal.
        self.removal_wait = removal_wait
        # image_id -> <Glance id>:<checksum>, resolved at the owner's request.
        self.glance_images = dict(glance_images or {})

    async def create_node(self, spec: NodeSpec) -> NodeInfo:
        """Create the node container unless one with that name exists already."""
        existing = await self.inspect_node(spec.name)
        if existing is not None:
            return existing
        exposed: dict[str, Any] = {f"{port}/tcp": {} for port in spec.publish}
        labels = {CLUSTER_LABEL: self.cluster_uuid}
        if spec.group:
            labels[NODEGROUP_LABEL] = spec.group
        ref = self.glance_images.get(spec.image)
        req = NewContainer(
            image=spec.image,
            # A Glance image: fetched through the control plane as any container's.
            image_driver=refs.STORE_DRIVER if ref else None,
            image_ref=ref,
            name=spec.name,
            command=list(spec.command),
            cpu=spec.cpu,
            memory=spec.memory_mb,
            labels=labels,
            environment=dict(spec.environment),
            exposed_ports=exposed or None,
            # The project's default group next to the exposed-port one: the swarm's own
            # ports (2377, 7946, 4789) stay open between the cluster's nodes. (Exposed
            # ports alone give only their group, as in Zun.)
            security_groups=[security_groups.DEFAULT_GROUP],
            hostname=spec.name[:63],
            node_profile=spec.profile,
            availability_zone=spec.availability_zone,
            given=frozenset(
                {"image", "name", "cpu", "memory", "labels", "environment", "hostname"}
            ),
        )
        row = await containers.create(self.env, self.owner, req, run=True)
        return (await self._observed([row]))[0]

    async def inspect_node(self, name: str) -> NodeInfo | None:
        """The node container's state, or None when it does not exist."""
        try:
            row = await containers.get(self.env, self.owner, name)
        except errors.NotFound:
            return None
        return (await self._observed([row]))[0]

    async def list_nodes(self) -> list[NodeInfo]:
        """Every container of the owner's project labelled with this cluster."""
        async with self.env.db.read() as session:
            rows = list(await node_rows(session, self.owner.project_id, self.cluster_uuid))
            hosts = await _host_addresses(session, rows)
        return [_info(r, hosts) for r in rows]

    async def _observed(self, rows: list[ContainerRow]) -> list[NodeInfo]:
        async with self.env.db.read() as session:
            hosts = await _host_addresses(session, rows)
        return [_info(r, hosts) for r in rows]

    async def delete_node(self, name: str) -> None:
        """Force-remove the node container; a missing one is fine.

        The name is resolved as the owner (so only the owner's containers match);
        the removal itself is forced by the control plane, by UUID, because a node
        may still be Creating when its cluster fails or is deleted.
        """
        try:
            row = await containers.get(self.env, self.owner, name)
        except errors.NotFound:
            return
        if row.labels.get(CLUSTER_LABEL) != self.cluster_uuid:
            raise errors.Conflict(
                f"Container {name} does not belong to cluster {self.cluster_uuid}."
            )
        control_plane = replace(self.owner, roles=("admin",))
        try:
            await containers.delete(
                self.env, control_plane, row.uuid, force=True, stop=False, all_projects=False
            )
        except errors.NotFound:
            return
        await self._removed(row.uuid, name)

    async def _removed(self, uuid: str, name: str) -> None:
        """Wait until the node's host has removed its container (its record is gone).

        As Heat waits for a server's deletion before Magnum reports COMPLETE: a
        cluster is UPDATE_COMPLETE (or gone) once its removed nodes are, not a
        moment before. A host that does not answer within ``removal_wait`` removes
        it when it is back (the record stays, desired deleted); the operation goes on.
        """
        deadline, pause = time.monotonic() + self.removal_wait, 0.05
        while time.monotonic() < deadline:
            try:
                await containers.get(self.env, self.owner, uuid)
            except errors.NotFound:
                return
            await asyncio.sleep(pause)
            pause = min(pause * 2, 1.0)
        log.warning("node %s: its host has not removed it after %.0f s", name, self.removal_wait)


def provisioner_for(env: Env) -> ProvisionerFactory:
    """The factory the lifecycle worker calls for each cluster."""

    def build(row: ClusterRow) -> ContainerNodes:
        owner = RequestContext(
            user_id=row.user_id,
            user_name="",
            project_id=row.project_id,
            project_name=None,
            roles=("member",),
        )
        images = ClusterSettings.from_json(row.attrs).glance_images
        return ContainerNodes(
            env, owner, row.uuid, {str(k): str(v) for k, v in images.items()},
            removal_wait=env.settings.cluster_node_removal_wait,
        )  # fmt: skip

    return build
