"""SQLite for the async engine without a thread hop per call.

SQLAlchemy's ``sqlite+aiosqlite`` dialect drives ``aiosqlite``, which runs every
call (execute, fetch, close, commit) on a thread of its own and hands the result
back to the event loop. On the 2-core machines Berth is measured on, that costs
~0.65 ms of CPU per statement (``SELECT 1``: 0.78 ms per statement through the
async engine against 0.03 ms through the same SQLAlchemy Core on plain
``sqlite3``): the queue, two thread wake-ups, the self-pipe write that wakes the
loop and the GIL changing hands, three or four times per statement. A create
runs a dozen statements; 20 concurrent creates spent a third of Berth's CPU on
that hand-over rather than on SQLite.

A local SQLite statement itself takes tens of microseconds, less than the
hand-over, so this connection runs it on the event loop: the same SQLAlchemy
dialect (``sqlite+aiosqlite``: its SQL, types and pool) gets a connection whose
awaitables complete at once (``create_async_engine(async_creator=...)``).

The one case that must not run on the loop is waiting for a lock another
connection holds: the connection keeps SQLite's ``busy_timeout`` at 0, so a
statement that finds the database locked fails at once with "database is
locked" and had no effect; it is then run again on a worker thread with the
patient timeout, while the loop goes on serving others. Inside one Berth
process writers queue on ``Database``'s write lock first, so this happens only
when another process (a ``berth`` admin command, a second server) writes at the
same moment.

What it gives up: a long query (thousands of rows) holds the loop for its
duration instead of a worker thread's; the rows are turned into Python objects
on the loop either way, which is what such a request spends most of its time
on.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

__all__ = ["InlineConnection", "connect"]

T = TypeVar("T")


def _locked(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class InlineConnection:
    """An ``aiosqlite.Connection`` look-alike (the part SQLAlchemy uses) that runs inline."""

    def __init__(self, conn: sqlite3.Connection, patience: float) -> None:
        self._conn = conn
        # aiosqlite's names: SQLAlchemy reads _connection (None once closed) and _conn.
        self._connection: sqlite3.Connection | None = conn
        self._patience_ms = int(patience * 1000)
        self._tx = _Immediate()  # SQLAlchemy's isolation-level setter queues through it
        conn.execute("PRAGMA busy_timeout = 0")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` now; if the database is locked, again on a thread that waits for it."""
        try:
            return fn(*args)
        except sqlite3.OperationalError as exc:
            if not _locked(exc):
                raise
        waiting = asyncio.ensure_future(asyncio.to_thread(self._patiently, fn, *args))
        cancelled = False
        while not waiting.done():
            try:
                await asyncio.shield(waiting)
            except asyncio.CancelledError:
                # The statement goes on in its thread and holds the connection: a
                # rollback now would wait for it on the loop. Let it end, then give in.
                cancelled = True
        if cancelled:
            raise asyncio.CancelledError
        return waiting.result()

    def _patiently(self, fn: Callable[..., T], *args: Any) -> T:
        self._conn.execute(f"PRAGMA busy_timeout = {self._patience_ms}")
        try:
            return fn(*args)
        finally:
            self._conn.execute("PRAGMA busy_timeout = 0")

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    def cursor(self) -> InlineCursor:
        return InlineCursor(self, self._conn.cursor())

    async def commit(self) -> None:
        await self.run(self._conn.commit)

    async def rollback(self) -> None:
        self._conn.rollback()

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        """Close at once (also SQLAlchemy's forced terminate)."""
        self._connection = None
        self._conn.close()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._conn.create_function(*args, **kwargs)


class InlineCursor:
    """An ``aiosqlite.Cursor`` look-alike over a ``sqlite3.Cursor``."""

    def __init__(self, owner: InlineConnection, cursor: sqlite3.Cursor) -> None:
        self._owner = owner
        self._cursor = cursor

    async def __aenter__(self) -> InlineCursor:
        return self

    async def execute(self, sql: str, parameters: Any = None) -> InlineCursor:
        if parameters is None:
            await self._owner.run(self._cursor.execute, sql)
        else:
            await self._owner.run(self._cursor.execute, sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> InlineCursor:
        rows = list(parameters)  # a generator could not be run twice
        await self._owner.run(self._cursor.executemany, sql, rows)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> Sequence[Any]:
        return self._cursor.fetchmany(size) if size is not None else self._cursor.fetchmany()

    async def fetchall(self) -> Sequence[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value


class _Immediate:
    """Stands in for aiosqlite's call queue: runs the call now and resolves its future."""

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as exc:
            if future is None:
                raise
            future.set_exception(exc)
        else:
            if future is not None:
                future.set_result(result)


async def connect(
    args: Sequence[Any], kwargs: Mapping[str, Any], patience: float
) -> InlineConnection:
    """A connection made as the dialect would make it (``create_connect_args``)."""
    conn = sqlite3.connect(*args, **{**kwargs, "check_same_thread": False})
    return InlineConnection(conn, patience)
