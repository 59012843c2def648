"""Files injected into containers (Zun's ``mounts`` of ``type=bind``), kept apart from the rows.

The content lives in its own table so that listing containers, or an agent's
long poll over its host's containers, never loads it: only the create of the
runtime container (first create, rebuild, auto-heal recreate) reads it.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from berth.store.base import Base, UtcDateTime, utcnow

__all__ = ["ContainerFileRow"]


class ContainerFileRow(Base):
    """One injected file of container ``container_uuid``: its path there and its bytes."""

    __tablename__ = "container_files"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    container_uuid: Mapped[str] = mapped_column(String(36), index=True)
    destination: Mapped[str] = mapped_column(Text)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
