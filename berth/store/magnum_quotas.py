"""Repository of Magnum quotas (``cluster_quotas``) and the cluster worker heartbeats.

A quota row belongs to the project it limits, so lists go through a ``Scope``;
the heartbeat rows (Magnum's "conductors") belong to no project.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from berth.store.scope import Scope
from berth.store.tables import ClusterQuotaRow, ConductorRow, ProjectRow

__all__ = ["conductor", "conductors", "get", "hard_limit", "project_exists", "visible"]


async def visible(session: AsyncSession, scope: Scope) -> Sequence[ClusterQuotaRow]:
    """The quotas the scope sees (its project's, or every project's), oldest first."""
    stmt = select(ClusterQuotaRow).order_by(ClusterQuotaRow.id)
    if not scope.all_projects:
        stmt = stmt.where(ClusterQuotaRow.project_id == (scope.project_id or ""))
    return (await session.scalars(stmt)).all()


async def get(session: AsyncSession, project_id: str, resource: str) -> ClusterQuotaRow | None:
    """A project's quota of ``resource``; None when none was set."""
    row: ClusterQuotaRow | None = await session.scalar(
        select(ClusterQuotaRow).where(
            ClusterQuotaRow.project_id == project_id, ClusterQuotaRow.resource == resource
        )
    )
    return row


async def hard_limit(session: AsyncSession, project_id: str, resource: str) -> int | None:
    """The limit a project's quota of ``resource`` sets; None when none was set."""
    limit: int | None = await session.scalar(
        select(ClusterQuotaRow.hard_limit).where(
            ClusterQuotaRow.project_id == project_id, ClusterQuotaRow.resource == resource
        )
    )
    return limit


async def project_exists(session: AsyncSession, project_id: str) -> bool:
    """Whether the identity store knows the project (a quota names an existing one)."""
    return await session.get(ProjectRow, project_id) is not None


async def conductor(session: AsyncSession, host: str, binary: str) -> ConductorRow | None:
    """The heartbeat row of one worker process (``binary`` on ``host``), if it reported yet."""
    row: ConductorRow | None = await session.scalar(
        select(ConductorRow).where(ConductorRow.host == host, ConductorRow.binary == binary)
    )
    return row


async def conductors(session: AsyncSession) -> Sequence[ConductorRow]:
    """Every worker process that ever reported, oldest first."""
    return (await session.scalars(select(ConductorRow).order_by(ConductorRow.id))).all()
