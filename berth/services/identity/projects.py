"""Domains (read-only: Berth has ``Default``) and projects."""

from __future__ import annotations

from typing import NoReturn

from berth import errors
from berth.domain.context import RequestContext
from berth.identity.models import (
    Domain,
    Project,
    ProjectSpec,
    ProjectUpdate,
)
from berth.services.identity._common import (
    new_id,
    require_admin,
    require_admin_or_self,
    same_domain,
    to_domain,
    to_project,
)
from berth.store.db import Database
from berth.store.identity import domains as domain_repo
from berth.store.identity import projects as project_repo
from berth.store.identity.common import flush_unique, get_or_404
from berth.store.tables.identity import DomainRow, ProjectRow, UserRow

__all__ = [
    "create_domain",
    "create_project",
    "delete_project",
    "get_domain",
    "get_project",
    "list_auth_domains",
    "list_auth_projects",
    "list_domains",
    "list_projects",
    "list_user_projects",
    "update_project",
]


# -- domains -----------------------------------------------------------------


async def list_domains(
    db: Database, caller: RequestContext, *, name: str | None = None, enabled: bool | None = None
) -> list[Domain]:
    """Domains matching the filters (any authenticated caller: Berth has only ``Default``)."""
    async with db.read() as s:
        return [to_domain(r) for r in await domain_repo.list_rows(s, name=name, enabled=enabled)]


async def get_domain(db: Database, caller: RequestContext, domain_id: str) -> Domain:
    """One domain by id; ``NotFound`` if there is none."""
    async with db.read() as s:
        return to_domain(await get_or_404(s, DomainRow, domain_id, "domain"))


async def create_domain(db: Database, caller: RequestContext) -> NoReturn:
    """Always ``Forbidden``: Berth keeps every project and user in the Default domain."""
    require_admin(caller, "create_domain")
    raise errors.Forbidden(
        "Berth supports only the Default domain; creating domains is not supported."
    )


# -- projects ----------------------------------------------------------------


async def list_projects(
    db: Database,
    caller: RequestContext,
    *,
    name: str | None = None,
    domain_id: str | None = None,
    enabled: bool | None = None,
) -> list[Project]:
    """Every project matching the filters (admin only)."""
    require_admin(caller, "list_projects")
    async with db.read() as s:
        rows = await project_repo.list_rows(s, name=name, domain_id=domain_id, enabled=enabled)
        return [to_project(r) for r in rows]


async def get_project(db: Database, caller: RequestContext, project_id: str) -> Project:
    """One project; admins see any, others the project their token is scoped to."""
    if caller.project_id != project_id:
        require_admin(caller, "get_project")
    async with db.read() as s:
        return to_project(await get_or_404(s, ProjectRow, project_id, "project"))


async def create_project(db: Database, caller: RequestContext, spec: ProjectSpec) -> Project:
    """Create a project (admin only); ``Conflict`` if the name is taken in its domain."""
    require_admin(caller, "create_project")
    async with db.transaction() as s:
        await get_or_404(s, DomainRow, spec.domain_id, "domain")
        row = ProjectRow(
            id=new_id(),
            name=spec.name,
            domain_id=spec.domain_id,
            description=spec.description,
            enabled=spec.enabled,
            extra=dict(spec.extra),
        )
        s.add(row)
        await flush_unique(s, f"project - Duplicate entry found with name {spec.name}")
        return to_project(row)


async def update_project(
    db: Database, caller: RequestContext, project_id: str, changes: ProjectUpdate
) -> Project:
    """Change a project's name, description, enabled flag or extra attributes (admin only)."""
    require_admin(caller, "update_project")
    async with db.transaction() as s:
        row = await get_or_404(s, ProjectRow, project_id, "project")
        same_domain(row.domain_id, changes.domain_id)
        if changes.name is not None:
            row.name = changes.name
        if changes.description is not None:
            row.description = changes.description
        if changes.enabled is not None:
            row.enabled = changes.enabled
        if changes.extra:
            row.extra = {**row.extra, **changes.extra}
        await flush_unique(s, f"project - Duplicate entry found with name {row.name}")
        return to_project(row)


async def delete_project(db: Database, caller: RequestContext, project_id: str) -> None:
    """Delete a project with its role assignments and the tokens scoped to it (admin only)."""
    require_admin(caller, "delete_project")
    async with db.transaction() as s:
        row = await get_or_404(s, ProjectRow, project_id, "project")
        await project_repo.delete_with_grants(s, row)


async def list_user_projects(
    db: Database, caller: RequestContext, user_id: str, *, enabled_only: bool = False
) -> list[Project]:
    """The projects a user holds any role on (the user itself or an admin)."""
    require_admin_or_self(caller, user_id, "list_user_projects")
    async with db.read() as s:
        await get_or_404(s, UserRow, user_id, "user")
        rows = await project_repo.list_held_by(s, user_id, enabled_only=enabled_only)
        return [to_project(r) for r in rows]


async def list_auth_projects(db: Database, caller: RequestContext) -> list[Project]:
    """The enabled projects the caller may scope a token to."""
    return await list_user_projects(db, caller, caller.user_id, enabled_only=True)


async def list_auth_domains(db: Database, caller: RequestContext) -> list[Domain]:
    """The enabled domains the caller holds a role on (and so may scope a token to)."""
    async with db.read() as s:
        return [to_domain(r) for r in await domain_repo.list_held_by(s, caller.user_id)]
