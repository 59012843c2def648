"""What a cluster costs: the operator's cap on nodes per cluster, and its nodes as quota.

A cluster's nodes are containers of its project (``cluster_nodes`` creates them
as the owner), so every request that adds nodes is charged at the API, before
anything is stored, against the project's container quota (count, CPUs,
memory): the project's containers, plus the nodes promised to its clusters
still being built (desired but not created yet), plus what the request adds.
Checking only when a node container is finally created would let one request
promise more than the project may ever have, and fail deep inside the worker.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from berth import errors
from berth.services import quotas
from berth.services.clusters.groups import resolve_flavor
from berth.services.clusters.nodes import CLUSTER_LABEL, NODEGROUP_LABEL
from berth.services.env import Env
from berth.store import clusters as repo
from berth.store.db import Session
from berth.store.tables import ClusterRow, NodeGroupRow

__all__ = ["BUILDING", "Need", "charge", "check_cap", "check_group_bounds", "plan_size"]

# Cluster statuses whose missing nodes the worker is about to create.
BUILDING = ("CREATE_IN_PROGRESS", "UPDATE_IN_PROGRESS")


@dataclass(frozen=True, slots=True)
class Need:
    """Node containers still to be created, and the CPUs and memory (MiB) they claim."""

    count: int = 0
    cpu: float = 0.0
    memory: int = 0

    def __add__(self, other: Need) -> Need:
        return Need(self.count + other.count, self.cpu + other.cpu, self.memory + other.memory)


def plan_size(groups: Iterable[NodeGroupRow]) -> int:
    """The nodes a cluster's groups ask for (groups being deleted left out)."""
    return sum(max(0, g.node_count) for g in groups if not g.status.startswith("DELETE_"))


def check_cap(env: Env, cluster: str, total: int) -> None:
    """400 when a cluster would have more nodes than the operator allows per cluster."""
    cap = env.settings.max_nodes_per_cluster
    if total > cap:
        raise errors.Invalid(
            f"Cluster {cluster} would have {total} nodes (masters included), more than the "
            f"{cap} nodes per cluster this cloud allows: ask for at most {cap} in all, or ask "
            "the operator to raise max_nodes_per_cluster."
        )


def check_group_bounds(env: Env, group: str, low: int, high: int | None) -> None:
    """400 when a node group's min/max_node_count lie beyond the operator's cap."""
    cap = env.settings.max_nodes_per_cluster
    for key, value in (("min_node_count", low), ("max_node_count", high)):
        if value is not None and value > cap:
            raise errors.Invalid(
                f"{key} of node group {group} is {value}, more than the {cap} nodes per "
                f"cluster this cloud allows: use at most {cap}."
            )


async def _nodes_by_group(session: Session, project_id: str) -> Counter[tuple[str, str]]:
    """How many node containers exist per (cluster UUID, node group) in the project."""
    found: Counter[tuple[str, str]] = Counter()
    for labels in await repo.node_labels(session, project_id):
        cluster = labels.get(CLUSTER_LABEL)
        if cluster:
            found[(str(cluster), str(labels.get(NODEGROUP_LABEL, "")))] += 1
    return found


def _missing(
    env: Env, cluster_uuid: str, groups: Sequence[NodeGroupRow], nodes: Counter[tuple[str, str]]
) -> Need:
    """The nodes a cluster's groups want that do not exist as containers yet."""
    need = Need()
    for g in groups:
        if g.status.startswith("DELETE_"):
            continue
        lacking = max(0, g.node_count - nodes[(cluster_uuid, g.name)])
        if lacking:
            flavor = resolve_flavor(env, g.flavor_id)
            need += Need(lacking, lacking * flavor.cpu, lacking * flavor.memory_mb)
    return need


async def _promised(
    env: Env, session: Session, cluster: ClusterRow, nodes: Counter[tuple[str, str]]
) -> Need:
    """The missing nodes of the project's other clusters still being built."""
    promised = Need()
    for other in await repo.other_building(session, cluster, BUILDING):
        promised += _missing(env, other.uuid, await repo.groups_of(session, other.uuid), nodes)
    return promised


async def charge(
    env: Env, session: Session, cluster: ClusterRow, groups: Sequence[NodeGroupRow]
) -> None:
    """Refuse (403 OverQuota, with the numbers) nodes the project's quota cannot hold.

    ``groups`` are the cluster's groups as the request leaves them. Only nodes
    still to be created cost: a resize down, or a cluster whose nodes all exist,
    passes whatever the project's usage. Runs in the caller's transaction, the
    one that stores the change, so the quota check's locking covers both.
    """
    # The project's usage stands still from here to commit: two cluster requests on
    # two API processes cannot each count the other's nodes as not yet promised.
    await quotas.lock_usage(session, cluster.project_id, "containers")
    nodes = await _nodes_by_group(session, cluster.project_id)
    need = _missing(env, cluster.uuid, groups, nodes)
    if not need.count:
        return
    promised = await _promised(env, session, cluster, nodes)
    total = need + promised
    try:
        await quotas.check_container(
            env, session, cluster.project_id, total.cpu, total.memory, 0, total.count
        )
    except errors.OverQuota as exc:
        pending = (
            f" on top of {promised.count} node(s) promised to the project's clusters still "
            "being built"
            if promised.count
            else ""
        )
        raise errors.OverQuota(
            f"Cluster {cluster.name} needs {need.count} more node container(s) "
            f"({need.cpu:g} CPUs, {need.memory} MiB){pending}; ask for fewer nodes or "
            f"delete clusters. {exc.message}"
        ) from None
