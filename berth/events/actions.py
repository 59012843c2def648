"""Container actions and events: what each request did, recorded in the same transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from berth.domain.context import RequestContext
from berth.store.base import utcnow
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
    session: AsyncSession,
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
    session: AsyncSession, ctx: RequestContext, row: ContainerRow, action: str
) -> None:
    """Record that ``ctx`` started ``action`` on ``row``; the agent's report finishes it."""
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
    session: AsyncSession, container_uuid: str, *, error: str | None = None
) -> None:
    """Close every unfinished action of a container: Success, or Error with the reason.

    Two bulk statements at most (one when nothing is open, which is most reports).
    """
    now = utcnow()
    closed = (
        (
            await session.execute(
                update(ContainerActionRow)
                .where(
                    ContainerActionRow.container_uuid == container_uuid,
                    ContainerActionRow.finish_time.is_(None),
                )
                .values(finish_time=now, message="Error" if error else None)
                .returning(ContainerActionRow.id),
                execution_options={"synchronize_session": False},
            )
        )
        .scalars()
        .all()
    )
    if not closed:
        return
    await session.execute(
        update(ActionEventRow)
        .where(ActionEventRow.action_id.in_(closed), ActionEventRow.finish_time.is_(None))
        .values(finish_time=now, result="Error" if error else "Success", traceback=error),
        execution_options={"synchronize_session": False},
    )
