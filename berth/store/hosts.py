"""Host, service (agent) and claim queries: the control plane's own rows, no tenancy.

Hosts and services belong to the operator, so nothing here takes a Scope; the
services layer checks the admin policy before it calls them. The claim is the
scheduler's hot path (see bench/): one Core statement built once, executed
with bind parameters, so a placement pays neither for building it nor for the
ORM's session sync.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from typing import Any, cast

from sqlalchemy import Float, Integer, Row, Table, bindparam, case, func, or_, select, update
from sqlalchemy import delete as sa_delete
from sqlalchemy.ext.asyncio import AsyncSession

from berth.domain.containers import Status
from berth.store.tables import ContainerRow, HostRow, ServiceRow

__all__ = [
    "AGENT_BINARY",
    "agent_service",
    "agent_urls",
    "availability_zones",
    "beat",
    "beat_many",
    "by_hostname",
    "by_uuid_or_hostname",
    "check_rows",
    "claim",
    "container_on",
    "containers_on",
    "containers_on_of",
    "delete_service",
    "find",
    "first_down",
    "get_service",
    "hosts_of_containers",
    "list_hosts",
    "list_services",
    "lost_service",
    "lost_services",
    "mark_unknown",
    "projects_by_host",
    "reclaim",
    "release",
    "state_rows",
    "unknown_on",
    "unpin",
    "unplaced_on",
]

AGENT_BINARY = "berth-agent"

_UUID = re.compile(r"^[0-9a-fA-F-]{36}$")

# What the scheduler reads of a host (and of its agent's service), in this order.
_COLUMNS = (
    HostRow.hostname,
    HostRow.cpus,
    HostRow.cpu_used,
    HostRow.mem_total,
    HostRow.mem_used,
    HostRow.disk_total,
    HostRow.disk_used,
    HostRow.runtimes,
    HostRow.labels,
    HostRow.availability_zone,
    HostRow.generation,
    HostRow.total_containers,
    HostRow.enable_cpu_pinning,
    HostRow.pinned_cpus,
    HostRow.images,
    HostRow.disk_quota_supported,
    ServiceRow.id,
    ServiceRow.disabled,
    ServiceRow.forced_down,
    ServiceRow.last_seen_up,
)

_SERVICE = (ServiceRow.host == HostRow.hostname) & (ServiceRow.binary == AGENT_BINARY)

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


# -- hosts and services ------------------------------------------------------


async def by_hostname(session: AsyncSession, hostname: str) -> HostRow | None:
    """The host called ``hostname`` (None when not registered)."""
    return (
        await session.execute(select(HostRow).where(HostRow.hostname == hostname))
    ).scalar_one_or_none()


async def find(session: AsyncSession, ident: str) -> HostRow | None:
    """The host with UUID ``ident`` (36 characters of hex and dashes), else called ``ident``."""
    column = HostRow.uuid if _UUID.match(ident) else HostRow.hostname
    return (await session.execute(select(HostRow).where(column == ident))).scalar_one_or_none()


async def by_uuid_or_hostname(session: AsyncSession, ident: str) -> HostRow | None:
    """The host whose UUID or hostname is ``ident`` (None when there is none)."""
    stmt = select(HostRow).where((HostRow.uuid == ident) | (HostRow.hostname == ident))
    return (await session.execute(stmt)).scalars().first()


async def list_hosts(session: AsyncSession) -> Sequence[HostRow]:
    """Every host, by hostname."""
    return (await session.execute(select(HostRow).order_by(HostRow.hostname))).scalars().all()


async def agent_urls(session: AsyncSession) -> Sequence[str | None]:
    """Where every registered agent listens."""
    return (await session.execute(select(HostRow.agent_url))).scalars().all()


async def get_service(session: AsyncSession, host: str, binary: str) -> ServiceRow | None:
    """The service ``binary`` of ``host`` (None when absent)."""
    return (
        await session.execute(
            select(ServiceRow).where(ServiceRow.host == host, ServiceRow.binary == binary)
        )
    ).scalar_one_or_none()


async def agent_service(
    session: AsyncSession, hostname: str, *, lock: bool = False
) -> ServiceRow | None:
    """The agent's service row of ``hostname`` (None before its first registration).

    ``lock``: held (``FOR UPDATE``) until the transaction ends, so that the call
    ending an outage and the lost-hosts job (``lost_service``) take turns.
    """
    if not lock:
        return await get_service(session, hostname, AGENT_BINARY)
    stmt = (
        select(ServiceRow)
        .where(ServiceRow.host == hostname, ServiceRow.binary == AGENT_BINARY)
        .with_for_update()
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def beat(session: AsyncSession, hostname: str, now: dt.datetime, cutoff: dt.datetime) -> bool:
    """A heartbeat in one UPDATE, if the agent's last one is not older than ``cutoff``.

    False (nothing written) for an agent unknown, or coming back from an
    outage: its heartbeat has more to do (``services.hosts.heartbeat``).
    """
    result = await session.execute(
        update(ServiceRow)
        .where(
            ServiceRow.host == hostname,
            ServiceRow.binary == AGENT_BINARY,
            ServiceRow.last_seen_up >= cutoff,
        )
        .values(last_seen_up=_latest(now), report_count=ServiceRow.report_count + 1)
        .execution_options(synchronize_session=False)
    )
    return getattr(result, "rowcount", 0) == 1


def _latest(at: dt.datetime) -> Any:
    """``last_seen_up`` moved to ``at``, never back (another API process may have written later)."""
    return case((ServiceRow.last_seen_up < at, at), else_=ServiceRow.last_seen_up)


async def beat_many(
    session: AsyncSession, hostnames: Sequence[str], at: dt.datetime, cutoff: dt.datetime
) -> set[str]:
    """Many agents heard from in one UPDATE: those of ``hostnames`` whose last heartbeat is
    not older than ``cutoff`` are seen at ``at`` (never earlier than they were); which ones.

    The agents left out are unknown, or coming back from an outage (as ``beat``).
    """
    result = await session.execute(
        update(ServiceRow)
        .where(
            ServiceRow.host.in_(hostnames),
            ServiceRow.binary == AGENT_BINARY,
            ServiceRow.last_seen_up >= cutoff,
        )
        .values(
            last_seen_up=_latest(at),
            report_count=ServiceRow.report_count + 1,
        )
        .returning(ServiceRow.host)
        .execution_options(synchronize_session=False)
    )
    return set(result.scalars().all())


async def list_services(session: AsyncSession) -> Sequence[ServiceRow]:
    """Every service, oldest first."""
    return (await session.execute(select(ServiceRow).order_by(ServiceRow.id))).scalars().all()


async def delete_service(session: AsyncSession, host: str, binary: str) -> bool:
    """Remove the service ``binary`` of ``host``; whether there was one."""
    result = await session.execute(
        sa_delete(ServiceRow).where(ServiceRow.host == host, ServiceRow.binary == binary)
    )
    return bool(getattr(result, "rowcount", 0))


async def availability_zones(session: AsyncSession) -> Sequence[str | None]:
    """The distinct zones of the services (unordered)."""
    return (await session.execute(select(ServiceRow.availability_zone).distinct())).scalars().all()


def _lost(cutoff: dt.datetime) -> Any:
    return or_(
        ServiceRow.forced_down.is_(True),
        ServiceRow.last_seen_up.is_(None),
        ServiceRow.last_seen_up < cutoff,
    )


async def lost_services(session: AsyncSession, cutoff: dt.datetime) -> Sequence[ServiceRow]:
    """The agents forced down, never heard from, or silent since before ``cutoff``."""
    stmt = select(ServiceRow).where(ServiceRow.binary == AGENT_BINARY, _lost(cutoff))
    return (await session.execute(stmt)).scalars().all()


async def lost_service(
    session: AsyncSession, hostname: str, cutoff: dt.datetime
) -> ServiceRow | None:
    """The agent service of ``hostname`` if it is still lost, locked (``FOR UPDATE``) until
    the transaction ends; None when it was heard from meanwhile.

    On PostgreSQL a call that ends the outage (it locks the same row first, see
    ``agent_service``) either commits before this reads the row (then it is not
    lost any more), or waits until the containers marked here are committed (then
    it gives them their status back). Without the lock, the job could mark them
    ``Unknown`` after that call had restored them: they stayed so for good.
    """
    stmt = (
        select(ServiceRow)
        .where(ServiceRow.host == hostname, ServiceRow.binary == AGENT_BINARY, _lost(cutoff))
        .with_for_update()
    )
    return (await session.execute(stmt)).scalar_one_or_none()


# -- the scheduler's reads -----------------------------------------------------


async def state_rows(
    session: AsyncSession, hostnames: Sequence[str] | None
) -> Sequence[Row[*tuple[Any, ...]]]:
    """The scheduler's columns of every host (or of ``hostnames``) with its agent's service.

    Each row: hostname, cpus, cpu_used, mem_total, mem_used, disk_total,
    disk_used, runtimes, labels, availability_zone, generation,
    total_containers, enable_cpu_pinning, pinned_cpus, images,
    disk_quota_supported, then the
    service's id, disabled, forced_down and last_seen_up (None without one).
    """
    stmt = select(*_COLUMNS).join(ServiceRow, _SERVICE, isouter=True)
    if hostnames is not None:
        stmt = stmt.where(HostRow.hostname.in_(hostnames))
    return (await session.execute(stmt)).all()


async def projects_by_host(
    session: AsyncSession, hostnames: Sequence[str] | None
) -> dict[str, set[str]]:
    """Which projects have claimed resources on each host (for tenant exclusivity)."""
    stmt = (
        select(ContainerRow.host, ContainerRow.project_id)
        .where(ContainerRow.claimed.is_(True))
        .distinct()
    )
    if hostnames is not None:
        stmt = stmt.where(ContainerRow.host.in_(hostnames))
    found: dict[str, set[str]] = {}
    for host, project in (await session.execute(stmt)).all():
        if host:
            found.setdefault(host, set()).add(project)
    return found


async def check_rows(
    session: AsyncSession, cutoff: dt.datetime
) -> tuple[Sequence[Row[str, int, bool, bool]], dt.datetime | None]:
    """Every host's (hostname, generation, enabled, up), and the oldest up heartbeat.

    The database computes the state, so no timestamp is parsed per row; the
    oldest heartbeat among the services up now tells when one turns down.
    """
    known = ServiceRow.id.is_not(None)
    enabled = known & ServiceRow.disabled.is_(False)
    up = known & ServiceRow.forced_down.is_(False) & (ServiceRow.last_seen_up >= cutoff)
    rows = (
        await session.execute(
            select(
                HostRow.hostname, HostRow.generation, enabled.label("enabled"), up.label("up")
            ).join(ServiceRow, _SERVICE, isouter=True)
        )
    ).all()
    return rows, await first_down(session, cutoff)


async def first_down(session: AsyncSession, cutoff: dt.datetime) -> dt.datetime | None:
    """The oldest heartbeat among the services that are up now."""
    stmt = select(func.min(ServiceRow.last_seen_up)).where(
        ServiceRow.binary == AGENT_BINARY,
        ServiceRow.forced_down.is_(False),
        ServiceRow.last_seen_up >= cutoff,
    )
    oldest: dt.datetime | None = (await session.execute(stmt)).scalar()
    return oldest


async def hosts_of_containers(
    session: AsyncSession, project_id: str, names: Sequence[str]
) -> frozenset[str]:
    """The hosts of the project's containers named (by UUID or name) in ``names``."""
    stmt = select(ContainerRow.host).where(
        ContainerRow.project_id == project_id,
        (ContainerRow.uuid.in_(names)) | (ContainerRow.name.in_(names)),
        ContainerRow.host.is_not(None),
    )
    return frozenset(h for h in (await session.execute(stmt)).scalars().all() if h)


# -- claims --------------------------------------------------------------------


async def claim(
    session: AsyncSession,
    *,
    host: str,
    seen: int,
    pinned: list[int],
    cpu: float,
    memory: int,
    disk: int,
) -> bool:
    """Add a claim to ``host`` if its generation is still ``seen``; whether it won."""
    params = {
        "host": host,
        "seen": seen,
        "pinned": pinned,
        "cpu": cpu,
        "memory": memory,
        "disk": disk,
    }
    if session.get_bind().dialect.name == "sqlite":
        # One writer at a time (Database's write lock): no race to lose.
        return getattr(await session.execute(_CLAIM, params), "rowcount", 0) == 1
    return await _claim_in_savepoint(session, params)


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


async def release(session: AsyncSession, hostname: str, cpu: float, memory: int, disk: int) -> None:
    """Return a claim's resources to ``hostname`` (its generation moves on)."""
    await session.execute(
        update(HostRow)
        .where(HostRow.hostname == hostname)
        .values(
            cpu_used=HostRow.cpu_used - cpu,
            mem_used=HostRow.mem_used - memory,
            disk_used=HostRow.disk_used - disk,
            total_containers=HostRow.total_containers - 1,
            generation=HostRow.generation + 1,
        )
    )


async def reclaim(session: AsyncSession, hostname: str, cpu: float, memory: int, disk: int) -> None:
    """Add a claim to ``hostname`` unconditionally (a container already running there)."""
    await session.execute(
        update(HostRow)
        .where(HostRow.hostname == hostname)
        .values(
            cpu_used=HostRow.cpu_used + cpu,
            mem_used=HostRow.mem_used + memory,
            disk_used=HostRow.disk_used + disk,
            total_containers=HostRow.total_containers + 1,
            generation=HostRow.generation + 1,
        )
    )


async def unpin(session: AsyncSession, hostname: str, cores: set[int]) -> None:
    """Take ``cores`` out of the host's pinned set (the host row locked meanwhile)."""
    host = (
        await session.execute(select(HostRow).where(HostRow.hostname == hostname).with_for_update())
    ).scalar_one_or_none()
    if host is not None:
        host.pinned_cpus = [c for c in host.pinned_cpus or [] if c not in cores]


# -- the containers of a host ----------------------------------------------------


async def containers_on(session: AsyncSession, hostname: str) -> Sequence[ContainerRow]:
    """Every container assigned to ``hostname``."""
    return (
        (await session.execute(select(ContainerRow).where(ContainerRow.host == hostname)))
        .scalars()
        .all()
    )


async def containers_on_of(
    session: AsyncSession, hostname: str, uuids: Iterable[str]
) -> Sequence[ContainerRow]:
    """Those of the containers ``uuids`` assigned to ``hostname``."""
    wanted = sorted(set(uuids))
    if not wanted:
        return []
    stmt = select(ContainerRow).where(ContainerRow.host == hostname, ContainerRow.uuid.in_(wanted))
    return (await session.execute(stmt)).scalars().all()


async def container_on(session: AsyncSession, uuid: str, hostname: str) -> ContainerRow | None:
    """The container ``uuid`` if it is assigned to ``hostname`` (an agent reports only its own),
    locked for the report's transaction.

    The report writes what it reads back (the ops still pending, the status for the
    desired state): without the lock a user's kill committed in between was dropped
    from ``pending_ops`` on PostgreSQL. The report updates the row anyway, so the lock
    is taken earlier, not in addition.
    """
    return (
        await session.execute(
            select(ContainerRow)
            .where(ContainerRow.uuid == uuid, ContainerRow.host == hostname)
            .with_for_update()
        )
    ).scalar_one_or_none()


async def unplaced_on(session: AsyncSession, hostname: str) -> Sequence[ContainerRow]:
    """The containers on ``hostname`` not being deleted (what an evacuation moves)."""
    stmt = select(ContainerRow).where(
        ContainerRow.host == hostname, ContainerRow.desired_state != "deleted"
    )
    return (await session.execute(stmt)).scalars().all()


async def unknown_on(session: AsyncSession, hostname: str) -> Sequence[ContainerRow]:
    """The containers that ``hostname``'s loss made ``Unknown`` (their reason names the host)."""
    stmt = select(ContainerRow).where(
        ContainerRow.host == hostname,
        ContainerRow.status == Status.UNKNOWN,
        ContainerRow.status_reason.startswith(f"Host {hostname} ", autoescape=True),
    )
    return (await session.execute(stmt)).scalars().all()


async def mark_unknown(
    session: AsyncSession,
    hostname: str,
    keep: Iterable[str],
    reason: str,
    now: dt.datetime,
) -> int:
    """Show ``Unknown`` with ``reason`` for the containers on ``hostname`` not in a ``keep``
    status; how many changed."""
    result = await session.execute(
        update(ContainerRow)
        .where(ContainerRow.host == hostname, ContainerRow.status.not_in(tuple(keep)))
        .values(status=Status.UNKNOWN, status_reason=reason, updated_at=now)
    )
    return int(getattr(result, "rowcount", 0) or 0)
