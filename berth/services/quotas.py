"""Quotas and quota classes: limits per project, usage from the project's containers."""

from __future__ import annotations

from typing import Any

from berth import errors
from berth.domain.context import RequestContext
from berth.services.env import Env
from berth.store import quotas as quota_repo
from berth.store.db import Session

__all__ = [
    "RESOURCES",
    "cap_records",
    "check_container",
    "class_limits",
    "default_limits",
    "defaults",
    "delete_project",
    "limits_of",
    "lock_usage",
    "project_limits",
    "project_usage",
    "update_class",
    "update_project",
]

RESOURCES = ("containers", "memory", "cpu", "disk")
DEFAULT_CLASS = "default"


def defaults(env: Env) -> dict[str, int]:
    """The configured default limits."""
    s = env.settings
    return {
        "containers": s.quota_containers,
        "memory": s.quota_memory,
        "cpu": s.quota_cpu,
        "disk": s.quota_disk,
    }


async def _class_limits(env: Env, session: Session, name: str) -> dict[str, int]:
    limits = defaults(env)
    limits.update(await quota_repo.class_limits(session, name))
    return limits


async def cap_records(
    env: Env,
    session: Session,
    project_id: str,
    table: Any,
    setting: str,
    what: str,
    *,
    locked: bool = True,
    hint: str = "delete one it no longer needs and try again",
) -> None:
    """``OverQuota`` when the project already keeps the most rows of ``table`` that the
    setting ``setting`` allows (records Zun and Magnum put under no quota: registries,
    cluster templates, images, networks, security groups, volumes). ``locked``: in the
    creating transaction, exact under
    concurrency; else a quick look before costly work, the locked check still to come."""
    bound = int(getattr(env.settings, setting))
    if not bound:
        return
    if locked:
        await lock_usage(session, project_id, table.__tablename__)
    present = await quota_repo.count_rows(session, table, project_id)
    if present >= bound:
        raise errors.OverQuota(
            f"Project {project_id} keeps {present} {what}, the most it may ({setting}): {hint}."
        )


async def limits_of(env: Env, session: Session, project_id: str) -> dict[str, int]:
    """A project's limits in ``session``: its class defaults, then its own values."""
    limits = defaults(env)
    by_class, own = await quota_repo.stored_limits(session, DEFAULT_CLASS, project_id)
    limits.update(by_class)
    limits.update(own)
    return limits


async def lock_usage(session: Session, project_id: str, resource: str) -> None:
    """Hold the project's ``resource`` usage still until ``session``'s transaction ends.

    Every quota-checked create calls this in its write transaction before it
    counts: without it two API processes each count N-1, each insert one, and
    the project ends at N+1. Call it first in the transaction, before any row
    lock, so every quota-checked write takes its locks in the same order. Taking
    it again in the same transaction is harmless.

    PostgreSQL: a transaction-scoped advisory lock on the (project, resource)
    pair, released at commit or rollback, so other projects never wait.
    SQLite has one writer at a time: a write that changes nothing takes the
    database's write lock (the count that follows then reads the newest data,
    and a second process's create waits until this one commits). Inside one
    process ``Database.transaction`` already serialises the writers.
    """
    await quota_repo.lock_usage(session, project_id, resource)


async def check_container(
    env: Env,
    session: Session,
    project_id: str,
    cpu: float,
    memory: int,
    disk: int,
    count: int = 1,
    limits: dict[str, int] | None = None,
    locked: bool = False,
) -> None:
    """Raise OverQuota if adding this much would exceed a project limit (-1 = unlimited).

    ``limits`` read beforehand (``limits_of``) keep the reads out of a
    write transaction; the usage is always read here, in the caller's
    transaction, after ``lock_usage`` (so it must be a write transaction).
    ``locked``: the caller took ``lock_usage`` for ``containers`` already in
    this transaction (one statement less).
    """
    if not locked:
        await lock_usage(session, project_id, "containers")
    if limits is None:
        limits = await limits_of(env, session, project_id)
    usage = await quota_repo.usage(session, project_id)
    asked = {"containers": count, "cpu": cpu, "memory": memory, "disk": disk}
    over = [
        r for r in RESOURCES if asked[r] > 0 and limits[r] >= 0 and usage[r] + asked[r] > limits[r]
    ]
    if over:
        detail = ", ".join(
            f"{r} (limit {limits[r]}, in use {usage[r]:g}, asked {asked[r]:g})" for r in over
        )
        raise errors.OverQuota(
            f"Quota exceeded for resources: {detail}. "
            "Delete containers or ask an admin to raise the quota."
        )


def _target(env: Env, ctx: RequestContext, rule: str, project_id: str) -> None:
    env.enforce(ctx, rule, project_id)


async def project_limits(env: Env, ctx: RequestContext, project_id: str) -> dict[str, int]:
    _target(env, ctx, "quota:get", project_id)
    async with env.db.read() as session:
        return await limits_of(env, session, project_id)


async def project_usage(
    env: Env, ctx: RequestContext, project_id: str
) -> dict[str, dict[str, float]]:
    """Limits with usage, as ``{"cpu": {"limit": 20, "in_use": 1.0}, ...}``."""
    _target(env, ctx, "quota:get", project_id)
    async with env.db.read() as session:
        limits = await limits_of(env, session, project_id)
        usage = await quota_repo.usage(session, project_id)
    return {r: {"limit": limits[r], "in_use": _num(usage[r])} for r in RESOURCES}


def _num(v: float) -> float:
    return int(v) if float(v).is_integer() else v


async def update_project(
    env: Env, ctx: RequestContext, project_id: str, values: dict[str, int]
) -> dict[str, int]:
    """Set some of a project's limits; returns all of them."""
    _target(env, ctx, "quota:update", project_id)
    async with env.db.transaction() as session:
        await quota_repo.set_project_limits(session, project_id, values)
        return await limits_of(env, session, project_id)


async def delete_project(env: Env, ctx: RequestContext, project_id: str) -> None:
    _target(env, ctx, "quota:delete", project_id)
    async with env.db.transaction() as session:
        await quota_repo.delete_project_limits(session, project_id)


async def default_limits(env: Env, ctx: RequestContext, project_id: str) -> dict[str, int]:
    _target(env, ctx, "quota:get_default", project_id)
    async with env.db.read() as session:
        return await _class_limits(env, session, DEFAULT_CLASS)


async def class_limits(env: Env, ctx: RequestContext, name: str) -> dict[str, int]:
    env.enforce(ctx, "quota_class:get")
    async with env.db.read() as session:
        return await _class_limits(env, session, name)


async def update_class(
    env: Env, ctx: RequestContext, name: str, values: dict[str, int]
) -> dict[str, int]:
    """Set some of a quota class's limits; returns all of them."""
    env.enforce(ctx, "quota_class:update")
    async with env.db.transaction() as session:
        await quota_repo.set_class_limits(session, name, values)
        return await _class_limits(env, session, name)
