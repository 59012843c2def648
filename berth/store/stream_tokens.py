"""Stream token queries: issue, redeem exactly once, forget the expired."""

from __future__ import annotations

import datetime as dt
import hashlib

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from berth.store.tables import StreamTokenRow

__all__ = ["digest_of", "issue", "purge_expired", "redeem", "unopened"]


def digest_of(token: str) -> str:
    """The stored form of a token (SHA-256, hex): the token itself is never stored."""
    return hashlib.sha256(token.encode()).hexdigest()


async def issue(session: AsyncSession, row: StreamTokenRow) -> None:
    """Store a new token row."""
    session.add(row)
    await session.flush()


async def redeem(session: AsyncSession, token: str, now: dt.datetime) -> StreamTokenRow | None:
    """Mark the token used and return it; None if unknown, used already or expired.

    One conditional UPDATE decides: of two concurrent redeemers exactly one wins.
    """
    digest = digest_of(token)
    result = await session.execute(
        update(StreamTokenRow)
        .where(
            StreamTokenRow.digest == digest,
            StreamTokenRow.used_at.is_(None),
            StreamTokenRow.expires_at > now,
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        return None
    found: StreamTokenRow | None = (
        await session.execute(select(StreamTokenRow).where(StreamTokenRow.digest == digest))
    ).scalar_one_or_none()
    return found


async def purge_expired(session: AsyncSession, before: dt.datetime) -> None:
    """Delete tokens that expired before ``before`` (used or not: they are dead either way)."""
    await session.execute(
        delete(StreamTokenRow)
        .where(StreamTokenRow.expires_at < before)
        .execution_options(synchronize_session=False)
    )


async def unopened(session: AsyncSession, project_id: str, now: dt.datetime) -> int:
    """How many tokens of ``project_id`` are neither used nor expired."""
    stmt = select(func.count()).where(
        StreamTokenRow.expires_at > now,
        StreamTokenRow.project_id == project_id,
        StreamTokenRow.used_at.is_(None),
    )
    return int((await session.execute(stmt)).scalar() or 0)
