"""The password throttle's counters (``login_failures``): read, count, lock, forget.

Rows are (kind, key): a failure counter per user, per source address or per
user from a known address, and ``KNOWN`` rows marking an address a user
logged in from. Counting is one atomic upsert, so concurrent failures on
several processes add up exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import and_, case, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from berth.store.tables import LoginFailureRow

__all__ = [
    "KNOWN",
    "count_failure",
    "counters",
    "known_since",
    "lock",
    "mark_known",
    "reset",
    "rows",
    "sweep",
]

T = LoginFailureRow
# The kind of the rows that mark an address a user logged in from.
KNOWN = "known"


async def known_since(s: AsyncSession, pair: str) -> float | None:
    """When the user logged in from the address last (``pair`` is "user@source"); None if never."""
    seen: float | None = await s.scalar(select(T.last).where(T.kind == KNOWN, T.key == pair))
    return seen


async def counters(
    s: AsyncSession, wanted: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], LoginFailureRow]:
    """The rows of the (kind, key) pairs in ``wanted`` that exist, by (kind, key)."""
    where = or_(*(and_(T.kind == kind, T.key == key) for kind, key in wanted))
    return {(r.kind, r.key): r for r in (await s.scalars(select(T).where(where))).all()}


async def reset(s: AsyncSession, keys: Iterable[tuple[str, str]]) -> None:
    """Zero the failures and lift the lock of each (kind, key) that has a row."""
    values = {"failures": 0, "locked_until": 0.0}
    for kind, key in keys:
        await s.execute(update(T).where(T.kind == kind, T.key == key).values(**values))


async def mark_known(s: AsyncSession, pair: str, now: float) -> None:
    """Record a successful login of the user from the address (``pair``) at ``now``."""
    stmt = _insert(s).values(kind=KNOWN, key=pair, failures=0, last=now, locked_until=0.0)
    keys = [T.kind, T.key]
    await s.execute(stmt.on_conflict_do_update(index_elements=keys, set_={"last": now}))


async def count_failure(s: AsyncSession, kind: str, key: str, now: float, window: float) -> int:
    """Add a failure to (kind, key) at ``now`` and return its count.

    The count starts again at 1 when the last failure is more than ``window``
    seconds old.
    """
    stmt = _insert(s).values(kind=kind, key=key, failures=1, last=now, locked_until=0.0)
    stmt = stmt.on_conflict_do_update(
        index_elements=[T.kind, T.key],
        set_={
            "failures": case((now - T.last > window, 1), else_=T.failures + 1),
            "last": now,
        },
    )
    count: int = (await s.execute(stmt.returning(T.failures))).scalar_one()
    return count


async def lock(s: AsyncSession, kind: str, key: str, until: float) -> None:
    """Refuse (kind, key) until ``until`` (wall-clock seconds)."""
    await s.execute(update(T).where(T.kind == kind, T.key == key).values(locked_until=until))


async def sweep(
    s: AsyncSession, now: float, *, window: float, known_for: float, max_keys: int
) -> None:
    """Forget expired rows, then the oldest unlocked ones beyond ``max_keys`` per kind.

    A counter expires ``window`` seconds after its last failure (unless still
    locked), a known address ``known_for`` seconds after its last login.
    """
    await s.execute(
        delete(T).where(
            or_(
                and_(T.kind != KNOWN, T.last < now - window, T.locked_until <= now),
                and_(T.kind == KNOWN, T.last < now - known_for),
            )
        )
    )
    for known in (True, False):
        of_kind = (T.kind == KNOWN) if known else (T.kind != KNOWN)
        cutoff = await s.scalar(
            select(T.last).where(of_kind).order_by(T.last.desc()).offset(max_keys).limit(1)
        )
        if cutoff is not None:
            await s.execute(delete(T).where(of_kind, T.last <= cutoff, T.locked_until <= now))


async def rows(s: AsyncSession) -> int:
    """How many rows the throttle keeps (every kind)."""
    return int(await s.scalar(select(func.count()).select_from(T)) or 0)


def _insert(s: AsyncSession) -> Any:
    # ON CONFLICT … DO UPDATE is spelled alike by both databases, built by each dialect.
    dialect = s.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(T)
