"""Roles, grants of roles on projects and domains, and the role-assignment listing."""

from __future__ import annotations

from collections.abc import Sequence

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
    new_id,
    require_admin,
    to_project,
    to_role,
    to_user,
)
from berth.store.db import Database, Session
from berth.store.identity import roles as role_repo
from berth.store.identity.common import conflicts_as_409, flush_unique, get_or_404
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
    async with db.read() as s:
        return [to_role(r) for r in await role_repo.list_rows(s, name=name, domain_id=domain_id)]


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
        await role_repo.delete_with_grants(s, row)


# -- role assignments --------------------------------------------------------


async def _check_targets(
    s: Session,
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
        with conflicts_as_409(f"role assignment of role {role_id}"):
            async with db.transaction() as s:
                await _check_targets(s, user_id, role_id, project_id, domain_id)
                await role_repo.add_grant(s, user_id, role_id, project_id, domain_id)
    except errors.Conflict:
        # Granted at the same moment by another API process (uq_grant_*): the
        # grant exists, which is all a PUT asks for. Anything else re-raises.
        async with db.read() as s:
            if await role_repo.grant_id(s, user_id, role_id, project_id, domain_id) is None:
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
        if await role_repo.grant_id(s, user_id, role_id, project_id, domain_id) is None:
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
        if not await role_repo.delete_grants(s, user_id, role_id, project_id, domain_id):
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
    async with db.read() as s:
        await _check_targets(s, user_id, None, project_id, domain_id)
        rows = await role_repo.granted_roles(s, user_id, project_id, domain_id)
        return [to_role(r) for r in rows]


async def list_assignments(
    db: Database, caller: RequestContext, flt: AssignmentFilter
) -> list[Assignment]:
    """Role assignments matching the filter; ``effective`` adds the implied roles.

    Admins see all; other users only their own (``user.id`` set to themselves).
    """
    if flt.user_id != caller.user_id:
        require_admin(caller, "list_role_assignments")
    async with db.read() as s:
        rows = await role_repo.assignment_rows(
            s,
            user_id=flt.user_id,
            project_id=flt.project_id,
            domain_id=flt.domain_id,
            # Effective listings filter by role after expanding the implied ones.
            role_id=flt.role_id if not flt.effective else None,
        )
        domains = await all_domains(s)
        all_roles = {r.name: to_role(r) for r in await role_repo.all_rows(s)}
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
