"""The container quota under concurrent creates through two API apps, on SQLite and PostgreSQL.

Each app has its own engine and connection pool over the same database, as two
API processes would (tests/functional/test_quota_live.py runs two real ones).
Containers and capsules count against the same quota, so both create paths
race here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from berth import errors
from berth.api.app import create_app
from berth.config import Settings
from berth.services import quotas
from berth.store.base import new_uuid
from berth.store.db import Database
from berth.store.tables import ContainerRow
from tests.helpers import make_member
from tests.helpers import zun_headers as h

V = "/container/v1"
QUOTA = 3
CREATES = 20


@pytest.fixture
async def second(settings: Settings, app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    other = create_app(settings, run_workers=False)
    async with other.router.lifespan_context(other):
        transport = httpx.ASGITransport(app=other)
        async with httpx.AsyncClient(transport=transport, base_url="http://second") as c:
            yield c
    assert not other.state.berth.saw_server_error


def _capsule(name: str) -> dict[str, Any]:
    return {
        "kind": "capsule",
        "capsuleVersion": "beta",
        "metadata": {"name": name},
        "spec": {"containers": [{"image": "busybox", "resources": {"requests": {"cpu": 0.1}}}]},
    }


async def test_twenty_creates_on_two_apps_fill_a_quota_of_three_exactly(
    app: FastAPI, client: httpx.AsyncClient, second: httpx.AsyncClient, admin_token: str
) -> None:
    member = await make_member(client, admin_token, "quota-race", "racer")
    projects = await client.get(
        "/identity/v3/projects?name=quota-race", headers={"X-Auth-Token": admin_token}
    )
    pid = projects.json()["projects"][0]["id"]
    r = await second.put(f"{V}/quotas/{pid}", json={"containers": QUOTA}, headers=h(admin_token))
    assert r.status_code == 200, r.text

    async def create(i: int) -> httpx.Response:
        c = (client, second)[i % 2]
        if i % 4 < 2:
            return await c.post(f"{V}/containers", json={"image": "busybox"}, headers=h(member))
        return await c.post(
            f"{V}/capsules", json={"template": _capsule(f"pod-{i}")}, headers=h(member)
        )

    answers = await asyncio.gather(*[create(i) for i in range(CREATES)])
    codes = sorted(r.status_code for r in answers)
    assert codes == [202] * QUOTA + [403] * (CREATES - QUOTA), [r.text for r in answers]
    for r in answers:
        if r.status_code == 403:
            assert r.json()["errors"][0]["detail"].startswith("Quota exceeded for resources:")
    usage = await client.get(f"{V}/quotas/{pid}?usages=True", headers=h(member))
    assert usage.json()["containers"] == {"limit": QUOTA, "in_use": QUOTA}
    async with app.state.berth.env.db.read() as session:
        stored = await session.scalar(
            select(func.count(ContainerRow.id)).where(
                ContainerRow.project_id == pid, ContainerRow.container_type != "sandbox"
            )
        )
    assert stored == QUOTA


async def test_a_second_count_waits_for_the_first_create_to_commit(
    app: FastAPI, settings: Settings
) -> None:
    """Two engines (two processes' pools): the second create's count sees the first's row."""
    env = app.state.berth.env
    other = Database(settings.effective_database_url)
    limits = {"containers": 1, "cpu": -1, "memory": -1, "disk": -1}
    try:
        async with env.db.transaction() as first:
            await quotas.check_container(env, first, "p-race", 1.0, 0, 0, limits=limits)
            row = ContainerRow(
                uuid=new_uuid(), name="c1", project_id="p-race", user_id="u", image="busybox"
            )
            first.add(row)
            await first.flush()

            async def second_create() -> None:
                async with other.transaction() as session:
                    await quotas.check_container(env, session, "p-race", 1.0, 0, 0, limits=limits)

            waiting = asyncio.create_task(second_create())
            await asyncio.sleep(0.5)
            # Without the lock it would have counted 0 of 1 and gone on.
            assert not waiting.done()
        with pytest.raises(errors.OverQuota, match=r"containers \(limit 1, in use 1, asked 1\)"):
            await asyncio.wait_for(waiting, 10)
    finally:
        await other.close()
