"""Stream tokens: the short-lived, single-use keys of interactive websocket sessions."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from berth.store.base import Base, UtcDateTime, utcnow

__all__ = ["StreamTokenRow"]


class StreamTokenRow(Base):
    """One attach or exec session a user may open, once, before ``expires_at``.

    Only the token's SHA-256 ``digest`` is stored: the token itself lives in
    the URL handed to the user and nowhere else.
    """

    __tablename__ = "stream_tokens"
    __table_args__ = (Index("ix_stream_tokens_expires_at", "expires_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # "attach" or "exec"
    container_uuid: Mapped[str] = mapped_column(String(36))
    project_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(64))
    exec_id: Mapped[str | None] = mapped_column(String(80), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, default=None)
