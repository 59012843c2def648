"""The events timeline: recent rows of the event outbox, scoped like the containers they tell of."""

from __future__ import annotations

from collections.abc import Sequence

from berth.domain.context import RequestContext
from berth.services.env import Env
from berth.services.scopes import list_scope
from berth.store import events as repo
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
    scope = list_scope(env, ctx, all_projects, "container:get_all_all_projects")
    async with env.db.read() as session:
        return await repo.recent(
            session, scope, limit=max(1, min(limit, MAX_EVENTS)), resource_uuid=resource_uuid
        )
