"""Container actions and events: what each request did, recorded in the same transaction."""

from __future__ import annotations

from typing import Any

from berth.domain.context import RequestContext
from berth.store.db import Session
from berth.store.events import close_actions, prune_actions
from berth.store.tables import ActionEventRow, ContainerActionRow, ContainerRow, EventRow

__all__ = ["emit", "finish_open_actions", "start_action"]

_EVENT_NAMES = {
    "create": "compute__do_container_create",
    "delete": "compute__do_container_delete",
    "start": "compute__do_container_start",
    "stop": "compute__do_container_stop",
    "reboot": "compute__do_container_reboot",
    "pause": "compute__do_container_pause",
    "unpause": "compute__do_container_unpause",
    "kill": "compute__do_container_kill",
    "update": "compute__do_container_update",
}


def emit(
    session: Session,
    row: ContainerRow,
    event_type: str,
    request_id: str | None = None,
    **payload: Any,
) -> None:
    """Append one event to the outbox for ``row`` (same transaction as the change)."""
    session.add(
        EventRow(
            resource_type="container",
            resource_uuid=row.uuid,
            project_id=row.project_id,
            event_type=event_type,
            payload={"status": row.status, **payload},
            request_id=request_id,
        )
    )


async def start_action(
    session: Session, ctx: RequestContext, row: ContainerRow, action: str, *, keep: int = 0
) -> None:
    """Record that ``ctx`` started ``action`` on ``row``; the agent's report finishes it.

    With ``keep``, the container's actions older than its newest ``keep`` are dropped
    (a create, its first, passes none).
    """
    if keep:
        await prune_actions(session, row.uuid, keep - 1)
    act = ContainerActionRow(
        request_id=ctx.request_id,
        container_uuid=row.uuid,
        action=action,
        project_id=row.project_id,
        user_id=ctx.user_id,
    )
    session.add(act)
    await session.flush()
    session.add(
        ActionEventRow(
            action_id=act.id, event=_EVENT_NAMES.get(action, f"compute__do_container_{action}")
        )
    )
    emit(session, row, f"container.{action}.start", ctx.request_id)


async def finish_open_actions(
    session: Session, container_uuid: str, *, error: str | None = None
) -> None:
    """Close every unfinished action of a container: Success, or Error with the reason.

    Two bulk statements at most (one when nothing is open, which is most reports).
    """
    await close_actions(session, container_uuid, error=error)
