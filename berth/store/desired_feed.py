"""Each host's desired-state revision and change feed, written in the transaction that changes it.

An agent that holds revision ``r`` of its host asks what changed since; the
answer is the containers named by the feed entries after ``r``. For that to
lose nothing, every change to what an agent is told must bump its host's
revision in the same transaction, and revisions must be visible in the order
they were given:

- a flush that inserts, deletes, or changes a column an agent is told of
  (anything but the status a user reads: ``_QUIET``) of a ``ContainerRow``
  bumps the revision of its host, and of its old host when it moved, with one
  ``UPDATE hosts ... RETURNING`` per host, and writes one feed entry per
  container (``record``, an ``after_flush`` hook every ``Database`` installs,
  so no service has to remember it);
- a host-wide change (a security group's rules) writes an entry without a
  container (``mark``): an agent behind it reads everything;
- the ``UPDATE`` locks the host row until the transaction ends, so two
  transactions (in any process) changing one host take revisions in the order
  they commit: a reader that sees revision ``n`` committed sees every entry up
  to ``n`` (SQLite has one writer at a time anyway).

``changes`` answers None (read everything) when the entries after ``r`` are
not all there: trimmed (``trim``), or ``r`` is not of this feed. The
*epoch* names the feed a revision counts in: a host registered afresh (its row
deleted and made again) or a database restored from a backup has another, so
an agent's revision from before can never be mistaken for a current one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any, cast

from sqlalchemy import Table, delete, insert, inspect, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import UOWTransaction

from berth.store.tables import ContainerRow, DesiredChangeRow, HostRow

__all__ = ["Head", "changes", "head", "mark", "record", "trim"]

Head = tuple[str, int]  # (epoch, revision)

# What only users read (status, timestamps): changing it tells an agent nothing.
_QUIET = frozenset(
    {
        "status",
        "status_reason",
        "status_detail",
        "task_state",
        "addresses",
        "ports",
        "claimed",
        "created_at",
        "updated_at",
        "started_at",
    }
)
_HOSTS = cast(Table, HostRow.__table__)
_CHANGES = cast(Table, DesiredChangeRow.__table__)


def _bump(conn: Connection, host: str, uuids: Iterable[str | None]) -> None:
    stmt = (
        update(_HOSTS)
        .where(_HOSTS.c.hostname == host)
        .values(desired_revision=_HOSTS.c.desired_revision + 1)
        .returning(_HOSTS.c.desired_revision)
    )
    revision = conn.execute(stmt).scalar()
    if revision is None:
        return  # not a registered host: no agent polls it
    conn.execute(
        insert(_CHANGES),
        [{"host": host, "revision": revision, "uuid": u} for u in sorted(uuids, key=str)],
    )


def _hosts_of(row: ContainerRow, *, changed: bool) -> set[str]:
    """The hosts whose agents must hear of ``row``: its host, and the one it left."""
    found = {row.host} if row.host else set()
    if changed:
        found.update(h for h in inspect(row).attrs.host.history.deleted if h)
    return found


def _told(row: ContainerRow) -> bool:
    """Whether a flush changes something an agent is told of ``row``."""
    attrs = inspect(row).attrs
    return any(a.key not in _QUIET and a.history.has_changes() for a in attrs)


def record(session: OrmSession, _flush: UOWTransaction) -> None:
    """``after_flush``: bump the revision of every host whose containers this flush changed."""
    changed: dict[str, set[str | None]] = {}
    for row in session.new:
        if isinstance(row, ContainerRow) and row.host:
            changed.setdefault(row.host, set()).add(row.uuid)
    for row in session.deleted:
        if isinstance(row, ContainerRow):
            for host in _hosts_of(row, changed=True):
                changed.setdefault(host, set()).add(row.uuid)
    for row in session.dirty:
        if isinstance(row, ContainerRow) and row not in session.deleted and _told(row):
            for host in _hosts_of(row, changed=True):
                changed.setdefault(host, set()).add(row.uuid)
    if changed:
        conn = session.connection()
        for host in sorted(changed):  # one order everywhere: no deadlock between two flushes
            _bump(conn, host, changed[host])


async def mark(session: AsyncSession, hosts: Iterable[str | None]) -> None:
    """A host-wide change on each of ``hosts``: their agents read everything again."""
    names = sorted({h for h in hosts if h})

    def write(sync: OrmSession) -> None:
        conn = sync.connection()
        for host in names:
            _bump(conn, host, [None])

    if names:
        await session.run_sync(write)


async def head(session: AsyncSession, host: str) -> Head | None:
    """The (epoch, revision) of ``host`` now; None when it is not registered."""
    found = (
        await session.execute(
            select(HostRow.desired_epoch, HostRow.desired_revision).where(HostRow.hostname == host)
        )
    ).first()
    return None if found is None else (str(found[0]), int(found[1]))


async def changes(session: AsyncSession, host: str, since: int, upto: int) -> set[str] | None:
    """The containers changed after revision ``since`` up to ``upto`` (read after ``head``).

    None when the feed cannot say (an entry in that range was trimmed, or one
    is host-wide): the caller answers with everything.
    """
    rows: Sequence[Any] = (
        await session.execute(
            select(DesiredChangeRow.revision, DesiredChangeRow.uuid).where(
                DesiredChangeRow.host == host,
                DesiredChangeRow.revision > since,
                DesiredChangeRow.revision <= upto,
            )
        )
    ).all()
    if {r[0] for r in rows} != set(range(since + 1, upto + 1)):
        return None  # a revision in the range has no entry left: trimmed
    uuids = {r[1] for r in rows}
    if None in uuids:
        return None
    return cast(set[str], uuids)


async def trim(session: AsyncSession, before: dt.datetime) -> int:
    """Drop feed entries written before ``before``; how many.

    An agent whose revision is older reads everything (``changes`` says None).
    """
    stmt = delete(DesiredChangeRow).where(DesiredChangeRow.created_at < before)
    result = await session.execute(stmt)
    return int(getattr(result, "rowcount", 0) or 0)
