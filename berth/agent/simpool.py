"""A simulated pool: many real agents in one asyncio process, over instant in-memory runtimes.

Each simulated host is a real ``Agent`` (the real loop, the real HTTP
``ControlClient``) over a runtime the caller makes (``berth sim-pool`` gives
``runtimes.fake.InstantDriver``: in memory, any image present, containers
created, started and removed at once). They share
one process, one event loop and one httpx connection pool, so a thousand hosts
fit on a small machine and what is measured is the control plane. Hosts are
named ``sim-<prefix>-<n>`` and register the capacity their runtime reports; several
processes (distinct ``first`` numbers or prefixes) spread a pool over cores.

What the pool says about itself (``PoolStats``): how many agents registered,
the calls of each kind they made and how many failed, and how many containers
the desired-state answers carried (the whole state on a resync, only what
changed otherwise) and how many of those answers were whole (``desired_full``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

import httpx

from berth.agent.client import ControlClient, ControlPlane, Since
from berth.agent.loop import Agent
from berth.config import Settings
from berth.domain.hostsync import DesiredHost, HostReport, InjectedFile, Observation
from berth.runtimes.base import RuntimeDriver

__all__ = [
    "PoolOptions",
    "PoolStats",
    "RuntimeFactory",
    "SimPool",
    "host_name",
    "print_stats",
    "run_until_cancelled",
]

log = logging.getLogger(__name__)

# Makes the runtime of one simulated host, given its name.
RuntimeFactory = Callable[[str], RuntimeDriver]


def host_name(prefix: str, n: int) -> str:
    """The name of simulated host number ``n``: ``sim-<prefix>-<n>``."""
    return f"sim-{prefix}-{n}"


@dataclass(slots=True)
class PoolStats:
    """What a pool's agents did, as counts since the pool started."""

    started: float = field(default_factory=time.monotonic)
    registered: set[str] = field(default_factory=set)
    calls: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    desired_containers: int = 0  # containers carried by all desired-state answers
    observations: int = 0  # observations sent in reports that were accepted

    def as_dict(self, held: dict[str, dict[str, str]]) -> dict[str, Any]:
        """A JSON-ready summary, with ``held``: {host: {uuid: state}} of the runtimes now."""
        return {
            "elapsed": round(time.monotonic() - self.started, 1),
            "registered": len(self.registered),
            "calls": dict(self.calls),
            "failures": dict(self.failures),
            "desired_containers": self.desired_containers,
            "observations": self.observations,
            "containers": sum(len(h) for h in held.values()),
            "running": sum(1 for h in held.values() for state in h.values() if state == "running"),
        }


class _Counted:
    """A ControlPlane that counts its calls into ``PoolStats`` and passes them on."""

    def __init__(self, inner: ControlPlane, stats: PoolStats) -> None:
        self._inner, self._stats = inner, stats

    async def _count(self, kind: str, call: Any) -> Any:
        self._stats.calls[kind] += 1
        try:
            return await call
        except Exception:
            self._stats.failures[kind] += 1
            raise

    async def register(self, report: HostReport) -> None:
        await self._count("register", self._inner.register(report))
        self._stats.registered.add(report.hostname)

    async def heartbeat(self, hostname: str) -> None:
        await self._count("heartbeat", self._inner.heartbeat(hostname))

    async def desired(
        self, hostname: str, generation: int, wait: float, since: Since = None
    ) -> DesiredHost:
        host: DesiredHost = await self._count(
            "desired", self._inner.desired(hostname, generation, wait, since)
        )
        self._stats.desired_containers += len(host.containers)
        if host.base is None:
            self._stats.calls["desired_full"] += 1
        return host

    async def report(self, hostname: str, observations: list[Observation]) -> None:
        await self._count("report", self._inner.report(hostname, observations))
        self._stats.observations += len(observations)

    async def files(self, hostname: str, uuid: str) -> list[InjectedFile]:
        found: list[InjectedFile] = await self._count("files", self._inner.files(hostname, uuid))
        return found

    def glance_data(self, hostname: str, uuid: str) -> AsyncIterator[bytes]:
        return self._inner.glance_data(hostname, uuid)


@dataclass(frozen=True, slots=True)
class PoolOptions:
    """How many agents, named how, talking to which control plane.

    ``ramp``: seconds over which the agents start, evenly (a real pool's
    agents do not all start, and so heartbeat, in the same instant).
    ``token_per_agent``: each agent logs in itself (one password check each)
    instead of the process's agents sharing the service token.
    """

    control_url: str
    password: str
    agents: int = 100
    prefix: str = "p"
    first: int = 0
    ramp: float = 10.0
    token_per_agent: bool = False
    connections: int | None = None  # the shared pool's size; default 2 per agent + 16


class SimPool:
    """``options.agents`` simulated hosts; ``run`` runs them until cancelled."""

    def __init__(self, settings: Settings, options: PoolOptions, runtime: RuntimeFactory) -> None:
        self.options = options
        self.stats = PoolStats()
        self.hostnames = [
            host_name(options.prefix, n)
            for n in range(options.first, options.first + options.agents)
        ]
        self.runtimes = {h: runtime(h) for h in self.hostnames}
        # Nothing listens there: the API's calls to an agent (logs, exec) fail fast.
        self._settings = {
            h: settings.model_copy(update={"agent_host": h, "agent_url": "http://127.0.0.1:9"})
            for h in self.hostnames
        }

    async def inventory(self) -> dict[str, dict[str, tuple[str, str]]]:
        """{hostname: {uuid: (runtime id, state)}} of every container each runtime holds."""
        return {
            h: {c.uuid: (c.runtime_id, c.state) for c in await r.list_managed() if c.uuid}
            for h, r in self.runtimes.items()
        }

    async def summary(self) -> dict[str, Any]:
        """``PoolStats.as_dict`` of this pool."""
        held = await self.inventory()
        return self.stats.as_dict({h: {u: s for u, (_, s) in c.items()} for h, c in held.items()})

    async def run(self, on_stats: Callable[[dict[str, Any]], None] | None = None) -> None:
        """Start every agent (spread over ``ramp`` s) and run them until cancelled.

        ``on_stats`` gets ``summary()`` every few seconds.
        """
        o = self.options
        size = o.connections or 2 * o.agents + 16
        limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
        async with httpx.AsyncClient(base_url=o.control_url, limits=limits, timeout=90.0) as http:
            shared = ControlClient(http, password=o.password)
            async with asyncio.TaskGroup() as tasks:
                for i, hostname in enumerate(self.hostnames):
                    client = (
                        ControlClient(http, password=o.password) if o.token_per_agent else shared
                    )
                    delay = o.ramp * i / max(1, o.agents)
                    tasks.create_task(self._agent(hostname, client, delay), name=hostname)
                if on_stats is not None:
                    tasks.create_task(self._report_stats(on_stats))

    async def _agent(self, hostname: str, control: ControlPlane, delay: float) -> None:
        await asyncio.sleep(delay)
        agent = Agent(
            self._settings[hostname], _Counted(control, self.stats), self.runtimes[hostname]
        )
        await agent.run()

    async def _report_stats(self, on_stats: Callable[[dict[str, Any]], None]) -> None:
        while True:
            await asyncio.sleep(2.0)
            on_stats(await self.summary())


def print_stats(out: TextIO) -> Callable[[dict[str, Any]], None]:
    """An ``on_stats`` that writes each summary as one JSON line to ``out``."""

    def write(summary: dict[str, Any]) -> None:
        out.write(json.dumps(summary) + "\n")
        out.flush()

    return write


async def run_until_cancelled(pool: SimPool, out: TextIO | None) -> None:
    """Run ``pool``, writing its stats to ``out`` if given; cancellation ends it quietly."""
    with contextlib.suppress(asyncio.CancelledError):
        await pool.run(print_stats(out) if out is not None else None)
