"""Placement with claims: choose a host and reserve its resources in one transaction.

The hosts come from the process's ``HostCache`` (``env.host_cache``): the
pipeline runs over the cached snapshot, the claim is a conditional update on
the chosen host's generation, and a claim that loses re-reads that host and
tries again. A "no valid host" answer is only ever given after every host was
checked during this placement, so a stale cache can cost a retry, never a
wrong error.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import cast

from sqlalchemy import Float, Integer, Table, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from berth.scheduler import Decision, HostState, Pipeline, PlacementRequest
from berth.services.hosts.cache import AGENT_BINARY, HostCache, read_hosts
from berth.store.tables import ContainerRow, HostRow

__all__ = ["AGENT_BINARY", "claim", "place", "reclaim", "release", "request_for", "snapshot"]

# Every lost race means another placement won, so retries are bounded by the
# number of concurrent placements; a short jittered pause spreads them out.
_MAX_ATTEMPTS = 32

_HOSTS = cast(Table, HostRow.__table__)
# The claim: one statement built once (Core, with bind parameters), so that a
# placement pays neither for building it nor for the ORM's session sync.
_CLAIM = (
    update(_HOSTS)
    .where(_HOSTS.c.hostname == bindparam("host"), _HOSTS.c.generation == bindparam("seen"))
    .values(
        pinned_cpus=bindparam("pinned", type_=_HOSTS.c.pinned_cpus.type),
        cpu_used=_HOSTS.c.cpu_used + bindparam("cpu", type_=Float()),
        mem_used=_HOSTS.c.mem_used + bindparam("memory", type_=Integer()),
        disk_used=_HOSTS.c.disk_used + bindparam("disk", type_=Integer()),
        total_containers=_HOSTS.c.total_containers + 1,
        generation=_HOSTS.c.generation + 1,
    )
)


async def snapshot(session: AsyncSession, service_down_time: float) -> list[HostState]:
    """Every registered host with its service state, as the scheduler sees it now (uncached)."""
    return (await read_hosts(session, service_down_time)).hosts


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
    session: AsyncSession,
    row: ContainerRow,
    host: HostState,
    req: PlacementRequest,
    cache: HostCache | None = None,
) -> bool:
    """Reserve ``row``'s resources on ``host`` if the host is unchanged since the snapshot.

    A dedicated request also takes the lowest free cores: they go into the
    container's cpuset and the host's pinned set in the same conditional update.
    A won claim is recorded in ``cache`` as the host's new state.
    """
    cores = host.free_cores()[: req.dedicated_cores] if req.dedicated_cores else []
    pinned = sorted(host.pinned_cpus | set(cores))
    params = {
        "host": host.hostname,
        "seen": host.generation,
        "pinned": pinned,
        "cpu": row.cpu,
        "memory": row.memory or 0,
        "disk": row.disk or 0,
    }
    if session.get_bind().dialect.name == "sqlite":
        # One writer at a time (Database's write lock): no race to lose.
        won = getattr(await session.execute(_CLAIM, params), "rowcount", 0) == 1
    else:
        won = await _claim_in_savepoint(session, params)
    if not won:
        return False
    row.cpuset = cores or None
    if cache is not None:
        cache.claimed(
            host,
            pinned_cpus=frozenset(pinned),
            cpu_used=host.cpu_used + row.cpu,
            mem_used=host.mem_used + (row.memory or 0),
            disk_used=host.disk_used + (row.disk or 0),
            total_containers=host.total_containers + 1,
            generation=host.generation + 1,
            projects=host.projects | {row.project_id},
        )
    return True


async def place(
    session: AsyncSession,
    pipeline: Pipeline,
    row: ContainerRow,
    service_down_time: float,
    cache: HostCache | None = None,
) -> Decision:
    """Place ``row`` and claim its host; retried when another placement raced us.

    Without ``cache`` every host is read for this placement alone.
    """
    cache = cache if cache is not None else HostCache(ttl=0)
    decision = Decision(host=None)
    req = await request_for(session, row)
    checked = False  # whether every host was checked during this placement
    for attempt in range(_MAX_ATTEMPTS):
        hosts, checked_now = await cache.hosts(session, service_down_time)
        checked = checked or checked_now
        decision = _decide(pipeline, req, hosts, cache)
        if decision.host is None:
            if checked:
                return decision
            await cache.check(session, service_down_time)  # never fail on a stale view
            checked = True
            continue
        if await claim(session, row, decision.host, req, cache):
            row.host = decision.host.hostname
            row.claimed = True
            return decision
        await cache.refresh(session, service_down_time, decision.host.hostname)
        if attempt:  # raced more than once: let the peers through
            await asyncio.sleep(random.uniform(0, 0.002 * attempt))
    decision.host = None
    decision.rejections = {"*": "hosts changed too often while placing; try again"}
    return decision


def _decide(
    pipeline: Pipeline, req: PlacementRequest, hosts: Sequence[HostState], cache: HostCache
) -> Decision:
    """The pipeline's choice; a requested host is tried alone first (no scan of all hosts)."""
    if req.requested_host is not None:
        only = cache.get(req.requested_host)
        if only is not None:
            decision = pipeline.place(req, [only])
            if decision.host is not None:
                return decision
    return pipeline.place(req, hosts)  # explains every host when nothing fits


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


async def _claim_in_savepoint(session: AsyncSession, params: dict[str, object]) -> bool:
    # On PostgreSQL an UPDATE that waited for a concurrent claim and then no
    # longer matches still leaves the row locked until the transaction ends;
    # a retry on another host could then deadlock with a peer doing the
    # opposite. Rolling back to a savepoint releases that lock at once.
    try:
        async with session.begin_nested():
            if getattr(await session.execute(_CLAIM, params), "rowcount", 0) != 1:
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
