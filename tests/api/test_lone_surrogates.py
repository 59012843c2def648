"""A lone UTF-16 surrogate in a request body is a 400, on every store, in every API.

JSON may escape one (``"\\ud800"`` with no low half after it); Python decodes it to a
code point no UTF-8 encoder takes. Before: PostgreSQL's driver refused the row (a
500); SQLite stored it, so the create answered 500 while rendering its reply and
every later list holding the container (the admin's ``all_projects`` list too)
answered 500 for as long as the row stayed. A pair (an emoji) is text and passes.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from tests.helpers import zun_headers as h

pytestmark = pytest.mark.asyncio

LONE = "\ud800"
MAGNUM = {"OpenStack-API-Version": "container-infra latest"}
ZUN_BODIES: list[dict[str, Any]] = [
    {"image": "busybox", "environment": {"A": "x" + LONE}},
    {"image": "busybox", "labels": {"k" + LONE: "v"}},
    {"image": "busybox", "command": ["sh", "-c", LONE]},
    {"image": "busybox", "workdir": "/" + LONE},
    {"image": "busybox", "hints": {"h": [LONE]}},
]


async def _post(client: httpx.AsyncClient, path: str, body: Any, headers: dict[str, str]) -> Any:
    # json.dumps escapes the surrogate as \ud800, as a client's JSON encoder would.
    content = json.dumps(body)
    assert "\\ud8" in content
    return await client.post(
        path, content=content, headers=headers | {"Content-Type": "application/json"}
    )


async def test_a_lone_surrogate_in_a_zun_body_is_a_400_and_stores_nothing(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    for body in ZUN_BODIES:
        r = await _post(client, "/container/v1/containers", body, h(admin_token))
        assert r.status_code == 400, (body, r.text)
        (error,) = r.json()["errors"]
        assert error["code"] == "container.invalid" and "surrogate" in error["detail"], body
    # Every body of the API, also one whose container does not exist (checked first).
    patch = json.dumps({"name": LONE})
    headers = h(admin_token) | {"Content-Type": "application/json"}
    r = await client.patch("/container/v1/containers/x", content=patch, headers=headers)
    assert r.status_code == 400 and "surrogate" in r.text, r.text
    listed = await client.get("/container/v1/containers?all_projects=1", headers=h(admin_token))
    assert listed.status_code == 200 and listed.json()["containers"] == []
    # A pair is one character, stored and shown as it was sent.
    pair = "\ud83d\ude00"
    r = await _post(
        client,
        "/container/v1/containers",
        {"image": "busybox", "environment": {"A": pair}},
        h(admin_token),
    )
    assert r.status_code == 202, r.text
    shown = await client.get("/container/v1/containers", headers=h(admin_token))
    assert [c["environment"] for c in shown.json()["containers"]] == [{"A": "😀"}]


async def test_a_lone_surrogate_in_a_magnum_or_keystone_body_is_a_400(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    template = {"name": "t" + LONE, "image_id": "x", "coe": "swarm-mode"}
    labelled = {"name": "t", "image_id": "x", "coe": "swarm-mode", "labels": {"a": LONE}}
    for body in (template, labelled):
        r = await _post(
            client, "/container-infra/v1/clustertemplates", body, h(admin_token) | MAGNUM
        )
        assert r.status_code == 400, r.text
        (error,) = r.json()["errors"]
        assert error["code"] == "client" and "surrogate" in error["detail"]
    templates = await client.get(
        "/container-infra/v1/clustertemplates", headers=h(admin_token) | MAGNUM
    )
    assert templates.json()["clustertemplates"] == []
    project = {"project": {"name": "p", "description": "d" + LONE}}
    r = await _post(client, "/identity/v3/projects", project, {"X-Auth-Token": admin_token})
    assert r.status_code == 400, r.text
    assert "surrogate" in r.json()["error"]["message"]


async def test_a_flash_cookie_holding_a_lone_surrogate_is_ignored(
    client: httpx.AsyncClient,
) -> None:
    # The dashboard's one-shot message cookie: the page failed to render (a 500).
    cookie = quote(json.dumps(["info", "hello " + LONE]), safe="")
    r = await client.get("/login", headers={"Cookie": f"berth_flash={cookie}"})
    assert r.status_code == 200, r.text
    assert "hello" not in r.text
    fine = quote(json.dumps(["info", "hello there"]), safe="")
    r = await client.get("/login", headers={"Cookie": f"berth_flash={fine}"})
    assert r.status_code == 200 and "hello there" in r.text
    # Nested past json's recursion limit: a RecursionError (a 500) as well.
    r = await client.get("/login", headers={"Cookie": "berth_flash=" + "[" * 12_000})
    assert r.status_code == 200, r.text


async def test_a_row_an_older_version_stored_with_one_is_shown_mended(
    app: FastAPI, client: httpx.AsyncClient, admin_token: str
) -> None:
    """Before the check, such a row was stored (JSON columns keep the escape): every list
    holding it, the admin's ``all_projects`` list too, was a 500 from then on."""
    r = await client.post(
        "/container/v1/containers", json={"image": "busybox", "name": "old"}, headers=h(admin_token)
    )
    assert r.status_code == 202, r.text
    async with app.state.berth.db.transaction() as s:
        await s.execute(
            text("UPDATE containers SET environment = :env, labels = :labels"),
            {"env": '{"A": "x\\ud800y"}', "labels": '{"k\\udc00": "\\ud83d\\ude00"}'},
        )
    for path in ("/container/v1/containers?all_projects=1", "/container/v1/containers/old"):
        r = await client.get(path, headers=h(admin_token))
        assert r.status_code == 200, r.text
        shown = r.json()["containers"][0] if "containers" in r.json() else r.json()
        assert shown["environment"] == {"A": "x\ufffdy"}
        assert shown["labels"] == {"k\ufffd": "😀"}
