"""Cluster events and CADF notifications (``magnum.cluster.{create,update,delete}``) in the outbox.

Every status step of a cluster appends a ``cluster.step`` event; the start and
the end of every operation also append a CADF-shaped ``magnum.cluster.<action>``
notification (outcome pending/success/failure), as Magnum's conductor emits.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from berth.domain.cluster_settings import ClusterSettings
from berth.store.db import Session
from berth.store.tables import ClusterRow, EventRow

__all__ = ["cadf", "emit_notification", "emit_step"]

_ACTIONS = {"CREATE": "create", "UPDATE": "update", "DELETE": "delete", "ROLLBACK": "update"}


def cadf(row: ClusterRow, action: str, outcome: str, user_id: str) -> dict[str, Any]:
    """A CADF event describing ``row`` (Magnum's payload, without the upstream key typo)."""
    settings = ClusterSettings.from_json(row.attrs)
    return {
        "typeURI": "http://schemas.dmtf.org/cloud/audit/1.0/event",
        "eventType": "activity",
        "eventTime": dt.datetime.now(dt.UTC).isoformat(),
        "id": str(uuid.uuid4()),
        "action": action,
        "outcome": outcome,
        "initiator": {
            "typeURI": "service/security/account/user",
            "user_id": user_id,
            "project_id": row.project_id,
        },
        "target": {
            "typeURI": "service/magnum/cluster",
            "id": row.uuid,
            "name": row.name,
            "attachments": [
                {
                    "name": "cluster_data",
                    "content": {
                        "status": row.status,
                        "status_reason": row.status_reason,
                        "project_id": row.project_id,
                        "cluster_template_id": row.cluster_template_id,
                        "node_count": settings.stored("node_count"),
                        "master_count": settings.stored("master_count"),
                        "api_address": settings.stored("api_address"),
                    },
                    "contentType": "application/json",
                }
            ],
        },
        "observer": {"typeURI": "service/magnum/cluster", "id": row.uuid},
    }


def emit_notification(
    session: Session, row: ClusterRow, status: str, outcome: str, user_id: str
) -> None:
    """Append ``magnum.cluster.<action>`` for an operation named by its status prefix."""
    action = _ACTIONS.get(status.split("_", 1)[0], "update")
    session.add(
        EventRow(
            resource_type="cluster",
            resource_uuid=row.uuid,
            project_id=row.project_id,
            event_type=f"magnum.cluster.{action}",
            payload={
                "priority": "ERROR" if outcome == "failure" else "INFO",
                "publisher_id": "container-infra.berth",
                "payload": cadf(row, action, outcome, user_id),
            },
        )
    )


def emit_step(session: Session, row: ClusterRow, reason: str) -> None:
    """Append one visible step of an operation."""
    session.add(
        EventRow(
            resource_type="cluster",
            resource_uuid=row.uuid,
            project_id=row.project_id,
            event_type="cluster.step",
            payload={"status": row.status, "status_reason": reason},
        )
    )
