"""Project queries."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from berth.store.tables.identity import ProjectRow, RoleAssignmentRow, TokenRow

__all__ = ["delete_with_grants", "find_by_name", "list_held_by", "list_rows"]


async def list_rows(
    s: AsyncSession,
    *,
    name: str | None = None,
    domain_id: str | None = None,
    enabled: bool | None = None,
) -> Sequence[ProjectRow]:
    """Projects matching the filters, by name."""
    stmt = select(ProjectRow).order_by(ProjectRow.name)
    if name is not None:
        stmt = stmt.where(ProjectRow.name == name)
    if domain_id is not None:
        stmt = stmt.where(ProjectRow.domain_id == domain_id)
    if enabled is not None:
        stmt = stmt.where(ProjectRow.enabled.is_(enabled))
    return (await s.scalars(stmt)).all()


async def find_by_name(s: AsyncSession, domain_id: str, name: str | None) -> ProjectRow | None:
    """The project called ``name`` in domain ``domain_id``; None if absent."""
    stmt = select(ProjectRow).where(ProjectRow.domain_id == domain_id, ProjectRow.name == name)
    return await s.scalar(stmt)


async def list_held_by(
    s: AsyncSession, user_id: str, *, enabled_only: bool = False
) -> Sequence[ProjectRow]:
    """The projects ``user_id`` holds any role on, by name."""
    # IN (subquery) rather than JOIN ... DISTINCT: PostgreSQL cannot compare JSON columns.
    held = select(RoleAssignmentRow.project_id).where(RoleAssignmentRow.user_id == user_id)
    stmt = select(ProjectRow).where(ProjectRow.id.in_(held)).order_by(ProjectRow.name)
    if enabled_only:
        stmt = stmt.where(ProjectRow.enabled.is_(True))
    return (await s.scalars(stmt)).all()


async def delete_with_grants(s: AsyncSession, row: ProjectRow) -> None:
    """Delete a project with its role assignments and the tokens scoped to it."""
    await s.execute(delete(RoleAssignmentRow).where(RoleAssignmentRow.project_id == row.id))
    await s.execute(delete(TokenRow).where(TokenRow.project_id == row.id))
    await s.delete(row)
