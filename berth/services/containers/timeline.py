"""The events timeline: recent rows of the event outbox, scoped like the containers they tell of."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select

from berth.domain.context import RequestContext
from berth.services.containers.containers import scope_for
from berth.services.env import Env
from berth.store.tables import EventRow

__all__ = ["MAX_EVENTS", "recent_events"]

MAX_EVENTS = 500


async def recent_events(
    env: Env,
    ctx: RequestContext,
    *,
    all_projects: bool = False,
    resource_uuid: str | None = None,
    limit: int = 100,
) -> Sequence[EventRow]:
    """The newest events the caller may see: its project's, or every project's when
    ``all_projects`` and the policy lets it list every project's containers."""
    env.enforce(ctx, "container:get_all")
    scope = scope_for(env, ctx, all_projects, "container:get_all_all_projects")
    stmt = select(EventRow).order_by(EventRow.id.desc()).limit(max(1, min(limit, MAX_EVENTS)))
    if not scope.all_projects:
        stmt = stmt.where(EventRow.project_id == scope.project_id)
    if resource_uuid is not None:
        stmt = stmt.where(EventRow.resource_uuid == resource_uuid)
    async with env.db.read() as session:
        return (await session.execute(stmt)).scalars().all()
