"""The capsule and event repositories keep tenancy: another project's rows are invisible.

An admin's ``all_projects`` scope sees them; a capsule's members come back
sandbox first, then init, then app containers.
"""

from __future__ import annotations

import pytest

from berth import errors
from berth.store import capsules, containers, events
from berth.store.db import Database
from berth.store.paging import PageQuery
from berth.store.scope import Scope
from berth.store.tables import CapsuleRow, ContainerRow, EventRow

pytestmark = pytest.mark.asyncio

MINE = "00000000-0000-0000-0000-00000000000a"
THEIRS = "00000000-0000-0000-0000-00000000000b"


def _capsule(uuid: str, project: str) -> CapsuleRow:
    return CapsuleRow(uuid=uuid, name="pod", project_id=project, user_id="u")


def _member(capsule: str, kind: str, n: int) -> ContainerRow:
    return ContainerRow(
        uuid=f"00000000-0000-0000-0001-{n:012d}",
        name=f"m{n}",
        project_id="p1",
        user_id="u",
        image="busybox",
        capsule_id=capsule,
        container_type=kind,
    )


async def _seed(db: Database) -> None:
    async with db.transaction() as session:
        session.add_all([_capsule(MINE, "p1"), _capsule(THEIRS, "p2")])
        # Added out of order: members() orders them.
        session.add_all(
            [_member(MINE, "app", 1), _member(MINE, "init", 2), _member(MINE, "sandbox", 3)]
        )
        for project in ("p1", "p2"):
            session.add(
                EventRow(
                    resource_type="container",
                    resource_uuid=MINE if project == "p1" else THEIRS,
                    project_id=project,
                    event_type="container.create",
                )
            )


async def test_another_projects_capsule_is_invisible_unless_all_projects(db_url: str) -> None:
    db = Database(db_url)
    try:
        await _seed(db)
        async with db.read() as session:
            assert (await capsules.get(session, Scope("p1"), MINE)).uuid == MINE
            with pytest.raises(errors.CapsuleNotFound):
                await capsules.get(session, Scope("p1"), THEIRS)
            # By name: only p1's "pod" is visible to p1, both are to an admin.
            assert (await capsules.get(session, Scope("p1"), "pod")).uuid == MINE
            with pytest.raises(errors.Conflict):
                await capsules.get(session, Scope("p1", all_projects=True), "pod")
            assert (await capsules.get(session, Scope(None, True), THEIRS)).uuid == THEIRS
            query = PageQuery(limit=10)
            mine = await capsules.list_page(session, Scope("p1"), query)
            every = await capsules.list_page(session, Scope("p1", all_projects=True), query)
            assert [c.uuid for c in mine] == [MINE]
            assert [c.uuid for c in every] == [MINE, THEIRS]
            with pytest.raises(errors.Invalid, match="Marker"):
                await capsules.list_page(session, Scope("p1"), PageQuery(limit=10, marker=THEIRS))
    finally:
        await db.close()


async def test_members_come_sandbox_first_then_init_then_app(db_url: str) -> None:
    db = Database(db_url)
    try:
        await _seed(db)
        async with db.read() as session:
            kinds = [r.container_type for r in await containers.members(session, MINE)]
            grouped = await containers.members_of(session, [MINE, THEIRS])
        assert kinds == ["sandbox", "init", "app"]
        assert [r.container_type for r in grouped[MINE]] == kinds
        assert THEIRS not in grouped
    finally:
        await db.close()


async def test_events_of_another_project_are_invisible_unless_all_projects(db_url: str) -> None:
    db = Database(db_url)
    try:
        await _seed(db)
        async with db.read() as session:
            mine = await events.recent(session, Scope("p1"), limit=10)
            every = await events.recent(session, Scope("p1", all_projects=True), limit=10)
            one = await events.recent(
                session, Scope("p1", all_projects=True), limit=10, resource_uuid=THEIRS
            )
        assert [e.project_id for e in mine] == ["p1"]
        assert [e.project_id for e in every] == ["p2", "p1"]  # newest first
        assert [e.resource_uuid for e in one] == [THEIRS]
    finally:
        await db.close()
