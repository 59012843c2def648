"""Node-group bookkeeping shared by the cluster use cases and the lifecycle worker.

Every cluster has a ``default-master`` and a ``default-worker`` group; users add
worker groups (Magnum 1.9+). A group's ``status`` is written when an operation
is *requested* (``CREATE_IN_PROGRESS``, ``UPDATE_IN_PROGRESS``,
``DELETE_IN_PROGRESS``); its end follows from the cluster's: while the cluster
is settled, a pending group shows ``<OP>_COMPLETE`` or ``<OP>_FAILED`` like the
cluster, and the next request writes that down (a deleted group's row goes).
A failed operation leaves groups pending, so retrying the update finishes them.

The cluster's ``node_count``/``master_count`` attributes stay the sums of its
worker/master groups (Magnum's ``Cluster.node_count`` property).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from berth import errors
from berth.clusters.driver import NodeGroupSpec
from berth.domain import clusters as spec
from berth.domain.cluster_settings import (
    UPDATE_HINTS,
    ClusterSettings,
    NodeGroupSettings,
)
from berth.events.clusters import emit_notification, emit_step
from berth.services.env import Env
from berth.store import clusters as repo
from berth.store.base import utcnow
from berth.store.db import Session
from berth.store.tables import ClusterRow, NodeGroupRow

__all__ = [
    "SETTLED",
    "begin_update",
    "default_groups",
    "display_status",
    "find_group",
    "flavors",
    "live",
    "recount",
    "resolve_flavor",
    "settle",
    "spec_groups",
]

# Cluster statuses from which a new update (resize, node group change, upgrade) may start.
SETTLED = ("CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_FAILED")


def flavors(env: Env) -> dict[str, spec.Flavor]:
    """The operator's flavor presets (``cluster_flavors`` in Settings)."""
    return {
        name: spec.Flavor(f.cpu, f.memory_mb) for name, f in env.settings.cluster_flavors.items()
    }


def resolve_flavor(env: Env, name: str | None) -> spec.Flavor:
    """The preset of ``name`` (the default flavor when None); 400 naming the known ones."""
    presets = flavors(env)
    if name is None and spec.DEFAULT_FLAVOR not in presets and presets:
        name = sorted(presets)[0]
    return spec.resolve_flavor(name, presets)


def _label_int(labels: Mapping[str, str], key: str) -> int | None:
    value = str(labels.get(key, "")).strip()
    return int(value) if value.isdigit() else None


def default_groups(row: ClusterRow) -> list[NodeGroupRow]:
    """The two default groups of a new cluster, pending like the cluster's create.

    As in Magnum, the labels ``min_node_count``/``max_node_count`` bound default-worker.
    """
    settings = ClusterSettings.from_json(row.attrs)
    labels = dict(settings.labels)
    out = []
    for name, role, count, flavor in (
        ("default-master", "master", settings.masters, settings.master_flavor_id),
        ("default-worker", "worker", settings.nodes, settings.flavor_id),
    ):
        out.append(
            NodeGroupRow(
                uuid=spec.default_group_uuid(row.uuid, name),
                cluster_uuid=row.uuid,
                project_id=row.project_id,
                name=name,
                role=role,
                is_default=True,
                node_count=count,
                min_node_count=1 if role == "master" else _label_int(labels, "min_node_count") or 0,
                max_node_count=None if role == "master" else _label_int(labels, "max_node_count"),
                flavor_id=flavor,
                image_id=None,  # the cluster template's image, so an upgrade moves it
                docker_volume_size=settings.docker_volume_size,
                labels=dict(settings.labels),
                attrs=NodeGroupSettings().to_json(),
                status="CREATE_IN_PROGRESS",
                created_at=row.created_at,
            )
        )
    return out


def display_status(group: NodeGroupRow, cluster: ClusterRow) -> str:
    """The group's status as Magnum shows it: a pending one ends with its cluster's operation."""
    if not group.status.endswith("_IN_PROGRESS") or cluster.status.endswith("_IN_PROGRESS"):
        return group.status
    op = group.status.split("_", 1)[0]
    return f"{op}_COMPLETE" if cluster.status.endswith("_COMPLETE") else f"{op}_FAILED"


def live(groups: Sequence[NodeGroupRow], cluster: ClusterRow) -> list[NodeGroupRow]:
    """The groups that exist for the user (a completed delete is gone)."""
    return [g for g in groups if display_status(g, cluster) != "DELETE_COMPLETE"]


async def settle(session: Session, cluster: ClusterRow) -> list[NodeGroupRow]:
    """Write down the end of the last operation on the groups; return the remaining ones."""
    kept = []
    for group in await repo.groups_of(session, cluster.uuid):
        shown = display_status(group, cluster)
        if shown == group.status or shown.endswith("_FAILED"):
            kept.append(group)  # unchanged, or pending until a retry succeeds
        elif shown == "DELETE_COMPLETE":
            await session.delete(group)
        else:
            group.status, group.updated_at = shown, utcnow()
            kept.append(group)
    return kept


def recount(cluster: ClusterRow, groups: Sequence[NodeGroupRow]) -> None:
    """Keep the cluster's node_count/master_count the sums of its (not deleted) groups."""
    alive = [g for g in groups if not g.status.startswith("DELETE_")]
    cluster.attrs = (
        ClusterSettings.from_json(cluster.attrs)
        .with_(
            node_count=sum(g.node_count for g in alive if g.role != "master"),
            master_count=sum(g.node_count for g in alive if g.role == "master"),
        )
        .to_json()
    )


def find_group(
    groups: Sequence[NodeGroupRow], cluster: ClusterRow, ident: str, *, deleting: bool = True
) -> NodeGroupRow:
    """One live group by UUID, name or integer id (Magnum accepts all three).

    With ``deleting`` False a group being deleted is not found (it cannot be resized).
    """
    for group in live(groups, cluster):
        if not deleting and group.status.startswith("DELETE_"):
            continue
        if ident in (group.uuid, group.name, str(group.id)):
            return group
    raise errors.NodeGroupNotFound(f"Nodegroup {ident} could not be found.")


def begin_update(
    session: Session,
    cluster: ClusterRow,
    reason: str,
    user_id: str,
    deadline_minutes: int,
    hints: Mapping[str, object] | None = None,
) -> None:
    """Move a settled cluster to UPDATE_IN_PROGRESS for the worker (409 when it is busy).

    ``hints`` (``nodes_to_remove``, ``upgrade``) replace the previous operation's.
    """
    if cluster.status not in SETTLED:
        raise errors.InvalidStateException(
            f"Updating a cluster when status is {cluster.status} is not supported."
        )
    settings = ClusterSettings.from_json(cluster.attrs).without(*UPDATE_HINTS)
    cluster.attrs = settings.with_(**(hints or {})).to_json()
    now = utcnow()
    cluster.status = "UPDATE_IN_PROGRESS"
    cluster.status_reason = reason
    cluster.updated_at = now
    cluster.deadline = now + dt.timedelta(minutes=deadline_minutes) if deadline_minutes else None
    cluster.lease_until = None
    emit_step(session, cluster, reason)
    emit_notification(session, cluster, cluster.status, "pending", user_id)


async def spec_groups(
    env: Env, cluster: ClusterRow, template_image: str
) -> tuple[NodeGroupSpec, ...]:
    """The desired groups of a cluster for its driver (groups being deleted left out).

    Each group's flavor resolves to the operator's CPU/memory presets; its image is
    its own or, for groups that follow the template, the cluster template's.
    A cluster without group rows (none should exist) gets the defaults from its counts.
    """
    async with env.db.read() as session:
        rows = await repo.groups_of(session, cluster.uuid)
    settings = ClusterSettings.from_json(cluster.attrs)
    labels: Mapping[str, str] = dict(settings.labels)
    if not rows:
        return tuple(
            NodeGroupSpec(name, role, count, f.cpu, f.memory_mb, template_image, labels)
            for name, role, count, f in (
                ("default-master", "master", settings.masters,
                 resolve_flavor(env, settings.master_flavor_id)),
                ("default-worker", "worker", settings.nodes,
                 resolve_flavor(env, settings.flavor_id)),
            )
        )  # fmt: skip
    hint = settings.nodes_to_remove
    removing: dict[str, tuple[str, ...]] = {}
    if hint is not None:  # {"nodegroup": name, "nodes": [node names]}
        removing[str(hint.get("nodegroup"))] = tuple(str(n) for n in hint.get("nodes") or ())
    out = []
    for g in rows:
        if g.status.startswith("DELETE_"):
            continue
        flavor = resolve_flavor(env, g.flavor_id)
        group_labels = NodeGroupSettings.from_json(g.attrs).node_labels
        out.append(
            NodeGroupSpec(
                name=g.name,
                role=g.role,
                node_count=g.node_count,
                cpu=flavor.cpu,
                memory_mb=flavor.memory_mb,
                image=g.image_id or template_image,
                labels=dict(g.labels or labels),
                node_labels={str(k): str(v) for k, v in group_labels.items()},
                nodes_to_remove=removing.get(g.name, ()),
            )
        )
    return tuple(out)
