"""Cluster quotas (Magnum ``/v1/quotas``) and the worker heartbeats behind ``/v1/mservices``.

Magnum has one quota resource, ``Cluster``: the number of clusters a project
may have (any status), checked at cluster create. A project without a row gets
``max_clusters_per_project`` from Settings. Writes and the list are for admins.
"""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Sequence
from typing import Any

from berth import errors
from berth.domain.context import RequestContext
from berth.services.env import Env
from berth.store import magnum_quotas as repo
from berth.store.base import utcnow
from berth.store.scope import Scope
from berth.store.tables import ClusterQuotaRow, ConductorRow

__all__ = [
    "CONDUCTOR_BINARY",
    "conductor_state",
    "create",
    "delete",
    "get",
    "heartbeat",
    "list_conductors",
    "list_quotas",
    "update",
]

RESOURCE = "Cluster"
CONDUCTOR_BINARY = "berth-worker"


def _resource(value: Any) -> str:
    if value != RESOURCE:
        raise errors.Invalid(
            f"Invalid input for field/attribute resource. Value: {value}. "
            f"The only quota resource is {RESOURCE}."
        )
    return RESOURCE


def _hard_limit(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise errors.Invalid(f"Invalid input for field/attribute hard_limit. Value: {value}.")
    try:
        limit = int(value)
    except ValueError:
        raise errors.Invalid(
            f"Invalid input for field/attribute hard_limit. Value: {value}."
        ) from None
    if limit < 0:
        raise errors.Invalid(f"Invalid input for field/attribute hard_limit. Value: {value}.")
    return limit


async def list_quotas(
    env: Env, ctx: RequestContext, all_tenants: bool
) -> Sequence[ClusterQuotaRow]:
    """Every project's quotas (admins with ``all_tenants``) or the caller project's."""
    env.enforce(ctx, "quota:get_all")
    # Not services.scopes.list_scope: Magnum widens the list for admins only, with no policy rule.
    scope = Scope(ctx.project_id, all_projects=all_tenants and ctx.is_admin)
    async with env.db.read() as session:
        return await repo.visible(session, scope)


async def get(env: Env, ctx: RequestContext, project_id: str, resource: str) -> dict[str, Any]:
    """A project's quota; the default limit (no id) when none was set."""
    env.enforce(ctx, "quota:get", project_id)
    _resource(resource)
    async with env.db.read() as session:
        row = await repo.get(session, project_id, RESOURCE)
    if row is None:
        return {
            "project_id": project_id,
            "resource": RESOURCE,
            "hard_limit": env.settings.max_clusters_per_project,
        }
    return view(row)


def view(row: ClusterQuotaRow) -> dict[str, Any]:
    """A Quota as Magnum renders it."""
    return {
        "id": row.id,
        "project_id": row.project_id,
        "resource": row.resource,
        "hard_limit": row.hard_limit,
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.updated_at),
    }


def _iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat(timespec="seconds") if value else None


async def create(env: Env, ctx: RequestContext, body: Any) -> ClusterQuotaRow:
    """Set a project's cluster quota (the project must exist in the built-in identity);
    409 when one is set."""
    env.enforce(ctx, "quota:create")
    if not isinstance(body, dict):
        raise errors.Invalid("The request body must be a JSON object.")
    unknown = sorted(set(body) - {"project_id", "resource", "hard_limit"})
    if unknown:
        raise errors.Invalid(f"Unknown attribute for argument quota: {unknown[0]}")
    project_id = body.get("project_id")
    if not isinstance(project_id, str) or not project_id:
        raise errors.Invalid("Mandatory field missing: project_id")
    _resource(body.get("resource", RESOURCE))
    limit = _hard_limit(body.get("hard_limit", 1))
    async with env.db.transaction() as session:
        # With an external Keystone the projects are its own, not Berth's to look up
        # (Magnum does not check them either).
        builtin = env.settings.identity_backend == "builtin"
        if builtin and not await repo.project_exists(session, project_id):
            raise errors.NotFound(f"Project {project_id} could not be found.")
        if await repo.get(session, project_id, RESOURCE) is not None:
            raise errors.Conflict(
                f"Quota for project {project_id} already exists for resource {RESOURCE}."
            )
        row = ClusterQuotaRow(
            project_id=project_id, resource=RESOURCE, hard_limit=limit, created_at=utcnow()
        )
        session.add(row)
    return row


async def update(
    env: Env, ctx: RequestContext, project_id: str, resource: str, body: Any
) -> ClusterQuotaRow:
    """Change the hard limit (a plain object, not a JSON-Patch, as Magnum takes it)."""
    env.enforce(ctx, "quota:update", project_id)
    _resource(resource)
    if not isinstance(body, dict) or "hard_limit" not in body:
        raise errors.Invalid("Mandatory field missing: hard_limit")
    unknown = sorted(set(body) - {"project_id", "resource", "hard_limit"})
    if unknown:
        raise errors.Invalid(f"Unknown attribute for argument quota: {unknown[0]}")
    limit = _hard_limit(body["hard_limit"])
    async with env.db.transaction() as session:
        row = await repo.get(session, project_id, RESOURCE)
        if row is None:
            raise errors.QuotaNotFound(
                f"Quota could not be found: project {project_id}, resource {RESOURCE}."
            )
        row.hard_limit, row.updated_at = limit, utcnow()
    return row


async def delete(env: Env, ctx: RequestContext, project_id: str, resource: str) -> None:
    """Drop a project's quota: the default applies again."""
    env.enforce(ctx, "quota:delete", project_id)
    _resource(resource)
    async with env.db.transaction() as session:
        row = await repo.get(session, project_id, RESOURCE)
        if row is None:
            raise errors.QuotaNotFound(
                f"Quota could not be found: project {project_id}, resource {RESOURCE}."
            )
        await session.delete(row)


# -- the conductors (``/v1/mservices``): every process that runs the cluster worker


async def heartbeat(env: Env) -> int:
    """Record that this process's cluster worker is alive (a worker job); returns 0."""
    host = env.settings.agent_host or socket.gethostname()
    now = utcnow()
    async with env.db.transaction() as session:
        row = await repo.conductor(session, host, CONDUCTOR_BINARY)
        if row is None:
            session.add(
                ConductorRow(
                    host=host,
                    binary=CONDUCTOR_BINARY,
                    last_seen_up=now,
                    report_count=1,
                    created_at=now,
                )
            )
        else:
            row.last_seen_up, row.report_count, row.updated_at = now, row.report_count + 1, now
    return 0


def conductor_state(env: Env, row: ConductorRow) -> str:
    """``up`` iff not forced down and heard from within service_down_time."""
    cutoff = utcnow() - dt.timedelta(seconds=env.settings.service_down_time)
    last = row.last_seen_up
    return "up" if not row.forced_down and last is not None and last >= cutoff else "down"


async def list_conductors(env: Env, ctx: RequestContext) -> Sequence[ConductorRow]:
    """The worker processes (admins only, ``magnum-service:get_all``)."""
    env.enforce(ctx, "magnum-service:get_all")
    async with env.db.read() as session:
        return await repo.conductors(session)
