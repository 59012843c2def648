"""Zun-style paging on both stores: walking ``next`` markers sees every row once.

Runs on SQLite and PostgreSQL (the ``db_url`` fixture), which order NULLs
differently by themselves; a nullable sort key (a volume's ``host``) is the case
that used to lose rows: a marker whose key is NULL ended the listing.
"""

from __future__ import annotations

import random

import pytest
from sqlalchemy import select

from berth.store.db import Database
from berth.store.paging import page
from berth.store.tables import VolumeRow

pytestmark = pytest.mark.asyncio

HOSTS = [None, "host-a", "host-b", "host-c"]


async def _walk(db: Database, sort_key: str, sort_dir: str, size: int) -> list[str]:
    stmt = select(VolumeRow)
    seen: list[str] = []
    marker: str | None = None
    for _ in range(100):
        async with db.read() as session:
            rows = await page(
                session,
                stmt,
                VolumeRow,
                visible=stmt,
                limit=size,
                marker=marker,
                sort_key=sort_key,
                sort_dir=sort_dir,
            )
        seen += [r.uuid for r in rows]
        if len(rows) < size:
            return seen
        marker = rows[-1].uuid
    raise AssertionError(f"paging never ended: {seen}")


def _expected(rows: list[VolumeRow], sort_key: str, sort_dir: str) -> list[str]:
    def key(r: VolumeRow) -> tuple[bool, object, int]:
        value = getattr(r, sort_key)
        return (value is not None, value if value is not None else 0, r.id)

    ordered = sorted(rows, key=key, reverse=sort_dir == "desc")
    return [r.uuid for r in ordered]


async def test_pages_cover_every_row_once_with_nulls_sorting_smallest(db_url: str) -> None:
    db = Database(db_url)
    rng = random.Random(7)
    try:
        await db.migrate()
        async with db.transaction() as session:
            for n in range(23):
                session.add(
                    VolumeRow(
                        uuid=f"00000000-0000-0000-0000-{n:012d}",
                        name=f"vol-{rng.randrange(5)}",
                        project_id="p",
                        user_id="u",
                        size=rng.randrange(1, 4),
                        host=rng.choice(HOSTS),
                    )
                )
        async with db.read() as session:
            rows = list((await session.execute(select(VolumeRow))).scalars())
        assert any(r.host is None for r in rows) and any(r.host for r in rows)
        for sort_key in ("host", "name", "size", "id"):
            for sort_dir in ("asc", "desc"):
                want = _expected(rows, sort_key, sort_dir)
                for size in (1, 2, 5, 23, 50):
                    got = await _walk(db, sort_key, sort_dir, size)
                    assert got == want, (sort_key, sort_dir, size)
    finally:
        await db.close()
