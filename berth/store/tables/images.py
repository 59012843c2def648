"""Images (on hosts and in the image store) and the private registries of projects."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from berth.store.base import Base, UtcDateTime, utcnow

__all__ = ["ImageRow", "RegistryRow"]


class ImageRow(Base):
    """An image Berth knows: pulled onto a host (``host`` set) or kept in the image store.

    Store images (``host`` None) live at ``<store>/<namespace>/<repo>:<tag>``,
    the namespace being the owning project, or ``public`` when ``visibility``
    is public. ``status`` is ``pulling``/``saving`` while an agent works on it,
    then ``active`` or ``error`` (with ``status_reason``).
    """

    __tablename__ = "images"
    __table_args__ = (
        Index("ix_images_project", "project_id"),
        Index("ix_images_repo_tag", "repo", "tag"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    project_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(64))
    repo: Mapped[str] = mapped_column(String(255))
    tag: Mapped[str] = mapped_column(String(128), default="latest")
    host: Mapped[str | None] = mapped_column(String(255), default=None)
    image_id: Mapped[str | None] = mapped_column(String(255), default=None)
    size: Mapped[int | None] = mapped_column(BigInteger, default=None)
    visibility: Mapped[str] = mapped_column(String(16), default="private")
    status: Mapped[str] = mapped_column(String(16), default="active")
    status_reason: Mapped[str | None] = mapped_column(Text, default=None)
    container_uuid: Mapped[str | None] = mapped_column(String(36), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, default=None)


class RegistryRow(Base):
    """A project's private registry; the password is stored encrypted (Fernet), never plain."""

    __tablename__ = "registries"
    __table_args__ = (Index("ix_registries_project_name", "project_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    project_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(255), default=None)
    domain: Mapped[str] = mapped_column(String(255))
    username: Mapped[str | None] = mapped_column(String(255), default=None)
    password_encrypted: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, default=None)
