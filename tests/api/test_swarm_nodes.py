"""Cluster nodes as containers: the internal-only Docker-in-Docker profile and node listing."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI

from berth.clusters import NodeSpec
from berth.domain.context import RequestContext
from berth.services.clusters.nodes import ContainerNodes
from tests.helpers import ZUN, ScriptedAgent, make_member

pytestmark = pytest.mark.asyncio


def _ctx(project_id: str, user_id: str) -> RequestContext:
    return RequestContext(
        user_id=user_id, user_name="", project_id=project_id, project_name=None, roles=("member",)
    )


async def _whoami(client: httpx.AsyncClient, token: str) -> tuple[str, str]:
    r = await client.get(
        "/identity/v3/auth/tokens", headers={"X-Auth-Token": token, "X-Subject-Token": token}
    )
    body = r.json()["token"]
    return body["project"]["id"], body["user"]["id"]


async def test_users_cannot_ask_for_the_dind_profile(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    agent = ScriptedAgent(client)
    await agent.register()
    alice = await make_member(client, admin_token, "team-a", "alice")
    for token in (alice, admin_token):
        h = {"X-Auth-Token": token, **ZUN}
        body = {"image": "berth-test/busybox", "node_profile": "dind"}
        r = await client.post("/container/v1/containers", json=body, headers=h)
        assert r.status_code == 400, r.text
        assert "node_profile" in r.json()["errors"][0]["detail"]
    h = {"X-Auth-Token": alice, **ZUN}
    r = await client.post(
        "/container/v1/containers", json={"image": "berth-test/busybox"}, headers=h
    )
    assert r.status_code == 202
    uuid = r.json()["uuid"]
    r = await client.patch(
        f"/container/v1/containers/{uuid}", json={"node_profile": "dind"}, headers=h
    )
    assert r.status_code == 400
    shown = (await client.get(f"/container/v1/containers/{uuid}", headers=h)).json()
    assert "node_profile" not in shown
    assert (await agent.desired())[uuid]["node_profile"] is None


async def test_node_provisioner_sets_the_profile_and_lists_only_its_cluster(
    app: FastAPI, client: httpx.AsyncClient, admin_token: str
) -> None:
    agent = ScriptedAgent(client)
    await agent.register()
    env = app.state.berth.env
    alice = await make_member(client, admin_token, "team-a", "alice")
    bob = await make_member(client, admin_token, "team-b", "bob")
    a_ctx, b_ctx = _ctx(*await _whoami(client, alice)), _ctx(*await _whoami(client, bob))
    mine = ContainerNodes(env, a_ctx, "c1" + "0" * 34)
    other_cluster = ContainerNodes(env, a_ctx, "c2" + "0" * 34)
    other_project = ContainerNodes(env, b_ctx, "c1" + "0" * 34)
    spec = NodeSpec("n-0", "berth/swarm-node:1", 0.5, 512, environment={"A": "1"}, profile="dind")
    info = await mine.create_node(spec)
    assert info.name == "n-0" and info.image == "berth/swarm-node:1"
    assert info.environment == {"A": "1"}
    await other_cluster.create_node(NodeSpec("x-0", "berth/swarm-node:1", 0.5, 512))
    assert [n.name for n in await mine.list_nodes()] == ["n-0"]
    assert [n.name for n in await other_cluster.list_nodes()] == ["x-0"]
    assert await other_project.list_nodes() == []
    assert await other_project.inspect_node("n-0") is None
    desired = {c["name"]: c for c in (await agent.desired()).values()}
    assert desired["n-0"]["node_profile"] == "dind"
    assert desired["n-0"]["hostname"] == "n-0"
    assert desired["x-0"]["node_profile"] is None


@pytest.mark.allows_5xx("no agent runs the node's host: execute and get_archive are 503")
async def test_owners_cannot_shell_into_or_change_their_nodes(
    app: FastAPI, client: httpx.AsyncClient, admin_token: str
) -> None:
    agent = ScriptedAgent(client)
    await agent.register()
    alice = await make_member(client, admin_token, "team-a", "alice")
    nodes = ContainerNodes(app.state.berth.env, _ctx(*await _whoami(client, alice)), "c" * 36)
    await nodes.create_node(NodeSpec("n-0", "berth/swarm-node:1", 0.5, 512, profile="dind"))
    uuid = next(iter(await agent.desired()))
    await agent.observe(uuid, "running", addresses={})
    base = f"/container/v1/containers/{uuid}"
    for token, forbidden in ((alice, True), (admin_token, False)):
        h = {"X-Auth-Token": token, **ZUN}
        for method, url, body in (
            ("POST", f"{base}/execute?command=sh", None),
            ("GET", f"{base}/get_archive?path=/etc", None),
            ("POST", f"{base}/rebuild", None),
            ("PATCH", base, {"name": "renamed"}),
        ):
            r = await client.request(method, url, json=body, headers=h)
            if forbidden:
                assert r.status_code == 403, (url, r.text)
                assert "managed by its cluster" in r.json()["errors"][0]["detail"]
            else:
                assert r.status_code != 403, (url, r.text)
            if r.status_code == 200 and method == "PATCH":
                break
    # Seeing it stays allowed: it is the owner's container.
    h = {"X-Auth-Token": alice, **ZUN}
    assert (await client.get(base, headers=h)).status_code == 200


async def test_a_node_lands_in_its_zone_and_shows_where_its_host_publishes_it(
    app: FastAPI, client: httpx.AsyncClient, admin_token: str
) -> None:
    near, far = ScriptedAgent(client, "host-a"), ScriptedAgent(client, "host-b")
    await near.register(availability_zone="zone-a", agent_url="http://192.0.2.1:9518")
    await far.register(availability_zone="zone-b", agent_url="http://192.0.2.2:9518")
    alice = await make_member(client, admin_token, "team-a", "alice")
    nodes = ContainerNodes(app.state.berth.env, _ctx(*await _whoami(client, alice)), "c" * 36)
    spec = NodeSpec("n-0", "berth/swarm-node:1", 0.5, 512, publish=(2376,), profile="dind",
                    availability_zone="zone-b")  # fmt: skip
    await nodes.create_node(spec)
    assert await near.desired() == {}
    uuid = next(iter(await far.desired()))
    shown = await nodes.inspect_node("n-0")
    assert shown is not None and shown.published == {} and shown.host_address == "192.0.2.2"

    net = {"n1": [{"addr": "10.96.0.5", "version": 4}]}
    await far.observe(uuid, "running", addresses=net, published={"2376/tcp": 32770})
    shown = await nodes.inspect_node("n-0")
    assert shown is not None and (shown.address, shown.published) == ("10.96.0.5", {2376: 32770})
    assert [(n.name, n.host_address) for n in await nodes.list_nodes()] == [("n-0", "192.0.2.2")]


async def test_an_unknown_zone_leaves_the_node_in_error(
    app: FastAPI, client: httpx.AsyncClient, admin_token: str
) -> None:
    await ScriptedAgent(client, "host-a").register(availability_zone="zone-a")
    alice = await make_member(client, admin_token, "team-a", "alice")
    nodes = ContainerNodes(app.state.berth.env, _ctx(*await _whoami(client, alice)), "c" * 36)
    spec = NodeSpec("n-0", "berth/swarm-node:1", 0.5, 512, availability_zone="zone-x")
    info = await nodes.create_node(spec)
    assert info.status == "Error" and "zone-x" in (info.status_reason or ""), info


async def test_a_deleted_node_is_gone_only_once_its_host_removed_it(
    app: FastAPI, client: httpx.AsyncClient, admin_token: str
) -> None:
    """UPDATE_COMPLETE / DELETE_COMPLETE follow the node containers' removal, as
    Magnum's Heat waits for its servers (it used to follow the request to remove)."""
    agent = ScriptedAgent(client)
    await agent.register()
    env = app.state.berth.env
    alice = await make_member(client, admin_token, "team-a", "alice")
    nodes = ContainerNodes(env, _ctx(*await _whoami(client, alice)), "c1" + "0" * 34)
    await nodes.create_node(NodeSpec("n-0", "berth/swarm-node:1", 0.5, 512, profile="dind"))
    uuid = next(iter(await agent.desired()))
    await agent.observe(uuid, "running")
    deleting = asyncio.create_task(nodes.delete_node("n-0"))
    await asyncio.sleep(0.5)
    assert not deleting.done()  # the host has not removed it yet
    assert (await agent.desired())[uuid]["desired_state"] == "deleted"
    await agent.observe(uuid, "absent")
    await asyncio.wait_for(deleting, 5)
    assert await nodes.list_nodes() == []

    # A host that never answers: the operation goes on after removal_wait.
    late = ContainerNodes(env, nodes.owner, nodes.cluster_uuid, removal_wait=0.3)
    await late.create_node(NodeSpec("n-1", "berth/swarm-node:1", 0.5, 512, profile="dind"))
    await asyncio.wait_for(late.delete_node("n-1"), 5)
    assert [n.name for n in await late.list_nodes()] == ["n-1"]  # still being removed
