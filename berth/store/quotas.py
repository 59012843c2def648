"""Quota queries: stored limits (per project, per class), usage sums and the usage lock."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import delete, func, literal, select, text, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from berth.store import containers as container_repo
from berth.store.db import UNWATCHED
from berth.store.tables import QuotaClassRow, QuotaRow

__all__ = [
    "class_limits",
    "count_rows",
    "delete_project_limits",
    "lock_usage",
    "project_limits",
    "set_class_limits",
    "set_project_limits",
    "stored_limits",
    "usage",
]


async def class_limits(session: AsyncSession, name: str) -> dict[str, int]:
    """The limits stored for quota class ``name``, by resource (only those set)."""
    stmt = select(QuotaClassRow).where(QuotaClassRow.class_name == name)
    rows = (await session.execute(stmt)).scalars().all()
    return {r.resource: r.hard_limit for r in rows}


async def project_limits(session: AsyncSession, project_id: str) -> dict[str, int]:
    """The limits stored for one project, by resource (only those set)."""
    stmt = select(QuotaRow).where(QuotaRow.project_id == project_id)
    rows = (await session.execute(stmt)).scalars().all()
    return {r.resource: r.hard_limit for r in rows}


async def stored_limits(
    session: AsyncSession, class_name: str, project_id: str
) -> tuple[dict[str, int], dict[str, int]]:
    """``class_limits(class_name)`` and ``project_limits(project_id)`` in one round trip.

    Every create reads both: one statement, and plain rows instead of ORM objects.
    """
    classes = select(literal(False).label("own"), QuotaClassRow.resource, QuotaClassRow.hard_limit)
    own = select(literal(True).label("own"), QuotaRow.resource, QuotaRow.hard_limit)
    stmt = union_all(
        classes.where(QuotaClassRow.class_name == class_name),
        own.where(QuotaRow.project_id == project_id),
    )
    found: tuple[dict[str, int], dict[str, int]] = ({}, {})
    for is_own, resource, hard_limit in (await session.execute(stmt)).all():
        found[1 if is_own else 0][resource] = hard_limit
    return found


async def usage(session: AsyncSession, project_id: str) -> dict[str, float]:
    """What a project uses now: containers, cpu, memory (MiB), disk (GiB)."""
    # The sums are over the containers table, whose repository knows what a
    # capsule's sandbox and members claim.
    return await container_repo.project_usage(session, project_id)


async def lock_usage(session: AsyncSession, project_id: str, resource: str) -> None:
    """Hold the project's ``resource`` usage still until ``session``'s transaction ends.

    PostgreSQL: a transaction-scoped advisory lock on the (project, resource)
    pair, released at commit or rollback, so other projects never wait.
    SQLite has one writer at a time: a write that changes nothing takes the
    database's write lock (the count that follows then reads the newest data,
    and a second process's create waits until this one commits).
    """
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        await session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
            {"key": f"berth.quota:{project_id}:{resource}"},
        )
    else:
        await session.execute(
            text("UPDATE quotas SET hard_limit = hard_limit WHERE 1 = 0"),
            execution_options={UNWATCHED: True},
        )


async def count_rows(session: AsyncSession, table: Any, project_id: str) -> int:
    """How many rows of ``table`` (a mapped class with ``project_id``) the project has."""
    stmt = select(func.count()).select_from(table).where(table.project_id == project_id)
    return int((await session.execute(stmt)).scalar() or 0)


async def set_project_limits(
    session: AsyncSession, project_id: str, values: Mapping[str, int]
) -> None:
    """Insert or update one limit row per resource of ``values`` for the project."""
    await _set_limits(session, QuotaRow, {"project_id": project_id}, values)


async def set_class_limits(session: AsyncSession, name: str, values: Mapping[str, int]) -> None:
    """Insert or update one limit row per resource of ``values`` for quota class ``name``."""
    await _set_limits(session, QuotaClassRow, {"class_name": name}, values)


async def delete_project_limits(session: AsyncSession, project_id: str) -> None:
    """Forget a project's own limits (its class defaults apply again)."""
    await session.execute(delete(QuotaRow).where(QuotaRow.project_id == project_id))


async def _set_limits(
    session: AsyncSession,
    table: type[QuotaRow] | type[QuotaClassRow],
    owner: dict[str, str],
    values: Mapping[str, int],
) -> None:
    ((key, value),) = owner.items()
    stmt = select(table).where(getattr(table, key) == value)
    found = (await session.execute(stmt)).scalars().all()
    rows = cast(Sequence[QuotaRow | QuotaClassRow], found)
    existing = {r.resource: r for r in rows}
    for resource, limit in values.items():
        if resource in existing:
            existing[resource].hard_limit = limit
        else:
            session.add(table(**owner, resource=resource, hard_limit=limit))
    await session.flush()
