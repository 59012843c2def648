"""Admin views of hosts and services: list, show, enable, disable, force down, delete."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from berth import errors
from berth.domain.context import RequestContext
from berth.services.env import Env
from berth.services.hosts.returning import restore_returned
from berth.store import hosts as repo
from berth.store.base import utcnow
from berth.store.tables import HostRow, ServiceRow

__all__ = [
    "availability_zones",
    "delete_service",
    "get_host",
    "list_hosts",
    "list_services",
    "service_state",
    "set_service",
]


def service_state(env: Env, svc: ServiceRow) -> str:
    """``up`` iff not forced down and heard from within service_down_time."""
    last = svc.last_seen_up or svc.updated_at or svc.created_at
    cutoff = utcnow() - dt.timedelta(seconds=env.settings.service_down_time)
    return "up" if not svc.forced_down and last is not None and last >= cutoff else "down"


async def list_hosts(env: Env, ctx: RequestContext) -> Sequence[HostRow]:
    env.enforce(ctx, "host:get_all")
    async with env.db.read() as session:
        return await repo.list_hosts(session)


async def get_host(env: Env, ctx: RequestContext, ident: str) -> HostRow:
    env.enforce(ctx, "host:get")
    async with env.db.read() as session:
        row = await repo.find(session, ident)
    if row is None:
        raise errors.HostNotFound(f"Host {ident} could not be found.")
    return row


async def list_services(env: Env, ctx: RequestContext) -> Sequence[ServiceRow]:
    env.enforce(ctx, "zun-service:get_all")
    async with env.db.read() as session:
        return await repo.list_services(session)


async def set_service(
    env: Env, ctx: RequestContext, rule: str, host: str, binary: str, **values: object
) -> ServiceRow:
    """Enable, disable or force down one service."""
    env.enforce(ctx, rule)
    async with env.db.transaction() as session:
        svc = await repo.get_service(session, host, binary)
        if svc is None:
            raise errors.ServiceNotFound(f"Service {binary} on host {host} could not be found.")
        lifted = svc.forced_down and values.get("forced_down") is False
        for key, value in values.items():
            setattr(svc, key, value)
        svc.updated_at = utcnow()
        if lifted and service_state(env, svc) == "up":  # its agent kept heartbeating
            await restore_returned(session, host)
    await env.notifier.touch_host(host)  # schedulers in every process see it at once
    return svc


async def delete_service(env: Env, ctx: RequestContext, host: str, binary: str) -> None:
    env.enforce(ctx, "zun-service:delete")
    async with env.db.transaction() as session:
        if not await repo.delete_service(session, host, binary):
            raise errors.ServiceNotFound(f"Service {binary} on host {host} could not be found.")
    await env.notifier.touch_host(host)


async def availability_zones(env: Env, ctx: RequestContext) -> list[str | None]:
    env.enforce(ctx, "availability_zones:get_all")
    async with env.db.read() as session:
        zones = await repo.availability_zones(session)
    return sorted(zones, key=lambda z: z or "")
