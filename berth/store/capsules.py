"""Capsule queries. Lookups and lists go through a Scope: other projects' capsules are invisible.

A capsule's members are container rows: ``berth.store.containers.members``.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from berth import errors
from berth.store.lookup import one_by_ident
from berth.store.paging import PageQuery, scoped_page
from berth.store.scope import Scope
from berth.store.tables import CapsuleRow

__all__ = ["SORT_KEYS", "by_uuid", "get", "list_page"]

SORT_KEYS = frozenset(
    {"id", "uuid", "name", "project_id", "user_id", "cpu", "memory", "created_at", "updated_at"}
)


async def get(session: AsyncSession, scope: Scope, ident: str) -> CapsuleRow:
    """The capsule named by UUID or name; CapsuleNotFound if invisible or absent."""
    stmt = select(CapsuleRow)
    if not scope.all_projects:
        stmt = stmt.where(CapsuleRow.project_id == scope.project_id)
    return await one_by_ident(
        session, stmt, CapsuleRow, ident, missing=errors.CapsuleNotFound, noun="capsule"
    )


async def by_uuid(session: AsyncSession, uuid: str) -> CapsuleRow | None:
    """The capsule ``uuid`` whichever project owns it (for the control loop, not for callers)."""
    stmt = select(CapsuleRow).where(CapsuleRow.uuid == uuid)
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_page(session: AsyncSession, scope: Scope, query: PageQuery) -> Sequence[CapsuleRow]:
    """One page of the capsules the scope sees."""
    return await scoped_page(session, CapsuleRow, scope, query)
