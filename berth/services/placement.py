"""Placement with claims: choose a host and reserve its resources in one transaction."""

from __future__ import annotations

import asyncio
import datetime as dt
import random

from sqlalchemy import Update, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from berth.scheduler import Decision, HostState, Pipeline, PlacementRequest
from berth.store.base import utcnow
from berth.store.tables import ContainerRow, HostRow, ServiceRow

__all__ = ["AGENT_BINARY", "claim", "place", "reclaim", "release", "snapshot"]

AGENT_BINARY = "berth-agent"
# Every lost race means another placement won, so retries are bounded by the
# number of concurrent placements; a short jittered pause spreads them out.
_MAX_ATTEMPTS = 32


async def snapshot(session: AsyncSession, service_down_time: float) -> list[HostState]:
    """Every registered host with its service state, as the scheduler sees it now."""
    rows = (
        await session.execute(
            select(HostRow, ServiceRow)
            .join(
                ServiceRow,
                (ServiceRow.host == HostRow.hostname) & (ServiceRow.binary == AGENT_BINARY),
                isouter=True,
            )
            # A retry must see the hosts as they are now, not as this session
            # first loaded them (the identity map would hand back stale rows).
            .execution_options(populate_existing=True)
        )
    ).all()
    cutoff = utcnow() - dt.timedelta(seconds=service_down_time)
    projects = await _projects_by_host(session)
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
                enable_cpu_pinning=host.enable_cpu_pinning,
                pinned_cpus=frozenset(int(c) for c in host.pinned_cpus or []),
                projects=frozenset(projects.get(host.hostname, ())),
                images=frozenset(str(i) for i in host.images or []),
            )
        )
    return hosts


async def _projects_by_host(session: AsyncSession) -> dict[str, set[str]]:
    """Which projects have claimed resources on each host (for tenant exclusivity)."""
    stmt = (
        select(ContainerRow.host, ContainerRow.project_id)
        .where(ContainerRow.claimed.is_(True))
        .distinct()
    )
    found: dict[str, set[str]] = {}
    for host, project in (await session.execute(stmt)).all():
        if host:
            found.setdefault(host, set()).add(project)
    return found


async def _hosts_of(session: AsyncSession, project_id: str, value: object) -> frozenset[str]:
    """The hosts of the containers a same_host/different_host hint names (UUIDs or names)."""
    idents = value if isinstance(value, list) else str(value).split(",")
    names = [str(i).strip() for i in idents if str(i).strip()]
    if not names:
        return frozenset()
    stmt = select(ContainerRow.host).where(
        ContainerRow.project_id == project_id,
        (ContainerRow.uuid.in_(names)) | (ContainerRow.name.in_(names)),
        ContainerRow.host.is_not(None),
    )
    return frozenset(h for h in (await session.execute(stmt)).scalars().all() if h)


async def request_for(session: AsyncSession, row: ContainerRow) -> PlacementRequest:
    """The scheduler's view of ``row`` (affinity hints resolved to host names)."""
    hints = row.hints or {}
    return PlacementRequest(
        cpu=row.cpu,
        memory=row.memory or 0,
        disk=row.disk or 0,
        runtime=row.runtime,
        availability_zone=row.availability_zone,
        requested_host=row.requested_host,
        hints=tuple(sorted((str(k), str(v)) for k, v in hints.items())),
        cpu_policy=row.cpu_policy,
        project_id=row.project_id,
        image=row.image,
        same_host=await _hosts_of(session, row.project_id, hints.get("same_host", "")),
        different_host=await _hosts_of(session, row.project_id, hints.get("different_host", "")),
    )


async def claim(
    session: AsyncSession, row: ContainerRow, host: HostState, req: PlacementRequest
) -> bool:
    """Reserve ``row``'s resources on ``host`` if the host is unchanged since the snapshot.

    A dedicated request also takes the lowest free cores: they go into the
    container's cpuset and the host's pinned set in the same conditional update.
    """
    cores = host.free_cores()[: req.dedicated_cores] if req.dedicated_cores else []
    stmt = (
        update(HostRow)
        .where(HostRow.hostname == host.hostname, HostRow.generation == host.generation)
        .values(
            pinned_cpus=sorted(host.pinned_cpus | set(cores)),
            cpu_used=HostRow.cpu_used + row.cpu,
            mem_used=HostRow.mem_used + (row.memory or 0),
            disk_used=HostRow.disk_used + (row.disk or 0),
            total_containers=HostRow.total_containers + 1,
            generation=HostRow.generation + 1,
        )
    )
    if session.get_bind().dialect.name == "sqlite":
        # One writer at a time (Database's write lock): no race to lose.
        won = getattr(await session.execute(stmt), "rowcount", 0) == 1
    else:
        won = await _claim_in_savepoint(session, stmt)
    if not won:
        return False
    row.cpuset = cores or None
    return True


async def place(
    session: AsyncSession, pipeline: Pipeline, row: ContainerRow, service_down_time: float
) -> Decision:
    """Place ``row`` and claim its host; retried when another placement raced us."""
    decision = Decision(host=None)
    req = await request_for(session, row)
    for attempt in range(_MAX_ATTEMPTS):
        hosts = await snapshot(session, service_down_time)
        decision = pipeline.place(req, hosts)
        if decision.host is None:
            return decision
        if await claim(session, row, decision.host, req):
            row.host = decision.host.hostname
            row.claimed = True
            return decision
        await asyncio.sleep(random.uniform(0, 0.002 * (attempt + 1)))
    decision.host = None
    decision.rejections = {"*": "hosts changed too often while placing; try again"}
    return decision


async def release(session: AsyncSession, row: ContainerRow) -> None:
    """Return ``row``'s claimed resources to its host (idempotent)."""
    if not row.claimed or row.host is None:
        return
    if row.cpuset:
        await _unpin(session, row.host, set(row.cpuset))
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


class _Lost(Exception):
    """The host changed since the snapshot: undo the savepoint."""


async def _claim_in_savepoint(session: AsyncSession, stmt: Update) -> bool:
    # On PostgreSQL an UPDATE that waited for a concurrent claim and then no
    # longer matches still leaves the row locked until the transaction ends;
    # a retry on another host could then deadlock with a peer doing the
    # opposite. Rolling back to a savepoint releases that lock at once.
    try:
        async with session.begin_nested():
            if getattr(await session.execute(stmt), "rowcount", 0) != 1:
                raise _Lost
    except _Lost:
        return False
    return True


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


async def _unpin(session: AsyncSession, hostname: str, cores: set[int]) -> None:
    host = (
        await session.execute(select(HostRow).where(HostRow.hostname == hostname).with_for_update())
    ).scalar_one_or_none()
    if host is not None:
        host.pinned_cpus = [c for c in host.pinned_cpus or [] if c not in cores]
