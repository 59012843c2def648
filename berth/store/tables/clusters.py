"""Magnum cluster templates and clusters: indexed columns plus the other attributes as JSON."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Boolean, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from berth.store.base import Base, UtcDateTime, utcnow

__all__ = ["ClusterRow", "ClusterTemplateRow", "OutboxCursorRow"]


class ClusterTemplateRow(Base):
    """One cluster template; ``attrs`` holds every Magnum field not indexed here."""

    __tablename__ = "cluster_templates"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(255), index=True)
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    hidden: Mapped[bool] = mapped_column(Boolean, default=False)
    attrs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, default=None)


class ClusterRow(Base):
    """One cluster. ``status`` drives the lifecycle engine; the CA key is sealed at rest."""

    __tablename__ = "clusters"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(255), index=True)
    cluster_template_id: Mapped[str] = mapped_column(String(36), index=True)
    driver: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32), index=True)
    status_reason: Mapped[str | None] = mapped_column(String(1024), default=None)
    attrs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    ca_cert: Mapped[str | None] = mapped_column(Text, default=None)
    ca_key_sealed: Mapped[str | None] = mapped_column(Text, default=None)
    # Berth's own CA for talking to the nodes (never rotated, never given to users):
    # nodes trust it besides the cluster CA, so a CA rotation can be pushed to them.
    control_ca_cert: Mapped[str | None] = mapped_column(Text, default=None)
    control_ca_key_sealed: Mapped[str | None] = mapped_column(Text, default=None)
    lease_until: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, default=None)
    deadline: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, default=None)


class OutboxCursorRow(Base):
    """How far a relay (the RabbitMQ notifier) has read the events outbox."""

    __tablename__ = "outbox_cursors"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_event_id: Mapped[int] = mapped_column(Integer, default=0)
