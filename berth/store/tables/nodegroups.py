"""Magnum node groups, cluster quotas and the conductor (worker) heartbeats.

Magnum keeps these in its own tables (``nodegroup``, ``quotas``,
``magnum_service``), apart from Zun's; so does Berth: Zun's quota and service
APIs never see them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Boolean, Connection, Integer, String, UniqueConstraint, delete, event
from sqlalchemy.orm import Mapped, Mapper, mapped_column

from berth.store.base import Base, UtcDateTime, utcnow
from berth.store.tables.clusters import ClusterRow

__all__ = ["ClusterQuotaRow", "ConductorRow", "NodeGroupRow"]


class NodeGroupRow(Base):
    """One node group of a cluster; the rows go with their cluster's (see below).

    ``status`` is the group's own Magnum status; ``attrs`` holds node_labels,
    node_taints, merge_labels and the labels the group was created with.
    """

    __tablename__ = "nodegroups"
    __table_args__ = (UniqueConstraint("cluster_uuid", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    # No foreign key on purpose: SQLite's batch migrations rebuild ``clusters`` (DROP
    # TABLE), which would cascade to every node group.
    cluster_uuid: Mapped[str] = mapped_column(String(36), index=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(64))
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    node_count: Mapped[int] = mapped_column(Integer)
    min_node_count: Mapped[int] = mapped_column(Integer, default=0)
    max_node_count: Mapped[int | None] = mapped_column(Integer, default=None)
    flavor_id: Mapped[str | None] = mapped_column(String(255), default=None)
    image_id: Mapped[str | None] = mapped_column(String(255), default=None)
    docker_volume_size: Mapped[int | None] = mapped_column(Integer, default=None)
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    attrs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(32))
    status_reason: Mapped[str | None] = mapped_column(String(1024), default=None)
    version: Mapped[str | None] = mapped_column(String(255), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, default=None)


class ClusterQuotaRow(Base):
    """A project's cluster quota (Magnum's only quota resource is ``Cluster``)."""

    __tablename__ = "cluster_quotas"
    __table_args__ = (UniqueConstraint("project_id", "resource"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_id: Mapped[str] = mapped_column(String(64))
    resource: Mapped[str] = mapped_column(String(32))
    hard_limit: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, default=None)


class ConductorRow(Base):
    """A worker process's heartbeat: what ``/v1/mservices`` lists (Magnum's conductors)."""

    __tablename__ = "cluster_conductors"
    __table_args__ = (UniqueConstraint("host", "binary"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    host: Mapped[str] = mapped_column(String(255))
    binary: Mapped[str] = mapped_column(String(255))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled_reason: Mapped[str | None] = mapped_column(String(255), default=None)
    forced_down: Mapped[bool] = mapped_column(Boolean, default=False)
    last_seen_up: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, default=None)
    report_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, default=None)


@event.listens_for(ClusterRow, "after_delete")
def _delete_groups(_mapper: Mapper[ClusterRow], conn: Connection, target: ClusterRow) -> None:
    """A cluster row deleted through the ORM takes its node groups along (same flush)."""
    conn.execute(delete(NodeGroupRow).where(NodeGroupRow.cluster_uuid == target.uuid))
