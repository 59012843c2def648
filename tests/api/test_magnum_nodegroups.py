"""Node groups, upgrade, quotas, mservices and flavor presets of the cluster API (Magnum 1.9+).

A fake driver registered in the test converges node "containers" (a dict) to
``ClusterSpec.nodegroups``: one node per group member, replaced when its image
changes (what the real driver does as a rolling replace).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from fastapi import FastAPI
from sqlalchemy import select

from berth.clusters import (
    ClusterSpec,
    DriverInfo,
    DriverRegistry,
    NodeInfo,
    NodeProvisioner,
    NodeSpec,
    Outcome,
    Report,
)
from berth.config import ClusterFlavor, Settings
from berth.domain.clusters import default_group_uuid
from berth.services.clusters import lifecycle as cluster_lifecycle
from berth.services.clusters import quotas as cluster_quotas
from berth.store import db as store_db
from berth.store.base import UtcDateTime
from berth.store.db import Database
from berth.store.tables import ClusterRow, ConductorRow, NodeGroupRow
from tests.helpers import make_member, open_clusters

V = "/container-infra/v1"
LATEST = {"OpenStack-API-Version": "container-infra latest"}
# The operator's presets in this module: no m1.tiny, and one odd size.
FLAVORS = {
    "m1.small": ClusterFlavor(cpu=1.0, memory_mb=1024),
    "m1.large": ClusterFlavor(cpu=2.0, memory_mb=4096),
    "gpu.huge": ClusterFlavor(cpu=8.0, memory_mb=16384),
}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Members run their own clusters here, as an operator's policy file allows (by
    # default creating nodes is admin-only, see tests/api/test_magnum_policy.py).
    # Nodes cost quota: a gpu.huge group of three needs more than the default 20 CPUs.
    return open_clusters(settings).model_copy(
        update={
            "cluster_flavors": FLAVORS,
            "max_clusters_per_project": 3,
            "quota_cpu": 64,
            "quota_memory": 256 * 1024,
        }
    )


def h(token: str, version: str | None = None) -> dict[str, str]:
    hdr = {"X-Auth-Token": token, **LATEST}
    if version:
        hdr["OpenStack-API-Version"] = f"container-infra {version}"
    return hdr


class Nodes:
    """A NodeProvisioner over a dict; remembers every node it ever created."""

    def __init__(self) -> None:
        self.nodes: dict[str, NodeSpec] = {}
        self.created: list[str] = []

    async def create_node(self, spec: NodeSpec) -> NodeInfo:
        if spec.name not in self.nodes:
            self.nodes[spec.name] = spec
            self.created.append(spec.name)
        return NodeInfo(spec.name, "Running", spec.name)

    async def inspect_node(self, name: str) -> NodeInfo | None:
        return NodeInfo(name, "Running", name) if name in self.nodes else None

    async def delete_node(self, name: str) -> None:
        self.nodes.pop(name, None)


class GroupDriver:
    """Converges to the node groups: ``<cluster>-<group>-<i>``; a new image replaces the node."""

    info = DriverInfo("fake-groups", "vm", "debian", "swarm-mode", "1.0")

    def __init__(self) -> None:
        self.specs: list[ClusterSpec] = []
        self.fail: str | None = None

    async def _converge(self, spec: ClusterSpec, nodes: NodeProvisioner, report: Report) -> Outcome:
        self.specs.append(spec)
        if self.fail:
            raise RuntimeError(self.fail)
        assert isinstance(nodes, Nodes)
        want = {
            f"{spec.name}-{g.name}-{i}": (g.role, NodeSpec(f"{spec.name}-{g.name}-{i}",
                                                           g.image, g.cpu, g.memory_mb))
            for g in spec.nodegroups
            for i in range(g.node_count)
        }  # fmt: skip
        for name, (_, node) in want.items():
            current = nodes.nodes.get(name)
            if current is not None and current.image != node.image:
                await report(f"replacing {name} ({current.image} -> {node.image})")
                await nodes.delete_node(name)
            await nodes.create_node(node)
        for stale in [n for n in nodes.nodes if n not in want]:
            await nodes.delete_node(stale)
        masters = tuple(n for n, (role, _) in want.items() if role == "master")
        workers = tuple(n for n, (role, _) in want.items() if role != "master")
        return Outcome("tcp://127.0.0.1:2376", masters, workers, "24.0", "24.0")

    async def create(self, spec: ClusterSpec, nodes: NodeProvisioner, report: Report) -> Outcome:
        return await self._converge(spec, nodes, report)

    async def update(self, spec: ClusterSpec, nodes: NodeProvisioner, report: Report) -> Outcome:
        return await self._converge(spec, nodes, report)

    async def delete(self, spec: ClusterSpec, nodes: NodeProvisioner, report: Report) -> None:
        assert isinstance(nodes, Nodes)
        nodes.nodes.clear()


class World:
    def __init__(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        self.app, self.c = app, client
        self.driver = GroupDriver()
        self.registry = DriverRegistry([self.driver])
        self.nodes: dict[str, Nodes] = {}
        app.state.cluster_drivers = self.registry

    async def work(self) -> None:
        env = self.app.state.berth.env
        await cluster_lifecycle.process_pending(
            env, self.registry, lambda row: self.nodes.setdefault(row.uuid, Nodes())
        )

    async def template(self, token: str, name: str, **fields: Any) -> dict[str, Any]:
        body = {"name": name, "coe": "swarm-mode", "image_id": "node", **fields}
        r = await self.c.post(f"{V}/clustertemplates", json=body, headers=h(token))
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    async def cluster(self, token: str, name: str = "c1", **fields: Any) -> str:
        body = {"cluster_template_id": "tpl", "name": name, "node_count": 2, **fields}
        r = await self.c.post(f"{V}/clusters", json=body, headers=h(token))
        assert r.status_code == 202, r.text
        return str(r.json()["uuid"])

    async def show(self, token: str, ident: str) -> dict[str, Any]:
        r = await self.c.get(f"{V}/clusters/{ident}", headers=h(token))
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    async def groups(self, token: str, cluster: str) -> dict[str, dict[str, Any]]:
        r = await self.c.get(f"{V}/clusters/{cluster}/nodegroups", headers=h(token))
        assert r.status_code == 200, r.text
        return {g["name"]: g for g in r.json()["nodegroups"]}


@pytest.fixture
def world(app: FastAPI, client: httpx.AsyncClient) -> World:
    return World(app, client)


def _detail(r: httpx.Response) -> str:
    return str(r.json()["errors"][0]["detail"])


async def test_nodegroup_create_resize_patch_delete(world: World, admin_token: str) -> None:
    alice = await make_member(world.c, admin_token, "team-a", "alice")
    await world.template(alice, "tpl", flavor_id="m1.small", labels={"a": "1"})
    # The labels min/max_node_count bound default-worker (as in Magnum).
    body = {"cluster_template_id": "tpl", "node_count": 1, "labels": {"min_node_count": "2"}}
    r = await world.c.post(f"{V}/clusters", json=body, headers=h(alice))
    assert r.status_code == 409 and "min_node_count (2)" in _detail(r)
    uuid = await world.cluster(alice, labels={"a": "1", "max_node_count": "3"})
    # Not before the cluster has its API address (Magnum's ClusterAPIAddressUnavailable).
    r = await world.c.post(f"{V}/clusters/c1/nodegroups", json={"name": "x"}, headers=h(alice))
    assert r.status_code == 409 and "not available yet" in _detail(r)
    await world.work()
    groups = await world.groups(alice, "c1")
    assert list(groups) == ["default-master", "default-worker"]
    assert {g["status"] for g in groups.values()} == {"CREATE_COMPLETE"}
    assert groups["default-worker"]["is_default"] and "links" not in groups["default-worker"]
    assert groups["default-worker"]["max_node_count"] == 3
    # Create a group: 202 with the full group, the cluster updates, the nodes appear.
    body = {
        "name": "big", "node_count": 2, "min_node_count": 1, "max_node_count": 3,
        "flavor_id": "gpu.huge", "labels": {"b": "2"}, "merge_labels": True, "role": "worker",
        "node_labels": {"tier": "gpu"}, "project_id": "ignored",
    }  # fmt: skip
    r = await world.c.post(f"{V}/clusters/c1/nodegroups/", json=body, headers=h(alice))
    assert r.status_code == 202, r.text
    big = r.json()
    assert big["status"] == "CREATE_IN_PROGRESS" and big["cluster_id"] == uuid
    assert big["image_id"] == "node" and big["labels"] == {
        "a": "1",
        "max_node_count": "3",
        "b": "2",
    }
    assert big["labels_added"] == {"b": "2"} and big["node_labels"] == {"tier": "gpu"}
    assert big["links"][0]["href"].endswith(f"/v1/clusters/{uuid}/nodegroups/{big['uuid']}")
    shown = await world.show(alice, uuid)
    assert shown["status"] == "UPDATE_IN_PROGRESS" and shown["node_count"] == 4
    # While the cluster updates, no other change starts.
    r = await world.c.post(f"{V}/clusters/c1/nodegroups", json={"name": "z"}, headers=h(alice))
    assert r.status_code == 409
    await world.work()
    assert (await world.show(alice, uuid))["status"] == "UPDATE_COMPLETE"
    spec = world.driver.specs[-1]
    assert [(g.name, g.node_count, g.cpu, g.memory_mb) for g in spec.nodegroups] == [
        ("default-master", 1, 1.0, 1024),
        ("default-worker", 2, 1.0, 1024),
        ("big", 2, 8.0, 16384),
    ]
    assert sorted(world.nodes[uuid].nodes) == [
        "c1-big-0", "c1-big-1", "c1-default-master-0", "c1-default-worker-0",
        "c1-default-worker-1",
    ]  # fmt: skip
    r = await world.c.get(f"{V}/clusters/c1/nodegroups/big", headers=h(alice))
    assert r.json()["status"] == "CREATE_COMPLETE" and r.json()["uuid"] == big["uuid"]
    by_id = await world.c.get(f"{V}/clusters/c1/nodegroups/{r.json()['id']}", headers=h(alice))
    assert by_id.json()["name"] == "big"
    r = await world.c.get(
        f"{V}/clusters/c1/nodegroups?sort_key=name&sort_dir=asc&limit=2", headers=h(alice)
    )
    assert [g["name"] for g in r.json()["nodegroups"]] == ["big", "default-master"]
    assert r.json()["next"].startswith(f"http://testserver/container-infra/v1/clusters/{uuid}/")
    # Create refusals, as Magnum answers them.
    for bad, status, fragment in (
        ({"name": "big"}, 409, "already exists"),
        ({"name": "m", "role": "master"}, 400, "master nodegroups"),
        ({"name": "n", "node_count": 1, "min_node_count": 2}, 409,
         "min_node_count (2) should be less or equal to node_count (1)"),
        ({"name": "n", "node_count": 5, "max_node_count": 3}, 409, "max_node_count"),
        ({"name": "n", "flavor_id": "m1.tiny"}, 400, "gpu.huge, m1.large, m1.small"),
        ({"name": "n", "bogus": 1}, 400, "Unknown attribute"),
        ({"node_count": 1}, 400, "name"),
        ({"name": "two words"}, 400, "must start with a letter"),
        ({"name": "n", "node_taints": [{"key": "k", "effect": "Never"}]}, 400, "effect"),
    ):  # fmt: skip
        r = await world.c.post(f"{V}/clusters/c1/nodegroups", json=bad, headers=h(alice))
        assert r.status_code == status, (bad, r.text)
        assert fragment in _detail(r), (bad, r.text)
    r = await world.c.post(
        f"{V}/clusters/c1/nodegroups", json={"name": "n"}, headers=h(alice, "1.8")
    )
    assert r.status_code == 406
    # PATCH: min/max, node labels and taints (as the stock client sends them: literals).
    patch = [
        {"op": "replace", "path": "/max_node_count", "value": 4},
        {"op": "replace", "path": "/min_node_count", "value": 2},
        {"op": "replace", "path": "/node_labels", "value": "{'tier': 'fast'}"},
        {"op": "replace", "path": "/node_taints",
         "value": "[{'key': 'k', 'effect': 'NoSchedule'}]"},
    ]  # fmt: skip
    r = await world.c.patch(f"{V}/clusters/c1/nodegroups/big", json=patch, headers=h(alice))
    assert r.status_code == 202, r.text
    got = r.json()
    assert (got["min_node_count"], got["max_node_count"]) == (2, 4)
    assert got["node_labels"] == {"tier": "fast"}
    assert got["node_taints"] == [{"key": "k", "effect": "NoSchedule"}]
    for bad, status, fragment in (
        ([{"op": "replace", "path": "/node_count", "value": 3}], 400, "internal attribute"),
        ([{"op": "replace", "path": "/max_node_count", "value": 1}], 409, "max_node_count"),
        ([{"op": "replace", "path": "/min_node_count", "value": 3}], 409, "min_node_count"),
        ([{"op": "replace", "path": "/min_node_count", "value": "x"}], 400, "min_node_count"),
        ({"op": "replace"}, 400, "array"),
    ):
        r = await world.c.patch(f"{V}/clusters/c1/nodegroups/big", json=bad, headers=h(alice))
        assert r.status_code == status, (bad, r.text)
        assert fragment in _detail(r), (bad, r.text)
    # New node labels start a cluster update that hands them to the driver.
    assert got["status"] == "UPDATE_IN_PROGRESS"
    assert (await world.show(alice, uuid))["status"] == "UPDATE_IN_PROGRESS"
    await world.work()
    labels = {g.name: dict(g.node_labels) for g in world.driver.specs[-1].nodegroups}
    assert labels == {"default-master": {}, "default-worker": {}, "big": {"tier": "fast"}}
    assert (await world.groups(alice, "c1"))["big"]["status"] == "UPDATE_COMPLETE"
    # Bounds alone change nothing on the nodes: no update.
    bounds = [{"op": "replace", "path": "/max_node_count", "value": 5}]
    r = await world.c.patch(f"{V}/clusters/c1/nodegroups/big", json=bounds, headers=h(alice))
    assert r.status_code == 202 and r.json()["status"] == "UPDATE_COMPLETE", r.text
    assert (await world.show(alice, uuid))["status"] == "UPDATE_COMPLETE"
    # Resize targets a group; its bounds hold; masters are not resized.
    resize = f"{V}/clusters/{uuid}/actions/resize"
    r = await world.c.post(resize, json={"node_count": 6, "nodegroup": "big"}, headers=h(alice))
    assert r.status_code == 400 and "outside the allowed range" in _detail(r)
    r = await world.c.post(
        resize, json={"node_count": 3, "nodegroup": "default-master"}, headers=h(alice)
    )
    assert r.status_code == 400 and "master" in _detail(r)
    r = await world.c.post(resize, json={"node_count": 3, "nodegroup": "nope"}, headers=h(alice))
    assert r.status_code == 404
    r = await world.c.post(resize, json={"node_count": 3, "nodegroup": "big"}, headers=h(alice))
    assert r.status_code == 202, r.text
    assert (await world.groups(alice, "c1"))["big"]["status"] == "UPDATE_IN_PROGRESS"
    await world.work()
    assert (await world.groups(alice, "c1"))["big"]["node_count"] == 3
    assert "c1-big-2" in world.nodes[uuid].nodes
    assert (await world.show(alice, uuid))["node_count"] == 5
    stats = (await world.c.get(f"{V}/stats", headers=h(alice))).json()
    assert stats == {"clusters": 1, "nodes": 6}  # every group's nodes, masters included
    # Delete: default groups are refused; a user group goes with its nodes.
    r = await world.c.delete(f"{V}/clusters/c1/nodegroups/default-worker", headers=h(alice))
    assert r.status_code == 400 and "default nodegroup" in _detail(r)
    r = await world.c.delete(f"{V}/clusters/c1/nodegroups/big", headers=h(alice))
    assert r.status_code == 204
    assert (await world.groups(alice, "c1"))["big"]["status"] == "DELETE_IN_PROGRESS"
    world.driver.fail = "no capacity"
    await world.work()
    assert (await world.groups(alice, "c1"))["big"]["status"] == "DELETE_FAILED"
    world.driver.fail = None
    r = await world.c.delete(f"{V}/clusters/c1/nodegroups/big", headers=h(alice))
    assert r.status_code == 204  # a failed delete is retried
    await world.work()
    assert list(await world.groups(alice, "c1")) == ["default-master", "default-worker"]
    r = await world.c.get(f"{V}/clusters/c1/nodegroups/big", headers=h(alice))
    assert r.status_code == 404
    assert not any(n.startswith("c1-big") for n in world.nodes[uuid].nodes)
    shown = await world.show(alice, uuid)
    assert (shown["status"], shown["node_count"]) == ("UPDATE_COMPLETE", 2)
    stats = (await world.c.get(f"{V}/stats", headers=h(alice))).json()
    assert stats == {"clusters": 1, "nodes": 3}
    # The groups go with their cluster.
    assert (await world.c.delete(f"{V}/clusters/c1", headers=h(alice))).status_code == 204
    await world.work()
    async with world.app.state.berth.db.read() as s:
        assert (await s.scalars(select(NodeGroupRow))).all() == []


async def test_upgrade_moves_groups_to_the_new_template_image(
    world: World, admin_token: str
) -> None:
    alice = await make_member(world.c, admin_token, "team-a", "alice")
    bob = await make_member(world.c, admin_token, "team-b", "bob")
    await world.template(alice, "tpl")
    # Template flavors must name the operator's presets (this module has no m1.tiny).
    body = {"name": "t", "coe": "swarm-mode", "image_id": "x", "master_flavor_id": "m1.tiny"}
    r = await world.c.post(f"{V}/clustertemplates", json=body, headers=h(alice))
    assert r.status_code == 400 and "gpu.huge, m1.large, m1.small" in _detail(r)
    patch = [{"op": "replace", "path": "/flavor_id", "value": "nope"}]
    r = await world.c.patch(f"{V}/clustertemplates/tpl", json=patch, headers=h(alice))
    assert r.status_code == 400 and "Unable to find flavor nope" in _detail(r)
    v2 = await world.template(alice, "tpl-v2", image_id="node-v2")
    await world.template(alice, "k8s", coe="kubernetes")
    uuid = await world.cluster(alice, node_count=1)
    await world.work()
    r = await world.c.post(f"{V}/clusters/c1/nodegroups", json={"name": "extra"}, headers=h(alice))
    assert r.status_code == 202 and r.json()["image_id"] == "node"
    await world.work()
    url = f"{V}/clusters/{uuid}/actions/upgrade"
    for body, version, status, fragment in (
        ({"cluster_template": "tpl-v2"}, "1.6", 406, "upgrade"),
        ({"cluster_template": "tpl-v2"}, "1.7", 400, "1.8"),
        ({"cluster_template": "k8s"}, None, 409, "COE"),
        ({"cluster_template": "nope"}, None, 404, "could not be found"),
        ({"cluster_template": "tpl-v2", "max_batch_size": 0}, None, 400, "max_batch_size"),
        ({"cluster_template": "tpl-v2", "bogus": 1}, None, 400, "Unknown attribute"),
        ({}, None, 400, "cluster_template"),
        ({"cluster_template": "tpl-v2", "nodegroup": "extra"}, None, 409, "upgrade the cluster"),
    ):
        r = await world.c.post(url, json=body, headers=h(alice, version))
        assert r.status_code == status, (body, r.text)
        assert fragment in _detail(r), (body, r.text)
    # Another project can neither upgrade the cluster nor use its private template.
    r = await world.c.post(url, json={"cluster_template": "tpl-v2"}, headers=h(bob))
    assert r.status_code == 404
    await world.template(bob, "bob-tpl")
    r = await world.c.post(url, json={"cluster_template": "bob-tpl"}, headers=h(alice))
    assert r.status_code == 404
    # The cluster: the new template is recorded and the default groups take its image.
    created_before = list(world.nodes[uuid].created)
    r = await world.c.post(
        url, json={"cluster_template": "tpl-v2", "max_batch_size": 2}, headers=h(alice)
    )
    assert r.status_code == 202 and r.json() == {"uuid": uuid}
    shown = await world.show(alice, uuid)
    assert shown["status"] == "UPDATE_IN_PROGRESS"
    assert shown["cluster_template_id"] == v2["uuid"]
    async with world.app.state.berth.db.read() as s:  # the driver's hints
        row = await s.scalar(select(ClusterRow).where(ClusterRow.uuid == uuid))
        assert row is not None and row.attrs["upgrade"] == {
            "cluster_template_id": v2["uuid"],
            "max_batch_size": 2,
            "nodegroups": ["default-master", "default-worker"],
        }
    await world.work()
    images = {g.name: g.image for g in world.driver.specs[-1].nodegroups}
    assert images == {"default-master": "node-v2", "default-worker": "node-v2", "extra": "node"}
    assert world.driver.specs[-1].max_batch_size == 2
    replaced = world.nodes[uuid].created[len(created_before) :]
    assert sorted(replaced) == ["c1-default-master-0", "c1-default-worker-0"]
    groups = await world.groups(alice, "c1")
    assert groups["default-worker"]["image_id"] == "node-v2"
    assert groups["default-worker"]["status"] == "UPDATE_COMPLETE"
    # Then the other group, to the cluster's (now current) template.
    r = await world.c.post(
        url, json={"cluster_template": "tpl-v2", "nodegroup": "extra"}, headers=h(alice)
    )
    assert r.status_code == 202, r.text
    await world.work()
    assert world.driver.specs[-1].max_batch_size == 1  # this upgrade's default
    assert (await world.groups(alice, "c1"))["extra"]["image_id"] == "node-v2"
    assert world.nodes[uuid].nodes["c1-extra-0"].image == "node-v2"
    # A template in use by the cluster cannot be deleted; the old one now can.
    assert (await world.c.delete(f"{V}/clustertemplates/tpl-v2", headers=h(alice))).status_code
    r = await world.c.delete(f"{V}/clustertemplates/tpl", headers=h(alice))
    assert r.status_code == 204


async def test_quotas_admin_crud_and_enforced_at_create(world: World, admin_token: str) -> None:
    alice = await make_member(world.c, admin_token, "team-a", "alice")
    await make_member(world.c, admin_token, "team-b", "bob")
    projects = (await world.c.get("/identity/v3/projects", headers=h(admin_token))).json()
    pid = {p["name"]: p["id"] for p in projects["projects"]}
    await world.template(alice, "tpl")
    # No row: the default (Settings.max_clusters_per_project, 3 here), without an id.
    r = await world.c.get(f"{V}/quotas/{pid['team-a']}/Cluster", headers=h(alice))
    assert r.status_code == 200
    assert r.json() == {"project_id": pid["team-a"], "resource": "Cluster", "hard_limit": 3}
    body = {"project_id": pid["team-a"], "resource": "Cluster", "hard_limit": 1}
    r = await world.c.post(f"{V}/quotas", json=body, headers=h(alice))
    assert r.status_code == 403
    r = await world.c.post(f"{V}/quotas", json=body, headers=h(admin_token))
    assert r.status_code == 201, r.text
    quota = r.json()
    assert quota["hard_limit"] == 1 and isinstance(quota["id"], int) and quota["created_at"]
    for bad, status in (
        (body, 409),
        ({**body, "project_id": "no-such-project"}, 404),
        ({**body, "resource": "Volume"}, 400),
        ({**body, "project_id": pid["team-b"], "hard_limit": -1}, 400),
        ({**body, "project_id": pid["team-b"], "hard_limit": "many"}, 400),
        ({"resource": "Cluster"}, 400),
    ):
        r = await world.c.post(f"{V}/quotas", json=bad, headers=h(admin_token))
        assert r.status_code == status, (bad, r.text)
    # Enforced at create: 403 with Magnum's message.
    await world.cluster(alice, "one")
    r = await world.c.post(
        f"{V}/clusters", json={"cluster_template_id": "tpl", "name": "two"}, headers=h(alice)
    )
    assert r.status_code == 403
    assert "maximum clusters per project, 1" in _detail(r)
    # Admin raises it (PATCH takes a plain object); then the create goes through.
    qurl = f"{V}/quotas/{pid['team-a']}/Cluster"
    r = await world.c.patch(qurl, json={"hard_limit": 2}, headers=h(alice))
    assert r.status_code == 403
    r = await world.c.patch(qurl, json={"hard_limit": 2}, headers=h(admin_token))
    assert r.status_code == 202 and r.json()["hard_limit"] == 2 and r.json()["updated_at"]
    await world.cluster(alice, "two")
    # Reads: a member sees its own project's quota, not another's, and not the list.
    assert (await world.c.get(qurl, headers=h(alice))).json()["hard_limit"] == 2
    r = await world.c.get(f"{V}/quotas/{pid['team-b']}/Cluster", headers=h(alice))
    assert r.status_code == 403
    assert (await world.c.get(f"{V}/quotas", headers=h(alice))).status_code == 403
    r = await world.c.get(f"{V}/quotas?all_tenants=True", headers=h(admin_token))
    assert [q["project_id"] for q in r.json()["quotas"]] == [pid["team-a"]]
    r = await world.c.get(f"{V}/quotas", headers=h(admin_token))
    assert r.json()["quotas"] == []  # the admin project's own
    r = await world.c.get(f"{V}/quotas?all_tenants=True&limit=1", headers=h(admin_token))
    assert r.json()["next"].endswith(f"marker={quota['id']}")
    # Delete: alice may not; then the default applies again.
    assert (await world.c.delete(qurl, headers=h(alice))).status_code == 403
    assert (await world.c.delete(qurl, headers=h(admin_token))).status_code == 204
    assert (await world.c.delete(qurl, headers=h(admin_token))).status_code == 404
    r = await world.c.patch(qurl, json={"hard_limit": 2}, headers=h(admin_token))
    assert r.status_code == 404
    assert (await world.c.get(qurl, headers=h(alice))).json()["hard_limit"] == 3


async def test_mservices_list_the_cluster_workers(world: World, admin_token: str) -> None:
    alice = await make_member(world.c, admin_token, "team-a", "alice")
    env = world.app.state.berth.env
    assert (await world.c.get(f"{V}/mservices", headers=h(admin_token))).json() == {"mservices": []}
    await cluster_quotas.heartbeat(env)
    await cluster_quotas.heartbeat(env)
    services = (await world.c.get(f"{V}/mservices", headers=h(admin_token))).json()["mservices"]
    assert [(s["host"], s["binary"], s["state"], s["report_count"]) for s in services] == [
        ("test-host", "magnum-conductor", "up", 2)
    ]
    assert set(services[0]) == {
        "id", "host", "binary", "state", "disabled", "disabled_reason", "report_count",
        "created_at", "updated_at",
    }  # fmt: skip
    # Silent for longer than service_down_time: down.
    async with env.db.transaction() as s:
        row = await s.scalar(select(ConductorRow))
        assert row is not None
        row.last_seen_up = row.last_seen_up - dt.timedelta(seconds=1000)
    services = (await world.c.get(f"{V}/mservices", headers=h(admin_token))).json()["mservices"]
    assert services[0]["state"] == "down"
    r = await world.c.get(f"{V}/mservices", headers=h(alice))
    assert r.status_code == 403
    # The version document lists the new resources.
    doc = (await world.c.get(V)).json()
    assert {"quotas", "mservices", "nodegroups"} <= set(doc)


async def test_other_projects_see_and_touch_no_nodegroup(world: World, admin_token: str) -> None:
    alice = await make_member(world.c, admin_token, "team-a", "alice")
    bob = await make_member(world.c, admin_token, "team-b", "bob")
    await world.template(alice, "tpl")
    uuid = await world.cluster(alice)
    await world.work()
    r = await world.c.post(f"{V}/clusters/c1/nodegroups", json={"name": "g"}, headers=h(alice))
    ng = r.json()["uuid"]
    await world.work()
    patch = [{"op": "replace", "path": "/max_node_count", "value": 9}]
    for ident in (uuid, "c1"):
        base = f"{V}/clusters/{ident}/nodegroups"
        assert (await world.c.get(base, headers=h(bob))).status_code == 404
        assert (await world.c.get(f"{base}/{ng}", headers=h(bob))).status_code == 404
        r = await world.c.post(base, json={"name": "evil"}, headers=h(bob))
        assert r.status_code == 404
        r = await world.c.patch(f"{base}/{ng}", json=patch, headers=h(bob))
        assert r.status_code == 404
        assert (await world.c.delete(f"{base}/{ng}", headers=h(bob))).status_code == 404
        r = await world.c.post(
            f"{V}/clusters/{ident}/actions/resize",
            json={"node_count": 3, "nodegroup": "g"},
            headers=h(bob),
        )
        assert r.status_code == 404
    # Nothing changed; the admin sees and may manage every project's groups.
    groups = await world.groups(alice, "c1")
    assert groups["g"]["max_node_count"] is None and groups["g"]["status"] == "CREATE_COMPLETE"
    assert list(await world.groups(admin_token, uuid)) == ["default-master", "default-worker", "g"]


_JUNK = [
    ("POST", "/clusters/c1/nodegroups", b"[]"),
    ("POST", "/clusters/c1/nodegroups", b'{"name": ["x"]}'),
    ("POST", "/clusters/c1/nodegroups", b'{"name": "x", "node_count": "many"}'),
    ("POST", "/clusters/c1/nodegroups", b'{"name": "x", "node_taints": "[1"}'),
    ("POST", "/clusters/c1/nodegroups", b'{"name": "x", "docker_volume_size": 0}'),
    ("PATCH", "/clusters/c1/nodegroups/default-worker", b'[{"op": "move", "path": "/x"}]'),
    ("PATCH", "/clusters/c1/nodegroups/default-worker",
     b'[{"op": "replace", "path": "/node_taints", "value": 5}]'),
    ("POST", "/clusters/c1/actions/resize", b'{"node_count": 1, "nodegroup": 5}'),
    ("POST", "/clusters/c1/actions/resize", b'{"node_count": 1, "nodes_to_remove": "a"}'),
    ("POST", "/clusters/c1/actions/upgrade", b'{"cluster_template": 5}'),
    ("POST", "/clusters/c1/actions/upgrade", b'"tpl"'),
    ("POST", "/quotas", b"[]"),
    ("PATCH", "/quotas/x/Cluster", b"[]"),
    ("GET", "/quotas?all_tenants=maybe", b""),
    ("GET", "/quotas?marker=77", b""),
]  # fmt: skip


async def test_junk_is_4xx_never_500(world: World, admin_token: str) -> None:
    await world.template(admin_token, "tpl")
    await world.cluster(admin_token)
    await world.work()
    for method, path, content in _JUNK:
        r = await world.c.request(
            method,
            V + path,
            content=content,
            headers={**h(admin_token), "Content-Type": "application/json"},
        )
        assert 400 <= r.status_code < 500, (path, content, r.text)
        assert r.json()["errors"][0]["code"] == "client"


async def test_migration_gives_existing_clusters_their_default_groups(blank_db_url: str) -> None:
    """A cluster stored before node groups existed gets default-master/default-worker."""
    db = Database(blank_db_url)
    old = "6f1c1c3e-0000-4000-8000-000000000001"

    def to_clusters(conn: Any) -> None:
        cfg = Config()
        cfg.set_main_option("script_location", str(store_db._MIGRATIONS))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0005_clusters")

    async with db.engine.begin() as conn:
        await conn.run_sync(to_clusters)
        clusters = sa.table(
            "clusters",
            *(sa.column(c, sa.String) for c in ("uuid", "project_id", "user_id", "name")),
            *(sa.column(c, sa.String) for c in ("cluster_template_id", "driver", "status")),
            sa.column("attrs", sa.JSON),
            sa.column("created_at", UtcDateTime()),
        )
        await conn.execute(
            clusters.insert().values(
                uuid=old, project_id="p1", user_id="u1", name="old", cluster_template_id="t",
                driver="d", status="CREATE_COMPLETE",
                attrs={"node_count": 3, "master_count": 1, "flavor_id": "m1.large"},
                created_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
            )
        )  # fmt: skip
    await db.migrate()
    async with db.read() as s:
        rows = (await s.scalars(select(NodeGroupRow).order_by(NodeGroupRow.id))).all()
        cluster = await s.scalar(select(ClusterRow))
    await db.close()
    assert cluster is not None
    assert [(g.name, g.role, g.node_count, g.flavor_id, g.is_default) for g in rows] == [
        ("default-master", "master", 1, None, True),
        ("default-worker", "worker", 3, "m1.large", True),
    ]
    # The UUIDs the read-only nodegroup API showed before the table existed.
    assert rows[1].uuid == default_group_uuid(old, "default-worker")
    assert (rows[0].status, rows[0].cluster_uuid) == ("CREATE_COMPLETE", old)


async def test_a_cluster_has_a_bounded_number_of_node_groups(
    world: World, admin_token: str
) -> None:
    """A node group may have no node, so node counts do not bound how many a member
    makes: past ``max_nodegroups_per_cluster`` one more is a 403 naming the setting."""
    env = world.app.state.berth.env
    env.settings = env.settings.model_copy(update={"max_nodegroups_per_cluster": 3})
    alice = await make_member(world.c, admin_token, "team-a", "alice")
    await world.template(alice, "tpl")
    await world.cluster(alice)
    await world.work()
    body = {"name": "none", "node_count": 0}
    r = await world.c.post(f"{V}/clusters/c1/nodegroups", json=body, headers=h(alice))
    assert r.status_code == 202, r.text
    await world.work()
    body = {"name": "more", "node_count": 0}
    r = await world.c.post(f"{V}/clusters/c1/nodegroups", json=body, headers=h(alice))
    assert r.status_code == 403 and "max_nodegroups_per_cluster" in _detail(r), r.text
    assert list(await world.groups(alice, "c1")) == ["default-master", "default-worker", "none"]


async def test_a_nodegroups_labels_merged_past_magnums_column_are_refused(
    world: World, admin_token: str
) -> None:
    """Each map within the bound, merged with the cluster's (``merge_labels``) past the
    65,535 characters Magnum stores: a 400, and the group is not made."""
    alice = await make_member(world.c, admin_token, "team-a", "alice")
    wide = {f"k{i}": "v" * 4000 for i in range(15)}
    await world.template(alice, "tpl", labels=wide)
    await world.cluster(alice)
    await world.work()
    body = {"name": "ng1", "labels": {"m1": "v" * 4000, "m2": "v" * 4000}, "merge_labels": True}
    r = await world.c.post(f"{V}/clusters/c1/nodegroups", json=body, headers=h(alice))
    assert r.status_code == 400 and "Magnum's column" in _detail(r), r.text
    r = await world.c.post(
        f"{V}/clusters/c1/nodegroups", json={**body, "merge_labels": False}, headers=h(alice)
    )
    assert r.status_code == 202, r.text
    await world.work()
    assert "ng1" in await world.groups(alice, "c1")
