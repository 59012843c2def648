"""Agents heard from: explicit heartbeats, every other call, and the batches that record them.

An agent's long polls and reports say it is alive as well as a heartbeat does
(see ``liveness``): ``heard_from`` notes them in memory and ``flush_heard``
writes the hosts heard since its last run in one ``UPDATE``. An explicit
heartbeat (an agent that made no other call for ``heartbeat_interval``) is
written at once, as is a call the database must hear of now: a host's first
call to this process, or its first after an outage, which also gives the
containers the outage made ``Unknown`` their observed status back.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from berth import errors
from berth.domain.context import RequestContext
from berth.services.env import Env
from berth.services.hosts.liveness import flush_period
from berth.services.hosts.returning import restore_returned
from berth.store import hosts as repo
from berth.store.base import utcnow

__all__ = ["flush_heard", "heard_from", "heartbeat", "keep_flushing"]

log = logging.getLogger(__name__)


async def heartbeat(env: Env, ctx: RequestContext, hostname: str) -> None:
    """Record that the agent of ``hostname`` is alive, at once.

    One small update; only the heartbeat that ends an outage does more (see
    ``_beat``). ``HostNotFound`` for a host without an agent service.
    """
    env.enforce(ctx, "berth:internal")
    now = utcnow()
    if not await _beat(env, hostname, now):
        raise errors.HostNotFound(f"Host {hostname} is not registered; restart its agent.")
    env.liveness.confirm(hostname, now.timestamp())


async def heard_from(env: Env, hostname: str) -> None:
    """Note a call from the agent of ``hostname`` (its caller passed the service policy).

    In memory, for the next batch, when this process knows the host is up; else
    written now, as a heartbeat. ``HostNotFound`` when it has no agent service
    (deleted by an admin): the agent registers again.
    """
    if env.liveness.note(hostname):
        return
    now = utcnow()
    if not await _beat(env, hostname, now):
        raise errors.HostNotFound(f"Host {hostname} is not registered; restart its agent.")
    env.liveness.confirm(hostname, now.timestamp())


async def _beat(env: Env, hostname: str, at: dt.datetime) -> bool:
    """Write that ``hostname`` was heard from at ``at``; False when it has no agent service.

    The usual case is one UPDATE. The call that ends an outage does more: the
    containers it made ``Unknown`` get their observed status back, and every
    scheduler reads the host again (it is up).
    """
    cutoff = utcnow() - dt.timedelta(seconds=env.settings.service_down_time)
    async with env.db.transaction() as session:
        if await repo.beat(session, hostname, at, cutoff):
            return True
    async with env.db.transaction() as session:
        # Locked first: the lost-hosts job and this call take turns (``repo.lost_service``).
        svc = await repo.agent_service(session, hostname, lock=True)
        if svc is None:
            return False
        returned = svc.last_seen_up is None or svc.last_seen_up < cutoff
        if svc.last_seen_up is None or svc.last_seen_up < at:
            svc.last_seen_up = at
        svc.report_count += 1
        if returned and not svc.forced_down:
            await restore_returned(session, hostname)
    if returned:
        await env.notifier.touch_host(hostname)
    return True


async def flush_heard(env: Env) -> int:
    """Write the hosts this process heard from since the last run, in one UPDATE; how many.

    Each is written as heard at the earliest of their latest calls (never later
    than it was). A host the database holds as down meanwhile (this process's
    batch came late) is written as a heartbeat would be, ending its outage.
    """
    heard = env.liveness.take()
    if not heard:
        return 0
    at = dt.datetime.fromtimestamp(min(heard.values()), dt.UTC)
    cutoff = utcnow() - dt.timedelta(seconds=env.settings.service_down_time)
    try:
        async with env.db.transaction() as session:
            written = await repo.beat_many(session, sorted(heard), at, cutoff)
    except BaseException:
        env.liveness.put_back(heard)  # the next batch tries again
        raise
    for host in written:
        env.liveness.confirm(host, at.timestamp())
    for host in heard.keys() - written:
        env.liveness.forget(host)
        if await _beat(env, host, dt.datetime.fromtimestamp(heard[host], dt.UTC)):
            env.liveness.confirm(host, heard[host])
    return len(heard)


async def keep_flushing(env: Env) -> None:
    """Run ``flush_heard`` every ``flush_period`` until cancelled (then run it once more)."""
    period = flush_period(env.settings.service_down_time)
    while True:
        await asyncio.sleep(period)
        try:
            await flush_heard(env)
        except errors.BerthError as exc:
            log.warning("cannot record the agents heard from: %s", exc.message)
