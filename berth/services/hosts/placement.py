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
from collections import Counter
from collections.abc import Sequence

from berth import errors
from berth.scheduler import Decision, HostState, NetworkSpread, Pipeline, PlacementRequest
from berth.services.hosts.cache import AGENT_BINARY, HostCache, read_hosts
from berth.store import hosts as repo
from berth.store import networks as networks_repo
from berth.store.db import Session
from berth.store.scope import Scope
from berth.store.tables import ContainerRow, NetworkRow

__all__ = [
    "AGENT_BINARY",
    "SPREAD_NETWORK",
    "check_hints",
    "claim",
    "place",
    "reclaim",
    "release",
    "request_for",
    "snapshot",
]

# The scheduler hint that spreads a network's members over hosts (and zones).
SPREAD_NETWORK = "spread_network"

# Every lost race means another placement won, so retries are bounded by the
# number of concurrent placements; a short jittered pause spreads them out.
_MAX_ATTEMPTS = 32


async def snapshot(session: Session, service_down_time: float) -> list[HostState]:
    """Every registered host with its service state, as the scheduler sees it now (uncached)."""
    return (await read_hosts(session, service_down_time)).hosts


async def _hosts_of(session: Session, project_id: str, value: object) -> frozenset[str]:
    """The hosts of the containers a same_host/different_host hint names (UUIDs or names)."""
    idents = value if isinstance(value, list) else str(value).split(",")
    names = [str(i).strip() for i in idents if str(i).strip()]
    if not names:
        return frozenset()
    return await repo.hosts_of_containers(session, project_id, names)


async def _spread_network(session: Session, project_id: str, ident: object) -> NetworkRow:
    if not isinstance(ident, str) or not ident.strip():
        raise errors.Invalid(
            f"Invalid input for field 'hints': give {SPREAD_NETWORK}=<network name or uuid>."
        )
    try:
        return await networks_repo.get_network(session, Scope(project_id), ident.strip())
    except errors.NotFound:
        raise errors.Invalid(
            f"Invalid input for field 'hints': {SPREAD_NETWORK}: this project has no "
            f"network {ident.strip()}."
        ) from None


async def check_hints(session: Session, row: ContainerRow) -> None:
    """Invalid (400) when a hint that names a resource names none of the project's.

    Only ``spread_network`` so far (the affinity hints of Zun name containers
    that may come and go, and name none: no constraint).
    """
    hints = row.hints or {}
    if SPREAD_NETWORK in hints:
        await _spread_network(session, row.project_id, hints[SPREAD_NETWORK])


async def _spread_of(session: Session, row: ContainerRow) -> NetworkSpread | None:
    """Where the ``spread_network`` hint's network has members now (None: no hint).

    The hint was checked when the container was admitted; a network gone since
    (a later evacuation) spreads nothing.
    """
    ident = (row.hints or {}).get(SPREAD_NETWORK)
    if ident is None:
        return None
    try:
        net = await _spread_network(session, row.project_id, ident)
    except errors.Invalid:
        return None
    placed = await networks_repo.network_placement(session, net)
    hosts = Counter(host for host, _ in placed)
    zones = Counter(zone for _, zone in placed)
    return NetworkSpread(net.name, tuple(sorted(hosts.items())), tuple(sorted(zones.items())))


async def request_for(session: Session, row: ContainerRow) -> PlacementRequest:
    """The scheduler's view of ``row`` (affinity hints resolved to host names, the
    ``spread_network`` hint to where the network's members run)."""
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
        spread=await _spread_of(session, row),
    )


async def claim(
    session: Session,
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
    won = await repo.claim(
        session,
        host=host.hostname,
        seen=host.generation,
        pinned=pinned,
        cpu=row.cpu,
        memory=row.memory or 0,
        disk=row.disk or 0,
    )
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
    session: Session,
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


async def release(session: Session, row: ContainerRow) -> None:
    """Return ``row``'s claimed resources to its host (idempotent)."""
    if not row.claimed or row.host is None:
        return
    if row.cpuset:
        await repo.unpin(session, row.host, set(row.cpuset))
    await repo.release(session, row.host, row.cpu, row.memory or 0, row.disk or 0)
    row.claimed = False


async def reclaim(session: Session, row: ContainerRow) -> None:
    """Claim ``row``'s (new) resources again on the host it already runs on."""
    if row.host is None:
        return
    await repo.reclaim(session, row.host, row.cpu, row.memory or 0, row.disk or 0)
    row.claimed = True
