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
    """One dedicated connection that LISTENs and hands each payload to ``on_message``.

    When the connection is lost (PostgreSQL restarted, the backend terminated) it
    connects again, trying every ``retry`` seconds at most, and then calls
    ``on_gap``: what was notified meanwhile never arrives, so the caller wakes what
    it would have woken. Before, the listener stayed dead until the API restarted:
    this process's own changes no longer woke its agents' long polls (each waited
    out its timeout) and the other processes' token revocations never reached it.
    """

    def __init__(
        self,
        url: str,
        on_message: Callable[[str], Coroutine[Any, Any, None]],
        on_gap: Callable[[], Coroutine[Any, Any, None]] | None = None,
        *,
        retry: float = 2.0,
    ) -> None:
        parsed = make_url(url).set(drivername="postgresql")
        self._dsn = parsed.render_as_string(hide_password=False)
        self._on_message = on_message
        self._on_gap = on_gap
        self._retry = retry
        self._conn: Any = None
        self._closing = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self._listen()

    async def _listen(self) -> None:
        conn = await asyncpg.connect(self._dsn)
        try:
            await conn.add_listener(CHANNEL, self._deliver)
        except BaseException:
            await conn.close()
            raise
        conn.add_termination_listener(self._lost)
        self._conn = conn

    def _lost(self, _conn: Any) -> None:
        if self._closing:
            return
        log.warning("the LISTEN connection to PostgreSQL was lost; connecting again")
        self._spawn(self._reconnect())

    async def _reconnect(self) -> None:
        delay = min(0.1, self._retry)
        while not self._closing:
            await asyncio.sleep(delay)
            try:
                await self._listen()
            except Exception as exc:  # down, starting up, refusing: any of them, again
                log.info("LISTEN connection not back yet (%s); retrying", exc)
                delay = min(delay * 2, self._retry)
                continue
            log.warning("the LISTEN connection to PostgreSQL is back")
            if self._on_gap is not None:
                try:
                    await self._on_gap()
                except Exception:
                    log.exception("covering the LISTEN connection's gap failed")
            return

    def _deliver(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self._spawn(self._on_message(payload))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
