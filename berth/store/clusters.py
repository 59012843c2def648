"""Repository of clusters, their node groups and node containers, and the worker's leases.

Lookups a user makes go through a ``Scope`` (another project's clusters are
invisible). The lifecycle worker and the health job act for every project: their
functions (``claimable``, ``claim``, ``renew_lease``, ``by_uuid``, ``with_status``)
take no scope on purpose.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from berth import errors
from berth.store.lookup import UUID_SHAPE
from berth.store.scope import Scope
from berth.store.tables import ClusterRow, ContainerRow, NodeGroupRow

__all__ = [
    "by_uuid",
    "claim",
    "claimable",
    "count_in_project",
    "get",
    "group_for_update",
    "groups_of",
    "in_project",
    "lock",
    "node_containers",
    "node_labels",
    "other_building",
    "renew_lease",
    "uses_template",
    "visible",
    "with_status",
]


def _scoped(scope: Scope) -> Select[ClusterRow]:
    stmt = select(ClusterRow)
    if not scope.all_projects:
        stmt = stmt.where(ClusterRow.project_id == (scope.project_id or ""))
    return stmt


async def visible(session: AsyncSession, scope: Scope) -> Sequence[ClusterRow]:
    """Every cluster the scope sees, oldest first (Magnum pages the rendered list)."""
    return (await session.scalars(_scoped(scope).order_by(ClusterRow.id))).all()


async def get(session: AsyncSession, scope: Scope, ident: str) -> ClusterRow:
    """The cluster named by UUID (when ``ident`` looks like one) or else by name, in scope.

    ClusterNotFound when none is visible; Conflict (Magnum's text) when the name
    is ambiguous.
    """
    stmt = _scoped(scope)
    if UUID_SHAPE.match(ident):
        stmt = stmt.where(ClusterRow.uuid == ident.lower())
    else:
        stmt = stmt.where(ClusterRow.name == ident)
    rows = (await session.scalars(stmt.limit(2))).all()
    if not rows:
        raise errors.ClusterNotFound(f"Cluster {ident} could not be found.")
    if len(rows) > 1:
        raise errors.Conflict(
            f"Multiple clusters exist with same name {ident}. Please use the cluster uuid instead."
        )
    return rows[0]


async def lock(session: AsyncSession, cluster_id: int) -> ClusterRow | None:
    """The cluster row (by primary key) locked for this transaction; None if it is gone.

    Every change of a cluster or its groups locks the cluster first.
    """
    return await session.get(ClusterRow, cluster_id, with_for_update=True)


async def count_in_project(session: AsyncSession, project_id: str) -> int:
    """How many clusters (any status) a project has: what its Magnum quota counts."""
    stmt = select(func.count()).select_from(ClusterRow).where(ClusterRow.project_id == project_id)
    return int((await session.execute(stmt)).scalar_one())


async def in_project(session: AsyncSession, project_id: str | None) -> Sequence[ClusterRow]:
    """The clusters of one project, or of every project when ``project_id`` is None."""
    stmt = select(ClusterRow)
    if project_id is not None:
        stmt = stmt.where(ClusterRow.project_id == project_id)
    return (await session.scalars(stmt)).all()


async def other_building(
    session: AsyncSession, cluster: ClusterRow, statuses: Iterable[str]
) -> Sequence[ClusterRow]:
    """The other clusters of ``cluster``'s project whose status is one of ``statuses``."""
    stmt = select(ClusterRow).where(
        ClusterRow.project_id == cluster.project_id,
        ClusterRow.status.in_(tuple(statuses)),
        ClusterRow.uuid != cluster.uuid,
    )
    return (await session.scalars(stmt)).all()


async def uses_template(session: AsyncSession, template_uuid: str) -> bool:
    """Whether any cluster (of any project) was built from the template."""
    stmt = select(ClusterRow.id).where(ClusterRow.cluster_template_id == template_uuid).limit(1)
    return (await session.scalar(stmt)) is not None


# -- node groups: reached through their cluster, so the cluster lookup did the tenancy


async def groups_of(session: AsyncSession, cluster_uuid: str) -> list[NodeGroupRow]:
    """A cluster's groups in creation order (default-master, default-worker, then users')."""
    stmt = select(NodeGroupRow).where(NodeGroupRow.cluster_uuid == cluster_uuid)
    return list((await session.scalars(stmt.order_by(NodeGroupRow.id))).all())


async def group_for_update(session: AsyncSession, group_id: int) -> NodeGroupRow | None:
    """The node group row (by primary key) locked; lock its cluster first."""
    return await session.get(NodeGroupRow, group_id, with_for_update=True)


# -- node containers: ordinary containers of the owner's project with a cluster label


async def node_containers(
    session: AsyncSession, project_id: str | None, cluster_uuid: str, label: str
) -> list[ContainerRow]:
    """The containers of ``project_id`` whose ``label`` is ``cluster_uuid``, by name."""
    stmt = (
        select(ContainerRow)
        .where(ContainerRow.project_id == project_id)
        .order_by(ContainerRow.name)
    )
    rows = await session.scalars(stmt)
    return [r for r in rows if (r.labels or {}).get(label) == cluster_uuid]


async def node_labels(session: AsyncSession, project_id: str) -> list[dict[str, Any]]:
    """The labels of every container of a project (nodes are told apart by them)."""
    stmt = select(ContainerRow.labels).where(ContainerRow.project_id == project_id)
    return [labels or {} for labels in await session.scalars(stmt)]


# -- the lifecycle worker and the health job: every project's clusters


def _claimable(statuses: Iterable[str], now: dt.datetime) -> list[ColumnElement[bool]]:
    return [
        ClusterRow.status.in_(tuple(statuses)),
        or_(ClusterRow.lease_until.is_(None), ClusterRow.lease_until < now),
    ]


async def claimable(session: AsyncSession, statuses: Iterable[str], now: dt.datetime) -> list[str]:
    """UUIDs of the clusters in one of ``statuses`` whose lease (if any) ran out by ``now``."""
    stmt = select(ClusterRow.uuid).where(*_claimable(statuses, now))
    return list((await session.scalars(stmt)).all())


async def claim(
    session: AsyncSession,
    uuid: str,
    statuses: Iterable[str],
    now: dt.datetime,
    until: dt.datetime,
) -> ClusterRow | None:
    """Take the lease on a claimable cluster until ``until``: the row, or None if not claimable.

    A conditional update, so of two workers claiming the same cluster one wins.
    """
    result = await session.execute(
        update(ClusterRow)
        .where(ClusterRow.uuid == uuid, *_claimable(statuses, now))
        .values(lease_until=until)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return None
    return await by_uuid(session, uuid)


async def renew_lease(session: AsyncSession, uuid: str, status: str, until: dt.datetime) -> None:
    """Extend the lease while the cluster still is in the status its operation started from."""
    await session.execute(
        update(ClusterRow)
        .where(ClusterRow.uuid == uuid, ClusterRow.status == status)
        .values(lease_until=until)
    )


async def by_uuid(session: AsyncSession, uuid: str) -> ClusterRow | None:
    """Any project's cluster by UUID (the worker's view); None when it is gone."""
    row: ClusterRow | None = await session.scalar(select(ClusterRow).where(ClusterRow.uuid == uuid))
    return row


async def with_status(session: AsyncSession, statuses: Iterable[str]) -> list[ClusterRow]:
    """Every project's clusters in one of ``statuses``."""
    stmt = select(ClusterRow).where(ClusterRow.status.in_(tuple(statuses)))
    return list((await session.scalars(stmt)).unique().all())
