"""Statements kept per shape (berth.store.shapes) hold no request's values.

The container list and show run statements built once and reused across
requests; the project, the filters' values, the identifier and the page size are
bound at execution. If any of them were baked into a kept statement, the next
request of that shape would see the first one's rows: another project's, or
another filter's. On both stores (``db_url``).
"""

from __future__ import annotations

import pytest

from berth import errors
from berth.store import containers, shapes
from berth.store.db import Database
from berth.store.paging import PageQuery
from berth.store.scope import Scope
from berth.store.tables import ContainerRow

pytestmark = pytest.mark.asyncio


def _row(n: int, project: str, status: str, name: str) -> ContainerRow:
    return ContainerRow(
        uuid=f"00000000-0000-0000-0000-{n:012d}",
        name=name,
        project_id=project,
        user_id="u",
        image="busybox",
        status=status,
        memory=64 * (n % 3 + 1),
    )


async def _seeded(db_url: str) -> Database:
    db = Database(db_url)
    await db.migrate()
    async with db.transaction() as session:
        n = 0
        for project in ("p1", "p2"):
            for status in ("Running", "Stopped", "Created"):
                for _ in range(3):
                    n += 1
                    session.add(_row(n, project, status, f"{project}-{status}-{n}"))
        # The same name in both projects: a lookup by name must find only one's.
        session.add(_row(100, "p1", "Running", "shared"))
        session.add(_row(101, "p2", "Running", "shared"))
    return db


async def _names(db: Database, scope: Scope, limit: int = 1000, **filters: object) -> list[str]:
    query = PageQuery(limit=limit, sort_key="name", sort_dir="asc")
    async with db.read() as session:
        rows = await containers.list_page(session, scope, query, filters=dict(filters))
    return [r.name for r in rows]


async def test_projects_filters_and_sizes_take_turns_on_the_same_statements(db_url: str) -> None:
    db = await _seeded(db_url)
    try:
        for _ in range(2):  # the second round runs on statements the first one kept
            for project in ("p1", "p2"):
                mine = Scope(project)
                names = await _names(db, mine)
                assert len(names) == 10 and all(
                    n.startswith(project) or n == "shared" for n in names
                )
                for status in ("Running", "Stopped"):
                    got = await _names(db, mine, status=status)
                    want = sorted(n for n in names if f"-{status}-" in n or n == "shared")
                    assert got == [n for n in want if status == "Running" or n != "shared"]
                small = await _names(db, mine, limit=2)
                assert small == names[:2]
                async with db.read() as session:
                    row = await containers.get(session, mine, "shared")
                    assert row.project_id == project
                    other = "p2" if project == "p1" else "p1"
                    theirs = await _names(db, Scope(other), status="Running")
                    with pytest.raises(errors.ContainerNotFound):
                        await containers.get(session, mine, theirs[0])
            everyone = await _names(db, Scope(None, all_projects=True))
            assert len(everyone) == 20
            async with db.read() as session:
                with pytest.raises(errors.Conflict):  # "shared" names two containers
                    await containers.get(session, Scope(None, all_projects=True), "shared")
    finally:
        await db.close()


async def test_the_statements_kept_are_bounded(db_url: str) -> None:
    """A tenant cycling filter combinations and sorts only evicts shapes."""
    db = await _seeded(db_url)
    filters = {"status": "Running", "memory": 64, "name": "shared", "image": "busybox"}
    try:
        for mask in range(1, 2 ** len(filters)):
            chosen = {k: v for i, (k, v) in enumerate(filters.items()) if mask >> i & 1}
            for key in sorted(containers.SORT_KEYS):
                for direction in ("asc", "desc"):
                    query = PageQuery(limit=5, sort_key=key, sort_dir=direction)
                    async with db.read() as session:
                        await containers.list_page(session, Scope("p1"), query, filters=chosen)
                    assert shapes.size() <= shapes.MAX_SHAPES
        # Still right after the evictions.
        assert await _names(db, Scope("p1"), status="Stopped") == sorted(
            f"p1-Stopped-{n}" for n in range(4, 7)
        )
    finally:
        await db.close()
