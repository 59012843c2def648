"""Hosts that stop answering: their containers show ``Unknown``; auto_heal ones can move.

``mark_lost_hosts`` runs periodically in the worker. ``evacuate`` is the admin
operation that re-places a dead host's ``auto_heal`` containers elsewhere;
should the old agent come back, it no longer finds them in its desired state
and removes its stale copies. On the overlay a moved container keeps its
leases (its addresses), and the hosts of its networks' other members are woken
to point their tunnel entries at its new host.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from berth import errors
from berth.domain.containers import Status, TaskState
from berth.domain.context import RequestContext
from berth.events.actions import emit, start_action
from berth.services.env import Env
from berth.services.hosts.admin import get_host
from berth.services.hosts.placement import place, release
from berth.services.hosts.returning import lost_reason
from berth.services.networks import overlay
from berth.store import hosts as repo
from berth.store.base import utcnow
from berth.store.db import Session
from berth.store.tables import ContainerRow, ServiceRow

__all__ = ["EvacuationReport", "evacuate", "lost_hosts", "mark_lost_hosts"]

# Statuses that already say everything (or are being torn down): left as they are.
_KEEP = (Status.UNKNOWN, Status.ERROR, Status.DELETING)


def _reason(svc: ServiceRow) -> str:
    if svc.forced_down:
        return lost_reason(svc.host, "was forced down by an admin")
    seen = svc.last_seen_up.strftime("%Y-%m-%d %H:%M:%S") if svc.last_seen_up else "never"
    return lost_reason(svc.host, f"is down: no heartbeat since {seen} UTC")


async def lost_hosts(session: Session, service_down_time: float) -> dict[str, str]:
    """Hosts whose agent is forced down or silent too long, with the reason why."""
    cutoff = utcnow() - dt.timedelta(seconds=service_down_time)
    return {svc.host: _reason(svc) for svc in await repo.lost_services(session, cutoff)}


async def mark_lost_hosts(env: Env) -> int:
    """Show ``Unknown`` for containers on lost hosts; returns how many changed.

    One transaction per lost host, which holds its agent's service row while it
    marks (``repo.lost_service``): a call from that agent ending the outage meanwhile
    then either makes it not lost (nothing marked) or restores what was marked.
    One host at a time, so the job never holds two hosts' rows a batch of
    heartbeats is waiting for (no deadlock).
    """
    down_time = env.settings.service_down_time
    async with env.db.read() as session:
        cutoff = utcnow() - dt.timedelta(seconds=down_time)
        candidates = sorted(svc.host for svc in await repo.lost_services(session, cutoff))
    changed = 0
    for host in candidates:
        cutoff = utcnow() - dt.timedelta(seconds=down_time)
        async with env.db.transaction() as session:
            svc = await repo.lost_service(session, host, cutoff)
            if svc is None:  # heard from since the read above
                continue
            if not svc.forced_down and env.liveness.heard_within(host, down_time):
                # This process heard its agent; the database does not have it yet
                # (its write waits for a connection: the API is overloaded, the
                # host is not down). Measured: ~170 hosts "lost" in the 50,000 bench.
                continue
            changed += await repo.mark_unknown(
                session,
                host,
                _KEEP,
                f"{_reason(svc)}; its containers are not being watched. "
                "Restart its agent, or evacuate the host to move auto_heal containers.",
                utcnow(),
            )
    return changed


@dataclass
class EvacuationReport:
    moved: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    left: list[str] = field(default_factory=list)


async def evacuate(env: Env, ctx: RequestContext, ident: str) -> EvacuationReport:
    """Re-place the auto_heal containers of a dead host on other hosts."""
    env.enforce(ctx, "host:evacuate")
    host = await get_host(env, ctx, ident)
    report = EvacuationReport()
    async with env.db.transaction() as session:
        lost = await lost_hosts(session, env.settings.service_down_time)
        if host.hostname not in lost:
            raise errors.Conflict(
                f"Host {host.hostname} is up: force its service down first "
                "(openstack appcontainer service forcedown) so its agent stops running them."
            )
        rows = await repo.unplaced_on(session, host.hostname)
        for row in rows:
            # A local volume's data stays on the dead host: such a container is left too.
            if not row.auto_heal or any(m.get("volume_uuid") for m in row.mounts or []):
                report.left.append(row.uuid)
                continue
            await _move(env, ctx, session, row, report)
    for target in set(report.moved.values()):
        await env.notifier.touch(target)
    if overlay.enabled(env) and report.moved:
        # Their addresses follow them (the leases stay): the other members' hosts
        # re-point their tunnel entries at the new hosts now, not at their next poll.
        await overlay.touch_members(
            env, {n for r in rows if r.uuid in report.moved for n in overlay.networks_of(r)}
        )
    return report


async def _move(
    env: Env,
    ctx: RequestContext,
    session: Session,
    row: ContainerRow,
    report: EvacuationReport,
) -> None:
    old = row.host
    await release(session, row)
    row.host, row.runtime_id, row.cpuset = None, None, None
    row.observed_state, row.observed_spec_version = None, 0
    row.status, row.task_state, row.status_reason = Status.CREATING, TaskState.CREATING, None
    row.held = False
    row.requested_host = None  # a pin to the dead host cannot be honoured any more
    row.desired_since = utcnow()
    await start_action(session, ctx, row, "evacuate", keep=env.settings.max_actions_per_container)
    decision = await place(
        session, env.pipeline, row, env.settings.service_down_time, env.host_cache
    )
    if decision.host is None:
        row.status, row.task_state, row.held = Status.ERROR, None, True
        row.status_reason = f"Evacuated from {old}, but: {decision.explain()}"
        report.failed[row.uuid] = row.status_reason
    else:
        report.moved[row.uuid] = decision.host.hostname
    emit(
        session, row, "container.evacuate", ctx.request_id, source=old or "",
        host=row.host or "", **({"placement": decision.because} if decision.because else {}),
    )  # fmt: skip
