"""The volume and quota repositories: tenancy in the volume lookups and lists, limits by owner.

A scope sees its own project's volumes; another project's are "not found"
(and a marker of theirs is not a place to page from) unless the scope covers
every project (an admin's lookup, an allowed ``all_projects`` list).
"""

from __future__ import annotations

import pytest

from berth import errors
from berth.domain.paging import Paging
from berth.store import quotas as quota_repo
from berth.store import volumes as volume_repo
from berth.store.base import new_uuid
from berth.store.db import Database
from berth.store.paging import PageQuery
from berth.store.scope import Scope
from berth.store.tables import VolumeRow

pytestmark = pytest.mark.asyncio

MINE, THEIRS = Scope("p-mine"), Scope("p-theirs")
EVERYONE = Scope("p-mine", all_projects=True)


def _volume(project_id: str, name: str, host: str | None = None) -> VolumeRow:
    return VolumeRow(
        uuid=new_uuid(), name=name, project_id=project_id, user_id="u", size=1, host=host
    )


async def _db_with_volumes(db_url: str) -> tuple[Database, VolumeRow, VolumeRow]:
    db = Database(db_url)
    mine, theirs = _volume("p-mine", "data"), _volume("p-theirs", "data", host="h1")
    async with db.transaction() as session:
        session.add_all([mine, theirs])
    return db, mine, theirs


async def test_get_sees_only_its_projects_volumes_unless_all_projects(db_url: str) -> None:
    db, mine, theirs = await _db_with_volumes(db_url)
    try:
        async with db.read() as session:
            assert (await volume_repo.get(session, MINE, "data")).uuid == mine.uuid
            assert (await volume_repo.get(session, MINE, mine.uuid.upper())).uuid == mine.uuid
            with pytest.raises(errors.VolumeNotFound, match=f"Volume {theirs.uuid} could not"):
                await volume_repo.get(session, MINE, theirs.uuid)
            assert (await volume_repo.get(session, EVERYONE, theirs.uuid)).uuid == theirs.uuid
            # Two visible volumes of that name: the UUID is needed, as Zun answers.
            with pytest.raises(errors.Conflict, match="Multiple volumes exist with same name"):
                await volume_repo.get(session, EVERYONE, "data")
            assert await volume_repo.exists(session, MINE, "data")
            assert not await volume_repo.exists(session, MINE, theirs.uuid)
            assert await volume_repo.exists(session, THEIRS, theirs.uuid)
    finally:
        await db.close()


async def test_list_page_is_scoped_and_markers_of_other_projects_are_invisible(
    db_url: str,
) -> None:
    db, mine, theirs = await _db_with_volumes(db_url)
    try:
        query = PageQuery.of(volume_repo.SORT_KEYS, 10)
        async with db.read() as session:
            assert [v.uuid for v in await volume_repo.list_page(session, MINE, query)] == [
                mine.uuid
            ]
            everyone = await volume_repo.list_page(session, EVERYONE, query)
            assert [v.uuid for v in everyone] == [mine.uuid, theirs.uuid]
            after = PageQuery.of(volume_repo.SORT_KEYS, 10, Paging(marker=theirs.uuid))
            with pytest.raises(errors.Invalid, match=f"Marker {theirs.uuid} could not be found"):
                await volume_repo.list_page(session, MINE, after)
            assert await volume_repo.list_page(session, EVERYONE, after) == []
    finally:
        await db.close()


async def test_bind_host_sets_only_volumes_without_one(db_url: str) -> None:
    db, mine, theirs = await _db_with_volumes(db_url)
    try:
        async with db.transaction() as session:
            await volume_repo.bind_host(session, [mine.uuid, theirs.uuid], "h2", mine.created_at)
        async with db.read() as session:
            assert (await volume_repo.get(session, EVERYONE, mine.uuid)).host == "h2"
            assert (await volume_repo.get(session, EVERYONE, theirs.uuid)).host == "h1"
        async with db.transaction() as session:
            await volume_repo.delete_by_uuid(session, theirs.uuid)
        async with db.read() as session:
            assert not await volume_repo.exists(session, EVERYONE, theirs.uuid)
    finally:
        await db.close()


async def test_quota_limits_are_kept_per_project_and_per_class(db_url: str) -> None:
    db = Database(db_url)
    try:
        async with db.transaction() as session:
            await quota_repo.lock_usage(session, "p-mine", "containers")
            await quota_repo.set_project_limits(session, "p-mine", {"cpu": 4, "memory": 512})
            await quota_repo.set_project_limits(session, "p-mine", {"cpu": 8})
            await quota_repo.set_class_limits(session, "default", {"containers": 3})
        async with db.read() as session:
            assert await quota_repo.project_limits(session, "p-mine") == {"cpu": 8, "memory": 512}
            assert await quota_repo.project_limits(session, "p-theirs") == {}
            assert await quota_repo.class_limits(session, "default") == {"containers": 3}
            usage = await quota_repo.usage(session, "p-mine")
            assert usage == {"containers": 0.0, "cpu": 0.0, "memory": 0.0, "disk": 0.0}
        async with db.transaction() as session:
            await quota_repo.delete_project_limits(session, "p-mine")
        async with db.read() as session:
            assert await quota_repo.project_limits(session, "p-mine") == {}
    finally:
        await db.close()
