"""A PostgreSQL session advisory lock: of several processes, exactly one holds a named lease.

Several ``berth-api`` worker processes serve one port (``api_workers``); what must
run once per group (the background loops, the all-in-one agent) runs in the one
that holds the lease. The lock lives in a dedicated connection's session, so
PostgreSQL releases it the moment that process dies or its connection drops:
no expiry to tune, no stale holder after a crash. ``held`` asks the server, so a
process whose connection broke learns it lost the lease instead of assuming.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

__all__ = ["AdvisoryLease", "lease_key"]

log = logging.getLogger(__name__)

_TIMEOUT = 5.0  # seconds a connect or a check may take before the lease counts as lost
# What a dropped connection or an unreachable server raises.
_LOST = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)


def lease_key(name: str) -> int:
    """The 64-bit advisory-lock key of ``name`` (stable across processes and releases)."""
    digest = hashlib.blake2b(f"berth:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class AdvisoryLease:
    """``pg_try_advisory_lock`` on a connection of its own, for the lease ``name``."""

    def __init__(self, url: str, name: str) -> None:
        self._dsn = make_url(url).set(drivername="postgresql").render_as_string(False)
        self.name = name
        self._key = lease_key(name)
        self._conn: Any = None
        self._holding = False

    async def acquire(self) -> bool:
        """Take the lease if nobody holds it; False if another process does or the server
        cannot be reached (the caller tries again later)."""
        try:
            if self._conn is None or self._conn.is_closed():
                self._conn = await asyncpg.connect(self._dsn, timeout=_TIMEOUT)
            got: bool = await self._conn.fetchval(
                "SELECT pg_try_advisory_lock($1)", self._key, timeout=_TIMEOUT
            )
        except _LOST as exc:
            log.warning("lease %s: PostgreSQL unreachable (%s)", self.name, exc)
            await self.release()
            return False
        self._holding = got
        return got

    async def held(self) -> bool:
        """Whether this process still holds the lease (its session is alive and owns it)."""
        if not self._holding or self._conn is None or self._conn.is_closed():
            return False
        try:
            # A session-level lock is only ever released by its session ending (or
            # an unlock this class never sends): a live session still holds it.
            await self._conn.fetchval("SELECT 1", timeout=_TIMEOUT)
        except _LOST as exc:
            log.warning("lease %s: lost its connection (%s)", self.name, exc)
            await self.release()
            return False
        return True

    async def release(self) -> None:
        """Give the lease up (closing the session releases the lock)."""
        conn, self._conn, self._holding = self._conn, None, False
        if conn is not None and not conn.is_closed():
            try:
                await asyncio.wait_for(conn.close(), _TIMEOUT)
            except _LOST:
                conn.terminate()
