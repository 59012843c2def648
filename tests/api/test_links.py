"""Every link a body hands out can be followed: self, bookmark and ``next`` links of the
container, cluster and identity APIs resolve to 200 at the address the client used."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.helpers import ScriptedAgent

Z = {"OpenStack-API-Version": "container 1.40"}
M = {"OpenStack-API-Version": "container-infra latest"}
BASE = "http://testserver"


def hrefs(body: Any) -> Iterator[str]:
    """Every link in a body: ``href`` values, Keystone's ``links`` maps, and ``next``."""
    if isinstance(body, dict):
        for key, value in body.items():
            if key in ("href", "next") and isinstance(value, str):
                yield value
            elif key == "links" and isinstance(value, dict):
                yield from (v for v in value.values() if isinstance(v, str))
            else:
                yield from hrefs(value)
    elif isinstance(body, list):
        for item in body:
            yield from hrefs(item)


async def follow_all(
    client: httpx.AsyncClient, body: Any, headers: dict[str, str], seen: set[str]
) -> int:
    """GET every link in ``body`` (each once) and expect 200; how many were followed."""
    followed = 0
    for href in hrefs(body):
        if href in seen or not href.startswith(BASE + "/"):
            assert href.startswith(("https://docs.openstack.org", BASE)), href
            continue
        seen.add(href)
        r = await client.get(href, headers=headers)
        assert r.status_code == 200, f"{href}: {r.status_code} {r.text[:200]}"
        followed += 1
    return followed


@pytest.fixture
async def world(app: FastAPI, client: httpx.AsyncClient, admin_token: str) -> dict[str, str]:
    """One of each resource, made by the admin (and a scripted agent for the host)."""
    agent = ScriptedAgent(client)
    await agent.register()
    z = {"X-Auth-Token": admin_token, **Z}
    for name in ("web-1", "web-2"):
        body = {"image": "berth-test/busybox", "name": name}
        assert (await client.post("/container/v1/containers", json=body, headers=z)).is_success
    made = [
        await client.post("/container/v1/networks", json={"name": "net-a"}, headers=z),
        await client.post(
            "/container/v1/security_groups",
            json={"security_group": {"name": "sg-a", "description": "t"}},
            headers=z,
        ),
        await client.post(
            "/container/v1/registries",
            json={"registry": {"domain": "registry.example.com:5000", "name": "reg"}},
            headers=z,
        ),
        await client.post("/container/v1/volumes", json={"name": "vol-a", "size": 1}, headers=z),
        await client.post(
            "/container-infra/v1/clustertemplates",
            json={"coe": "swarm-mode", "image_id": "berth-node", "name": "ct-a"},
            headers={"X-Auth-Token": admin_token, **M},
        ),
    ]
    for r in made:
        assert r.is_success, r.text
    return {"token": admin_token}


@pytest.mark.parametrize(
    ("collection", "key", "headers"),
    [
        ("/container/v1/containers", "containers", Z),
        ("/container/v1/networks", "networks", Z),
        ("/container/v1/security_groups", "security_groups", Z),
        ("/container/v1/registries", "registries", Z),
        ("/container/v1/volumes", "volumes", Z),
        ("/container/v1/hosts", "hosts", Z),
        ("/container-infra/v1/clustertemplates", "clustertemplates", M),
        ("/identity/v3/projects", "projects", {}),
        ("/identity/v3/users", "users", {}),
        ("/identity/v3/roles", "roles", {}),
        ("/identity/v3/domains", "domains", {}),
    ],
)
async def test_every_link_of_list_and_show_bodies_resolves(
    client: httpx.AsyncClient,
    world: dict[str, str],
    collection: str,
    key: str,
    headers: dict[str, str],
) -> None:
    h = {"X-Auth-Token": world["token"], **headers}
    r = await client.get(collection, headers=h)
    assert r.status_code == 200, r.text
    listing = r.json()
    assert listing[key], f"nothing to follow in {collection}"
    seen: set[str] = set()
    followed = await follow_all(client, listing, h, seen)
    for item in listing[key]:
        ident = item.get("uuid") or item["id"]
        shown = await client.get(f"{collection}/{ident}", headers=h)
        assert shown.status_code == 200, shown.text
        followed += await follow_all(client, shown.json(), h, seen)
    assert followed >= len(listing[key])  # at least each item's self link


@pytest.mark.parametrize("collection", ["containers", "volumes"])
async def test_next_links_of_paged_lists_resolve(
    client: httpx.AsyncClient, world: dict[str, str], collection: str
) -> None:
    h = {"X-Auth-Token": world["token"], **Z}
    if collection == "volumes":
        body = {"name": "vol-b", "size": 1}
        assert (await client.post("/container/v1/volumes", json=body, headers=h)).is_success
    r = await client.get(f"/container/v1/{collection}?limit=1", headers=h)
    nxt = r.json()["next"]
    # Upstream's shape: the stock client strips scheme, host and "/v1" and appends
    # the rest to its catalog endpoint, so the path must not carry "/container".
    assert nxt.startswith(f"{BASE}/v1/{collection}?"), nxt
    r = await client.get(nxt, headers=h)  # followed as it is
    assert r.status_code == 200 and len(r.json()[collection]) == 1, r.text
    as_zunclient = "/container/v1" + httpx.URL(nxt).raw_path.decode().removeprefix("/v1")
    r = await client.get(as_zunclient, headers=h)
    assert r.status_code == 200 and len(r.json()[collection]) == 1, r.text


async def test_links_carry_the_endpoint_prefix_and_upstreams_bookmark_shape(
    client: httpx.AsyncClient, world: dict[str, str]
) -> None:
    h = {"X-Auth-Token": world["token"], **Z}
    (c, _) = (await client.get("/container/v1/containers", headers=h)).json()["containers"]
    assert c["links"] == [
        {"href": f"{BASE}/container/v1/containers/{c['uuid']}", "rel": "self"},
        {"href": f"{BASE}/container/containers/{c['uuid']}", "rel": "bookmark"},
    ]
    doc = (await client.get("/container/v1", headers=h)).json()
    assert doc["links"][0]["href"] == f"{BASE}/container/v1/"
    assert doc["containers"][0]["href"] == f"{BASE}/container/v1/containers/"
    # Zun's v1 document lists quotas and quota_classes too, but upstream serves
    # them only per project (quotas/{project_id}): like upstream, those two bare
    # collection links are not GETtable.
    per_project = {doc.pop("quotas")[0]["href"], doc.pop("quota_classes")[0]["href"]}
    assert per_project == {f"{BASE}/container/v1/quotas/", f"{BASE}/container/v1/quota_classes/"}
    assert await follow_all(client, doc, h, set()) >= 2


async def test_magnum_next_links_resolve_as_given_and_as_magnumclient_follows_them(
    client: httpx.AsyncClient, world: dict[str, str]
) -> None:
    """magnumclient's ``_list_pagination`` (magnumclient/common/base.py) strips only
    scheme and host from ``next`` and appends the path to its catalog endpoint."""
    h = {"X-Auth-Token": world["token"], **M}
    body = {"coe": "swarm-mode", "image_id": "berth-node", "name": "ct-b"}
    r = await client.post("/container-infra/v1/clustertemplates", json=body, headers=h)
    assert r.is_success, r.text
    first = (await client.get("/container-infra/v1/clustertemplates?limit=1", headers=h)).json()
    nxt = first["next"]
    r = await client.get(nxt, headers=h)  # followed as it is
    assert r.status_code == 200, r.text
    second = r.json()["clustertemplates"]
    assert len(second) == 1 and second[0]["uuid"] != first["clustertemplates"][0]["uuid"]
    url = httpx.URL(nxt)
    as_magnumclient = "/container-infra/v1" + url.raw_path.decode()
    r = await client.get(as_magnumclient, headers=h)
    assert r.status_code == 200 and r.json()["clustertemplates"] == second, r.text
