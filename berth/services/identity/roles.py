"""Roles, grants of roles on projects and domains, and the role-assignment listing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from berth import errors
from berth.domain.context import RequestContext
from berth.identity import roles as rules
from berth.identity.models import (
    Assignment,
    AssignmentFilter,
    Domain,
    Role,
    RoleSpec,
)
from berth.services.identity._common import (
    all_domains,
    flush_unique,
    get_or_404,
    new_id,
    require_admin,
    to_project,
    to_role,
    to_user,
)
from berth.store.db import Database
from berth.store.tables.identity import (
    DomainRow,
    ProjectRow,
    RoleAssignmentRow,
    RoleRow,
    UserRow,
)

__all__ = [
    "check_grant",
    "create_role",
    "delete_role",
    "get_role",
    "grant_role",
    "list_assignments",
    "list_grants",
    "list_roles",
    "revoke_grant",
]


# -- roles -------------------------------------------------------------------


async def list_roles(
    db: Database, caller: RequestContext, *, name: str | None = None, domain_id: str | None = None
) -> list[Role]:
    """Every role matching the filters (admin only)."""
    require_admin(caller, "list_roles")
    stmt = select(RoleRow).order_by(RoleRow.name)
    if name is not None:
        stmt = stmt.where(RoleRow.name == name)
    stmt = stmt.where(RoleRow.domain_id == domain_id if domain_id else RoleRow.domain_id.is_(None))
    async with db.read() as s:
        return [to_role(r) for r in (await s.scalars(stmt)).all()]


async def get_role(db: Database, caller: RequestContext, role_id: str) -> Role:
    """One role by id (admin only)."""
    require_admin(caller, "get_role")
    async with db.read() as s:
        return to_role(await get_or_404(s, RoleRow, role_id, "role"))


async def create_role(db: Database, caller: RequestContext, spec: RoleSpec) -> Role:
    """Create a role (admin only); ``Conflict`` if the name is taken."""
    require_admin(caller, "create_role")
    if spec.domain_id is not None:
        raise errors.Forbidden("Domain-specific roles are not supported.")
    async with db.transaction() as s:
        row = RoleRow(id=new_id(), name=spec.name, domain_id=None, description=spec.description)
        s.add(row)
        await flush_unique(s, f"role - Duplicate entry found with name {spec.name}")
        return to_role(row)


async def delete_role(db: Database, caller: RequestContext, role_id: str) -> None:
    """Delete a role and its assignments (admin only); the built-in roles stay."""
    require_admin(caller, "delete_role")
    async with db.transaction() as s:
        row = await get_or_404(s, RoleRow, role_id, "role")
        if row.name in rules.BUILTIN_ROLES:
            raise errors.Forbidden(f"The built-in role {row.name} cannot be deleted.")
        await s.execute(delete(RoleAssignmentRow).where(RoleAssignmentRow.role_id == role_id))
        await s.delete(row)


# -- role assignments --------------------------------------------------------


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


async def _check_targets(
    s: AsyncSession,
    user_id: str,
    role_id: str | None,
    project_id: str | None,
    domain_id: str | None,
) -> None:
    await get_or_404(s, UserRow, user_id, "user")
    if role_id is not None:
        await get_or_404(s, RoleRow, role_id, "role")
    if project_id is not None:
        await get_or_404(s, ProjectRow, project_id, "project")
    else:
        await get_or_404(s, DomainRow, domain_id or "", "domain")


async def grant_role(
    db: Database,
    caller: RequestContext,
    *,
    user_id: str,
    role_id: str,
    project_id: str | None = None,
    domain_id: str | None = None,
) -> None:
    """Give a user a role on a project or a domain (admin only); granting twice is a no-op."""
    require_admin(caller, "create_grant")
    try:
        async with db.transaction() as s:
            await _check_targets(s, user_id, role_id, project_id, domain_id)
            existing = await s.scalar(
                select(RoleAssignmentRow.id).where(
                    *_grant_filter(user_id, role_id, project_id, domain_id)
                )
            )
            if existing is None:
                s.add(
                    RoleAssignmentRow(
                        user_id=user_id,
                        role_id=role_id,
                        project_id=project_id,
                        domain_id=None if project_id else domain_id,
                    )
                )
    except IntegrityError:
        # Granted at the same moment by another API process (uq_grant_*): the
        # grant exists, which is all a PUT asks for. Anything else re-raises.
        async with db.read() as s:
            filters = _grant_filter(user_id, role_id, project_id, domain_id)
            if await s.scalar(select(RoleAssignmentRow.id).where(*filters)) is None:
                raise


async def check_grant(
    db: Database,
    caller: RequestContext,
    *,
    user_id: str,
    role_id: str,
    project_id: str | None = None,
    domain_id: str | None = None,
) -> None:
    """Return if the user holds the role directly there; ``NotFound`` otherwise (admin only)."""
    require_admin(caller, "check_grant")
    async with db.read() as s:
        await _check_targets(s, user_id, role_id, project_id, domain_id)
        stmt = select(RoleAssignmentRow.id).where(
            *_grant_filter(user_id, role_id, project_id, domain_id)
        )
        if await s.scalar(stmt) is None:
            raise errors.NotFound(f"Could not find role assignment of role {role_id}.")


async def revoke_grant(
    db: Database,
    caller: RequestContext,
    *,
    user_id: str,
    role_id: str,
    project_id: str | None = None,
    domain_id: str | None = None,
) -> None:
    """Take a role away from a user (admin only); ``NotFound`` if it was not held."""
    require_admin(caller, "revoke_grant")
    async with db.transaction() as s:
        await _check_targets(s, user_id, role_id, project_id, domain_id)
        result = await s.execute(
            delete(RoleAssignmentRow).where(*_grant_filter(user_id, role_id, project_id, domain_id))
        )
        if not getattr(result, "rowcount", 0):
            raise errors.NotFound(f"Could not find role assignment of role {role_id}.")


async def list_grants(
    db: Database,
    caller: RequestContext,
    *,
    user_id: str,
    project_id: str | None = None,
    domain_id: str | None = None,
) -> list[Role]:
    """The roles a user holds directly on a project or a domain (admin only)."""
    require_admin(caller, "list_grants")
    stmt = (
        select(RoleRow)
        .join(RoleAssignmentRow, RoleAssignmentRow.role_id == RoleRow.id)
        .where(*_grant_filter(user_id, None, project_id, domain_id))
        .distinct()
        .order_by(RoleRow.name)
    )
    async with db.read() as s:
        await _check_targets(s, user_id, None, project_id, domain_id)
        return [to_role(r) for r in (await s.scalars(stmt)).all()]


async def list_assignments(
    db: Database, caller: RequestContext, flt: AssignmentFilter
) -> list[Assignment]:
    """Role assignments matching the filter; ``effective`` adds the implied roles.

    Admins see all; other users only their own (``user.id`` set to themselves).
    """
    if flt.user_id != caller.user_id:
        require_admin(caller, "list_role_assignments")
    stmt = (
        select(RoleAssignmentRow, RoleRow, UserRow, ProjectRow)
        .join(RoleRow, RoleRow.id == RoleAssignmentRow.role_id)
        .join(UserRow, UserRow.id == RoleAssignmentRow.user_id)
        .outerjoin(ProjectRow, ProjectRow.id == RoleAssignmentRow.project_id)
        .order_by(UserRow.name, ProjectRow.name, RoleRow.name)
    )
    if flt.user_id is not None:
        stmt = stmt.where(RoleAssignmentRow.user_id == flt.user_id)
    if flt.project_id is not None:
        stmt = stmt.where(RoleAssignmentRow.project_id == flt.project_id)
    if flt.domain_id is not None:
        stmt = stmt.where(
            RoleAssignmentRow.domain_id == flt.domain_id, RoleAssignmentRow.project_id.is_(None)
        )
    if flt.role_id is not None and not flt.effective:
        stmt = stmt.where(RoleAssignmentRow.role_id == flt.role_id)
    async with db.read() as s:
        rows = (await s.execute(stmt)).all()
        domains = await all_domains(s)
        all_roles = {r.name: to_role(r) for r in (await s.scalars(select(RoleRow))).all()}
    direct = [_assignment(a, r, u, p, domains) for a, r, u, p in rows]
    found = _expand(direct, all_roles) if flt.effective else _unique(direct)
    return [a for a in found if flt.role_id is None or a.role.id == flt.role_id]


def _assignment(
    a: RoleAssignmentRow, r: RoleRow, u: UserRow, p: ProjectRow | None, domains: dict[str, Domain]
) -> Assignment:
    scope_domain = domains.get(p.domain_id if p else a.domain_id or "")
    return Assignment(
        role=to_role(r),
        user=to_user(u),
        user_domain=domains[u.domain_id],
        project=to_project(p) if p else None,
        domain=scope_domain or Domain(a.domain_id or "", a.domain_id or ""),
    )


def _key(a: Assignment) -> tuple[str, str, str, str]:
    return a.user.id, a.project.id if a.project else "", a.domain.id, a.role.id


def _unique(items: Sequence[Assignment]) -> list[Assignment]:
    return list({_key(a): a for a in items}.values())


def _expand(direct: Sequence[Assignment], all_roles: dict[str, Role]) -> list[Assignment]:
    """Direct assignments plus one per implied role, pointing at the role that implies it."""
    result = {_key(a): a for a in direct}
    for a in direct:
        for name in rules.implied_roles(a.role.name):
            role = all_roles.get(name)
            if role is None:
                continue
            implied = Assignment(
                role, a.user, a.user_domain, a.project, a.domain, prior_role=a.role
            )
            result.setdefault(_key(implied), implied)
    return list(result.values())
