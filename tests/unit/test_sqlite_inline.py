"""SQLite statements on the event loop: fast when free, patient (off the loop) when locked.

Real SQLite files; the "other process" holding the write lock is a plain
``sqlite3`` connection, which takes the same file lock another process would.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError

from berth.store import db as db_module
from berth.store.db import Database


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[tuple[Database, Path]]:
    path = tmp_path / "inline.db"
    db = Database(f"sqlite+aiosqlite:///{path}")
    async with db.engine.begin() as conn:
        await conn.execute(text("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT UNIQUE)"))
    try:
        yield db, path
    finally:
        await db.close()


async def _names(db: Database) -> list[str]:
    async with db.read() as session:
        return list((await session.execute(text("SELECT name FROM items ORDER BY id"))).scalars())


async def test_a_write_waits_for_another_process_lock_without_stalling_the_loop(
    database: tuple[Database, Path],
) -> None:
    db, path = database
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    other.execute("INSERT INTO items (name) VALUES ('theirs')")

    async def write() -> None:
        async with db.transaction() as session:
            await session.execute(text("INSERT INTO items (name) VALUES ('ours')"))

    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticking = asyncio.create_task(ticker())
    writing = asyncio.create_task(write())
    await asyncio.sleep(0.4)
    assert not writing.done(), "the write went through while another connection held the lock"
    assert ticks >= 10, f"the event loop stalled while the write waited ({ticks} ticks in 0.4 s)"
    # Readers are not held up by the writer's lock (WAL): the loop answers them meanwhile.
    assert await _names(db) == []
    other.execute("COMMIT")
    await asyncio.wait_for(writing, 10)
    ticking.cancel()
    assert await _names(db) == ["theirs", "ours"]
    other.close()


async def test_a_lock_held_past_the_patience_is_an_error_and_writes_nothing(
    database: tuple[Database, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, path = database
    await db.close()  # connections made from now on take the short patience
    monkeypatch.setattr(db_module, "_SQLITE_PATIENCE", 0.3)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    started = time.monotonic()
    with pytest.raises(OperationalError, match="locked"):
        async with db.transaction() as session:
            await session.execute(text("INSERT INTO items (name) VALUES ('ours')"))
    assert 0.25 < time.monotonic() - started < 5
    other.execute("ROLLBACK")
    other.close()
    assert await _names(db) == []
    async with db.transaction() as session:  # and the connection is usable again
        await session.execute(text("INSERT INTO items (name) VALUES ('later')"))
    assert await _names(db) == ["later"]


async def test_errors_and_rollbacks_behave_as_with_any_driver(
    database: tuple[Database, Path],
) -> None:
    db, _ = database
    async with db.transaction() as session:
        await session.execute(text("INSERT INTO items (name) VALUES ('a')"))
    with pytest.raises(IntegrityError):
        async with db.transaction() as session:
            await session.execute(text("INSERT INTO items (name) VALUES ('b')"))
            await session.execute(text("INSERT INTO items (name) VALUES ('a')"))
    assert await _names(db) == ["a"]  # 'b' rolled back with the failed transaction
    async with db.transaction() as session:
        await session.execute(
            text("INSERT INTO items (name) VALUES (:n)"), [{"n": "c"}, {"n": "d"}]
        )
    assert await _names(db) == ["a", "c", "d"]


async def test_a_write_cancelled_while_it_waits_ends_cleanly_and_never_blocks_the_loop(
    database: tuple[Database, Path],
) -> None:
    db, path = database
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")

    async def write() -> None:
        async with db.transaction() as session:
            await session.execute(text("INSERT INTO items (name) VALUES ('cancelled')"))

    writing = asyncio.create_task(write())
    await asyncio.sleep(0.2)
    writing.cancel()
    # The rollback that follows the cancellation must not wait for the lock on the loop.
    started = time.monotonic()
    await asyncio.sleep(0.2)
    assert time.monotonic() - started < 0.5, "the event loop stalled after the cancellation"
    assert not writing.done()  # still waiting for its statement's thread
    other.execute("COMMIT")
    other.close()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(writing, 10)
    assert await _names(db) == []  # the cancelled transaction was rolled back
    async with db.transaction() as session:
        await session.execute(text("INSERT INTO items (name) VALUES ('after')"))
    assert await _names(db) == ["after"]
