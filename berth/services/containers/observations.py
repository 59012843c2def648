"""Folding an agent's observation into a container's status.

This is the control plane's half of the reconcile loop.
"""

from __future__ import annotations

import datetime as dt

from berth.domain.containers import Status, status_for_observation
from berth.domain.hostsync import Observation
from berth.events.actions import emit, finish_open_actions
from berth.services import volumes
from berth.services.containers import files as injected_files
from berth.services.hosts.placement import release
from berth.services.networks.security_groups import drop_container_group
from berth.store.base import utcnow
from berth.store.db import Session
from berth.store.tables import ContainerRow

__all__ = ["apply_observation"]

_MATCHES = {
    "running": {"running"},
    "stopped": {"stopped", "created", "dead"},
    "paused": {"paused"},
    "created": {"created"},
}


def _parse(ts: str | None) -> dt.datetime | None:
    if not ts:
        return None
    try:
        value = dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


async def _remove(session: Session, row: ContainerRow, reason: str) -> None:
    await release(session, row)
    await finish_open_actions(session, row.uuid)
    emit(session, row, "container.delete.end", reason=reason)
    await session.delete(row)
    await drop_container_group(session, row.uuid)
    await volumes.delete_owned(session, row.uuid)  # its host removed their data
    await injected_files.forget(session, row.uuid)


def _record_facts(row: ContainerRow, obs: Observation) -> None:
    row.updated_at = utcnow()
    if obs.runtime_id:
        row.runtime_id = obs.runtime_id
    row.observed_spec_version = max(row.observed_spec_version, obs.spec_version)
    if obs.done_ops:
        done = set(obs.done_ops)
        row.pending_ops = [op for op in row.pending_ops or [] if op.get("id") not in done]
    if obs.addresses is not None:
        row.addresses = obs.addresses
    if obs.published is not None or row.ports:
        # Zun's ``ports``: here the host ports, in the order of ``exposed_ports``.
        published = obs.published or {}
        row.ports = [published[k] for k in row.exposed_ports or {} if k in published] or None
    row.status_detail = obs.status_detail
    row.observed_state = obs.state
    started = _parse(obs.started_at)
    if started:
        row.started_at = started


async def apply_observation(session: Session, row: ContainerRow, obs: Observation) -> bool:
    """Update ``row`` from ``obs``; True when the desired state changed (wake the agent)."""
    _record_facts(row, obs)
    if row.desired_state == "deleted":
        if obs.removed or obs.state == "absent":
            await _remove(session, row, "deleted")
        elif obs.error:
            row.status, row.status_reason, row.task_state = Status.ERROR, obs.error, None
            await finish_open_actions(session, row.uuid, error=obs.error)
        return False
    if obs.error:
        row.status, row.status_reason, row.task_state = Status.ERROR, obs.error, None
        row.held = True
        await finish_open_actions(session, row.uuid, error=obs.error)
        emit(session, row, "container.error", reason=obs.error)
        return False
    if obs.state == "absent" and row.auto_remove and row.runtime_id:
        await _remove(session, row, "auto_remove")
        # Woken, the agent's next pass finds it gone from both sides and drops the
        # volumes it owned (``--mount size=N``) now, not at its next long-poll timeout.
        return True
    changed = _exited_by_itself(row, obs)
    _set_status(row, obs)
    if _reached(row):
        if row.task_state is not None or row.status_reason:
            emit(session, row, "container.state", state=row.status)
        row.task_state = None
        row.status_reason = None
        await finish_open_actions(session, row.uuid)
    return changed


def _exited_by_itself(row: ContainerRow, obs: Observation) -> bool:
    """A container the user ran that has since exited: its intent is fulfilled."""
    started = _parse(obs.started_at)
    if (
        row.desired_state == "running"
        and obs.state in ("stopped", "dead")
        and started is not None
        and started >= row.desired_since
        and not any(op.get("op") == "reboot" for op in row.pending_ops or [])
    ):
        row.desired_state = "stopped"
        row.desired_since = utcnow()
        return True
    return False


def _set_status(row: ContainerRow, obs: Observation) -> None:
    if obs.state == "absent":
        if row.status != Status.CREATING:
            row.status = Status.UNKNOWN
            row.status_reason = "The runtime container disappeared." + (
                " It is being recreated (auto_heal)."
                if row.auto_heal
                else " Delete the container or enable auto_heal."
            )
        return
    pending = {op.get("op") for op in row.pending_ops or []}
    if "rebuild" in pending:  # the old container still answers until it is replaced
        row.status = Status.REBUILDING
        return
    if "reboot" in pending:
        row.status = Status.RESTARTING
        return
    row.status = status_for_observation(obs.state, row.desired_state, None)


def _reached(row: ContainerRow) -> bool:
    if row.pending_ops:
        return False
    return (row.observed_state or "") in _MATCHES.get(row.desired_state, set())
