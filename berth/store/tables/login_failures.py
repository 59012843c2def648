"""Login failures: the login throttle's counts, shared by every API process of the database."""

from __future__ import annotations

from sqlalchemy import Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from berth.store.base import Base

__all__ = ["LoginFailureRow"]


class LoginFailureRow(Base):
    """Recent failed passwords of one key, or a user's last success from one address.

    ``kind`` is ``user`` (a user id, or the name given when no user has it),
    ``source`` (a client address), ``pair`` (a user from an address it logged in
    from lately) or ``known`` (that address: ``last`` is the success). Times are
    the throttle's clock (seconds since the epoch), so every process reads them
    alike. Rows are forgotten after the failure window (a week for ``known``) and
    capped in number (berth/services/identity/throttle.py).
    """

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_last", "last"),)

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    key: Mapped[str] = mapped_column(String(320), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last: Mapped[float] = mapped_column(Float, default=0.0)  # the last failure (or success)
    locked_until: Mapped[float] = mapped_column(Float, default=0.0)
