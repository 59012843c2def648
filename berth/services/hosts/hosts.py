"""Hosts and their agents: registration, heartbeats, desired state and observations."""

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
from berth.services.hosts.placement import AGENT_BINARY
from berth.services.hosts.returning import restore_returned
from berth.services.networks import networks, overlay, security_groups
from berth.store import hosts as repo
from berth.store import networks as networks_repo
from berth.store.base import new_uuid, utcnow
from berth.store.tables import ContainerRow, HostRow, SecurityGroupRow, ServiceRow

__all__ = [
    "agent_url",
    "desired_for",
    "heartbeat",
    "record_observations",
    "register",
]


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
    await env.notifier.touch_host(report.hostname)  # every scheduler reads it again
    return host


async def heartbeat(env: Env, ctx: RequestContext, hostname: str) -> None:
    """Record that the agent of ``hostname`` is alive.

    One small update; only the heartbeat that ends an outage does more: the
    containers the outage made ``Unknown`` get their observed status back, and
    every scheduler reads the host again (it is up).
    """
    _require_service(env, ctx)
    now = utcnow()
    cutoff = now - dt.timedelta(seconds=env.settings.service_down_time)
    async with env.db.transaction() as session:
        svc = await repo.agent_service(session, hostname)
        if svc is None:
            raise errors.HostNotFound(f"Host {hostname} is not registered; restart its agent.")
        returned = svc.last_seen_up is None or svc.last_seen_up < cutoff
        svc.last_seen_up = now
        svc.report_count += 1
        if returned and not svc.forced_down:
            await restore_returned(session, hostname)
    if returned:
        await env.notifier.touch_host(hostname)


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


async def desired_for(
    env: Env, ctx: RequestContext, hostname: str, generation: int | None, wait: float
) -> DesiredHost:
    """Everything assigned to ``hostname``; long-polls while nothing changed."""
    _require_service(env, ctx)
    seen = env.notifier.generation(hostname)
    if generation is not None and generation == seen and wait > 0:
        seen = await env.notifier.wait(hostname, seen, min(wait, 60.0))
    async with env.db.read() as session:
        rows: Sequence[ContainerRow] = await repo.containers_on(session, hostname)
        wanted = {g for r in rows for g in r.security_groups or []}
        groups = await networks_repo.groups_by_uuid(session, wanted)
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


async def record_observations(
    env: Env, ctx: RequestContext, hostname: str, observations: list[Observation]
) -> None:
    """Fold what the agent saw into each container's status, finishing actions."""
    _require_service(env, ctx)
    touched = released = False
    moved: set[str] = set()
    async with env.db.transaction() as session:
        for obs in observations:
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
