"""Event outbox queries: the timeline reads the newest rows a scope may see."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from berth.store.scope import Scope
from berth.store.tables import EventRow

__all__ = ["recent"]


async def recent(
    session: AsyncSession, scope: Scope, *, limit: int, resource_uuid: str | None = None
) -> Sequence[EventRow]:
    """The newest ``limit`` events of the scope's project (or every project), newest first."""
    stmt = select(EventRow).order_by(EventRow.id.desc()).limit(limit)
    if not scope.all_projects:
        stmt = stmt.where(EventRow.project_id == scope.project_id)
    if resource_uuid is not None:
        stmt = stmt.where(EventRow.resource_uuid == resource_uuid)
    return (await session.execute(stmt)).scalars().all()
