"""Domain queries (Berth has ``Default``; the table still answers Keystone's filters)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from berth.store.tables.identity import DomainRow, RoleAssignmentRow

__all__ = ["all_rows", "find", "list_held_by", "list_rows"]


async def all_rows(s: AsyncSession) -> Sequence[DomainRow]:
    """Every domain (there are very few)."""
    return (await s.scalars(select(DomainRow))).all()


async def find(s: AsyncSession, key: str | None, name: str | None) -> DomainRow | None:
    """The domain with id ``key`` if given, else the one called ``name``; None if absent."""
    if key is not None:
        return await s.get(DomainRow, key)
    return await s.scalar(select(DomainRow).where(DomainRow.name == name))


async def list_rows(
    s: AsyncSession, *, name: str | None = None, enabled: bool | None = None
) -> Sequence[DomainRow]:
    """Domains matching the filters, by name."""
    stmt = select(DomainRow).order_by(DomainRow.name)
    if name is not None:
        stmt = stmt.where(DomainRow.name == name)
    if enabled is not None:
        stmt = stmt.where(DomainRow.enabled.is_(enabled))
    return (await s.scalars(stmt)).all()


async def list_held_by(s: AsyncSession, user_id: str) -> Sequence[DomainRow]:
    """The enabled domains ``user_id`` holds a role on, by name."""
    stmt = (
        select(DomainRow)
        .join(RoleAssignmentRow, RoleAssignmentRow.domain_id == DomainRow.id)
        .where(RoleAssignmentRow.user_id == user_id, RoleAssignmentRow.project_id.is_(None))
        .where(DomainRow.enabled.is_(True))
        .distinct()
        .order_by(DomainRow.name)
    )
    return (await s.scalars(stmt)).all()
