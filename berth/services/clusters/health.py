"""The cluster health job: polls every settled cluster's driver and records its health.

For each cluster in ``CREATE_COMPLETE``/``UPDATE_COMPLETE`` whose driver can tell
its health (``berth.clusters.HealthCheck``), the result is written to
``health_status`` (HEALTHY / UNHEALTHY / UNKNOWN) and ``health_status_reason``
(one entry per node, plus ``api``). With the label ``auto_healing_enabled=true``
dead node containers are deleted and the cluster goes to ``UPDATE_IN_PROGRESS``,
so the lifecycle worker converges it again (a new node replaces the dead one).
"""

from __future__ import annotations

import datetime as dt
import logging

from berth.clusters.driver import Health, HealthCheck
from berth.clusters.registry import DriverRegistry
from berth.domain.cluster_settings import ClusterSettings
from berth.events.clusters import emit_step
from berth.services.clusters.lifecycle import ProvisionerFactory, cluster_spec
from berth.services.env import Env
from berth.store import clusters as repo
from berth.store.base import utcnow
from berth.store.tables import ClusterRow

__all__ = ["ClusterHealth"]

log = logging.getLogger(__name__)

_SETTLED = ("CREATE_COMPLETE", "UPDATE_COMPLETE")
_HEAL_TIMEOUT = dt.timedelta(minutes=15)


def _truthy(value: object) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


class ClusterHealth:
    """The worker job: one health poll of every settled cluster per tick."""

    def __init__(self, drivers: DriverRegistry, provisioners: ProvisionerFactory) -> None:
        self.drivers, self.provisioners = drivers, provisioners

    async def tick(self, env: Env) -> int:
        """Poll each settled cluster once; returns how many were polled."""
        if not self.drivers.drivers:
            return 0
        async with env.db.read() as session:
            rows = await repo.with_status(session, _SETTLED)
        polled = 0
        for row in rows:
            driver = self.drivers.drivers.get(row.driver)
            if not isinstance(driver, HealthCheck):
                continue
            try:
                health = await driver.health(await cluster_spec(env, row), self.provisioners(row))
            except Exception as exc:  # a poll must never stop the job
                log.info("health of cluster %s: %s", row.uuid, exc, exc_info=True)
                health = Health("UNKNOWN", {"api": f"health check failed: {exc}"})
            await self._record(env, row, health)
            polled += 1
        return polled

    async def _record(self, env: Env, row: ClusterRow, health: Health) -> None:
        heal = (
            bool(health.dead_nodes)
            and _truthy(ClusterSettings.from_json(row.attrs).labels.get("auto_healing_enabled"))
        )  # fmt: skip
        if heal:
            nodes = self.provisioners(row)
            for name in health.dead_nodes:
                await nodes.delete_node(name)
        async with env.db.transaction() as session:
            fresh = await repo.by_uuid(session, row.uuid)
            if fresh is None or fresh.status not in _SETTLED:
                return  # an operation started meanwhile: its end decides
            reasons = {str(k): str(v) for k, v in health.reasons.items()}
            settings = ClusterSettings.from_json(fresh.attrs)
            changed = (
                settings.stored("health_status") != health.status
                or settings.stored("health_status_reason") != reasons
            )
            if changed:
                fresh.attrs = settings.with_(
                    health_status=health.status, health_status_reason=reasons
                ).to_json()
            if heal:
                fresh.status = "UPDATE_IN_PROGRESS"
                fresh.status_reason = (
                    f"Auto-healing: replacing dead node(s) {', '.join(health.dead_nodes)}."
                )
                fresh.deadline = utcnow() + _HEAL_TIMEOUT
                fresh.lease_until = None
                emit_step(session, fresh, fresh.status_reason)
