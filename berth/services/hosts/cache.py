"""The scheduler's view of every host, read once and kept fresh by generation.

Reading and converting every host row for every placement costs time in
proportion to the number of hosts (tens of milliseconds at 10,000 hosts), so
each process keeps the snapshot and reads again only what changed. Every
change to a host row bumps its generation (claims, releases, registrations),
so comparing generations tells which rows to read again:

- a claim made here updates the cached host at once (its new generation too);
- a claim that loses its conditional update (the host's generation moved:
  another process claimed or released there) reads that one host again, and
  the placement tries again;
- a registration, or a service enabled, disabled, forced down or deleted,
  calls ``Notifier.touch_host``: every process (PostgreSQL NOTIFY) forgets
  that host and reads it again before its next placement;
- every ``ttl`` seconds, and before any "no valid host" answer, a *check*
  reads every host's generation and service state (one narrow query) and
  the full rows of the hosts that differ;
- heartbeats change no generation. A host is up if its last heartbeat as the
  cache saw it is recent enough, and a check runs before the first moment at
  which one of the cached up hosts would turn down: so the cache never calls
  a host up that the database calls down.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from berth.scheduler import HostState
from berth.store import hosts as repo
from berth.store.base import utcnow
from berth.store.db import Session
from berth.store.hosts import AGENT_BINARY

__all__ = ["AGENT_BINARY", "HostCache", "HostRead", "read_hosts"]

_NEVER = dt.datetime.max.replace(tzinfo=dt.UTC)


@dataclass(slots=True)
class HostRead:
    """Hosts as read now, and the earliest time one of the up ones would turn down."""

    hosts: list[HostState]
    down_at: dt.datetime


async def read_hosts(
    session: Session,
    service_down_time: float,
    hostnames: Iterable[str] | None = None,
    *,
    with_projects: bool = True,
) -> HostRead:
    """Registered hosts (all, or ``hostnames``) with their service state, as of now.

    ``with_projects`` also reads which projects hold claims on each host (the
    tenant-exclusive filter needs it; nothing else does).
    """
    names = None if hostnames is None else sorted(set(hostnames))
    rows = await repo.state_rows(session, names)
    projects = await repo.projects_by_host(session, names) if with_projects else {}
    now = utcnow()
    cutoff = now - dt.timedelta(seconds=service_down_time)
    down_at, hosts, grace = _NEVER, [], dt.timedelta(seconds=service_down_time)
    for (
        hostname, cpus, cpu_used, mem_total, mem_used, disk_total, disk_used, runtimes,
        labels, zone, generation, total, pinning, pinned, images, disk_quota,
        service_id, disabled, forced_down, seen,
    ) in rows:  # fmt: skip
        known = service_id is not None
        up = known and not forced_down and seen is not None and seen >= cutoff
        if up:
            down_at = min(down_at, seen + grace)
        hosts.append(
            HostState(
                hostname,
                cpus,
                cpu_used,
                mem_total,
                mem_used,
                disk_total,
                disk_used,
                runtimes=tuple(runtimes) if runtimes else (),
                labels=tuple(sorted((k, str(v)) for k, v in labels.items())) if labels else (),
                availability_zone=zone,
                enabled=known and not disabled,
                up=up,
                generation=generation,
                total_containers=total,
                enable_cpu_pinning=pinning,
                pinned_cpus=frozenset(pinned) if pinned else frozenset(),  # JSON: ints
                projects=frozenset(projects.get(hostname, ())),
                images=frozenset(images) if images else frozenset(),  # JSON: strings
                disk_quota_supported=bool(disk_quota),
            )
        )
    return HostRead(hosts, down_at)


class HostCache:
    """One process's snapshot of the hosts (see the module docstring for when it is read).

    ``ttl`` 0 checks every host for every placement (no caching to speak of).
    """

    def __init__(
        self,
        ttl: float = 5.0,
        *,
        with_projects: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.with_projects = with_projects
        self.reads = 0  # full reads so far (for tests and benchmarks)
        self.checks = 0  # checks of every host's generation and service state
        self._clock = clock
        self._hosts: list[HostState] = []
        self._index: dict[str, int] = {}
        self._checked: float | None = None
        self._down_at = _NEVER
        self._forgotten: set[str] = set()
        self._lock = asyncio.Lock()

    def forget(self, hostname: str) -> None:
        """Read ``hostname`` again before the next placement (it changed elsewhere)."""
        self._forgotten.add(hostname)

    def forget_all(self) -> None:
        """Read every host again before the next placement."""
        self._checked = None
        self._hosts, self._index = [], {}

    def get(self, hostname: str) -> HostState | None:
        """The cached state of ``hostname`` (None when unknown)."""
        i = self._index.get(hostname)
        return self._hosts[i] if i is not None else None

    def cached(self) -> Sequence[HostState]:
        """The hosts as cached now, without reading anything."""
        return self._hosts

    async def hosts(
        self, session: Session, service_down_time: float
    ) -> tuple[Sequence[HostState], bool]:
        """Every host, fresh enough to place on; True when this call checked them all."""
        async with self._lock:
            due = self._checked is None or self._clock() - self._checked >= self.ttl
            if due or utcnow() >= self._down_at:
                await self._check(session, service_down_time)
                return self._hosts, True
            if self._forgotten:
                await self._refresh(session, service_down_time, self._forgotten)
            return self._hosts, False

    async def check(self, session: Session, service_down_time: float) -> Sequence[HostState]:
        """Bring every host up to date now (before answering "no valid host", say)."""
        async with self._lock:
            await self._check(session, service_down_time)
            return self._hosts

    async def refresh(self, session: Session, service_down_time: float, hostname: str) -> None:
        """Read ``hostname`` again now (say, after a claim on it lost a race)."""
        async with self._lock:
            await self._refresh(session, service_down_time, {hostname})

    def claimed(self, host: HostState, **changes: object) -> None:
        """Record a claim this process made on ``host`` (its new usage and generation)."""
        i = self._index.get(host.hostname)
        if i is not None and self._hosts[i].generation == host.generation:
            self._hosts[i] = dataclasses.replace(host, **changes)  # type: ignore[arg-type]

    async def _check(self, session: Session, service_down_time: float) -> None:
        """Everything up to date: one narrow read of all, full rows of what changed.

        Every change to a host row bumps its generation (claims, releases,
        registrations), so a host whose generation and service state match
        the cached ones is unchanged; the first check reads every row.
        """
        started = self._clock()
        if self._checked is None:
            read = await read_hosts(session, service_down_time, with_projects=self.with_projects)
            self._hosts = read.hosts
            self._index = {h.hostname: i for i, h in enumerate(self._hosts)}
            self._down_at, self._checked = read.down_at, started
            self._forgotten.clear()
            self.reads += 1
            return
        cutoff = utcnow() - dt.timedelta(seconds=service_down_time)
        rows, oldest = await repo.check_rows(session, cutoff)
        changed = self._forgotten | (self._index.keys() - {r[0] for r in rows})
        get = self._index.get
        for name, generation, enabled, up in rows:
            i = get(name)
            if i is None:
                changed.add(name)
                continue
            h = self._hosts[i]
            if h.generation != generation or h.enabled != bool(enabled) or h.up != bool(up):
                changed.add(name)
        self._down_at = _NEVER
        await self._refresh(session, service_down_time, changed)
        if oldest is not None:
            self._down_at = min(self._down_at, oldest + dt.timedelta(seconds=service_down_time))
        self._checked = started
        self.checks += 1

    async def _refresh(self, session: Session, service_down_time: float, names: set[str]) -> None:
        names, self._forgotten = set(names), set()
        if self._checked is None or not names:
            return  # nothing cached yet: the next call reads everything anyway
        read = await read_hosts(session, service_down_time, names, with_projects=self.with_projects)
        self._down_at = min(self._down_at, read.down_at)
        found = {h.hostname: h for h in read.hosts}
        for name, host in found.items():
            i = self._index.get(name)
            if i is None:  # a new host
                self._index[name] = len(self._hosts)
                self._hosts.append(host)
            else:
                self._hosts[i] = host
        if any(name not in found and name in self._index for name in names):  # gone
            self._hosts = [h for h in self._hosts if h.hostname in found or h.hostname not in names]
            self._index = {h.hostname: i for i, h in enumerate(self._hosts)}
