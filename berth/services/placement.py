"""Placement with claims: choose a host and reserve its resources in one transaction."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from berth.scheduler import Decision, HostState, Pipeline, PlacementRequest
from berth.store.base import utcnow
from berth.store.tables import ContainerRow, HostRow, ServiceRow

__all__ = ["AGENT_BINARY", "claim", "place", "reclaim", "release", "snapshot"]

AGENT_BINARY = "berth-agent"
_MAX_ATTEMPTS = 5


async def snapshot(session: AsyncSession, service_down_time: float) -> list[HostState]:
    """Every registered host with its service state, as the scheduler sees it now."""
    rows = (
        await session.execute(
            select(HostRow, ServiceRow).join(
                ServiceRow,
                (ServiceRow.host == HostRow.hostname) & (ServiceRow.binary == AGENT_BINARY),
                isouter=True,
            )
        )
    ).all()
    cutoff = utcnow() - dt.timedelta(seconds=service_down_time)
    hosts = []
    for host, svc in rows:
        up = bool(svc and not svc.forced_down and svc.last_seen_up and svc.last_seen_up >= cutoff)
        hosts.append(
            HostState(
                hostname=host.hostname,
                cpus=host.cpus,
                cpu_used=host.cpu_used,
                mem_total=host.mem_total,
                mem_used=host.mem_used,
                disk_total=host.disk_total,
                disk_used=host.disk_used,
                runtimes=tuple(host.runtimes),
                labels=tuple(sorted((str(k), str(v)) for k, v in host.labels.items())),
                availability_zone=host.availability_zone,
                enabled=bool(svc and not svc.disabled),
                up=up,
                generation=host.generation,
                total_containers=host.total_containers,
            )
        )
    return hosts


def request_for(row: ContainerRow) -> PlacementRequest:
    return PlacementRequest(
        cpu=row.cpu,
        memory=row.memory or 0,
        disk=row.disk or 0,
        runtime=row.runtime,
        availability_zone=row.availability_zone,
        requested_host=row.requested_host,
        hints=tuple(sorted((str(k), str(v)) for k, v in (row.hints or {}).items())),
    )


async def claim(session: AsyncSession, row: ContainerRow, host: HostState) -> bool:
    """Reserve ``row``'s resources on ``host`` if the host is unchanged since the snapshot."""
    result = await session.execute(
        update(HostRow)
        .where(HostRow.hostname == host.hostname, HostRow.generation == host.generation)
        .values(
            cpu_used=HostRow.cpu_used + row.cpu,
            mem_used=HostRow.mem_used + (row.memory or 0),
            disk_used=HostRow.disk_used + (row.disk or 0),
            total_containers=HostRow.total_containers + 1,
            generation=HostRow.generation + 1,
        )
    )
    return bool(getattr(result, "rowcount", 0) == 1)


async def place(
    session: AsyncSession, pipeline: Pipeline, row: ContainerRow, service_down_time: float
) -> Decision:
    """Place ``row`` and claim its host; retried when another placement raced us."""
    decision = Decision(host=None)
    for _ in range(_MAX_ATTEMPTS):
        hosts = await snapshot(session, service_down_time)
        decision = pipeline.place(request_for(row), hosts)
        if decision.host is None:
            return decision
        if await claim(session, row, decision.host):
            row.host = decision.host.hostname
            row.claimed = True
            return decision
    decision.host = None
    decision.rejections = {"*": "hosts changed too often while placing; try again"}
    return decision


async def release(session: AsyncSession, row: ContainerRow) -> None:
    """Return ``row``'s claimed resources to its host (idempotent)."""
    if not row.claimed or row.host is None:
        return
    await session.execute(
        update(HostRow)
        .where(HostRow.hostname == row.host)
        .values(
            cpu_used=HostRow.cpu_used - row.cpu,
            mem_used=HostRow.mem_used - (row.memory or 0),
            disk_used=HostRow.disk_used - (row.disk or 0),
            total_containers=HostRow.total_containers - 1,
            generation=HostRow.generation + 1,
        )
    )
    row.claimed = False


async def reclaim(session: AsyncSession, row: ContainerRow) -> None:
    """Claim ``row``'s (new) resources again on the host it already runs on."""
    if row.host is None:
        return
    await session.execute(
        update(HostRow)
        .where(HostRow.hostname == row.host)
        .values(
            cpu_used=HostRow.cpu_used + row.cpu,
            mem_used=HostRow.mem_used + (row.memory or 0),
            disk_used=HostRow.disk_used + (row.disk or 0),
            total_containers=HostRow.total_containers + 1,
            generation=HostRow.generation + 1,
        )
    )
    row.claimed = True
