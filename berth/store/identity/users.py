"""User queries."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from berth.store.identity.tokens import delete_of_user
from berth.store.tables.identity import DomainRow, RoleAssignmentRow, UserRow

__all__ = ["delete_with_grants", "find_by_name", "find_for_password", "list_rows"]


async def list_rows(
    s: AsyncSession,
    *,
    name: str | None = None,
    domain_id: str | None = None,
    enabled: bool | None = None,
) -> Sequence[UserRow]:
    """Users matching the filters, by name."""
    stmt = select(UserRow).order_by(UserRow.name)
    if name is not None:
        stmt = stmt.where(UserRow.name == name)
    if domain_id is not None:
        stmt = stmt.where(UserRow.domain_id == domain_id)
    if enabled is not None:
        stmt = stmt.where(UserRow.enabled.is_(enabled))
    return (await s.scalars(stmt)).all()


async def find_by_name(s: AsyncSession, domain_id: str, name: str) -> UserRow | None:
    """The user called ``name`` in domain ``domain_id``; None if absent."""
    stmt = select(UserRow).where(UserRow.domain_id == domain_id, UserRow.name == name)
    return await s.scalar(stmt)


async def find_for_password(
    s: AsyncSession,
    *,
    user_id: str | None,
    user_name: str | None,
    domain_id: str | None,
    domain_name: str | None,
) -> UserRow | None:
    """The user that password credentials name: by id, or by name in a domain (id or name)."""
    stmt = select(UserRow)
    if user_id is not None:
        stmt = stmt.where(UserRow.id == user_id)
    else:
        stmt = stmt.join(DomainRow, DomainRow.id == UserRow.domain_id).where(
            UserRow.name == user_name
        )
        if domain_id is not None:
            stmt = stmt.where(DomainRow.id == domain_id)
        else:
            stmt = stmt.where(DomainRow.name == domain_name)
    return await s.scalar(stmt)


async def delete_with_grants(s: AsyncSession, row: UserRow) -> None:
    """Delete a user with its role assignments and tokens."""
    await s.execute(delete(RoleAssignmentRow).where(RoleAssignmentRow.user_id == row.id))
    await delete_of_user(s, row.id)
    await s.delete(row)
