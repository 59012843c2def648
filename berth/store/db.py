"""The database handle: engine, sessions and migrations for SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Connection, Dialect, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import ORMExecuteState, UOWTransaction
from sqlalchemy.orm import Session as OrmSession

from berth import errors
from berth.store import desired_feed, sqlite_inline
from berth.store.base import load_json
from berth.store.sqlite_inline import InlineConnection

__all__ = ["UNWATCHED", "Database", "Session", "Writes", "overloaded"]

log = logging.getLogger(__name__)

# The session a service holds between ``Database.read()``/``transaction()`` and
# the repository calls it makes: services name this type, never SQLAlchemy's.
Session = AsyncSession

_MIGRATIONS = Path(__file__).parent / "migrations"

# What a committed transaction wrote: "<table>:<insert|update|delete>" entries.
Writes = frozenset[str]
_PENDING = "berth.writes"
# Execution option of a bulk statement that no write watcher needs to hear
# about (deleting expired tokens, which no cache holds anyway).
UNWATCHED = "berth_unwatched"
# How long a SQLite statement waits for another process's write lock.
_SQLITE_PATIENCE = 30.0


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets readers proceed while one writer commits. Waiting for another
    # writer's lock is berth.store.sqlite_inline's business (on a thread).
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _ping_in_one_round_trip(dialect: Dialect) -> None:
    """The pool's pre-ping of a PostgreSQL connection as one statement, not three.

    ``pool_pre_ping`` checks every connection as it leaves the pool, so a
    connection PostgreSQL dropped (a restart) is replaced instead of failing a
    request. The asyncpg dialect pings a connection that is not in autocommit
    inside a transaction of its own (``BEGIN``, ``;``, ``ROLLBACK``): three
    round trips before every request's first statement, ~0.14 ms of the API's
    CPU on an empty list (a fifth of it). A pooled connection holds no
    transaction, so it is pinged in autocommit (``;`` alone, which answers
    whether the connection lives just as well) and put back as it was.
    """
    ping = dialect.do_ping

    def do_ping(dbapi_connection: Any) -> bool:
        was = dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        try:
            return ping(dbapi_connection)
        finally:
            dbapi_connection.autocommit = was

    dialect.do_ping = do_ping  # type: ignore[method-assign]


@contextmanager
def overloaded() -> Iterator[None]:
    """The database could not serve this use of it: a 503 the caller can act on (retry
    in a moment) instead of an unexpected error.

    ``Overloaded``: the pool's wait for a free connection timed out (every one busy
    longer than the pool waits, 30 s: more requests in flight than the process and
    the database serve). ``DatabaseUnavailable``: a connection broke under a
    statement (PostgreSQL restarted meanwhile); a connection that cannot be made
    at all is one already (``_connect_or_unavailable``).
    """
    try:
        yield
    except PoolTimeout as exc:
        raise errors.Overloaded(
            "The service is too busy to answer now (no database connection came free in time); "
            "retry in a moment."
        ) from exc
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        raise _unavailable(exc) from exc


def _unavailable(exc: BaseException) -> errors.DatabaseUnavailable:
    log.warning("the database is unreachable: %s", exc)
    return errors.DatabaseUnavailable(
        "The service cannot reach its database right now (it may be restarting); "
        "retry in a moment. If it lasts, the operator should check the database."
    )


def _connect_or_unavailable(
    dialect: Dialect, _record: Any, cargs: tuple[Any, ...], cparams: dict[str, Any]
) -> Any:
    """The pool's ``do_connect``: connect as SQLAlchemy would, but a database that
    cannot be reached (refused, down, starting up) is ``DatabaseUnavailable`` (a 503)
    instead of the driver's own error, which every request answered with a 500."""
    try:
        return dialect.connect(*cargs, **cparams)
    except (OSError, dialect.loaded_dbapi.Error) as exc:
        raise _unavailable(exc) from exc


class Database:
    """Owns the async engine; hands out sessions whose transaction commits on success."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {"echo": echo, "json_deserializer": load_json}
        if self.is_sqlite:
            if ":memory:" in url or url.endswith("://"):
                raise ValueError("use a file for SQLite: several connections must share it")
            Path(url.split("///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
        else:
            kwargs.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
        if self.is_sqlite:
            # Statements run on the event loop, not on aiosqlite's thread: see sqlite_inline.
            kwargs["async_creator"] = self._inline_sqlite
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if not self.is_sqlite:
            _ping_in_one_round_trip(self.engine.sync_engine.dialect)
            event.listen(self.engine.sync_engine, "do_connect", _connect_or_unavailable)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            # One writer at a time in this process: SQLite would otherwise make
            # concurrent writers spin on busy_timeout.
            self._write_lock: asyncio.Lock | None = asyncio.Lock()
        else:
            self._write_lock = None
        # A Session class of this database's own, so the write watchers below see
        # only its sessions (tests run several databases in one process).
        self._session_class: type[OrmSession] = type("BerthSession", (OrmSession,), {})
        # Every change to what an agent is told bumps its host's revision in the
        # same transaction (the incremental desired-state protocol).
        event.listen(self._session_class, "after_flush", desired_feed.record)
        self._write_watchers: list[Callable[[Writes], None]] = []
        self.sessions = async_sessionmaker(
            self.engine, expire_on_commit=False, sync_session_class=self._session_class
        )
        # Reads on PostgreSQL run in autocommit: no BEGIN before the first
        # statement and no ROLLBACK at the end, two round trips (and two backend
        # wake-ups) of a list's three. What a read sees is unchanged: at READ
        # COMMITTED every statement takes its own snapshot, inside a transaction
        # or not, and a read session writes nothing. SQLite's driver already
        # begins a transaction only before a write.
        self._read_sessions = (
            self.sessions
            if self.is_sqlite
            else async_sessionmaker(
                self.engine.execution_options(isolation_level="AUTOCOMMIT"),
                expire_on_commit=False,
                sync_session_class=self._session_class,
            )
        )

    async def _inline_sqlite(self) -> InlineConnection:
        args, kwargs = self.engine.dialect.create_connect_args(make_url(self.url))
        return await sqlite_inline.connect(args, kwargs, patience=_SQLITE_PATIENCE)

    def watch_writes(self, watcher: Callable[[Writes], None]) -> None:
        """Call ``watcher`` after every commit with the tables it wrote and how.

        Caches of rows (the token cache) use it to drop entries the moment the
        rows behind them change in this process; other processes learn it through
        their own channel (``berth.store.listen``).
        """
        if not self._write_watchers:
            cls = self._session_class
            event.listen(cls, "after_flush", _record_flush)
            event.listen(cls, "do_orm_execute", _record_bulk)
            # SQLAlchemy keeps a class's listeners in a WeakKeyDictionary keyed by the
            # class; a bound method there would hold this handle, and through it the
            # class, for ever (every test's database stayed, engine and all).
            event.listen(cls, "after_commit", _weak_after_commit(weakref.ref(self)))
            event.listen(cls, "after_rollback", _forget_writes)
        self._write_watchers.append(watcher)

    def _after_commit(self, session: OrmSession) -> None:
        writes: set[str] | None = session.info.pop(_PENDING, None)
        if writes:
            done = frozenset(writes)
            for watcher in self._write_watchers:
                watcher(done)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in one transaction: committed when the block ends, rolled back on error.

        No connection free within the pool's timeout is ``errors.Overloaded`` (a 503).
        """
        with overloaded():
            if self._write_lock is not None:
                async with self._write_lock, self.sessions() as session, session.begin():
                    yield session
            else:
                async with self.sessions() as session, session.begin():
                    yield session

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for reads only (no write lock on SQLite, no transaction on PostgreSQL);
        ``Overloaded`` as ``transaction``."""
        with overloaded():
            async with self._read_sessions() as session:
                yield session

    async def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision."""

        def upgrade(conn: Connection) -> None:
            cfg = Config()
            cfg.set_main_option("script_location", str(_MIGRATIONS))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "heads")

        async with self.engine.begin() as conn:
            await conn.run_sync(upgrade)

    async def close(self) -> None:
        await self.engine.dispose()


def _weak_after_commit(db: weakref.ref[Database]) -> Callable[[OrmSession], None]:
    def after_commit(session: OrmSession) -> None:
        handle = db()
        if handle is not None:
            handle._after_commit(session)

    return after_commit


def _pending(session: OrmSession) -> set[str]:
    writes: set[str] = session.info.setdefault(_PENDING, set())
    return writes


def _record_flush(session: OrmSession, _flush: UOWTransaction) -> None:
    # after_flush still sees the flushed objects in new/dirty/deleted.
    writes = _pending(session)
    for op, objects in (
        ("insert", session.new),
        ("update", session.dirty),
        ("delete", session.deleted),
    ):
        for obj in objects:
            table = getattr(obj, "__tablename__", None)
            if table is not None:
                writes.add(f"{table}:{op}")


def _record_bulk(state: ORMExecuteState) -> None:
    if state.execution_options.get(UNWATCHED):
        return
    if state.is_update or state.is_delete or state.is_insert:
        table = getattr(state.statement, "table", None)
        name = getattr(table, "name", None)
        if name is not None:
            op = "update" if state.is_update else "delete" if state.is_delete else "insert"
            _pending(state.session).add(f"{name}:{op}")


def _forget_writes(session: OrmSession) -> None:
    session.info.pop(_PENDING, None)
