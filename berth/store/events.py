"""Event outbox and container-action queries: the timeline, closing actions, the relay's batches."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from berth.store.base import utcnow
from berth.store.scope import Scope
from berth.store.tables import ActionEventRow, ContainerActionRow, EventRow, OutboxCursorRow

__all__ = ["close_actions", "locked_cursor", "recent", "since"]


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


async def close_actions(session: AsyncSession, container_uuid: str, *, error: str | None) -> None:
    """Close every unfinished action of a container and its events: Success, or Error.

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


async def locked_cursor(session: AsyncSession, name: str) -> OutboxCursorRow:
    """The relay cursor ``name``, locked for this transaction (created at 0 the first time)."""
    cursor = await session.get(OutboxCursorRow, name, with_for_update=True)
    if cursor is None:
        cursor = OutboxCursorRow(name=name, last_event_id=0)
        session.add(cursor)
        await session.flush()
    return cursor


async def since(session: AsyncSession, last_id: int, *, limit: int) -> Sequence[EventRow]:
    """Up to ``limit`` events after ``last_id``, oldest first."""
    stmt = select(EventRow).where(EventRow.id > last_id).order_by(EventRow.id).limit(limit)
    return (await session.scalars(stmt)).all()
