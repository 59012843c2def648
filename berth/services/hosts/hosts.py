"""Hosts and their agents: registration, desired state, observations (heartbeats.py: liveness)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from berth import errors
from berth.domain.context import RequestContext
from berth.domain.hostsync import (
    DesiredContainer,
    DesiredHost,
    HostReport,
    IngressRule,
    Observation,
    PendingOp,
    PublishedPort,
)
from berth.services import volumes
from berth.services.containers import capsules
from berth.services.containers import files as injected_files
from berth.services.containers.observations import apply_observation
from berth.services.env import Env
from berth.services.hosts.heartbeats import heard_from
from berth.services.hosts.placement import AGENT_BINARY
from berth.services.networks import networks, overlay, security_groups
from berth.store import desired_feed
from berth.store import hosts as repo
from berth.store import networks as networks_repo
from berth.store.base import new_uuid, utcnow
from berth.store.db import Session
from berth.store.tables import ContainerRow, HostRow, SecurityGroupRow, ServiceRow

__all__ = [
    "FEED_RETENTION",
    "agent_url",
    "desired_changes",
    "desired_for",
    "record_observations",
    "register",
    "trim_feed",
]

# How long the change feed keeps an entry: an agent further behind reads everything.
FEED_RETENTION = dt.timedelta(hours=1)


def _require_service(env: Env, ctx: RequestContext) -> None:
    env.enforce(ctx, "berth:internal")


async def register(env: Env, ctx: RequestContext, report: HostReport) -> HostRow:
    """Create or refresh a host and its agent service from an agent's report.

    The agent registers at start and again whenever its host's facts change
    (say, an image was pulled or removed); each registration bumps the host's
    generation and tells every process's scheduler to read the host again.
    """
    _require_service(env, ctx)
    now = utcnow()
    async with env.db.transaction() as session:
        host = await repo.by_hostname(session, report.hostname)
        if host is None:
            host = HostRow(
                uuid=new_uuid(),
                hostname=report.hostname,
                created_at=now,
                generation=0,
                cpu_used=0.0,
                mem_used=0,
                disk_used=0,
                total_containers=0,
            )
            session.add(host)
        for name in (
            "cpus",
            "mem_total",
            "disk_total",
            "runtimes",
            "agent_url",
            "labels",
            "availability_zone",
            "architecture",
            "os_type",
            "os",
            "kernel_version",
            "enable_cpu_pinning",
            "disk_quota_supported",
            "underlay_ip",
        ):
            setattr(host, name, getattr(report, name))
        host.images = sorted(set(report.images))
        host.updated_at = now
        host.generation += 1
        svc = await repo.agent_service(session, report.hostname)
        if svc is None:
            svc = ServiceRow(
                host=report.hostname,
                binary=AGENT_BINARY,
                created_at=now,
                report_count=0,
                disabled=False,
                forced_down=False,
            )
            session.add(svc)
        svc.availability_zone = report.availability_zone
        svc.last_seen_up = now
        svc.report_count += 1
        svc.updated_at = now
    env.liveness.confirm(report.hostname, now.timestamp())
    await env.notifier.touch_host(report.hostname)  # every scheduler reads it again
    return host


async def agent_url(env: Env, hostname: str) -> str | None:
    """Where the API reaches the agent of ``hostname``."""
    async with env.db.read() as session:
        host = await repo.by_hostname(session, hostname)
    if host is None:
        raise errors.HostUnavailable(f"Host {hostname} is not registered.")
    return host.agent_url


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _desired(
    row: ContainerRow, groups: dict[str, SecurityGroupRow] | None = None
) -> DesiredContainer:
    hc = row.healthcheck
    return DesiredContainer(
        uuid=row.uuid,
        name=row.name,
        project_id=row.project_id,
        image=row.image,
        desired_state=row.desired_state,  # type: ignore[arg-type]
        spec_version=row.spec_version,
        command=list(row.command or []),
        entrypoint=row.entrypoint,
        cpu=row.cpu,
        cpuset=row.cpuset,
        memory=row.memory,
        workdir=row.workdir,
        environment=dict(row.environment or {}),
        labels=dict(row.labels or {}),
        hostname=row.hostname,
        restart_policy=row.restart_policy,
        auto_remove=row.auto_remove,
        auto_heal=row.auto_heal,
        healthcheck=hc or None,
        interactive=row.interactive,
        tty=row.tty,
        image_pull_policy=row.image_pull_policy,
        runtime=row.runtime,
        privileged=row.privileged,
        node_profile=row.node_profile,
        pending_ops=[
            PendingOp(id=o["id"], op=o["op"], args=o.get("args", {})) for o in row.pending_ops or []
        ],
        stop_timeout=row.stop_timeout,
        desired_since=_iso(row.desired_since),
        applied_spec_version=row.observed_spec_version,
        runtime_id=row.runtime_id,
        held=row.held,
        volumes=volumes.desired_mounts(row),
        files=injected_files.desired_files(row),
        network_container=_sandbox_of(row),
        networks=networks.refs(row),
        no_network=networks.detached_from_all(row),
        security_groups=list(row.security_groups or []),
        ingress=_ingress(row, groups or {}),
        published_ports=[
            PublishedPort(int(key.split("/")[0]), key.split("/")[1])
            for key in security_groups.parse_exposed_ports(row.exposed_ports)
        ],
    )


def _ingress(row: ContainerRow, groups: dict[str, SecurityGroupRow]) -> list[IngressRule] | None:
    """What the container's groups let in; None (no filtering) for a container without groups."""
    if not row.security_groups:
        return None
    return security_groups.ingress([groups[g] for g in row.security_groups if g in groups])


def _sandbox_of(row: ContainerRow) -> str | None:
    """The sandbox whose network a capsule member joins: it has the capsule's uuid."""
    if row.capsule_id is None or row.container_type == "sandbox":
        return None
    return row.capsule_id


async def _groups_of(
    session: Session, rows: Sequence[ContainerRow]
) -> dict[str, SecurityGroupRow]:
    """The security groups ``rows`` are members of, by uuid (for their ingress)."""
    wanted = {g for r in rows for g in r.security_groups or []}
    return await networks_repo.groups_by_uuid(session, wanted)


def _poll_wait(env: Env, wait: float) -> float:
    """How long a long poll may wait: at most 60 s, and a third of ``service_down_time``.

    A poll's start is what tells that its agent is alive (a poll still open
    proves nothing: its host may have lost power), so an agent that only
    polls must start one well within the down time, whatever it asked.
    """
    return min(wait, 60.0, env.settings.service_down_time / 3)


async def desired_for(
    env: Env, ctx: RequestContext, hostname: str, generation: int | None, wait: float
) -> DesiredHost:
    """Everything assigned to ``hostname``; long-polls while nothing changed.

    The call says the host's agent is alive (``heartbeats.heard_from``).
    """
    _require_service(env, ctx)
    await heard_from(env, hostname)
    seen = env.notifier.generation(hostname)
    if generation is not None and generation == seen and wait > 0:
        seen = await env.notifier.wait(hostname, seen, _poll_wait(env, wait))
    async with env.db.read() as session:
        rows: Sequence[ContainerRow] = await repo.containers_on(session, hostname)
        groups = await _groups_of(session, rows)
    if not overlay.enabled(env):
        return DesiredHost(
            hostname=hostname, generation=seen, containers=[_desired(r, groups) for r in rows]
        )
    plan = await overlay.plan_for(env, hostname, rows)
    return DesiredHost(
        hostname=hostname,
        generation=seen,
        containers=[overlay.placed(_desired(r, groups), plan) for r in rows],
        remote_members=plan.remote,
    )


async def desired_changes(
    env: Env,
    ctx: RequestContext,
    hostname: str,
    since: desired_feed.Head | None,
    generation: int | None,
    wait: float,
) -> DesiredHost:
    """What changed on ``hostname`` since the agent's ``since`` (epoch, revision).

    Long-polls while the agent is current. Everything (``base`` None) when the
    agent has nothing yet, another epoch, a revision the feed cannot account
    for (trimmed, ahead of it) or a host-wide change is in between. With the
    overlay driver every answer is the full-state protocol's (``generation``):
    a host's remote members change with other hosts' containers, which its
    feed does not record.
    """
    _require_service(env, ctx)
    if overlay.enabled(env):
        return await desired_for(env, ctx, hostname, generation, wait)
    await heard_from(env, hostname)
    seen = env.notifier.generation(hostname)  # before the read: a change after it wakes us
    async with env.db.read() as session:
        now = await desired_feed.head(session, hostname)
    if now is None:
        raise errors.HostNotFound(f"Host {hostname} is not registered; restart its agent.")
    if since == now and wait > 0:
        woken = await env.notifier.wait(hostname, seen, _poll_wait(env, wait))
        if woken == seen:
            # Nothing touched the host since the read, and a change touches it once
            # committed: the read still holds (an idle agent's poll ends here). Were
            # a change left untold (a notification between processes lost), the
            # agent's next poll, sent at once, reads it.
            return DesiredHost(hostname, seen, epoch=now[0], revision=now[1], base=now[1])
        seen = woken
        async with env.db.read() as session:
            now = await desired_feed.head(session, hostname) or now
    epoch, revision = now
    if since is None or since[0] != epoch or since[1] > revision:
        return await _everything(env, hostname, seen, now)
    if since[1] == revision:
        return DesiredHost(hostname, seen, epoch=epoch, revision=revision, base=revision)
    async with env.db.read() as session:
        changed = await desired_feed.changes(session, hostname, since[1], revision)
        if changed is None:
            rows = None
        else:
            rows = await repo.containers_on_of(session, hostname, changed)
            groups = await _groups_of(session, rows)
    if changed is None or rows is None:
        return await _everything(env, hostname, seen, now)
    return DesiredHost(
        hostname,
        seen,
        containers=[_desired(r, groups) for r in rows],
        epoch=epoch,
        revision=revision,
        base=since[1],
        removed=sorted(changed - {r.uuid for r in rows}),
    )


async def _everything(env: Env, hostname: str, seen: int, now: desired_feed.Head) -> DesiredHost:
    """The whole desired state, as of revision ``now`` or later (read after it)."""
    async with env.db.read() as session:
        rows = await repo.containers_on(session, hostname)
        groups = await _groups_of(session, rows)
    return DesiredHost(
        hostname,
        seen,
        containers=[_desired(r, groups) for r in rows],
        epoch=now[0],
        revision=now[1],
    )


async def trim_feed(env: Env) -> int:
    """Drop change-feed entries older than ``FEED_RETENTION`` (a worker job)."""
    async with env.db.transaction() as session:
        return await desired_feed.trim(session, utcnow() - FEED_RETENTION)


async def record_observations(
    env: Env, ctx: RequestContext, hostname: str, observations: list[Observation]
) -> None:
    """Fold what the agent saw into each container's status, finishing actions.

    The call says the host's agent is alive (``heartbeats.heard_from``).
    """
    _require_service(env, ctx)
    await heard_from(env, hostname)
    touched = released = False
    moved: set[str] = set()
    async with env.db.transaction() as session:
        # Each row is locked as it is read: in one order, so that two reports of the
        # same host (a retry overtaking its first try) cannot wait on each other.
        for obs in sorted(observations, key=lambda o: o.uuid):
            row = await repo.container_on(session, obs.uuid, hostname)
            if row is not None:
                if overlay.enabled(env) and await overlay.observed(session, row, obs):
                    moved.update(overlay.networks_of(row))  # the other hosts must learn it
                claimed = row.claimed
                capsule = row.capsule_id
                touched = await apply_observation(session, row, obs) or touched
                released = released or (claimed and not row.claimed)
                if capsule is not None:  # a capsule member: the capsule may take a step
                    capsules.note_exit(row, obs)
                    touched = await capsules.advance(session, capsule) or touched
    if released:  # a deletion finished: this process's scheduler sees the room at once
        env.host_cache.forget(hostname)
    if touched:
        await env.notifier.touch(hostname)
    if moved:
        await overlay.touch_members(env, moved, but=hostname)
