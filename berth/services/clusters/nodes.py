"""The node provisioner cluster drivers are handed: node containers through the container use cases.

Nodes are ordinary Berth containers created with the cluster owner's context,
so the owner's project, quotas and policies apply; they carry the label
``berth.cluster`` with the cluster UUID. A node asking for the ``dind`` profile
gets the Docker-in-Docker options (``node_profile``, an internal-only container
field the Zun API never accepts; see docs/clusters.md).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from berth import errors
from berth.clusters.driver import NodeInfo, NodeSpec
from berth.domain.context import RequestContext
from berth.services.clusters.lifecycle import ProvisionerFactory
from berth.services.containers import containers
from berth.services.containers.containers import NewContainer
from berth.services.env import Env
from berth.services.networks import security_groups
from berth.store import clusters as repo
from berth.store.db import Session
from berth.store.tables import ClusterRow, ContainerRow

__all__ = ["CLUSTER_LABEL", "NODEGROUP_LABEL", "ContainerNodes", "node_rows", "provisioner_for"]

CLUSTER_LABEL = "berth.cluster"
NODEGROUP_LABEL = "berth.nodegroup"


async def node_rows(
    session: Session, project_id: str | None, cluster_uuid: str
) -> list[ContainerRow]:
    """The node containers of cluster ``cluster_uuid`` (in its owner's project), by name."""
    return await repo.node_containers(session, project_id, cluster_uuid, CLUSTER_LABEL)


def _info(row: ContainerRow) -> NodeInfo:
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
        image=row.image,
        environment=dict(row.environment or {}),
        status_reason=row.status_reason,
    )


class ContainerNodes:
    """A NodeProvisioner over the container service, acting as the cluster owner."""

    def __init__(self, env: Env, owner: RequestContext, cluster_uuid: str) -> None:
        self.env, self.owner, self.cluster_uuid = env, owner, cluster_uuid

    async def create_node(self, spec: NodeSpec) -> NodeInfo:
        """Create the node container unless one with that name exists already."""
        existing = await self.inspect_node(spec.name)
        if existing is not None:
            return existing
        exposed: dict[str, Any] = {f"{port}/tcp": {} for port in spec.publish}
        labels = {CLUSTER_LABEL: self.cluster_uuid}
        if spec.group:
            labels[NODEGROUP_LABEL] = spec.group
        req = NewContainer(
            image=spec.image,
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
            given=frozenset(
                {"image", "name", "cpu", "memory", "labels", "environment", "hostname"}
            ),
        )
        row = await containers.create(self.env, self.owner, req, run=True)
        return _info(row)

    async def inspect_node(self, name: str) -> NodeInfo | None:
        """The node container's state, or None when it does not exist."""
        try:
            row = await containers.get(self.env, self.owner, name)
        except errors.NotFound:
            return None
        return _info(row)

    async def list_nodes(self) -> list[NodeInfo]:
        """Every container of the owner's project labelled with this cluster."""
        async with self.env.db.read() as session:
            rows = await node_rows(session, self.owner.project_id, self.cluster_uuid)
        return [_info(r) for r in rows]

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
        return ContainerNodes(env, owner, row.uuid)

    return build
