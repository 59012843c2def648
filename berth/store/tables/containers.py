"""Container rows: the user's request, the desired state and the last observation."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from berth.store.base import Base, UtcDateTime, utcnow

__all__ = ["ActionEventRow", "ContainerActionRow", "ContainerRow"]


class ContainerRow(Base):
    __tablename__ = "containers"
    __table_args__ = (
        Index("ix_containers_project_name", "project_id", "name"),
        Index("ix_containers_host", "host"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[str] = mapped_column(String(64))

    # -- what the user asked for
    image: Mapped[str] = mapped_column(String(255))
    image_driver: Mapped[str] = mapped_column(String(32), default="docker")
    image_pull_policy: Mapped[str | None] = mapped_column(String(32), default=None)
    command: Mapped[list[Any]] = mapped_column(default=list)
    entrypoint: Mapped[list[Any] | None] = mapped_column(default=None)
    cpu: Mapped[float] = mapped_column(default=1.0)
    cpu_policy: Mapped[str] = mapped_column(String(16), default="shared")
    cpuset: Mapped[list[Any] | None] = mapped_column(default=None)
    memory: Mapped[int | None] = mapped_column(default=None)
    disk: Mapped[int] = mapped_column(default=0)
    workdir: Mapped[str | None] = mapped_column(String(255), default=None)
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    environment: Mapped[dict[str, Any]] = mapped_column(default=dict)
    restart_policy: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    interactive: Mapped[bool] = mapped_column(default=False)
    tty: Mapped[bool] = mapped_column(default=False)
    security_groups: Mapped[list[Any]] = mapped_column(default=list)
    hints: Mapped[dict[str, Any]] = mapped_column(default=dict)
    nets: Mapped[list[Any]] = mapped_column(default=list)
    mounts: Mapped[list[Any]] = mapped_column(default=list)
    runtime: Mapped[str | None] = mapped_column(String(64), default=None)
    hostname: Mapped[str | None] = mapped_column(String(255), default=None)
    auto_remove: Mapped[bool] = mapped_column(default=False)
    auto_heal: Mapped[bool] = mapped_column(default=False)
    availability_zone: Mapped[str | None] = mapped_column(String(255), default=None)
    privileged: Mapped[bool] = mapped_column(default=False)
    # Internal only, never accepted from the API: set by the cluster node
    # provisioner ("dind": the Docker-in-Docker options of a cluster node).
    node_profile: Mapped[str | None] = mapped_column(String(16), default=None)
    healthcheck: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    exposed_ports: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    registry_id: Mapped[str | None] = mapped_column(String(36), default=None)
    # image_driver=glance with the cloud's Glance: "<image id>:<checksum>" as resolved at create
    image_ref: Mapped[str | None] = mapped_column(String(128), default=None)
    requested_host: Mapped[str | None] = mapped_column(String(255), default=None)
    # -- capsule members: "container" (plain), or a capsule's "sandbox", "init", "app"
    capsule_id: Mapped[str | None] = mapped_column(String(36), default=None, index=True)
    container_type: Mapped[str] = mapped_column(String(16), default="container")

    # -- placement and claim
    host: Mapped[str | None] = mapped_column(String(255), default=None)
    claimed: Mapped[bool] = mapped_column(default=False)

    # -- desired vs observed
    desired_state: Mapped[str] = mapped_column(String(16), default="created")
    desired_since: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    # After an error the agent leaves the container alone until the user acts.
    held: Mapped[bool] = mapped_column(default=False)
    spec_version: Mapped[int] = mapped_column(default=1)
    pending_ops: Mapped[list[Any]] = mapped_column(default=list)
    stop_timeout: Mapped[int] = mapped_column(default=10)
    observed_state: Mapped[str | None] = mapped_column(String(16), default=None)
    observed_spec_version: Mapped[int] = mapped_column(default=0)
    runtime_id: Mapped[str | None] = mapped_column(String(80), default=None)

    # -- what Zun shows
    status: Mapped[str] = mapped_column(String(20), default="Creating")
    status_reason: Mapped[str | None] = mapped_column(Text, default=None)
    status_detail: Mapped[str | None] = mapped_column(String(255), default=None)
    task_state: Mapped[str | None] = mapped_column(String(32), default=None)
    addresses: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    ports: Mapped[list[Any] | None] = mapped_column(default=None)

    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, default=None)
    started_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, default=None)


class ContainerActionRow(Base):
    """One user request against a container (Zun's container action)."""

    __tablename__ = "container_actions"
    __table_args__ = (Index("ix_container_actions_container", "container_uuid", "request_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(64))
    container_uuid: Mapped[str] = mapped_column(String(36))
    action: Mapped[str] = mapped_column(String(64))
    project_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(64))
    start_time: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    finish_time: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, default=None)
    message: Mapped[str | None] = mapped_column(String(255), default=None)


class ActionEventRow(Base):
    """A step of an action, e.g. ``compute__do_container_start``."""

    __tablename__ = "container_action_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    action_id: Mapped[int] = mapped_column(
        ForeignKey("container_actions.id", ondelete="CASCADE"), index=True
    )
    event: Mapped[str] = mapped_column(String(255))
    start_time: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    finish_time: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, default=None)
    result: Mapped[str | None] = mapped_column(String(32), default=None)
    traceback: Mapped[str | None] = mapped_column(Text, default=None)
