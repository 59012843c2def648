"""Event outbox and container-action queries: the timeline, closing actions, the relay's batches."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, delete, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from berth.store.base import utcnow
from berth.store.scope import Scope
from berth.store.tables import (
    ActionEventRow,
    ContainerActionRow,
    ContainerRow,
    EventRow,
    OutboxCursorRow,
)

__all__ = [
    "close_actions",
    "locked_cursor",
    "prune_actions",
    "recent",
    "relayed_upto",
    "since",
    "trim_events",
    "trim_orphan_actions",
]


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


async def prune_actions(session: AsyncSession, container_uuid: str, keep: int) -> None:
    """Drop a container's actions older than its newest ``keep`` (their events with them).

    One indexed lookup of the cut, and the deletes only when there is something to drop
    (most recordings).
    """
    cut = (
        await session.execute(
            select(ContainerActionRow.id)
            .where(ContainerActionRow.container_uuid == container_uuid)
            .order_by(ContainerActionRow.id.desc())
            .offset(keep)
            .limit(1)
        )
    ).scalar()
    if cut is None:
        return
    old = ContainerActionRow.container_uuid == container_uuid, ContainerActionRow.id <= cut
    await session.execute(
        delete(ActionEventRow).where(
            ActionEventRow.action_id.in_(select(ContainerActionRow.id).where(*old))
        ),
        execution_options={"synchronize_session": False},
    )
    await session.execute(
        delete(ContainerActionRow).where(*old), execution_options={"synchronize_session": False}
    )


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


async def relayed_upto(session: AsyncSession, name: str) -> int:
    """The last event id the relay ``name`` has sent (0 before its first batch)."""
    cursor = await session.get(OutboxCursorRow, name)
    return cursor.last_event_id if cursor is not None else 0


async def _cut(
    session: AsyncSession, column: Any, where: list[ColumnElement[bool]], batch: int
) -> Any:
    """The ``batch``-th smallest ``column`` of the rows ``where`` holds (None: fewer rows)."""
    stmt = select(column).where(*where).order_by(column).offset(batch - 1).limit(1)
    return (await session.execute(stmt)).scalar()


async def trim_events(
    session: AsyncSession, before: dt.datetime, *, upto_id: int | None, batch: int
) -> int:
    """Drop those of the ``batch`` oldest events (by id, which follows time) written before
    ``before`` and, with ``upto_id``, relayed (at most that id); how many. Only the
    primary key is walked: a run finds the window at once however many events are newer.
    """
    window = (
        await session.execute(select(EventRow.id).order_by(EventRow.id).offset(batch - 1).limit(1))
    ).scalar()
    where = [EventRow.created_at < before]
    if upto_id is not None:
        where.append(EventRow.id <= upto_id)
    if window is not None:
        where.append(EventRow.id <= window)
    result = await session.execute(
        delete(EventRow).where(*where), execution_options={"synchronize_session": False}
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def trim_orphan_actions(session: AsyncSession, before: dt.datetime, *, batch: int) -> int:
    """Drop up to ``batch`` actions (with their events) started before ``before`` whose
    container is gone (no API call can read them any more); how many."""
    where = [
        ContainerActionRow.start_time < before,
        ~exists().where(ContainerRow.uuid == ContainerActionRow.container_uuid),
    ]
    cut = await _cut(session, ContainerActionRow.id, where, batch)
    if cut is not None:
        where.append(ContainerActionRow.id <= cut)
    ids = (await session.execute(select(ContainerActionRow.id).where(*where))).scalars().all()
    if not ids:
        return 0
    await session.execute(
        delete(ActionEventRow).where(ActionEventRow.action_id.in_(ids)),
        execution_options={"synchronize_session": False},
    )
    await session.execute(
        delete(ContainerActionRow).where(ContainerActionRow.id.in_(ids)),
        execution_options={"synchronize_session": False},
    )
    return len(ids)
