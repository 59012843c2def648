"""The worker job and the container-backed node provisioner: nodes are the owner's containers."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI

from berth.clusters import (
    ClusterSpec,
    DriverInfo,
    DriverRegistry,
    NodeProvisioner,
    NodeSpec,
    Outcome,
    Report,
)
from berth.config import Settings
from berth.services.clusters.lifecycle import ClusterWorker
from berth.services.clusters.nodes import provisioner_for
from tests.helpers import ZUN, ScriptedAgent, make_member, open_clusters

MAG = {"OpenStack-API-Version": "container-infra latest"}
V = "/container-infra/v1"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # alice's cluster is a member's: open clusters as an operator would (by default
    # creating nodes is admin-only, see tests/api/test_magnum_policy.py).
    return open_clusters(settings)


class OneNodeDriver:
    """Creates one node container per worker; deletes them on delete."""

    info = DriverInfo("one-node", "vm", "debian", "swarm-mode", "0.1")

    async def create(self, spec: ClusterSpec, nodes: NodeProvisioner, report: Report) -> Outcome:
        names = [f"{spec.name}-node-{i}" for i in range(spec.node_count)]
        for name in names:
            await report(f"creating {name}")
            await nodes.create_node(NodeSpec(name, spec.image, spec.cpu, spec.memory_mb))
            again = await nodes.create_node(NodeSpec(name, spec.image, spec.cpu, spec.memory_mb))
            assert again.name == name  # idempotent
        return Outcome(node_addresses=tuple(names))

    async def update(self, spec: ClusterSpec, nodes: NodeProvisioner, report: Report) -> Outcome:
        return await self.create(spec, nodes, report)

    async def delete(self, spec: ClusterSpec, nodes: NodeProvisioner, report: Report) -> None:
        for i in range(spec.node_count):
            await nodes.delete_node(f"{spec.name}-node-{i}")
        assert await nodes.inspect_node("never-existed") is None


async def _settle(worker: ClusterWorker, app: FastAPI) -> None:
    await worker.tick(app.state.berth.env)
    for _ in range(100):
        if not worker.running:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("cluster operations did not finish")


async def _cluster_of_two(
    app: FastAPI, client: httpx.AsyncClient, admin_token: str, driver: OneNodeDriver
) -> tuple[ClusterWorker, str, str, str]:
    """A scripted host, alice's cluster "sw" (two workers) made by ``driver``, and bob."""
    agent = ScriptedAgent(client)
    await agent.register()
    drivers = DriverRegistry([driver])
    app.state.cluster_drivers = drivers
    worker = ClusterWorker(drivers, provisioner_for(app.state.berth.env))
    alice = await make_member(client, admin_token, "team-a", "alice")
    bob = await make_member(client, admin_token, "team-b", "bob")
    h = {"X-Auth-Token": alice, **MAG}
    body = {"name": "tpl", "coe": "swarm-mode", "image_id": "busybox", "flavor_id": "m1.tiny"}
    assert (await client.post(f"{V}/clustertemplates", json=body, headers=h)).status_code == 201
    r = await client.post(
        f"{V}/clusters",
        json={"cluster_template_id": "tpl", "name": "sw", "node_count": 2},
        headers=h,
    )
    await _settle(worker, app)
    return worker, alice, bob, str(r.json()["uuid"])


async def test_nodes_are_containers_of_the_owner(
    app: FastAPI, client: httpx.AsyncClient, admin_token: str
) -> None:
    worker, alice, bob, uuid = await _cluster_of_two(app, client, admin_token, OneNodeDriver())
    h = {"X-Auth-Token": alice, **MAG}
    shown = (await client.get(f"{V}/clusters/{uuid}", headers=h)).json()
    assert shown["status"] == "CREATE_COMPLETE", shown
    zun_a = {"X-Auth-Token": alice, **ZUN}
    mine = (await client.get("/container/v1/containers", headers=zun_a)).json()["containers"]
    assert sorted(c["name"] for c in mine) == ["sw-node-0", "sw-node-1"]
    assert all(c["labels"]["berth.cluster"] == uuid for c in mine)
    assert {c["memory"] for c in mine} == {"512"}
    zun_b = {"X-Auth-Token": bob, **ZUN}
    assert (await client.get("/container/v1/containers", headers=zun_b)).json()["containers"] == []
    # Delete: the nodes are asked to go; the cluster row goes once the host removed them.
    assert (await client.delete(f"{V}/clusters/{uuid}", headers=h)).status_code == 204
    await worker.tick(app.state.berth.env)
    host = ScriptedAgent(client)
    await host.register()
    # This driver deletes its nodes one by one, each waiting for its host.
    for c in sorted(mine, key=lambda c: str(c["name"])):
        for _ in range(200):  # until the driver has asked for this one
            r = await client.get(f"/container/v1/containers/{c['uuid']}", headers=zun_a)
            if r.json()["status"] == "Deleting":
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"{c['name']} was never asked to go")
        # Asked, not yet removed by its host: the cluster is still there.
        shown = (await client.get(f"{V}/clusters/{uuid}", headers=h)).json()
        assert shown["status"] == "DELETE_IN_PROGRESS", shown
        await host.observe(c["uuid"], "absent")
    await _settle(worker, app)
    assert (await client.get(f"{V}/clusters/{uuid}", headers=h)).status_code == 404
    assert (await client.get("/container/v1/containers", headers=zun_a)).json()["containers"] == []


class GroupedDriver(OneNodeDriver):
    """One node container per group slot, labelled with its group; keeps every spec it got."""

    def __init__(self) -> None:
        self.seen: list[ClusterSpec] = []

    async def create(self, spec: ClusterSpec, nodes: NodeProvisioner, report: Report) -> Outcome:
        self.seen.append(spec)
        for group in spec.nodegroups:
            for i in range(group.node_count):
                node = NodeSpec(f"{spec.name}-{group.role}-{i}", spec.image, spec.cpu,
                                spec.memory_mb, group=group.name)  # fmt: skip
                await nodes.create_node(node)
        return Outcome()


async def test_nodes_to_remove_name_nodes_of_the_resized_group(
    app: FastAPI, client: httpx.AsyncClient, admin_token: str
) -> None:
    driver = GroupedDriver()
    worker, alice, bob, uuid = await _cluster_of_two(app, client, admin_token, driver)
    h = {"X-Auth-Token": alice, **MAG}
    zun_a = {"X-Auth-Token": alice, **ZUN}
    mine = (await client.get("/container/v1/containers", headers=zun_a)).json()["containers"]
    by_name = {c["name"]: c for c in mine}
    assert by_name["sw-worker-0"]["labels"]["berth.nodegroup"] == "default-worker"
    r = await client.post(
        "/container/v1/containers?run=true",
        json={"image": "busybox", "name": "bobs"},
        headers={"X-Auth-Token": bob, **ZUN},
    )
    bobs = r.json()["uuid"]

    async def resize(count: int, remove: list[str]) -> httpx.Response:
        return await client.post(
            f"{V}/clusters/{uuid}/actions/resize",
            json={"node_count": count, "nodes_to_remove": remove},
            headers=h,
        )

    for bad, says in (
        ("nope", "is not a node of cluster sw"),
        (bobs, "is not a node of cluster sw"),  # another project's container is no node
        ("sw-master-0", "is in node group default-master, not default-worker"),
    ):
        r = await resize(1, [bad])
        assert r.status_code == 400 and says in r.json()["errors"][0]["detail"], r.text
    assert (await client.get(f"{V}/clusters/{uuid}", headers=h)).json()["status"] == (
        "CREATE_COMPLETE"
    )  # a refused resize changes nothing

    # A node named by its container UUID (Magnum's "server ID") or by its name.
    r = await resize(1, [by_name["sw-worker-0"]["uuid"]])
    assert r.status_code == 202, r.text
    await _settle(worker, app)
    workers = next(g for g in driver.seen[-1].nodegroups if g.name == "default-worker")
    assert (workers.node_count, workers.nodes_to_remove) == (1, ("sw-worker-0",))
    masters = next(g for g in driver.seen[-1].nodegroups if g.name == "default-master")
    assert masters.nodes_to_remove == ()
    # The hint belongs to that one resize: the next update does not see it.
    assert (await resize(2, [])).status_code == 202
    await _settle(worker, app)
    workers = next(g for g in driver.seen[-1].nodegroups if g.name == "default-worker")
    assert (workers.node_count, workers.nodes_to_remove) == (2, ())
