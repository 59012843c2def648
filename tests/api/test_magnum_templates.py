"""The Magnum-compatible cluster API: versions, microversions, templates, tenancy, errors."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.helpers import make_member

MAG = {"OpenStack-API-Version": "container-infra latest"}
CT = "/container-infra/v1/clustertemplates"


def _h(token: str, **extra: str) -> dict[str, str]:
    return {"X-Auth-Token": token, **MAG, **extra}


async def _create(client: httpx.AsyncClient, token: str, **fields: Any) -> dict[str, Any]:
    body = {"coe": "swarm-mode", "image_id": "berth-node", **fields}
    r = await client.post(CT, json=body, headers=_h(token))
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def test_version_documents(client: httpx.AsyncClient) -> None:
    r = await client.get("/container-infra/")
    assert r.status_code == 200
    doc = r.json()
    assert doc["name"] == "OpenStack Magnum API"
    assert doc["versions"][0]["max_version"] == "1.14"
    assert doc["versions"][0]["links"][0]["href"] == "http://testserver/container-infra/v1/"
    r = await client.get("/container-infra/v1/", headers=MAG)
    assert r.status_code == 200
    assert r.json()["media_types"][0]["type"] == "application/vnd.openstack.magnum.v1+json"
    assert r.headers["openstack-api-version"] == "container-infrastructure-management 1.14"
    assert r.headers["openstack-api-minimum-version"].endswith(" 1.1")
    assert r.headers["vary"] == "OpenStack-API-Version"
    r = await client.get("/container-infra/v1")
    assert r.headers["openstack-api-version"] == "container-infrastructure-management 1.1"


@pytest.mark.parametrize(
    ("header", "code"),
    [
        ("container-infra 1.15", "magnum.microversion-unsupported"),
        ("container-infra 2.0", "magnum.microversion-unsupported"),
        ("compute 1.2", "client"),
        ("container-infra one", "client"),
        ("container-infra", "client"),
    ],
)
async def test_bad_microversions_are_406(client: httpx.AsyncClient, header: str, code: str) -> None:
    r = await client.get("/container-infra/v1", headers={"OpenStack-API-Version": header})
    assert r.status_code == 406
    assert r.json()["errors"][0]["code"] == code
    assert r.headers["openstack-api-maximum-version"].endswith(" 1.14")


async def test_aliases_and_bookmark_paths(client: httpx.AsyncClient, admin_token: str) -> None:
    for service in ("container-infrastructure-management", "container-infrastructure"):
        h = {"X-Auth-Token": admin_token, "OpenStack-API-Version": f"{service} 1.9"}
        r = await client.get("/container-infra/clustertemplates/", headers=h)
        assert r.status_code == 200, r.text
        assert r.headers["openstack-api-version"].endswith(" 1.9")


async def test_catalog_lists_container_infra(client: httpx.AsyncClient, admin_token: str) -> None:
    r = await client.get("/identity/v3/auth/catalog", headers={"X-Auth-Token": admin_token})
    services = {s["type"]: s for s in r.json()["catalog"]}
    url = services["container-infra"]["endpoints"][0]["url"]
    assert url.endswith("/container-infra/v1")


async def test_unauthenticated_is_401_keystone_style(client: httpx.AsyncClient) -> None:
    r = await client.get(CT, headers=MAG)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == 401


async def test_template_lifecycle(client: httpx.AsyncClient, admin_token: str) -> None:
    alice = await make_member(client, admin_token, "team-a", "alice")
    ct = await _create(
        client,
        alice,
        name="swarm-small",
        labels={"a": "1", "n": 2, "b": True},
        flavor_id="m1.small",
        keypair_id=None,
        external_network_id="public",
        docker_volume_size=5,
        tags="x,y",
    )
    assert ct["labels"] == {"a": "1", "n": "2", "b": "True"}
    assert ct["network_driver"] == "docker"
    assert ct["public"] is False and ct["floating_ip_enabled"] is True
    assert ct["server_type"] == "vm"
    assert ct["links"][0]["href"].endswith(f"/v1/clustertemplates/{ct['uuid']}")
    assert ct["created_at"].endswith("+00:00")
    by_name = (await client.get(f"{CT}/swarm-small", headers=_h(alice))).json()
    assert by_name["uuid"] == ct["uuid"]
    # The CLI's patch: add/remove label keys, replace /labels with a Python literal, tags.
    patch = [
        {"op": "add", "path": "/labels/c", "value": "3"},
        {"op": "remove", "path": "/labels/a"},
        {"op": "replace", "path": "/tags", "value": "z"},
        {"op": "replace", "path": "/docker_volume_size", "value": 7},
        {"op": "add", "path": "/keypair_id", "value": "kp"},
    ]
    r = await client.patch(f"{CT}/{ct['uuid']}", json=patch, headers=_h(alice))
    assert r.status_code == 200, r.text
    updated = r.json()
    assert updated["labels"] == {"n": "2", "b": "True", "c": "3"}
    assert updated["tags"] == "z" and updated["docker_volume_size"] == 7
    assert updated["keypair_id"] == "kp" and updated["updated_at"]
    literal = [{"op": "replace", "path": "/labels", "value": "{'k': 'v'}"}]
    r = await client.patch(f"{CT}/swarm-small", json=literal, headers=_h(alice))
    assert r.json()["labels"] == {"k": "v"}
    r = await client.delete(f"{CT}/{ct['uuid']}", headers=_h(alice))
    assert r.status_code == 204
    r = await client.get(f"{CT}/{ct['uuid']}", headers=_h(alice))
    assert r.status_code == 404
    err = r.json()["errors"][0]
    assert (
        err["code"] == "client" and err["status"] == 404 and "could not be found" in err["detail"]
    )


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"image_id": "x"}, "Mandatory field missing: coe"),
        ({"coe": "swarm-mode"}, "Mandatory field missing: image_id"),
        ({"coe": "mesos", "image_id": "x"}, "Value should be one of"),
        ({"coe": "swarm-mode", "image_id": "x", "bogus": 1}, "Unknown attribute"),
        ({"coe": "swarm-mode", "image_id": "x", "cluster_distro": "a"}, "(vm, a, swarm-mode)"),
        ({"coe": "swarm-mode", "image_id": "x", "docker_volume_size": 0}, "at least 1"),
        ({"coe": "swarm-mode", "image_id": "x", "apiserver_port": 80}, "at least 1024"),
        ({"coe": "swarm-mode", "image_id": "x", "tls_disabled": "maybe"}, "boolean"),
        ({"coe": "swarm-mode", "image_id": "x", "labels": "k=v"}, "dict"),
        ({"coe": "swarm-mode", "image_id": "x", "labels": {"k": [1]}}, "Values must be"),
    ],
)
async def test_create_validation(
    client: httpx.AsyncClient, admin_token: str, body: dict[str, Any], fragment: str
) -> None:
    r = await client.post(CT, json=body, headers=_h(admin_token))
    assert r.status_code == 400, r.text
    assert fragment in r.json()["errors"][0]["detail"]


@pytest.mark.parametrize(
    "patch",
    [
        [],
        {"op": "replace"},
        [{"op": "move", "path": "/name", "value": "x"}],
        [{"op": "replace", "path": "/uuid", "value": "x"}],
        [{"op": "replace", "path": "/cluster_distro", "value": "x"}],
        [{"op": "remove", "path": "/coe"}],
        [{"op": "replace", "path": "/coe", "value": "mesos"}],
        [{"op": "add", "path": "/name", "value": "x"}],
        [{"op": "replace", "path": "/nope", "value": "x"}],
        [{"op": "replace", "path": "/labels", "value": "not a literal ("}],
        [{"op": "replace", "path": "/name", "value": {"a": 1}}],
        [{"op": "replace", "path": "bad path"}],
    ],
)
async def test_bad_patches_are_400(client: httpx.AsyncClient, admin_token: str, patch: Any) -> None:
    ct = await _create(client, admin_token, name="p")
    r = await client.patch(f"{CT}/{ct['uuid']}", json=patch, headers=_h(admin_token))
    assert r.status_code == 400, r.text
    assert r.json()["errors"][0]["code"] == "client"


async def test_pagination_and_sorting(client: httpx.AsyncClient, admin_token: str) -> None:
    uuids = [(await _create(client, admin_token, name=f"t{i}"))["uuid"] for i in range(3)]
    r = await client.get(f"{CT}/?limit=2", headers=_h(admin_token))
    body = r.json()
    assert [t["uuid"] for t in body["clustertemplates"]] == uuids[:2]
    assert "marker=" + uuids[1] in body["next"]
    nxt = body["next"].replace("http://testserver", "")
    rest = (await client.get(nxt, headers=_h(admin_token))).json()
    assert [t["uuid"] for t in rest["clustertemplates"]] == uuids[2:]
    assert "next" not in rest
    r = await client.get(f"{CT}/detail?sort_key=name&sort_dir=desc", headers=_h(admin_token))
    assert [t["name"] for t in r.json()["clustertemplates"]] == ["t2", "t1", "t0"]
    for query, status in [
        ("limit=0", 400),
        ("limit=x", 400),
        ("sort_dir=up", 400),
        ("sort_key=nope", 400),
        ("marker=00000000-0000-0000-0000-000000000000", 404),
    ]:
        r = await client.get(f"{CT}?{query}", headers=_h(admin_token))
        assert r.status_code == status, (query, r.text)


async def test_duplicate_names_conflict(client: httpx.AsyncClient, admin_token: str) -> None:
    await _create(client, admin_token, name="same")
    await _create(client, admin_token, name="same")
    r = await client.get(f"{CT}/same", headers=_h(admin_token))
    assert r.status_code == 409
    assert "Multiple cluster templates" in r.json()["errors"][0]["detail"]


async def test_tenancy_and_publishing(client: httpx.AsyncClient, admin_token: str) -> None:
    alice = await make_member(client, admin_token, "team-a", "alice")
    bob = await make_member(client, admin_token, "team-b", "bob")
    mine = await _create(client, alice, name="alice-ct")
    # Bob sees and touches none of Alice's templates, by uuid or by name.
    assert (await client.get(CT, headers=_h(bob))).json()["clustertemplates"] == []
    assert (await client.get(f"{CT}/detail", headers=_h(bob))).json()["clustertemplates"] == []
    for ident in (mine["uuid"], "alice-ct"):
        assert (await client.get(f"{CT}/{ident}", headers=_h(bob))).status_code == 404
        r = await client.patch(
            f"{CT}/{ident}",
            json=[{"op": "replace", "path": "/name", "value": "x"}],
            headers=_h(bob),
        )
        assert r.status_code == 404
        assert (await client.delete(f"{CT}/{ident}", headers=_h(bob))).status_code == 404
    # Members may not publish; admins may, and then everyone sees (but only admins change) it.
    r = await client.post(
        CT, json={"coe": "swarm-mode", "image_id": "i", "public": True}, headers=_h(alice)
    )
    assert r.status_code == 403 and r.json()["errors"][0]["code"] == "client"
    r = await client.patch(
        f"{CT}/{mine['uuid']}",
        json=[{"op": "replace", "path": "/public", "value": True}],
        headers=_h(alice),
    )
    assert r.status_code == 403
    shared = await _create(client, admin_token, name="shared", public=True)
    hidden = await _create(client, admin_token, name="hidden", public=True, hidden=True)
    names = {t["name"] for t in (await client.get(CT, headers=_h(bob))).json()["clustertemplates"]}
    assert names == {"shared"}
    assert (await client.get(f"{CT}/shared", headers=_h(bob))).status_code == 200
    assert (await client.get(f"{CT}/{hidden['uuid']}", headers=_h(bob))).status_code == 404
    r = await client.patch(
        f"{CT}/{shared['uuid']}",
        json=[{"op": "replace", "path": "/name", "value": "mine"}],
        headers=_h(bob),
    )
    assert r.status_code == 403
    assert (await client.delete(f"{CT}/{shared['uuid']}", headers=_h(bob))).status_code == 403
    # The admin sees every project's templates, hidden ones included, and manages them.
    every = (await client.get(CT, headers=_h(admin_token))).json()["clustertemplates"]
    assert {"alice-ct", "shared", "hidden"} <= {t["name"] for t in every}
    assert (await client.delete(f"{CT}/{mine['uuid']}", headers=_h(admin_token))).status_code == 204


async def test_stats_policy(client: httpx.AsyncClient, admin_token: str) -> None:
    alice = await make_member(client, admin_token, "team-a", "alice")
    r = await client.get("/container-infra/v1/stats", headers=_h(alice))
    assert r.json() == {"clusters": 0, "nodes": 0}
    r = await client.get("/container-infra/v1/stats?project_id=other", headers=_h(alice))
    assert r.status_code == 403
    r = await client.get("/container-infra/v1/stats?type=pods", headers=_h(alice))
    assert r.status_code == 400
    r = await client.get("/container-infra/v1/stats?project_id=other", headers=_h(admin_token))
    assert r.status_code == 200


async def test_a_project_keeps_a_bounded_number_of_templates(
    app: Any, client: httpx.AsyncClient, admin_token: str
) -> None:
    """Magnum puts templates under no quota and lists them whole: past
    ``max_cluster_templates_per_project`` one more is a 403 naming the setting; another
    project is not affected, and deleting one makes room."""
    env = app.state.berth.env
    env.settings = env.settings.model_copy(update={"max_cluster_templates_per_project": 2})
    alice = await make_member(client, admin_token, "tpl-a", "tpl-alice")
    bob = await make_member(client, admin_token, "tpl-b", "tpl-bob")
    first = await _create(client, alice, name="one")
    await _create(client, alice, name="two")
    body = {"coe": "swarm-mode", "image_id": "berth-node", "name": "three"}
    r = await client.post(CT, json=body, headers=_h(alice))
    assert r.status_code == 403, r.text
    assert "max_cluster_templates_per_project" in r.json()["errors"][0]["detail"]
    await _create(client, bob, name="three")
    assert (await client.delete(f"{CT}/{first['uuid']}", headers=_h(alice))).status_code == 204
    await _create(client, alice, name="three")
