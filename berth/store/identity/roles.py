"""Role, grant and role-assignment queries."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from berth.store.tables.identity import ProjectRow, RoleAssignmentRow, RoleRow, UserRow

__all__ = [
    "AssignmentRows",
    "add_grant",
    "all_rows",
    "assignment_rows",
    "by_names",
    "delete_grants",
    "delete_with_grants",
    "find_by_name",
    "grant_id",
    "granted_roles",
    "list_rows",
    "role_names",
]

AssignmentRows = tuple[RoleAssignmentRow, RoleRow, UserRow, ProjectRow | None]


async def list_rows(
    s: AsyncSession, *, name: str | None = None, domain_id: str | None = None
) -> Sequence[RoleRow]:
    """Roles matching the filters, by name (global roles unless ``domain_id``)."""
    stmt = select(RoleRow).order_by(RoleRow.name)
    if name is not None:
        stmt = stmt.where(RoleRow.name == name)
    stmt = stmt.where(RoleRow.domain_id == domain_id if domain_id else RoleRow.domain_id.is_(None))
    return (await s.scalars(stmt)).all()


async def all_rows(s: AsyncSession) -> Sequence[RoleRow]:
    """Every role."""
    return (await s.scalars(select(RoleRow))).all()


async def find_by_name(s: AsyncSession, name: str) -> RoleRow | None:
    """The role called ``name``; None if absent."""
    return await s.scalar(select(RoleRow).where(RoleRow.name == name))


async def by_names(s: AsyncSession, names: Sequence[str]) -> dict[str, RoleRow]:
    """The roles among ``names`` that exist, by name."""
    return {r.name: r for r in (await s.scalars(select(RoleRow).where(RoleRow.name.in_(names))))}


async def delete_with_grants(s: AsyncSession, row: RoleRow) -> None:
    """Delete a role and its assignments."""
    await s.execute(delete(RoleAssignmentRow).where(RoleAssignmentRow.role_id == row.id))
    await s.delete(row)


async def role_names(
    s: AsyncSession, user_id: str, project_id: str | None, domain_id: str | None
) -> list[str]:
    """Names of the roles granted directly to a user on a project or a domain."""
    stmt = (
        select(RoleRow.name)
        .join(RoleAssignmentRow, RoleAssignmentRow.role_id == RoleRow.id)
        .where(RoleAssignmentRow.user_id == user_id)
        .order_by(RoleRow.name)
        .distinct()
    )
    if project_id is not None:
        stmt = stmt.where(RoleAssignmentRow.project_id == project_id)
    else:
        stmt = stmt.where(
            RoleAssignmentRow.domain_id == domain_id, RoleAssignmentRow.project_id.is_(None)
        )
    return list((await s.scalars(stmt)).all())


# -- grants ------------------------------------------------------------------


def _grant_filter(
    user_id: str, role_id: str | None, project_id: str | None, domain_id: str | None
) -> list[Any]:
    conds: list[Any] = [RoleAssignmentRow.user_id == user_id]
    if role_id is not None:
        conds.append(RoleAssignmentRow.role_id == role_id)
    if project_id is not None:
        conds.append(RoleAssignmentRow.project_id == project_id)
    else:
        conds += [RoleAssignmentRow.project_id.is_(None), RoleAssignmentRow.domain_id == domain_id]
    return conds


async def grant_id(
    s: AsyncSession, user_id: str, role_id: str, project_id: str | None, domain_id: str | None
) -> int | None:
    """The id of the grant of ``role_id`` to the user on the project or domain; None if none."""
    stmt = select(RoleAssignmentRow.id).where(
        *_grant_filter(user_id, role_id, project_id, domain_id)
    )
    found: int | None = await s.scalar(stmt)
    return found


async def add_grant(
    s: AsyncSession, user_id: str, role_id: str, project_id: str | None, domain_id: str | None
) -> None:
    """Grant ``role_id`` to the user on the project (or else the domain), unless granted."""
    if await grant_id(s, user_id, role_id, project_id, domain_id) is None:
        s.add(
            RoleAssignmentRow(
                user_id=user_id,
                role_id=role_id,
                project_id=project_id,
                domain_id=None if project_id else domain_id,
            )
        )


async def delete_grants(
    s: AsyncSession, user_id: str, role_id: str, project_id: str | None, domain_id: str | None
) -> int:
    """Take the grant away; how many rows went (0 when it was not held)."""
    result = await s.execute(
        delete(RoleAssignmentRow).where(*_grant_filter(user_id, role_id, project_id, domain_id))
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def granted_roles(
    s: AsyncSession, user_id: str, project_id: str | None, domain_id: str | None
) -> Sequence[RoleRow]:
    """The roles a user holds directly on a project or a domain, by name."""
    stmt = (
        select(RoleRow)
        .join(RoleAssignmentRow, RoleAssignmentRow.role_id == RoleRow.id)
        .where(*_grant_filter(user_id, None, project_id, domain_id))
        .distinct()
        .order_by(RoleRow.name)
    )
    return (await s.scalars(stmt)).all()


async def assignment_rows(
    s: AsyncSession,
    *,
    user_id: str | None,
    project_id: str | None,
    domain_id: str | None,
    role_id: str | None,
) -> list[AssignmentRows]:
    """Direct assignments matching the filters, with their role, user and project rows."""
    stmt = (
        select(RoleAssignmentRow, RoleRow, UserRow, ProjectRow)
        .join(RoleRow, RoleRow.id == RoleAssignmentRow.role_id)
        .join(UserRow, UserRow.id == RoleAssignmentRow.user_id)
        .outerjoin(ProjectRow, ProjectRow.id == RoleAssignmentRow.project_id)
        .order_by(UserRow.name, ProjectRow.name, RoleRow.name)
    )
    if user_id is not None:
        stmt = stmt.where(RoleAssignmentRow.user_id == user_id)
    if project_id is not None:
        stmt = stmt.where(RoleAssignmentRow.project_id == project_id)
    if domain_id is not None:
        stmt = stmt.where(
            RoleAssignmentRow.domain_id == domain_id, RoleAssignmentRow.project_id.is_(None)
        )
    if role_id is not None:
        stmt = stmt.where(RoleAssignmentRow.role_id == role_id)
    return [(a, r, u, p) for a, r, u, p in (await s.execute(stmt)).all()]
