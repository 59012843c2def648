"""Data volumes and capsules (pods): project resources beside the containers."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from berth.store.base import Base, UtcDateTime, utcnow

__all__ = ["CapsuleRow", "VolumeRow"]


class VolumeRow(Base):
    """A data volume of a project, kept on one host by a volume driver (``local``).

    ``host`` is set when a container first mounts it (a local volume lives where
    it was created, so every later mount is placed there). ``owner_uuid`` names
    the container or capsule that created it implicitly (``--mount size=N``,
    a capsule volume with ``autoRemove``): it goes away with its owner.
    """

    __tablename__ = "volumes"
    __table_args__ = (Index("ix_volumes_project_name", "project_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(default=1)
    driver: Mapped[str] = mapped_column(String(32), default="local")
    host: Mapped[str | None] = mapped_column(String(255), default=None)
    owner_uuid: Mapped[str | None] = mapped_column(String(36), default=None, index=True)
    # Set while its host removes its data, before the row goes: no container mounts it.
    deleting: Mapped[bool] = mapped_column(default=False, server_default="0")
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, default=None)


class CapsuleRow(Base):
    """A capsule (Zun's pod): its members are container rows with ``capsule_id`` set."""

    __tablename__ = "capsules"
    __table_args__ = (Index("ix_capsules_project_name", "project_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[str] = mapped_column(String(64))
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    annotations: Mapped[dict[str, Any]] = mapped_column(default=dict)
    restart_policy: Mapped[dict[str, Any]] = mapped_column(default=dict)
    cpu: Mapped[float] = mapped_column(default=0.0)
    memory: Mapped[int] = mapped_column(default=0)
    # [{"name": <template name>, "volume_uuid": ...}]
    volumes: Mapped[list[Any]] = mapped_column(default=list)
    deleting: Mapped[bool] = mapped_column(default=False)
    status_reason: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, default=None)
