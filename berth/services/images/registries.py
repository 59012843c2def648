"""Private registries of projects: CRUD, and their credentials for the pulls that need them.

A registry belongs to one project; only that project's containers can pull
with it (admins can see and manage every project's, but not borrow them for
their own containers). The password is sealed before it is stored and is
opened only to hand it to the agent that pulls.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from berth import errors
from berth.domain.context import RequestContext
from berth.domain.hostsync import RegistryAuth
from berth.domain.paging import Paging
from berth.images.refs import with_registry
from berth.services import quotas
from berth.services.env import Env
from berth.services.images import address_check
from berth.services.scopes import list_scope, lookup_scope
from berth.store import images as repo
from berth.store.base import new_uuid, utcnow
from berth.store.db import Session
from berth.store.paging import PageQuery
from berth.store.scope import Scope
from berth.store.tables import RegistryRow

__all__ = [
    "RegistryFields",
    "auth_for",
    "create",
    "delete",
    "get",
    "list_registries",
    "qualify",
    "resolve_for_project",
    "update",
]


@dataclass
class RegistryFields:
    """Validated registry attributes; None means "not given"."""

    name: str | None = None
    domain: str | None = None
    username: str | None = None
    password: str | None = None


async def create(env: Env, ctx: RequestContext, fields: RegistryFields) -> RegistryRow:
    """Store a registry for the caller's project, its password sealed."""
    env.enforce(ctx, "registry:create")
    if not ctx.project_id:
        raise errors.Forbidden("A project-scoped token is needed to create registries.")
    if not fields.domain:
        raise errors.Invalid("Invalid input for field 'domain': a registry domain is required.")
    await address_check.check_registry(env, ctx, fields.domain)
    row = RegistryRow(
        uuid=new_uuid(),
        project_id=ctx.project_id,
        user_id=ctx.user_id,
        name=fields.name,
        domain=fields.domain,
        username=fields.username,
        password_encrypted=env.secrets.seal(fields.password) if fields.password else None,
        created_at=utcnow(),
    )
    async with env.db.transaction() as session:
        await quotas.cap_records(
            env, session, ctx.project_id, RegistryRow, "max_registries_per_project", "registries"
        )
        session.add(row)
    return row


async def list_registries(
    env: Env,
    ctx: RequestContext,
    *,
    all_projects: bool,
    filters: dict[str, Any],
    paging: Paging = Paging(),
) -> tuple[Sequence[RegistryRow], int]:
    """A page of the caller's registries (every project's with ``all_projects``)."""
    env.enforce(ctx, "registry:get_all")
    scope = list_scope(env, ctx, all_projects, "registry:get_all_all_projects")
    query = PageQuery.of(repo.REGISTRY_SORT_KEYS, env.settings.max_limit, paging)
    async with env.db.read() as session:
        rows = await repo.list_registries(session, scope, query, filters=filters)
    return rows, query.limit


async def get(env: Env, ctx: RequestContext, ident: str) -> RegistryRow:
    """The registry ``ident`` (UUID or name) if the caller may see it."""
    async with env.db.read() as session:
        row = await repo.get_registry(session, lookup_scope(env, ctx), ident)
    env.enforce(ctx, "registry:get_one", row.project_id)
    return row


async def update(env: Env, ctx: RequestContext, ident: str, fields: RegistryFields) -> RegistryRow:
    """Change any of name, domain, username, password (the new password sealed)."""
    if fields.domain is not None:  # before the transaction: it may wait for DNS
        await address_check.check_registry(env, ctx, fields.domain)
    async with env.db.transaction() as session:
        row = await repo.get_registry(session, lookup_scope(env, ctx), ident, for_update=True)
        env.enforce(ctx, "registry:update", row.project_id)
        if fields.name is not None:
            row.name = fields.name
        if fields.domain is not None:
            row.domain = fields.domain
        if fields.username is not None:
            row.username = fields.username
        if fields.password is not None:
            row.password_encrypted = env.secrets.seal(fields.password) if fields.password else None
        row.updated_at = utcnow()
    return row


async def delete(env: Env, ctx: RequestContext, ident: str) -> None:
    """Forget the registry; containers that named it pull without its credentials."""
    async with env.db.transaction() as session:
        row = await repo.get_registry(session, lookup_scope(env, ctx), ident, for_update=True)
        env.enforce(ctx, "registry:delete", row.project_id)
        await session.delete(row)


async def resolve_for_project(session: Session, project_id: str, ident: str) -> RegistryRow:
    """The registry ``ident`` of ``project_id``; RegistryNotFound for any other project's."""
    return await repo.get_registry(session, Scope(project_id), ident)


def auth_for(env: Env, row: RegistryRow) -> RegistryAuth | None:
    """The decrypted credentials of ``row`` for one pull (None when it has none)."""
    if not row.username:
        return None
    password = env.secrets.open(row.password_encrypted) if row.password_encrypted else ""
    return RegistryAuth(registry=_host(row.domain), username=row.username, password=password)


def qualify(image: str, row: RegistryRow) -> str:
    """``image`` as pulled from the registry: prefixed with its domain unless already."""
    return with_registry(image, _host(row.domain))


def _host(domain: str) -> str:
    return domain.strip().removeprefix("https://").removeprefix("http://").rstrip("/")
