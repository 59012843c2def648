"""Two API apps over one PostgreSQL database: cross-process wake-ups and honest claims."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from berth.api.app import create_app
from berth.config import Settings
from tests.conftest import ADMIN_PASSWORD, issue_token
from tests.helpers import ScriptedAgent
from tests.helpers import zun_headers as h

pytestmark = pytest.mark.postgres


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, db_url: str) -> str:  # type: ignore[override]
    return db_url


@pytest.fixture
async def second(settings: Settings, app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    if not settings.effective_database_url.startswith("postgresql"):
        pytest.skip("scale-out needs PostgreSQL")
    other = create_app(settings, run_workers=True)
    async with other.router.lifespan_context(other):
        transport = httpx.ASGITransport(app=other)
        async with httpx.AsyncClient(transport=transport, base_url="http://second") as c:
            yield c
    assert not other.state.berth.saw_server_error


async def test_agent_on_one_api_wakes_for_a_create_on_the_other(
    client: httpx.AsyncClient, second: httpx.AsyncClient, admin_token: str
) -> None:
    agent = ScriptedAgent(second)
    await agent.register()
    first = await second.get(
        "/internal/v1/hosts/test-host/desired", headers={"X-Auth-Token": agent.token}
    )
    generation = first.json()["generation"]
    poll = asyncio.create_task(
        second.get(
            f"/internal/v1/hosts/test-host/desired?generation={generation}&wait=20",
            headers={"X-Auth-Token": agent.token},
            timeout=30,
        )
    )
    await asyncio.sleep(0.3)
    t0 = time.monotonic()
    r = await client.post(
        "/container/v1/containers?run=true", json={"image": "busybox"}, headers=h(admin_token)
    )
    assert r.status_code == 202
    answer = (await poll).json()
    assert time.monotonic() - t0 < 3
    assert [c["uuid"] for c in answer["containers"]] == [r.json()["uuid"]]


async def test_concurrent_creates_on_two_apis_never_overcommit(
    client: httpx.AsyncClient, second: httpx.AsyncClient, admin_token: str
) -> None:
    await ScriptedAgent(client, "small-1").register(cpus=64, mem_total=1000)
    await ScriptedAgent(client, "small-2").register(cpus=64, mem_total=1000)
    # 1.5 x 1000 MiB per host fits 5 containers of 256 MiB each: 10 in all.
    token2 = await issue_token(second, "admin", ADMIN_PASSWORD, "admin")

    # cpu 0.5: 24 creates stay within the default cpu quota of 20 (at the default
    # of 1 each, only a quota race let all 24 through).
    body = {"image": "busybox", "memory": 256, "cpu": 0.5}

    async def create(c: httpx.AsyncClient, token: str) -> dict[str, object]:
        r = await c.post("/container/v1/containers", json=body, headers=h(token))
        assert r.status_code == 202, r.text
        return dict(r.json())

    results = await asyncio.gather(
        *[create(client, admin_token) if i % 2 else create(second, token2) for i in range(24)]
    )
    placed = [r for r in results if r["host"]]
    failed = [r for r in results if not r["host"]]
    assert len(placed) == 10 and len(failed) == 14
    assert all("not enough memory" in str(r["status_reason"]) for r in failed)
    listed = (await client.get("/container/v1/containers", headers=h(admin_token))).json()
    assert len(listed["containers"]) == 24  # nothing lost
    hosts = (await client.get("/container/v1/hosts", headers=h(admin_token))).json()["hosts"]
    for host in hosts:
        mine = [r for r in placed if r["host"] == host["hostname"]]
        assert host["mem_used"] == 256 * len(mine) <= 1500


async def test_a_service_disabled_on_one_api_gets_no_placement_from_the_other(
    client: httpx.AsyncClient, second: httpx.AsyncClient, admin_token: str
) -> None:
    await ScriptedAgent(client, "xa-1").register()
    await ScriptedAgent(client, "xa-2").register()
    token2 = await issue_token(second, "admin", ADMIN_PASSWORD, "admin")

    async def create_on_second() -> str:
        r = await second.post(
            "/container/v1/containers", json={"image": "busybox", "memory": 64}, headers=h(token2)
        )
        assert r.status_code == 202, r.text
        return str(r.json()["host"])

    await create_on_second()  # the second API now holds a snapshot with both hosts up
    r = await client.put(
        "/container/v1/services/disable",
        json={"host": "xa-1", "binary": "berth-agent"},
        headers=h(admin_token),
    )
    assert r.status_code == 200, r.text
    await asyncio.sleep(0.5)  # NOTIFY crosses to the other process
    assert {await create_on_second() for _ in range(4)} == {"xa-2"}
