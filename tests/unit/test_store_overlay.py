"""The overlay's address plan in the database: segments, leases, members.

Runs on SQLite and PostgreSQL (the ``db_url`` fixture).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from berth.store import overlay
from berth.store.db import Database
from berth.store.tables import ContainerRow, HostRow, NetworkRow, ServiceRow

pytestmark = pytest.mark.asyncio

POOL = "10.96.0.0/12"


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    try:
        yield database
    finally:
        await database.close()


def _uuid(n: int) -> str:
    return f"00000000-0000-0000-0000-{n:012d}"


def _container(n: int, net: str, host: str) -> ContainerRow:
    return ContainerRow(
        uuid=_uuid(100 + n),
        name=f"c{n}",
        project_id="p",
        user_id="u",
        image="i",
        host=host,
        desired_state="running",
        nets=[{"network": net, "name": "default"}],
        security_groups=["g"],
    )


async def _setup(db: Database, containers: int) -> None:
    async with db.transaction() as session:
        for n in range(2):
            session.add(NetworkRow(uuid=_uuid(n), project_id="p", user_id="u", name=f"net{n}"))
        for n, host in enumerate(("h1", "h2")):
            session.add(HostRow(uuid=_uuid(50 + n), hostname=host, underlay_ip=f"10.0.0.{n + 1}"))
            session.add(ServiceRow(host=host, binary="berth-agent"))
        for n in range(containers):
            session.add(_container(n, _uuid(0), "h1" if n % 2 else "h2"))


async def test_networks_get_distinct_subnets_and_vnis_and_containers_distinct_addresses(
    db: Database,
) -> None:
    await _setup(db, 4)
    wanted = {_uuid(0): [_uuid(100 + n) for n in range(4)], _uuid(1): []}
    async with db.transaction() as session:
        assert await overlay.allocate(session, wanted, pool=POOL, prefix=24)
    async with db.transaction() as session:  # again: nothing to do
        assert not await overlay.allocate(session, wanted, pool=POOL, prefix=24)
    async with db.read() as session:
        nets = await overlay.segments(session, wanted)
        leases = await overlay.leases_of(session, wanted)
        members = await overlay.members(session, wanted, agent_binary="berth-agent")
    assert {n.subnet for n in nets.values()} == {"10.96.0.0/24", "10.96.1.0/24"}
    assert {n.vni for n in nets.values()} == {1, 2}
    first = nets[_uuid(0)].subnet
    assert first is not None and overlay.gateway_of(first) == "10.96.0.1"
    # The gateway is never leased; four containers, four addresses.
    assert sorted(lease.address for lease in leases.values()) == [
        f"10.{96}.0.{n}" for n in (2, 3, 4, 5)
    ]
    assert {(m.host, m.underlay_ip) for m in members} == {("h1", "10.0.0.1"), ("h2", "10.0.0.2")}
    assert all(m.security_groups == ("g",) for m in members)


async def test_concurrent_allocations_never_share_an_address(db: Database) -> None:
    await _setup(db, 6)

    async def allocate(n: int) -> None:
        for _ in range(10):
            try:
                async with db.transaction() as session:
                    await overlay.allocate(
                        session, {_uuid(0): [_uuid(100 + n)]}, pool=POOL, prefix=24
                    )
                return
            except overlay.AllocationRaced:
                await asyncio.sleep(0.01)
        raise AssertionError("never allocated")

    await asyncio.gather(*(allocate(n) for n in range(6)))
    async with db.read() as session:
        leases = await overlay.leases_of(session, [_uuid(0)])
    assert len(leases) == 6 and len({lease.address for lease in leases.values()}) == 6


async def test_a_lease_follows_the_container_row_and_a_removed_service_hides_its_members(
    db: Database,
) -> None:
    await _setup(db, 2)
    wanted = {_uuid(0): [_uuid(100), _uuid(101)]}
    async with db.transaction() as session:
        await overlay.allocate(session, wanted, pool=POOL, prefix=24)
    async with db.transaction() as session:
        assert await overlay.record_macs(session, _uuid(100), {"10.96.0.2": "02:42:AA:00:00:01"})
        gone = await session.get(ContainerRow, 1)
        assert gone is not None and gone.uuid == _uuid(100)
        await session.delete(gone)
    async with db.read() as session:
        members = await overlay.members(session, wanted, agent_binary="berth-agent")
    assert [m.container_uuid for m in members] == [_uuid(101)]
    # The next allocation frees the deleted container's address and reuses it.
    async with db.transaction() as session:
        session.add(_container(2, _uuid(0), "h2"))
    async with db.transaction() as session:
        await overlay.allocate(session, {_uuid(0): [_uuid(102)]}, pool=POOL, prefix=24)
    async with db.read() as session:
        leases = await overlay.leases_of(session, [_uuid(0)])
    assert {k[1]: v.address for k, v in leases.items()} == {
        _uuid(101): "10.96.0.3",
        _uuid(102): "10.96.0.2",
    }
    async with db.transaction() as session:
        svc = await session.get(ServiceRow, 1)
        assert svc is not None
        await session.delete(svc)  # host h1's agent service is deleted
    async with db.read() as session:
        members = await overlay.members(session, [_uuid(0)], agent_binary="berth-agent")
    assert {m.host for m in members} == {"h2"}
