"""Admin views of hosts and services: list, show, enable, disable, force down, delete."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence

from sqlalchemy import delete as sa_delete
from sqlalchemy import select

from berth import errors
from berth.domain.context import RequestContext
from berth.services.env import Env
from berth.services.hosts.returning import restore_returned
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

_UUID = re.compile(r"^[0-9a-fA-F-]{36}$")


def service_state(env: Env, svc: ServiceRow) -> str:
    """``up`` iff not forced down and heard from within service_down_time."""
    last = svc.last_seen_up or svc.updated_at or svc.created_at
    cutoff = utcnow() - dt.timedelta(seconds=env.settings.service_down_time)
    return "up" if not svc.forced_down and last is not None and last >= cutoff else "down"


async def list_hosts(env: Env, ctx: RequestContext) -> Sequence[HostRow]:
    env.enforce(ctx, "host:get_all")
    async with env.db.read() as session:
        return (await session.execute(select(HostRow).order_by(HostRow.hostname))).scalars().all()


async def get_host(env: Env, ctx: RequestContext, ident: str) -> HostRow:
    env.enforce(ctx, "host:get")
    column = HostRow.uuid if _UUID.match(ident) else HostRow.hostname
    async with env.db.read() as session:
        row = (await session.execute(select(HostRow).where(column == ident))).scalar_one_or_none()
    if row is None:
        raise errors.HostNotFound(f"Host {ident} could not be found.")
    return row


async def list_services(env: Env, ctx: RequestContext) -> Sequence[ServiceRow]:
    env.enforce(ctx, "zun-service:get_all")
    async with env.db.read() as session:
        return (await session.execute(select(ServiceRow).order_by(ServiceRow.id))).scalars().all()


async def set_service(
    env: Env, ctx: RequestContext, rule: str, host: str, binary: str, **values: object
) -> ServiceRow:
    """Enable, disable or force down one service."""
    env.enforce(ctx, rule)
    async with env.db.transaction() as session:
        svc = (
            await session.execute(
                select(ServiceRow).where(ServiceRow.host == host, ServiceRow.binary == binary)
            )
        ).scalar_one_or_none()
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
        result = await session.execute(
            sa_delete(ServiceRow).where(ServiceRow.host == host, ServiceRow.binary == binary)
        )
        if not getattr(result, "rowcount", 0):
            raise errors.ServiceNotFound(f"Service {binary} on host {host} could not be found.")
    await env.notifier.touch_host(host)


async def availability_zones(env: Env, ctx: RequestContext) -> list[str | None]:
    env.enforce(ctx, "availability_zones:get_all")
    async with env.db.read() as session:
        zones = (
            (await session.execute(select(ServiceRow.availability_zone).distinct())).scalars().all()
        )
    return sorted(zones, key=lambda z: z or "")
