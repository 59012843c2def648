"""Who may create cluster nodes: admins by default, members once an operator opens it.

Cluster nodes are root-equivalent on the host (Docker-in-Docker with the host's
cgroups), so creating, growing or replacing nodes and signing client certificates
for their Docker APIs are admin-only by default. The policy file in
docs/clusters.md (tests/helpers.OPEN_CLUSTERS) gives them back to members.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from berth.config import Settings
from tests.api.test_magnum_clusters import World, _csr, h
from tests.conftest import issue_token
from tests.helpers import make_member, open_clusters

V = "/container-infra/v1"
OPS_PW = "ops-secret-pw"


@pytest.fixture
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    opened = getattr(request, "param", "default") == "opened"
    return open_clusters(settings) if opened else settings


async def _project_admin(client: httpx.AsyncClient, admin: str, project: str) -> str:
    """A user with the admin role in ``project``: an operator acting for that project."""
    hdr = {"X-Auth-Token": admin}
    projects = (await client.get(f"/identity/v3/projects?name={project}", headers=hdr)).json()
    user = {"name": "ops", "domain_id": "default", "password": OPS_PW}
    r = await client.post("/identity/v3/users", headers=hdr, json={"user": user})
    assert r.status_code == 201, r.text
    uid, pid = r.json()["user"]["id"], projects["projects"][0]["id"]
    role = (await client.get("/identity/v3/roles?name=admin", headers=hdr)).json()["roles"][0]
    r = await client.put(f"/identity/v3/projects/{pid}/users/{uid}/roles/{role['id']}", headers=hdr)
    assert r.status_code == 204, r.text
    return await issue_token(client, "ops", OPS_PW, project)


def _denied(r: httpx.Response, rule: str) -> None:
    assert r.status_code == 403, r.text
    error: dict[str, Any] = r.json()["errors"][0]  # Magnum's error body
    assert error["status"] == 403 and error["code"] == "client"
    assert rule in error["detail"]


async def test_a_member_may_not_create_nodes_or_node_certificates_by_default(
    app: FastAPI, client: httpx.AsyncClient, admin_token: str
) -> None:
    world = World(app, client)
    alice = await make_member(client, admin_token, "team-a", "alice")
    await world.template(alice)
    r = await client.post(
        f"{V}/clusters", json={"cluster_template_id": "tpl", "name": "c1"}, headers=h(alice)
    )
    _denied(r, "cluster:create")
    # An operator creates the project's cluster; alice may look at it and remove it.
    ops = await _project_admin(client, admin_token, "team-a")
    uuid = await world.cluster(ops)
    await world.work()
    assert (await world.show(alice, uuid))["status"] == "CREATE_COMPLETE"
    assert (await client.get(f"{V}/certificates/{uuid}", headers=h(alice))).status_code == 200
    r = await client.post(
        f"{V}/clusters/{uuid}/actions/resize", json={"node_count": 3}, headers=h(alice)
    )
    _denied(r, "cluster:resize")
    patch = [{"op": "replace", "path": "/node_count", "value": 3}]
    r = await client.patch(f"{V}/clusters/{uuid}", json=patch, headers=h(alice))
    _denied(r, "cluster:update")
    r = await client.post(
        f"{V}/clusters/{uuid}/nodegroups", json={"name": "ng", "node_count": 1}, headers=h(alice)
    )
    _denied(r, "nodegroup:create")
    r = await client.post(
        f"{V}/certificates", json={"cluster_uuid": uuid, "csr": _csr()}, headers=h(alice)
    )
    _denied(r, "certificate:create")
    r = await client.patch(f"{V}/certificates/{uuid}", headers=h(alice))
    _denied(r, "certificate:rotate_ca")
    assert (await client.delete(f"{V}/clusters/{uuid}", headers=h(alice))).status_code == 204


@pytest.mark.parametrize("settings", ["opened"], indirect=True)
async def test_the_operators_policy_file_opens_clusters_to_members(
    app: FastAPI, client: httpx.AsyncClient, admin_token: str
) -> None:
    world = World(app, client)
    alice = await make_member(client, admin_token, "team-a", "alice")
    await world.template(alice)
    uuid = await world.cluster(alice)
    await world.work()
    r = await client.post(
        f"{V}/certificates", json={"cluster_uuid": uuid, "csr": _csr()}, headers=h(alice)
    )
    assert r.status_code == 201, r.text
    r = await client.post(
        f"{V}/clusters/{uuid}/actions/resize", json={"node_count": 3}, headers=h(alice)
    )
    assert r.status_code == 202, r.text
    await world.work()
    r = await client.post(
        f"{V}/clusters/{uuid}/nodegroups", json={"name": "ng", "node_count": 1}, headers=h(alice)
    )
    assert r.status_code == 202, r.text
