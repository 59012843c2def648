"""Private registries through the API (SQLite and PostgreSQL): CRUD, masking, sealing at rest,
tenancy, and their use by containers (what the agent is handed)."""

from __future__ import annotations

import stat
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from berth.config import Settings
from berth.services.secrets import key_path
from berth.store.tables import RegistryRow
from tests.helpers import ScriptedAgent, make_member
from tests.helpers import zun_headers as h

PASSWORD = "s3cret-registry-pw"


@pytest.fixture
async def tokens(client: httpx.AsyncClient, admin_token: str) -> dict[str, str]:
    return {
        "admin": admin_token,
        "alice": await make_member(client, admin_token, "team-a", "alice"),
        "bob": await make_member(client, admin_token, "team-b", "bob"),
    }


async def create(client: httpx.AsyncClient, token: str, **fields: Any) -> dict[str, Any]:
    body = {"domain": "registry.example.com:5000", "name": "mine", **fields}
    r = await client.post("/container/v1/registries", json={"registry": body}, headers=h(token))
    assert r.status_code == 201, r.text
    assert r.headers["location"].endswith(f"/v1/registries/{r.json()['registry']['uuid']}")
    reg: dict[str, Any] = r.json()["registry"]
    return reg


async def test_crud_masks_the_password_and_seals_it_at_rest(
    app: FastAPI, client: httpx.AsyncClient, tokens: dict[str, str], settings: Settings
) -> None:
    reg = await create(client, tokens["alice"], username="al", password=PASSWORD)
    assert reg["password"] == "***" and reg["username"] == "al" and reg["name"] == "mine"
    url = f"/container/v1/registries/{reg['uuid']}"
    for ident in (reg["uuid"], "mine"):
        shown = await client.get(f"/container/v1/registries/{ident}", headers=h(tokens["alice"]))
        assert shown.status_code == 200 and shown.json()["registry"]["password"] == "***"
    listed = await client.get("/container/v1/registries", headers=h(tokens["alice"]))
    assert [r["uuid"] for r in listed.json()["registries"]] == [reg["uuid"]]
    assert PASSWORD not in listed.text
    async with app.state.berth.db.read() as session:
        row = (await session.execute(select(RegistryRow))).scalar_one()
    assert row.password_encrypted and PASSWORD not in row.password_encrypted
    assert app.state.berth.env.secrets.open(row.password_encrypted) == PASSWORD
    assert stat.S_IMODE(key_path(settings).stat().st_mode) == 0o600

    r = await client.patch(
        url,
        json={"registry": {"password": "new-pw", "name": "renamed"}},
        headers=h(tokens["alice"]),
    )
    assert r.status_code == 200 and r.json()["registry"]["name"] == "renamed"
    assert r.json()["registry"]["password"] == "***"
    r = await client.get("/container/v1/registries?name=renamed", headers=h(tokens["alice"]))
    assert len(r.json()["registries"]) == 1
    assert (await client.delete(url, headers=h(tokens["alice"]))).status_code == 204
    assert (await client.get(url, headers=h(tokens["alice"]))).status_code == 404


async def test_validation(client: httpx.AsyncClient, tokens: dict[str, str]) -> None:
    a = h(tokens["alice"])
    url = "/container/v1/registries"
    assert (await client.post(url, json={"registry": {"name": "x1"}}, headers=a)).status_code == 400
    bad = {"registry": {"domain": "d", "colour": "red"}}
    assert (await client.post(url, json=bad, headers=a)).status_code == 400
    flat = {"domain": "d"}
    assert (await client.post(url, json=flat, headers=a)).status_code == 400
    assert (await client.post(url, content=b"{}", headers=a)).status_code == 415
    assert (await client.get(f"{url}?colour=red", headers=a)).status_code == 400


async def test_projects_never_see_each_others_registries(
    client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    reg = await create(client, tokens["alice"], username="al", password=PASSWORD)
    url = f"/container/v1/registries/{reg['uuid']}"
    b = h(tokens["bob"])
    assert (await client.get(url, headers=b)).status_code == 404
    assert (await client.get("/container/v1/registries/mine", headers=b)).status_code == 404
    patch = {"registry": {"password": "stolen"}}
    assert (await client.patch(url, json=patch, headers=b)).status_code == 404
    assert (await client.delete(url, headers=b)).status_code == 404
    assert (await client.get("/container/v1/registries", headers=b)).json()["registries"] == []
    r = await client.get("/container/v1/registries?all_projects=1", headers=b)
    assert r.status_code == 403
    r = await client.get("/container/v1/registries?all_projects=1", headers=h(tokens["admin"]))
    assert [x["uuid"] for x in r.json()["registries"]] == [reg["uuid"]]
    assert (await client.get(url, headers=h(tokens["admin"]))).status_code == 200


async def test_containers_use_their_own_projects_registry_only(
    client: httpx.AsyncClient, tokens: dict[str, str], admin_token: str
) -> None:
    agent = ScriptedAgent(client)
    await agent.register()
    reg = await create(client, tokens["alice"], username="al", password=PASSWORD)
    body = {"image": "team/app:1", "registry": "mine", "memory": 64}
    r = await client.post("/container/v1/containers", json=body, headers=h(tokens["alice"]))
    assert r.status_code == 202, r.text
    created = r.json()
    assert created["registry_id"] == reg["uuid"] and created["image"] == "team/app:1"
    for ident in ("mine", reg["uuid"]):
        r = await client.post(
            "/container/v1/containers", json={**body, "registry": ident}, headers=h(tokens["bob"])
        )
        assert r.status_code == 404, r.text
        assert "Registry" in r.json()["errors"][0]["detail"]
    old = {"X-Auth-Token": tokens["alice"], "OpenStack-API-Version": "container 1.30"}
    r = await client.post("/container/v1/containers", json=body, headers=old)
    assert r.status_code == 400

    desired = (await agent.desired())[created["uuid"]]
    assert desired["image"] == "registry.example.com:5000/team/app:1"
    assert desired["registry_auth"] == {
        "registry": "registry.example.com:5000",
        "username": "al",
        "password": PASSWORD,
    }
    # Once the runtime container exists, no credentials travel any more ...
    await agent.observe(created["uuid"], "running", runtime_id="abc123")
    assert (await agent.desired())[created["uuid"]]["registry_auth"] is None
    # ... until a pull is ahead again: re-creating a runtime container that
    # vanished (auto_heal) may pull ...
    await agent.observe(created["uuid"], "absent", runtime_id="abc123")
    assert (await agent.desired())[created["uuid"]]["registry_auth"] is not None
    await agent.observe(created["uuid"], "running", runtime_id="abc124")
    assert (await agent.desired())[created["uuid"]]["registry_auth"] is None
    # ... and a rebuild onto a new image pulls it.
    base = f"/container/v1/containers/{created['uuid']}"
    r = await client.post(f"{base}/rebuild?image=team/app:2", headers=h(tokens["alice"]))
    assert r.status_code == 202, r.text
    desired = (await agent.desired())[created["uuid"]]
    assert desired["image"] == "registry.example.com:5000/team/app:2"
    assert desired["registry_auth"] is not None and desired["registry_auth"]["username"] == "al"


async def test_glance_without_an_image_store_is_a_clear_400(
    client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    body = {"image": "tools:1", "image_driver": "glance"}
    r = await client.post("/container/v1/containers", json=body, headers=h(tokens["alice"]))
    assert r.status_code == 400 and "no image store" in r.text
    r = await client.post("/container/v1/images/upload", content=b"x", headers=h(tokens["alice"]))
    assert r.status_code == 400 and "no image store" in r.text


async def test_a_project_keeps_a_bounded_number_of_registries(
    app: FastAPI, client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    """Zun puts registries under no quota: past ``max_registries_per_project`` one more
    is a 403 naming the setting; another project is not affected; deleting makes room."""
    env = app.state.berth.env
    env.settings = env.settings.model_copy(update={"max_registries_per_project": 2})
    first = await create(client, tokens["alice"], name="one")
    await create(client, tokens["alice"], name="two")
    body = {"registry": {"domain": "registry.example.com:5000", "name": "three"}}
    r = await client.post("/container/v1/registries", json=body, headers=h(tokens["alice"]))
    assert r.status_code == 403, r.text
    assert "max_registries_per_project" in r.json()["errors"][0]["detail"]
    await create(client, tokens["bob"], name="three")
    url = f"/container/v1/registries/{first['uuid']}"
    assert (await client.delete(url, headers=h(tokens["alice"]))).status_code == 204
    await create(client, tokens["alice"], name="three")
