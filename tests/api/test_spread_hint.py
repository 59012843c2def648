"""The ``spread_network`` scheduler hint through the API: spread, explained, validated."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from berth.config import Settings
from berth.store.tables import EventRow
from tests.helpers import ScriptedAgent, make_member
from tests.helpers import zun_headers as h


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Binpack would put every container on one host: the hint must beat it.
    return settings.model_copy(update={"weigher": "binpack"})


async def _create(client: httpx.AsyncClient, token: str, **body: Any) -> httpx.Response:
    return await client.post(
        "/container/v1/containers",
        json={"image": "busybox", "memory": 64, **body},
        headers=h(token),
    )


async def _network(client: httpx.AsyncClient, token: str, name: str) -> None:
    r = await client.post("/container/v1/networks", json={"name": name}, headers=h(token))
    assert r.status_code == 200, r.text


async def _placement(app: FastAPI, uuid: str) -> str:
    async with app.state.berth.env.db.read() as s:
        payloads = (
            await s.scalars(
                select(EventRow.payload).where(
                    EventRow.resource_uuid == uuid, EventRow.event_type == "container.create"
                )
            )
        ).all()
    (payload,) = payloads
    return str(payload.get("placement", ""))


async def test_spread_network_puts_members_on_different_hosts_and_says_why(
    app: FastAPI, client: httpx.AsyncClient, admin_token: str
) -> None:
    for name in ("sp-1", "sp-2", "sp-3"):
        await ScriptedAgent(client, name).register()
    await _network(client, admin_token, "backend")
    packed = [(await _create(client, admin_token)).json()["host"] for _ in range(2)]
    assert packed[0] == packed[1]  # binpack, without the hint
    spread = {"nets": [{"network": "backend"}], "hints": {"spread_network": "backend"}}
    made = [(await _create(client, admin_token, **spread)).json() for _ in range(3)]
    hosts = [m["host"] for m in made]
    assert sorted(hosts) == ["sp-1", "sp-2", "sp-3"], hosts
    # The one that landed beside the two packed containers still had no member there.
    why = await _placement(app, made[2]["uuid"])
    assert why.startswith(f"{hosts[2]}: best of 3 feasible hosts"), why
    assert "network backend: 0 of its 2 members on this host" in why, why
    # By uuid too; a fourth goes where the fewest are again (one each: any host).
    r = await client.get("/container/v1/networks/backend", headers=h(admin_token))
    fourth = await _create(
        client, admin_token, hints={"spread_network": r.json()["uuid"]}, nets=spread["nets"]
    )
    assert fourth.status_code == 202, fourth.text
    assert "1 of its 3 members on this host" in await _placement(app, fourth.json()["uuid"])


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("nope", "spread_network: this project has no network nope"),
        ("", "give spread_network=<network name or uuid>"),
        (["a"], "give spread_network=<network name or uuid>"),
    ],
)
async def test_spread_network_naming_no_network_of_the_project_is_a_400(
    client: httpx.AsyncClient, admin_token: str, value: object, says: str
) -> None:
    await ScriptedAgent(client, "sp-1").register()
    r = await _create(client, admin_token, hints={"spread_network": value})
    assert r.status_code == 400, r.text
    (err,) = r.json()["errors"]
    assert err["status"] == 400 and says in err["detail"], err


async def test_another_projects_network_is_no_network_for_the_hint(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    await ScriptedAgent(client, "sp-1").register()
    await _network(client, admin_token, "secret-net")
    alice = await make_member(client, admin_token, "sp-alice-p", "sp-alice")
    r = await _create(client, alice, hints={"spread_network": "secret-net"})
    assert r.status_code == 400, r.text
    assert "this project has no network secret-net" in r.json()["errors"][0]["detail"]
    r = await client.get("/container/v1/networks/secret-net", headers=h(admin_token))
    r = await _create(client, alice, hints={"spread_network": r.json()["uuid"]})
    assert r.status_code == 400, r.text
