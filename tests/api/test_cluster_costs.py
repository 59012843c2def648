"""What a cluster request costs: node counts are capped per cluster, nodes are charged as quota.

The nodes are real container rows of the owner's project (the container-backed
provisioner, a scripted host), so the quota numbers are the ones a user sees.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

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
from tests.fakes.node_drivers import ConvergingNodes
from tests.helpers import ZUN, ScriptedAgent, make_member

V = "/container-infra/v1"
CAP = 6
# Cluster writes may be admin-only by default (nodes are root-equivalent): these
# tests are about counts, so members of the project are let in.
OPEN_RULES = {
    rule: "rule:admin_or_owner"
    for rule in (
        "cluster:create",
        "cluster:update",
        "cluster:resize",
        "nodegroup:create",
        "nodegroup:update",
        "clustertemplate:create",
    )
}


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(OPEN_RULES))
    # The scripted host never removes a container: operations go on at once
    # (the wait for the host is tests/api/test_magnum_nodes.py's and test_swarm_nodes.py's).
    return settings.model_copy(
        update={"max_nodes_per_cluster": CAP, "quota_containers": 5, "policy_file": policy,
                "cluster_node_removal_wait": 0}
    )  # fmt: skip


class GroupNodes(ConvergingNodes):
    """One node container per node of every group (masters too), labelled with its group."""

    info = DriverInfo("group-nodes", "vm", "debian", "swarm-mode", "0.1")

    async def create(self, spec: ClusterSpec, nodes: NodeProvisioner, report: Report) -> Outcome:
        wanted = {
            f"{spec.name}-{g.name}-{i}": g for g in spec.nodegroups for i in range(g.node_count)
        }
        for name, g in wanted.items():
            await nodes.create_node(NodeSpec(name, g.image, g.cpu, g.memory_mb, group=g.name))
        for node in await nodes.list_nodes():
            if node.name not in wanted:
                await nodes.delete_node(node.name)
        return Outcome(api_address="tcp://10.0.0.1:2376")


class World:
    def __init__(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        self.app, self.c = app, client
        drivers = DriverRegistry([GroupNodes()])
        app.state.cluster_drivers = drivers
        self.worker = ClusterWorker(drivers, provisioner_for(app.state.berth.env))
        self.token = ""

    async def start(self, admin_token: str) -> None:
        await ScriptedAgent(self.c).register(cpus=64, mem_total=65536)
        self.token = await make_member(self.c, admin_token, "team-a", "alice")
        body = {"name": "tpl", "coe": "swarm-mode", "image_id": "busybox", "flavor_id": "m1.tiny"}
        r = await self.c.post(f"{V}/clustertemplates", json=body, headers=self.h())
        assert r.status_code == 201, r.text

    def h(self) -> dict[str, str]:
        return {"X-Auth-Token": self.token, "OpenStack-API-Version": "container-infra latest"}

    async def settle(self) -> None:
        await self.worker.tick(self.app.state.berth.env)
        for _ in range(200):
            if not self.worker.running:
                return
            await asyncio.sleep(0.05)
        raise AssertionError("cluster operations did not finish")

    async def create(self, name: str, node_count: Any) -> httpx.Response:
        body = {"cluster_template_id": "tpl", "name": name, "node_count": node_count}
        return await self.c.post(f"{V}/clusters", json=body, headers=self.h())

    async def show(self, ident: str) -> dict[str, Any]:
        r = await self.c.get(f"{V}/clusters/{ident}", headers=self.h())
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    async def containers(self) -> list[str]:
        h = {"X-Auth-Token": self.token, **ZUN}
        found = (await self.c.get("/container/v1/containers", headers=h)).json()["containers"]
        return sorted(c["name"] for c in found)


@pytest.fixture
async def world(app: FastAPI, client: httpx.AsyncClient, admin_token: str) -> World:
    w = World(app, client)
    await w.start(admin_token)
    return w


def refused(r: httpx.Response, status: int, *words: str) -> None:
    """The request got ``status`` in Magnum's error body, naming every one of ``words``."""
    assert r.status_code == status, r.text
    (err,) = r.json()["errors"]
    assert err["code"] == "client" and err["status"] == status
    for word in words:
        assert word in err["detail"], (word, err["detail"])


async def test_node_counts_above_the_operator_cap_are_refused_with_the_numbers(
    world: World,
) -> None:
    refused(await world.create("huge", 10**12), 400, "1000000000001", f"{CAP} nodes per cluster")
    refused(await world.create("seven", CAP), 400, "7 nodes", "max_nodes_per_cluster")
    refused(await world.create("str", "9" * 40), 400, "node_count")
    assert (await world.c.get(f"{V}/clusters", headers=world.h())).json()["clusters"] == []

    assert (await world.create("c1", 2)).status_code == 202  # 1 master + 2 workers
    await world.settle()
    resize = f"{V}/clusters/c1/actions/resize"
    refused(await world.c.post(resize, json={"node_count": 10**12}, headers=world.h()), 400,
            "1000000000001 nodes", f"at most {CAP}")  # fmt: skip
    patch = [{"op": "replace", "path": "/node_count", "value": CAP}]
    refused(await world.c.patch(f"{V}/clusters/c1", json=patch, headers=world.h()), 400,
            f"{CAP + 1} nodes")  # fmt: skip
    groups = f"{V}/clusters/c1/nodegroups"
    big = {"name": "extra", "node_count": 4}
    refused(await world.c.post(groups, json=big, headers=world.h()), 400, "7 nodes")
    loose = {"name": "loose", "node_count": 1, "max_node_count": 100}
    refused(await world.c.post(groups, json=loose, headers=world.h()), 400,
            "max_node_count of node group loose is 100")  # fmt: skip
    bound = [{"op": "replace", "path": "/max_node_count", "value": 10**9}]
    r = await world.c.patch(f"{groups}/default-worker", json=bound, headers=world.h())
    refused(r, 400, "1000000000", f"at most {CAP}")
    shown = await world.show("c1")
    assert (shown["status"], shown["node_count"]) == ("CREATE_COMPLETE", 2)
    assert len(await world.containers()) == 3


async def test_cluster_nodes_are_charged_to_the_container_quota_up_front(world: World) -> None:
    # The quota is 5 containers: c1 (1 master + 2 workers) fits; while it is still
    # being built, its 3 nodes are promised, so c2's 3 more do not fit.
    assert (await world.create("c1", 2)).status_code == 202
    r = await world.create("c2", 2)
    refused(r, 403, "needs 3 more node container(s)", "3 node(s) promised", "limit 5")
    await world.settle()
    assert len(await world.containers()) == 3
    # Resize up within quota works end to end; one node more than the quota is refused.
    resize = f"{V}/clusters/c1/actions/resize"
    r = await world.c.post(resize, json={"node_count": 3}, headers=world.h())
    assert r.status_code == 202, r.text
    await world.settle()
    assert (await world.show("c1"))["status"] == "UPDATE_COMPLETE"
    assert len(await world.containers()) == 4
    r = await world.c.post(resize, json={"node_count": 5}, headers=world.h())
    refused(r, 403, "needs 2 more node container(s)", "limit 5, in use 4, asked 2")
    patch = [{"op": "replace", "path": "/node_count", "value": 5}]
    refused(await world.c.patch(f"{V}/clusters/c1", json=patch, headers=world.h()), 403,
            "needs 2 more", "limit 5")  # fmt: skip
    groups = f"{V}/clusters/c1/nodegroups"
    r = await world.c.post(groups, json={"name": "extra", "node_count": 2}, headers=world.h())
    refused(r, 403, "needs 2 more", "limit 5")
    assert (await world.show("c1"))["node_count"] == 3  # nothing was stored
    # A node group that fits is created end to end.
    r = await world.c.post(groups, json={"name": "extra", "node_count": 1}, headers=world.h())
    assert r.status_code == 202, r.text
    await world.settle()
    assert (await world.show("c1"))["status"] == "UPDATE_COMPLETE"
    assert len(await world.containers()) == 5
    # Shrinking never costs, even with the quota full.
    r = await world.c.post(resize, json={"node_count": 1}, headers=world.h())
    assert r.status_code == 202, r.text
    await world.settle()
    assert (await world.show("c1"))["status"] == "UPDATE_COMPLETE"
