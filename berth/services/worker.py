"""Background loops of the control plane (run as tasks in berth-api or in berth-worker)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from berth import errors
from berth.clusters.registry import load_drivers
from berth.events.amqp import RELAY_CURSOR, AmqpRelay
from berth.services import identity
from berth.services.clusters import quotas as cluster_quotas
from berth.services.clusters.health import ClusterHealth
from berth.services.clusters.lifecycle import ClusterWorker
from berth.services.clusters.nodes import provisioner_for
from berth.services.env import Env
from berth.services.hosts.hosts import trim_feed
from berth.services.hosts.watch import mark_lost_hosts
from berth.services.images import images
from berth.store import events as events_repo
from berth.store.base import utcnow

__all__ = ["run", "trim_history"]

log = logging.getLogger(__name__)


class _HasEnv(Protocol):
    env: Env


async def _purge_tokens(env: Env) -> int:
    return await identity.prune_tokens(env.db)


_TRIM_BATCH = 1000  # rows a transaction: short locks, bounded statements
_TRIM_ROUNDS = 100  # batches a run at most; the next run goes on


async def trim_history(env: Env) -> int:
    """Drop events older than ``event_retention_hours`` (once the notification relay,
    when there is one, has sent them) and the actions of deleted containers as old."""
    before = utcnow() - dt.timedelta(hours=env.settings.event_retention_hours)
    upto = None
    if env.settings.notification_url:
        async with env.db.read() as session:
            upto = await events_repo.relayed_upto(session, RELAY_CURSOR)
    total = 0
    for kind in ("events", "actions"):
        for _ in range(_TRIM_ROUNDS):
            async with env.db.transaction() as session:
                if kind == "events":
                    dropped = await events_repo.trim_events(
                        session, before, upto_id=upto, batch=_TRIM_BATCH
                    )
                else:
                    dropped = await events_repo.trim_orphan_actions(
                        session, before, batch=_TRIM_BATCH
                    )
            total += dropped
            if dropped < _TRIM_BATCH:
                break
    return total


def _jobs(env: Env) -> list[tuple[str, float, Callable[[Env], Awaitable[int]]]]:
    """Each job with its period: lost hosts within seconds, tokens every ten minutes, clusters."""
    watch = max(1.0, min(10.0, env.settings.service_down_time / 6))
    drivers = load_drivers()
    clusters = ClusterWorker(drivers, provisioner_for(env))
    health = ClusterHealth(drivers, provisioner_for(env))
    jobs: list[tuple[str, float, Callable[[Env], Awaitable[int]]]] = [
        ("lost hosts", watch, mark_lost_hosts),
        ("expired tokens", 600.0, _purge_tokens),
        ("desired-state feed", 600.0, trim_feed),
        ("old events and actions", 600.0, trim_history),
        ("interrupted image pulls and commits", 60.0, images.fail_interrupted),
        ("cluster operations", 2.0, clusters.tick),
        ("cluster health", env.settings.cluster_health_interval, health.tick),
        ("cluster conductor heartbeat", env.settings.heartbeat_interval, cluster_quotas.heartbeat),
    ]
    settings = env.settings
    if settings.notification_url:
        relay = AmqpRelay(
            settings.notification_url,
            settings.notification_exchange,
            topic=settings.notification_topic,
            durable=settings.notification_durable,
            quorum=settings.notification_quorum,
        )
        jobs.append(("cluster notifications", 1.0, lambda env: relay.tick(env.db)))
    return jobs


async def run(state: _HasEnv) -> None:
    """Run every job forever at its own period; one job's failure does not stop the others."""
    env = state.env
    jobs = _jobs(env)
    due = dict.fromkeys((name for name, _, _ in jobs), 0.0)
    while True:
        now = time.monotonic()
        for name, period, job in jobs:
            if now < due[name]:
                continue
            due[name] = now + period
            try:
                count = await job(env)
            except (errors.DatabaseUnavailable, errors.Overloaded) as exc:
                # The database's condition, not the job's fault: one line, no traceback.
                log.warning("worker job %r: %s (again in %.0f s)", name, exc.message, period)
                continue
            except Exception:
                log.exception("worker job %r failed; it runs again in %.0f s", name, period)
                continue
            if count:
                log.info("worker job %r: %d changed", name, count)
        await asyncio.sleep(max(0.2, min(due.values()) - time.monotonic()))
