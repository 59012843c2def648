"""The cluster lifecycle worker: claims clusters in ``*_IN_PROGRESS`` and runs their driver.

Level-triggered and crash-safe: a claim is a lease (a conditional update), so a
worker that dies mid-operation leaves a cluster another pass picks up again
(drivers are idempotent). The operation's deadline is stored on the row, so a
retried operation does not get a fresh timeout. The end is written only if the
cluster still is in the status the operation started from (a delete requested
during a create wins).

A job that kills its worker cannot catch anything, so every start is counted
in the row (``ClusterSettings.job``) and committed *before* the job runs, and cleared
at its end: a cluster whose operation was started ``cluster_job_attempts``
times without ever ending is quarantined (``<OP>_FAILED`` with a reason)
instead of crashing every worker that claims it. A cluster that wants more
nodes than ``max_nodes_per_cluster`` (a row from an older version, a hand
edit) fails before any plan is made.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable

from berth import errors
from berth.clusters import pki
from berth.clusters.driver import (
    ClusterSpec,
    NodeProvisioner,
    Outcome,
    Report,
)
from berth.clusters.engine import run_operation
from berth.clusters.registry import DriverRegistry
from berth.domain import clusters as spec
from berth.domain.cluster_settings import ClusterSettings, Job
from berth.events.clusters import emit_notification, emit_step
from berth.services.clusters import groups as cluster_groups
from berth.services.clusters import templates
from berth.services.env import Env
from berth.store import cluster_templates as template_repo
from berth.store import clusters as repo
from berth.store.base import utcnow
from berth.store.tables import ClusterRow

__all__ = [
    "ClusterWorker",
    "ProvisionerFactory",
    "ca_of",
    "cluster_spec",
    "process_pending",
    "run_one",
]

log = logging.getLogger(__name__)

# Builds the node provisioner of one cluster (services implement it over containers).
ProvisionerFactory = Callable[[ClusterRow], NodeProvisioner]
_LEASE = dt.timedelta(minutes=2)


def ca_of(env: Env, row: ClusterRow) -> pki.CertificateAuthority:
    """The cluster's CA with its key opened (it is sealed at rest)."""
    if not row.ca_cert or not row.ca_key_sealed:
        raise ValueError(f"cluster {row.uuid} has no CA yet")
    return pki.CertificateAuthority(row.ca_cert, env.secrets.open(row.ca_key_sealed))


async def process_pending(
    env: Env, drivers: DriverRegistry, provisioners: ProvisionerFactory
) -> int:
    """Run every claimable in-progress cluster once; returns how many ended."""
    async with env.db.read() as session:
        uuids = await repo.claimable(session, spec.IN_PROGRESS, utcnow())
    done = 0
    for uuid in uuids:
        if await run_one(env, drivers, provisioners, uuid):
            done += 1
    return done


async def _claim(env: Env, uuid: str) -> ClusterRow | None:
    now = utcnow()
    async with env.db.transaction() as session:
        row = await repo.claim(session, uuid, spec.IN_PROGRESS, now, now + _LEASE)
        if row is None:
            return None
        # Count this start durably (committed with the claim) before anything can crash.
        settings = ClusterSettings.from_json(row.attrs)
        attempts = settings.attempts(row.status)
        row.attrs = settings.with_(job=Job(row.status, attempts + 1)).to_json()
        if attempts >= env.settings.cluster_job_attempts:
            return row  # run_one quarantines it: no key generation, no plan
        # Key generation is CPU work: off the event loop.
        if row.status == "CREATE_IN_PROGRESS" and not row.ca_cert:
            ca = await asyncio.to_thread(pki.new_ca, row.name)
            row.ca_cert, row.ca_key_sealed = ca.cert_pem, env.secrets.seal(ca.key_pem)
            emit_step(session, row, "Cluster CA created.")
        if not row.control_ca_cert:
            # Berth's own CA for reaching the nodes: never rotated, never shown.
            control = await asyncio.to_thread(pki.new_ca, f"berth control {row.uuid[:8]}")
            row.control_ca_cert = control.cert_pem
            row.control_ca_key_sealed = env.secrets.seal(control.key_pem)
        return row


async def _spec(env: Env, row: ClusterRow) -> ClusterSpec:
    async with env.db.read() as session:
        template = await template_repo.by_uuid(session, row.cluster_template_id)
    image = (templates.settings_of(template).image_id if template else "") or ""
    settings = ClusterSettings.from_json(row.attrs)
    flavor = cluster_groups.resolve_flavor(env, settings.flavor_id)
    ca = ca_of(env, row) if row.ca_cert else None
    control = (
        pki.CertificateAuthority(row.control_ca_cert, env.secrets.open(row.control_ca_key_sealed))
        if row.control_ca_cert and row.control_ca_key_sealed
        else None
    )
    labels = dict(settings.labels)
    # The node groups from their table: flavors resolved per group, images per group.
    groups = await cluster_groups.spec_groups(env, row, image)
    return ClusterSpec(
        uuid=row.uuid,
        name=row.name,
        project_id=row.project_id,
        master_count=settings.masters,
        node_count=settings.nodes,
        cpu=flavor.cpu,
        memory_mb=flavor.memory_mb,
        image=image,
        labels=labels,
        ca_cert_pem=ca.cert_pem if ca else "",
        ca_key_pem=ca.key_pem if ca else "",
        nodegroups=groups,
        control_ca_cert_pem=control.cert_pem if control else "",
        control_ca_key_pem=control.key_pem if control else "",
        insecure_registry=str(
            (templates.settings_of(template).insecure_registry if template else None) or ""
        ),
        max_batch_size=_batch_size(settings.upgrade),
    )


def _batch_size(upgrade: object) -> int:
    """The pending upgrade's ``max_batch_size`` (1 when there is none)."""
    size = upgrade.get("max_batch_size") if isinstance(upgrade, dict) else None
    return size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else 1


async def cluster_spec(env: Env, row: ClusterRow) -> ClusterSpec:
    """The plain-data spec a driver is handed for ``row`` (also for health polls)."""
    return await _spec(env, row)


async def run_one(
    env: Env, drivers: DriverRegistry, provisioners: ProvisionerFactory, uuid: str
) -> bool:
    """Claim one cluster and run its pending operation to the end; False if not claimable."""
    row = await _claim(env, uuid)
    if row is None:
        return False
    started = row.status
    op = started.split("_", 1)[0]
    refused = _quarantine_reason(env, row) or await _over_cap_reason(env, row)
    if refused:
        await _finish(env, uuid, started, f"{op}_FAILED", refused, None)
        return True

    async def report(reason: str) -> None:
        async with env.db.transaction() as session:
            fresh = await repo.by_uuid(session, uuid)
            if fresh is not None and fresh.status == started:
                fresh.status_reason = reason[:1024]
                fresh.lease_until = utcnow() + _LEASE
                emit_step(session, fresh, reason)

    renewing = asyncio.create_task(_renew_lease(env, uuid, started))
    try:
        result_status, reason, outcome = await _operate(env, drivers, provisioners, row, report)
    finally:
        renewing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewing
    await _finish(env, uuid, started, result_status, reason, outcome)
    return True


def _quarantine_reason(env: Env, row: ClusterRow) -> str | None:
    """Why the operation must not start again: it was started too often without ending."""
    job = ClusterSettings.from_json(row.attrs).job
    started = (job.attempts if job is not None else 0) - 1  # the starts before this claim
    if started < env.settings.cluster_job_attempts:
        return None
    op = row.status.split("_", 1)[0].lower()
    return (
        f"Cluster {op} stopped: it was started {started} times and never ended (the worker "
        "crashed or was restarted each time), so it is not retried again. The worker's log "
        f"has the cause under cluster {row.uuid}; "
        + ("delete the cluster again to retry." if op == "delete" else
           "fix it, then resize or update the cluster to retry, or delete it.")
    )  # fmt: skip


async def _over_cap_reason(env: Env, row: ClusterRow) -> str | None:
    """Why a create/update must not be planned: more nodes than the operator allows."""
    if row.status == "DELETE_IN_PROGRESS":
        return None  # a delete removes what exists, whatever was asked
    async with env.db.read() as session:
        found = await repo.groups_of(session, row.uuid)
    if found:
        wanted = sum(g.node_count for g in found if not g.status.startswith("DELETE_"))
    else:  # a row from before node groups: its counts
        settings = ClusterSettings.from_json(row.attrs)
        wanted = (settings.master_count or 0) + (settings.node_count or 0)
    cap = env.settings.max_nodes_per_cluster
    if wanted <= cap:
        return None
    return (
        f"Cluster wants {wanted} nodes, more than the {cap} nodes per cluster this cloud "
        "allows (max_nodes_per_cluster): nothing was created. Delete the cluster, or resize "
        f"it to at most {cap} nodes in all."
    )


async def _renew_lease(env: Env, uuid: str, started: str) -> None:
    """Keep the claim while a long step runs, so no other worker starts the same operation."""
    while True:
        await asyncio.sleep(_LEASE.total_seconds() / 4)
        async with env.db.transaction() as session:
            await repo.renew_lease(session, uuid, started, utcnow() + _LEASE)


async def _operate(
    env: Env,
    drivers: DriverRegistry,
    provisioners: ProvisionerFactory,
    row: ClusterRow,
    report: Report,
) -> tuple[str, str, Outcome | None]:
    op = row.status.split("_", 1)[0]
    driver = drivers.drivers.get(row.driver)
    timeout = None if row.deadline is None else max(0.0, (row.deadline - utcnow()).total_seconds())
    if driver is None:
        return f"{op}_FAILED", f"Driver {row.driver} is not installed.", None
    try:
        cluster = await _spec(env, row)
    except errors.BerthError as exc:  # e.g. a flavor the operator has removed since
        return f"{op}_FAILED", f"Cluster {op.lower()} failed: {exc.message}", None
    res = await run_operation(op, driver, cluster, provisioners(row), report, timeout_s=timeout)
    return res.status, res.reason, res.outcome


class ClusterWorker:
    """The worker job: starts one task per claimable cluster and returns at once."""

    def __init__(self, drivers: DriverRegistry, provisioners: ProvisionerFactory) -> None:
        self.drivers, self.provisioners = drivers, provisioners
        self.running: dict[str, asyncio.Task[bool]] = {}

    def _forget(self, task: asyncio.Task[bool]) -> None:
        for uuid, running in list(self.running.items()):
            if running is task:
                del self.running[uuid]
        if not task.cancelled() and task.exception() is not None:
            log.error("cluster operation crashed", exc_info=task.exception())

    async def tick(self, env: Env) -> int:
        """Start the pending operations not already running here; returns how many started."""
        if not self.drivers.drivers:
            return 0  # no driver installed: no cluster can exist
        async with env.db.read() as session:
            claimable = await repo.claimable(session, spec.IN_PROGRESS, utcnow())
        uuids = [u for u in claimable if u not in self.running]
        for uuid in uuids:
            task = asyncio.create_task(run_one(env, self.drivers, self.provisioners, uuid))
            self.running[uuid] = task
            task.add_done_callback(self._forget)
        return len(uuids)


def _with_outcome(settings: ClusterSettings, outcome: Outcome | None) -> ClusterSettings:
    """The settings with what a successful operation found (unchanged without one)."""
    if outcome is None:
        return settings
    return settings.with_(
        api_address=outcome.api_address,
        master_addresses=list(outcome.master_addresses),
        node_addresses=list(outcome.node_addresses),
        coe_version=outcome.coe_version,
        container_version=outcome.container_version,
    )


async def _finish(
    env: Env, uuid: str, started: str, status: str, reason: str, outcome: Outcome | None
) -> None:
    async with env.db.transaction() as session:
        row = await repo.by_uuid(session, uuid)
        if row is None or row.status != started:
            return  # another request (a delete) superseded this operation
        row.status, row.status_reason = status, reason[:1024]
        ended = ClusterSettings.from_json(row.attrs).without("job")  # the job ended
        row.attrs = _with_outcome(ended, outcome).to_json()
        row.lease_until, row.updated_at = None, utcnow()
        emit_step(session, row, reason)
        emit_notification(
            session, row, status, "success" if status.endswith("_COMPLETE") else "failure",
            row.user_id,
        )  # fmt: skip
        if status == "DELETE_COMPLETE":
            await session.delete(row)
