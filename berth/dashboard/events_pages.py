"""The events timeline: the newest rows of the event outbox, the project's own (admins: all)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from berth.dashboard.render import env_of, fragment, page
from berth.dashboard.session import Session
from berth.services import identity
from berth.services.containers import timeline

__all__ = ["events_page", "events_rows"]

_SHOWN = 200


async def _values(request: Request, session: Session) -> dict[str, Any]:
    env = env_of(request)
    all_projects = env.allowed(session.ctx, "container:get_all_all_projects")
    resource = request.query_params.get("container") or None
    events = await timeline.recent_events(
        env, session.ctx, all_projects=all_projects, resource_uuid=resource, limit=_SHOWN
    )
    names: dict[str, str] = {}
    if all_projects and session.ctx.is_admin:
        names = {p.id: p.name for p in await identity.list_projects(env.db, session.ctx)}
    return {
        "events": events,
        "all_projects": all_projects,
        "project_names": names,
        "resource": resource,
    }


async def events_page(request: Request, session: Session) -> Response:
    """The timeline page; its rows refresh themselves every few seconds."""
    return await page(request, "events.html", session, **await _values(request, session))


async def events_rows(request: Request, session: Session) -> Response:
    """The timeline's rows alone, for htmx polling."""
    return fragment("event_rows.html", **await _values(request, session))
