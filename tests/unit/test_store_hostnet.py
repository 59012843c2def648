"""The host, network and image repositories: tenancy, the unique-name race, the claim.

Runs on SQLite and PostgreSQL (the ``db_url`` fixture).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from berth import errors
from berth.store import hosts, images, networks
from berth.store.db import Database
from berth.store.paging import PageQuery
from berth.store.scope import Scope
from berth.store.tables import HostRow, ImageRow, NetworkRow

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    try:
        yield database
    finally:
        await database.close()


def _uuid(n: int) -> str:
    return f"00000000-0000-0000-0000-{n:012d}"


async def test_images_of_another_project_are_invisible_unless_all_projects(db: Database) -> None:
    async with db.transaction() as session:
        for n, project in enumerate(("a", "b", "a")):
            session.add(ImageRow(uuid=_uuid(n), project_id=project, user_id="u", repo=f"r{n}"))
    async with db.read() as session:
        own = await images.list_images(session, Scope("a"), PageQuery(10))
        every = await images.list_images(session, Scope("a", all_projects=True), PageQuery(10))
        with pytest.raises(errors.Invalid):  # another project's marker is not found
            await images.list_images(session, Scope("a"), PageQuery(10, marker=_uuid(1)))
        with pytest.raises(errors.ResourceNotFound):
            await images.get_image(session, Scope("a"), _uuid(1))
        other = await images.get_image(session, Scope("a", all_projects=True), _uuid(1))
    assert other.repo == "r1"
    assert [r.uuid for r in own] == [_uuid(0), _uuid(2)]
    assert [r.uuid for r in every] == [_uuid(0), _uuid(1), _uuid(2)]


async def test_networks_are_per_project_and_a_taken_name_is_name_taken(db: Database) -> None:
    async with db.transaction() as session:
        for n, project in enumerate(("a", "b")):
            await networks.insert(
                session,
                NetworkRow(
                    uuid=_uuid(n), project_id=project, user_id="u", name="net", is_default=True
                ),
            )
    async with db.read() as session:
        assert [r.uuid for r in await networks.list_networks(session, Scope("a"))] == [_uuid(0)]
        assert (await networks.get_network(session, Scope("b"), "net")).uuid == _uuid(1)
        with pytest.raises(errors.NetworkNotFound):
            await networks.get_network(session, Scope("a"), _uuid(1))
        assert (await networks.default_network(session, "b")) is not None
        assert (await networks.default_network(session, "c")) is None
    with pytest.raises(networks.NameTaken, match="A network named net already exists"):
        async with db.transaction() as session:
            await networks.insert(
                session, NetworkRow(uuid=_uuid(9), project_id="a", user_id="u", name="net")
            )


async def test_a_claim_wins_only_on_the_generation_it_saw(db: Database) -> None:
    async with db.transaction() as session:
        session.add(HostRow(uuid=_uuid(1), hostname="h1", cpus=4, mem_total=1024, generation=3))
    async with db.transaction() as session:
        for seen, won in ((2, False), (3, True)):
            claimed = await hosts.claim(
                session, host="h1", seen=seen, pinned=[0], cpu=1.5, memory=256, disk=1
            )
            assert claimed is won
    async with db.read() as session:
        host = await hosts.find(session, "h1")
        assert host is not None and host.uuid == _uuid(1)
        assert (host.cpu_used, host.mem_used, host.total_containers) == (1.5, 256, 1)
        assert (host.generation, host.pinned_cpus) == (4, [0])
    async with db.transaction() as session:
        await hosts.unpin(session, "h1", {0})
        await hosts.release(session, "h1", 1.5, 256, 1)
    async with db.read() as session:
        host = await hosts.find(session, _uuid(1))
        assert host is not None
        assert (host.cpu_used, host.mem_used, host.total_containers) == (0.0, 0, 0)
        assert (host.generation, host.pinned_cpus) == (5, [])
