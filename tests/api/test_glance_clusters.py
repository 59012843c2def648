"""Clusters whose template names a Glance image (OpenStack mode): the image is resolved in the
caller's view of Glance when the cluster is asked for, and every node container, created later
by the worker without any user token, runs that image id at that checksum, fetched through the
control plane. Keystone and Glance are the small in-memory ones (tests/fakes/)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
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
from tests.fakes.glance import (
    FakeGlance,
    glance_settings,
    serving,
    two_projects_glance,
    two_projects_keystone,
)
from tests.fakes.keystone import FakeKeystone, token_body
from tests.fakes.node_drivers import ConvergingNodes
from tests.helpers import ZUN, open_clusters

MAX_BYTES = 1 << 20
V = "/container-infra/v1"
HOST = "glance-host"


def _mag(token: str) -> dict[str, str]:
    return {"X-Auth-Token": token, "OpenStack-API-Version": "container-infra latest"}


@pytest.fixture
def keystone() -> FakeKeystone:
    agent = token_body(["service"], user="berth-agent", project="service")
    return two_projects_keystone(("agent", agent))


@pytest.fixture
def glance() -> FakeGlance:
    return two_projects_glance()


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return open_clusters(glance_settings(tmp_path, db_url, MAX_BYTES))


@pytest.fixture
async def app(
    settings: Settings, keystone: FakeKeystone, glance: FakeGlance
) -> AsyncIterator[FastAPI]:
    async with serving(settings, keystone, glance, MAX_BYTES) as application:
        yield application


class SlotDriver(ConvergingNodes):
    """One node container per group slot, named after the group's image (an upgrade: new nodes)."""

    info = DriverInfo("slots", "vm", "fedora-coreos", "swarm-mode", "0.1")

    async def create(self, spec: ClusterSpec, nodes: NodeProvisioner, report: Report) -> Outcome:
        for group in spec.nodegroups:
            gen = hashlib.sha256(group.image.encode()).hexdigest()[:6]
            for i in range(group.node_count):
                name = f"{spec.name}-{group.role}-{i}-{gen}"
                await nodes.create_node(
                    NodeSpec(name, group.image, group.cpu, group.memory_mb, group=group.name)
                )
        return Outcome(api_address="tcp://192.0.2.1:2376")


@pytest.fixture
async def worker(app: FastAPI, client: httpx.AsyncClient) -> ClusterWorker:
    report = {"hostname": HOST, "cpus": 8, "mem_total": 16384, "disk_total": 100,
              "runtimes": ["runc"], "agent_url": "http://127.0.0.1:1"}  # fmt: skip
    r = await client.post("/internal/v1/hosts", json=report, headers={"X-Auth-Token": "agent"})
    assert r.status_code == 200, r.text
    drivers = DriverRegistry([SlotDriver()])
    app.state.cluster_drivers = drivers
    return ClusterWorker(drivers, provisioner_for(app.state.berth.env))


async def _settle(worker: ClusterWorker, app: FastAPI) -> None:
    await worker.tick(app.state.berth.env)
    for _ in range(200):
        if not worker.running:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("cluster operations did not finish")


async def _template(client: httpx.AsyncClient, name: str, image: str, token: str = "alice") -> None:
    body = {"name": name, "coe": "swarm-mode", "image_id": image, "flavor_id": "m1.tiny"}
    r = await client.post(f"{V}/clustertemplates", json=body, headers=_mag(token))
    assert r.status_code == 201, r.text


async def _cluster(
    client: httpx.AsyncClient, template: str, token: str = "alice"
) -> httpx.Response:
    body = {"cluster_template_id": template, "name": "gc", "node_count": 1}
    return await client.post(f"{V}/clusters", json=body, headers=_mag(token))


def _node_image(glance: FakeGlance, name: str, owner: str = "p1", data: bytes = b"tar") -> str:
    image_id = glance.add(name, owner, data)
    glance.images[image_id].body["os_distro"] = "fedora-coreos"
    return image_id


async def _nodes(client: httpx.AsyncClient, token: str = "alice") -> dict[str, dict[str, Any]]:
    r = await client.get("/container/v1/containers", headers={"X-Auth-Token": token, **ZUN})
    return {c["name"]: c for c in r.json()["containers"]}


async def _desired(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    r = await client.get(f"/internal/v1/hosts/{HOST}/desired", headers={"X-Auth-Token": "agent"})
    assert r.status_code == 200, r.text
    return {c["uuid"]: c for c in r.json()["containers"]}


def _checksum(glance: FakeGlance, image_id: str) -> str:
    return str(glance.images[image_id].body["checksum"])


async def test_nodes_run_the_glance_image_resolved_at_create_and_reuse_it_on_scale_up(
    app: FastAPI, client: httpx.AsyncClient, glance: FakeGlance, worker: ClusterWorker
) -> None:
    data = b"docker-save-of-the-node-image" * 100
    image_id = _node_image(glance, "node-image", data=data)
    checksum = _checksum(glance, image_id)
    await _template(client, "tpl", "node-image")
    r = await _cluster(client, "tpl")
    assert r.status_code == 202, r.text
    uuid = r.json()["uuid"]
    await _settle(worker, app)
    shown = (await client.get(f"{V}/clusters/{uuid}", headers=_mag("alice"))).json()
    assert shown["status"] == "CREATE_COMPLETE", shown
    nodes = await _nodes(client)
    assert len(nodes) == 2
    assert {n["image"] for n in nodes.values()} == {"node-image"}
    assert {n["image_driver"] for n in nodes.values()} == {"glance"}
    # The host is told to run Berth's copy of that image id at that checksum...
    desired = await _desired(client)
    local = f"berth-glance/{image_id}:{checksum}"
    assert {desired[n["uuid"]]["image"] for n in nodes.values()} == {local}
    # ...and its agent gets the data through the control plane, with no user token.
    node = next(iter(nodes.values()))
    path = f"/internal/v1/hosts/{HOST}/containers/{node['uuid']}/glance-data"
    got = await client.get(path, headers={"X-Auth-Token": "agent"})
    assert got.status_code == 200 and got.content == data
    # Scale-up: the worker, which has no token, reuses the image resolved at create
    # (a new upload under that name since changes nothing for this cluster).
    glance.images[image_id].body["checksum"] = "0" * 32
    patch = [{"op": "replace", "path": "/node_count", "value": 2}]
    r = await client.patch(f"{V}/clusters/{uuid}", json=patch, headers=_mag("alice"))
    assert r.status_code == 202, r.text
    await _settle(worker, app)
    nodes = await _nodes(client)
    assert len(nodes) == 3
    desired = await _desired(client)
    assert {desired[n["uuid"]]["image"] for n in nodes.values()} == {local}


async def test_an_upgrade_resolves_the_new_templates_glance_image_at_the_request(
    app: FastAPI, client: httpx.AsyncClient, glance: FakeGlance, worker: ClusterWorker
) -> None:
    _node_image(glance, "node-v1")
    v2 = _node_image(glance, "node-v2")
    await _template(client, "tpl-1", "node-v1")
    await _template(client, "tpl-2", v2)  # by id
    uuid = (await _cluster(client, "tpl-1")).json()["uuid"]
    await _settle(worker, app)
    r = await client.post(
        f"{V}/clusters/{uuid}/actions/upgrade",
        json={"cluster_template": "tpl-2", "max_batch_size": 2},
        headers=_mag("alice"),
    )
    assert r.status_code == 202, r.text
    await _settle(worker, app)
    desired = await _desired(client)
    upgraded = [n for n in (await _nodes(client)).values() if n["image"] == v2]
    assert len(upgraded) == 2
    assert {n["image_driver"] for n in upgraded} == {"glance"}
    want = f"berth-glance/{v2}:{_checksum(glance, v2)}"
    assert {desired[n["uuid"]]["image"] for n in upgraded} == {want}


async def test_a_glance_image_the_caller_cannot_see_is_magnums_400_or_a_docker_reference(
    app: FastAPI, client: httpx.AsyncClient, glance: FakeGlance, worker: ClusterWorker
) -> None:
    image_id = _node_image(glance, "shared-node")
    glance.images[image_id].body["visibility"] = "public"
    await _template(client, "by-id", image_id, token="bob")
    await _template(client, "by-name", "shared-node", token="bob")
    glance.images[image_id].body["visibility"] = "private"  # its owner takes it back
    r = await _cluster(client, "by-id", token="bob")
    assert r.status_code == 400, r.text
    assert r.json()["errors"][0]["detail"] == f"Image {image_id} could not be found."
    # A name Glance does not show bob is a Docker reference, as the template check took it.
    r = await _cluster(client, "by-name", token="bob")
    assert r.status_code == 202, r.text
    await _settle(worker, app)
    nodes = await _nodes(client, token="bob")
    assert nodes and {n["image_driver"] for n in nodes.values()} == {"docker"}
    desired = await _desired(client)
    assert {desired[n["uuid"]]["image"] for n in nodes.values()} == {"shared-node"}


async def test_a_node_image_that_is_not_a_docker_archive_is_refused_at_create(
    client: httpx.AsyncClient, glance: FakeGlance
) -> None:
    image_id = glance.add("qcow-node", "p1", b"qcow", container_format="bare")
    glance.images[image_id].body["os_distro"] = "fedora-coreos"
    await _template(client, "vm", "qcow-node")
    r = await _cluster(client, "vm")
    assert r.status_code == 400, r.text
    assert "container_format docker" in r.json()["errors"][0]["detail"]


@pytest.mark.allows_5xx("Glance is down: the API answers 503, as it must")
async def test_glance_down_at_cluster_create_is_503_in_magnums_format(
    client: httpx.AsyncClient, glance: FakeGlance
) -> None:
    _node_image(glance, "node-image")
    await _template(client, "tpl", "node-image")
    glance.down = True
    r = await _cluster(client, "tpl")
    assert r.status_code == 503, r.text
    error = r.json()["errors"][0]
    assert error["status"] == 503 and "Glance" in error["detail"]
    listed = await client.get(f"{V}/clusters", headers=_mag("alice"))
    assert listed.json()["clusters"] == []


async def test_a_node_group_with_its_own_glance_image_runs_it(
    app: FastAPI, client: httpx.AsyncClient, glance: FakeGlance, worker: ClusterWorker
) -> None:
    _node_image(glance, "node-image")
    gpu = _node_image(glance, "gpu-node")
    await _template(client, "tpl", "node-image")
    uuid = (await _cluster(client, "tpl")).json()["uuid"]
    await _settle(worker, app)
    secret = _node_image(glance, "bobs-node", owner="p2")
    body = {"name": "gpu", "node_count": 1, "image_id": secret}
    r = await client.post(f"{V}/clusters/{uuid}/nodegroups", json=body, headers=_mag("alice"))
    assert r.status_code == 400, r.text
    assert r.json()["errors"][0]["detail"] == f"Image {secret} could not be found."
    body["image_id"] = gpu
    r = await client.post(f"{V}/clusters/{uuid}/nodegroups", json=body, headers=_mag("alice"))
    assert r.status_code == 202, r.text
    await _settle(worker, app)
    desired = await _desired(client)
    group = [n for n in (await _nodes(client)).values() if n["labels"]["berth.nodegroup"] == "gpu"]
    assert len(group) == 1 and group[0]["image_driver"] == "glance"
    assert desired[group[0]["uuid"]]["image"] == f"berth-glance/{gpu}:{_checksum(glance, gpu)}"
