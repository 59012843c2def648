"""PostgreSQL LISTEN/NOTIFY: how API processes tell each other that a host's work changed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url

from berth.store.db import Database, overloaded

__all__ = ["CHANNEL", "PgListener", "pg_notify"]

CHANNEL = "berth_hosts"
log = logging.getLogger(__name__)


async def pg_notify(db: Database, payload: str) -> None:
    """Publish ``payload`` on the Berth channel (delivered to every listening process).

    No connection free within the pool's timeout is ``errors.Overloaded`` (a 503), as for
    every other use of the pool (it was an unhandled 500 under overload).
    """
    with overloaded():
        async with db.engine.connect() as conn:
            await conn.execute(text("SELECT pg_notify(:c, :p)"), {"c": CHANNEL, "p": payload})
            await conn.commit()


class PgListener:
    """One dedicated connection that LISTENs and hands each payload to ``on_message``."""

    def __init__(self, url: str, on_message: Callable[[str], Coroutine[Any, Any, None]]) -> None:
        parsed = make_url(url).set(drivername="postgresql")
        self._dsn = parsed.render_as_string(hide_password=False)
        self._on_message = on_message
        self._conn: Any = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._conn = await asyncpg.connect(self._dsn)
        await self._conn.add_listener(CHANNEL, self._deliver)

    def _deliver(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(self._on_message(payload))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
