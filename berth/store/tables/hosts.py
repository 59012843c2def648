"""Hosts (compute nodes) with their claimed resources, and the services that run on them."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from sqlalchemy import Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from berth.store.base import Base, UtcDateTime, utcnow

__all__ = ["DesiredChangeRow", "HostRow", "ServiceRow", "new_epoch"]


def new_epoch() -> str:
    """A fresh identity for a host's change feed (see ``DesiredChangeRow``)."""
    return secrets.token_hex(8)


class HostRow(Base):
    __tablename__ = "hosts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    hostname: Mapped[str] = mapped_column(String(255), unique=True)
    cpus: Mapped[int] = mapped_column(default=0)
    cpu_used: Mapped[float] = mapped_column(default=0.0)
    mem_total: Mapped[int] = mapped_column(default=0)
    mem_used: Mapped[int] = mapped_column(default=0)
    disk_total: Mapped[int] = mapped_column(default=0)
    disk_used: Mapped[int] = mapped_column(default=0)
    disk_quota_supported: Mapped[bool] = mapped_column(default=False)
    total_containers: Mapped[int] = mapped_column(default=0)
    architecture: Mapped[str | None] = mapped_column(String(64), default=None)
    os_type: Mapped[str | None] = mapped_column(String(64), default=None)
    os: Mapped[str | None] = mapped_column(String(255), default=None)
    kernel_version: Mapped[str | None] = mapped_column(String(255), default=None)
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    runtimes: Mapped[list[Any]] = mapped_column(default=list)
    enable_cpu_pinning: Mapped[bool] = mapped_column(default=False)
    pinned_cpus: Mapped[list[Any]] = mapped_column(default=list)
    images: Mapped[list[Any]] = mapped_column(default=list)
    agent_url: Mapped[str | None] = mapped_column(String(255), default=None)
    availability_zone: Mapped[str | None] = mapped_column(String(255), default=None)
    generation: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, default=None)
    # Where other hosts reach this one's VXLAN tunnel endpoint (overlay networks).
    underlay_ip: Mapped[str | None] = mapped_column(String(64), default=None)
    # The incremental desired-state protocol (berth.store.desired_feed): the
    # revision of what is assigned to this host, bumped in the transaction that
    # changes it, and the identity of the feed those revisions count in.
    desired_revision: Mapped[int] = mapped_column(default=0)
    desired_epoch: Mapped[str] = mapped_column(String(32), default=new_epoch)


class ServiceRow(Base):
    __tablename__ = "services"
    __table_args__ = (UniqueConstraint("host", "binary"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    host: Mapped[str] = mapped_column(String(255))
    binary: Mapped[str] = mapped_column(String(255))
    disabled: Mapped[bool] = mapped_column(default=False)
    disabled_reason: Mapped[str | None] = mapped_column(String(255), default=None)
    forced_down: Mapped[bool] = mapped_column(default=False)
    last_seen_up: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, default=None)
    report_count: Mapped[int] = mapped_column(default=0)
    availability_zone: Mapped[str | None] = mapped_column(String(255), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, default=None)


class DesiredChangeRow(Base):
    """One entry of a host's change feed: at ``revision``, container ``uuid`` changed.

    ``uuid`` None: something host-wide changed (a security group's rules), so
    an agent behind that revision reads everything. Written only by
    ``berth.store.desired_feed``; old entries are trimmed.
    """

    __tablename__ = "desired_changes"
    __table_args__ = (Index("ix_desired_changes_host_revision", "host", "revision"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    host: Mapped[str] = mapped_column(String(255))
    revision: Mapped[int] = mapped_column()
    uuid: Mapped[str | None] = mapped_column(String(36), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
