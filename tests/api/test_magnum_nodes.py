"""The worker job and the container-backed node provisioner: nodes are the owner's containers."""

from __future__ import annotations

import asyncio

import httpx
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
from berth.services.cluster_lifecycle import ClusterWorker
from berth.services.cluster_nodes import provisioner_for
from tests.helpers import ZUN, ScriptedAgent, make_member

MAG = {"OpenStack-API-Version": "container-infra latest"}
V = "/container-infra/v1"


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


async def test_nodes_are_containers_of_the_owner(
    app: FastAPI, client: httpx.AsyncClient, admin_token: str
) -> None:
    agent = ScriptedAgent(client)
    await agent.register()
    drivers = DriverRegistry([OneNodeDriver()])
    app.state.cluster_drivers = drivers
    env = app.state.berth.env
    worker = ClusterWorker(drivers, provisioner_for(env))
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
    uuid = r.json()["uuid"]
    await _settle(worker, app)
    shown = (await client.get(f"{V}/clusters/{uuid}", headers=h)).json()
    assert shown["status"] == "CREATE_COMPLETE", shown
    zun_a = {"X-Auth-Token": alice, **ZUN}
    mine = (await client.get("/container/v1/containers", headers=zun_a)).json()["containers"]
    assert sorted(c["name"] for c in mine) == ["sw-node-0", "sw-node-1"]
    assert all(c["labels"]["berth.cluster"] == uuid for c in mine)
    assert {c["memory"] for c in mine} == {"512"}
    zun_b = {"X-Auth-Token": bob, **ZUN}
    assert (await client.get("/container/v1/containers", headers=zun_b)).json()["containers"] == []
    # Delete: the nodes are asked to go (the agent confirms), then the cluster row goes.
    assert (await client.delete(f"{V}/clusters/{uuid}", headers=h)).status_code == 204
    await _settle(worker, app)
    assert (await client.get(f"{V}/clusters/{uuid}", headers=h)).status_code == 404
    left = (await client.get("/container/v1/containers", headers=zun_a)).json()["containers"]
    assert all(c["status"] == "Deleting" for c in left)
