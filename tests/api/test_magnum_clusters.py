"""Clusters through the API and the lifecycle engine, with a fake driver and provisioner."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
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
from berth.config import Settings
from berth.services.clusters import clusters as cluster_service
from berth.services.clusters import lifecycle as cluster_lifecycle
from berth.store import clusters as cluster_repo
from berth.store.base import utcnow
from berth.store.tables import ClusterRow, EventRow
from tests.helpers import Pause, make_member, meet, open_clusters

MAG = {"OpenStack-API-Version": "container-infra latest"}
V = "/container-infra/v1"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # These tests are about a member's own cluster: open clusters as an operator would
    # (by default creating nodes is admin-only, see tests/api/test_magnum_policy.py).
    return open_clusters(settings)


class FakeNodes:
    """A NodeProvisioner over a dict."""

    def __init__(self) -> None:
        self.nodes: dict[str, NodeSpec] = {}

    async def create_node(self, spec: NodeSpec) -> NodeInfo:
        self.nodes.setdefault(spec.name, spec)
        return NodeInfo(spec.name, "Running", f"10.0.0.{len(self.nodes)}")

    async def inspect_node(self, name: str) -> NodeInfo | None:
        return NodeInfo(name, "Running") if name in self.nodes else None

    async def delete_node(self, name: str) -> None:
        self.nodes.pop(name, None)


class FakeDriver:
    """Creates ``<cluster>-master-i`` / ``<cluster>-node-i``; can be told to fail or hang."""

    info = DriverInfo("fake-swarm", "vm", "debian", "swarm-mode", "1.0")

    def __init__(self) -> None:
        self.fail: str | None = None
        self.hang = False

    async def _converge(self, spec: ClusterSpec, nodes: NodeProvisioner, report: Report) -> Outcome:
        if self.hang:
            await asyncio.sleep(3600)
        if self.fail:
            raise RuntimeError(self.fail)
        assert spec.ca_cert_pem.startswith("-----BEGIN CERTIFICATE")
        masters = [f"{spec.name}-master-{i}" for i in range(spec.master_count)]
        workers = [f"{spec.name}-node-{i}" for i in range(spec.node_count)]
        for name in [*masters, *workers]:
            await report(f"creating {name}")
            await nodes.create_node(NodeSpec(name, spec.image, spec.cpu, spec.memory_mb))
        for stale in [n for n in getattr(nodes, "nodes", {}) if n not in masters + workers]:
            await nodes.delete_node(stale)
        return Outcome("tcp://127.0.0.1:2376", tuple(masters), tuple(workers), "24.0", "24.0")

    async def create(self, spec: ClusterSpec, nodes: NodeProvisioner, report: Report) -> Outcome:
        return await self._converge(spec, nodes, report)

    async def update(self, spec: ClusterSpec, nodes: NodeProvisioner, report: Report) -> Outcome:
        return await self._converge(spec, nodes, report)

    async def delete(self, spec: ClusterSpec, nodes: NodeProvisioner, report: Report) -> None:
        for name in list(getattr(nodes, "nodes", {})):
            await nodes.delete_node(name)


class World:
    def __init__(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        self.app, self.client = app, client
        self.driver = FakeDriver()
        self.registry = DriverRegistry([self.driver])
        self.provisioners: dict[str, FakeNodes] = {}
        app.state.cluster_drivers = self.registry

    def nodes_of(self, row: ClusterRow) -> FakeNodes:
        return self.provisioners.setdefault(row.uuid, FakeNodes())

    async def work(self) -> int:
        env = self.app.state.berth.env
        return await cluster_lifecycle.process_pending(env, self.registry, self.nodes_of)

    async def template(self, token: str, name: str = "tpl", **fields: Any) -> dict[str, Any]:
        body = {"name": name, "coe": "swarm-mode", "image_id": "node", **fields}
        r = await self.client.post(f"{V}/clustertemplates", json=body, headers=h(token))
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    async def cluster(self, token: str, **fields: Any) -> str:
        body = {"cluster_template_id": "tpl", "name": "c1", "node_count": 2, **fields}
        r = await self.client.post(f"{V}/clusters", json=body, headers=h(token))
        assert r.status_code == 202, r.text
        return str(r.json()["uuid"])

    async def show(self, token: str, ident: str, **hdr: str) -> dict[str, Any]:
        r = await self.client.get(f"{V}/clusters/{ident}", headers=h(token, **hdr))
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]


def h(token: str, **extra: str) -> dict[str, str]:
    return {"X-Auth-Token": token, **MAG, **extra}


@pytest.fixture
def world(app: FastAPI, client: httpx.AsyncClient) -> World:
    return World(app, client)


def _csr() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "admin")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


async def test_cluster_lifecycle(world: World, admin_token: str) -> None:
    alice = await make_member(world.client, admin_token, "team-a", "alice")
    await world.template(alice, labels={"t": "1", "u": "2"})
    uuid = await world.cluster(alice, labels={"t": "9", "x": "3"}, merge_labels=True)
    shown = await world.show(alice, "c1")
    assert shown["status"] == "CREATE_IN_PROGRESS" and shown["uuid"] == uuid
    assert "cluster_id" in shown and "stack_id" not in shown
    assert shown["labels"] == {"t": "9", "u": "2", "x": "3"}
    assert shown["labels_overridden"] == {"t": "1"} and shown["labels_added"] == {"x": "3"}
    assert await world.work() == 1
    shown = await world.show(alice, uuid, **{"OpenStack-API-Version": "container-infra 1.12"})
    assert shown["status"] == "CREATE_COMPLETE", shown
    assert shown["stack_id"] == uuid and "cluster_id" not in shown
    assert shown["api_address"] == "tcp://127.0.0.1:2376"
    assert shown["node_addresses"] == ["c1-node-0", "c1-node-1"]
    assert sorted(world.provisioners[uuid].nodes) == ["c1-master-0", "c1-node-0", "c1-node-1"]
    listed = (await world.client.get(f"{V}/clusters", headers=h(alice))).json()["clusters"]
    assert [c["status"] for c in listed] == ["CREATE_COMPLETE"]
    # CA: the cluster's CA signs a client CSR; the key is sealed at rest.
    ca = (await world.client.get(f"{V}/certificates/c1", headers=h(alice))).json()
    ca_cert = x509.load_pem_x509_certificate(ca["pem"].encode())
    r = await world.client.post(
        f"{V}/certificates", json={"cluster_uuid": uuid, "csr": _csr()}, headers=h(alice)
    )
    assert r.status_code == 201, r.text
    signed = x509.load_pem_x509_certificate(r.json()["pem"].encode())
    assert signed.issuer == ca_cert.subject
    r = await world.client.post(
        f"{V}/certificates", json={"cluster_uuid": uuid, "csr": "junk"}, headers=h(alice)
    )
    assert r.status_code == 400
    async with world.app.state.berth.db.read() as s:
        row = await s.scalar(select(ClusterRow).where(ClusterRow.uuid == uuid))
        assert row is not None and "PRIVATE KEY" not in (row.ca_key_sealed or "")
    # Nodegroups (1.9+): the default master and worker groups.
    r = await world.client.get(f"{V}/clusters/c1/nodegroups/", headers=h(alice))
    groups = r.json()["nodegroups"]
    assert [(g["name"], g["role"], g["node_count"]) for g in groups] == [
        ("default-master", "master", 1),
        ("default-worker", "worker", 2),
    ]
    worker_uuid = groups[1]["uuid"]
    r = await world.client.get(f"{V}/clusters/c1/nodegroups/{worker_uuid}", headers=h(alice))
    assert r.json()["node_addresses"] == ["c1-node-0", "c1-node-1"]
    r = await world.client.get(f"{V}/clusters/c1/nodegroups?role=master", headers=h(alice))
    assert [g["name"] for g in r.json()["nodegroups"]] == ["default-master"]
    r = await world.client.get(
        f"{V}/clusters/c1/nodegroups",
        headers=h(alice, **{"OpenStack-API-Version": "container-infra 1.8"}),
    )
    assert r.status_code == 406
    r = await world.client.get(f"{V}/clusters/c1/nodegroups/nope", headers=h(alice))
    assert r.status_code == 404
    # CA rotation: a new CA, an update that re-issues node certificates, then COMPLETE.
    r = await world.client.patch(f"{V}/certificates/{uuid}", headers=h(alice))
    assert r.status_code == 202 and r.json() == {"uuid": uuid}
    assert (await world.show(alice, uuid))["status"] == "UPDATE_IN_PROGRESS"
    r = await world.client.patch(f"{V}/certificates/{uuid}", headers=h(alice))
    assert r.status_code == 400  # not while an update runs
    await world.work()
    new_ca = (await world.client.get(f"{V}/certificates/c1", headers=h(alice))).json()["pem"]
    assert new_ca != ca["pem"]
    assert (await world.show(alice, uuid))["status"] == "UPDATE_COMPLETE"
    # Resize by PATCH and by the resize action.
    patch = [{"op": "replace", "path": "/node_count", "value": 1}]
    r = await world.client.patch(f"{V}/clusters/c1", json=patch, headers=h(alice))
    assert r.status_code == 202 and r.json() == {"uuid": uuid}
    assert (await world.show(alice, uuid))["status"] == "UPDATE_IN_PROGRESS"
    await world.work()
    assert (await world.show(alice, uuid))["status"] == "UPDATE_COMPLETE"
    assert sorted(world.provisioners[uuid].nodes) == ["c1-master-0", "c1-node-0"]
    r = await world.client.post(
        f"{V}/clusters/{uuid}/actions/resize", json={"node_count": 3}, headers=h(alice)
    )
    assert r.status_code == 202, r.text
    await world.work()
    assert len(world.provisioners[uuid].nodes) == 4
    # A template in use cannot be deleted or changed beyond name/public/hidden/tags.
    r = await world.client.delete(f"{V}/clustertemplates/tpl", headers=h(alice))
    assert r.status_code == 400 and "referenced" in r.json()["errors"][0]["detail"]
    r = await world.client.patch(
        f"{V}/clustertemplates/tpl",
        json=[{"op": "replace", "path": "/flavor_id", "value": "m1.large"}],
        headers=h(alice),
    )
    assert r.status_code == 400
    stats = (await world.client.get(f"{V}/stats", headers=h(alice))).json()
    assert stats == {"clusters": 1, "nodes": 4}
    # Delete: 204, the row goes at DELETE_COMPLETE and the nodes are gone.
    assert (await world.client.delete(f"{V}/clusters/c1", headers=h(alice))).status_code == 204
    assert (await world.show(alice, uuid))["status"] == "DELETE_IN_PROGRESS"
    await world.work()
    assert (await world.client.get(f"{V}/clusters/{uuid}", headers=h(alice))).status_code == 404
    assert world.provisioners[uuid].nodes == {}
    async with world.app.state.berth.db.read() as s:
        kinds = (await s.scalars(select(EventRow.event_type).where(
            EventRow.resource_uuid == uuid))).all()  # fmt: skip
    assert {"magnum.cluster.create", "magnum.cluster.update", "magnum.cluster.delete"} <= set(kinds)
    assert "cluster.step" in kinds


async def test_failures_and_timeouts_end_failed(world: World, admin_token: str) -> None:
    await world.template(admin_token)
    world.driver.fail = "no capacity"
    uuid = await world.cluster(admin_token)
    await world.work()
    shown = await world.show(admin_token, uuid)
    assert shown["status"] == "CREATE_FAILED"
    assert "no capacity" in shown["status_reason"] and shown["faults"]
    # A failed create cannot be resized; deleting it works.
    r = await world.client.post(
        f"{V}/clusters/{uuid}/actions/resize", json={"node_count": 1}, headers=h(admin_token)
    )
    assert r.status_code == 409
    await world.client.delete(f"{V}/clusters/{uuid}", headers=h(admin_token))
    await world.work()
    # Deadline: the operation ends CREATE_FAILED when create_timeout has passed.
    world.driver.fail, world.driver.hang = None, True
    uuid = await world.cluster(admin_token, name="slow", create_timeout=1)
    async with world.app.state.berth.db.transaction() as s:
        row = await s.scalar(select(ClusterRow).where(ClusterRow.uuid == uuid))
        assert row is not None and row.deadline is not None
        row.deadline = utcnow() + dt.timedelta(seconds=0.5)
    await asyncio.wait_for(world.work(), 10)
    shown = await world.show(admin_token, uuid)
    assert shown["status"] == "CREATE_FAILED" and "timed out" in shown["status_reason"]
    # A failed update is retriable.
    world.driver.hang = False
    uuid = await world.cluster(admin_token, name="upd")
    await world.work()
    world.driver.fail = "boom"
    patch = [{"op": "replace", "path": "/node_count", "value": 3}]
    await world.client.patch(f"{V}/clusters/upd", json=patch, headers=h(admin_token))
    await world.work()
    assert (await world.show(admin_token, "upd"))["status"] == "UPDATE_FAILED"
    world.driver.fail = None
    await world.client.patch(f"{V}/clusters/upd", json=patch, headers=h(admin_token))
    await world.work()
    assert (await world.show(admin_token, "upd"))["status"] == "UPDATE_COMPLETE"


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({}, 400, "cluster_template_id"),
        ({"cluster_template_id": "nope"}, 404, "could not be found"),
        ({"cluster_template_id": "tpl", "master_count": 2}, 400, "odd"),
        ({"cluster_template_id": "tpl", "node_count": -1}, 400, "node_count"),
        ({"cluster_template_id": "tpl", "flavor_id": "huge"}, 400, "flavor"),
        ({"cluster_template_id": "tpl", "name": "1bad"}, 400, "invalid"),
        ({"cluster_template_id": "tpl", "bogus": 1}, 400, "Unknown attribute"),
        ({"cluster_template_id": "k8s"}, 400, "not supported"),
    ],
)
async def test_create_validation(
    world: World, admin_token: str, body: dict[str, Any], status: int, fragment: str
) -> None:
    await world.template(admin_token)
    await world.template(admin_token, name="k8s", coe="kubernetes")
    r = await world.client.post(f"{V}/clusters", json=body, headers=h(admin_token))
    assert r.status_code == status, r.text
    assert fragment in r.json()["errors"][0]["detail"]


async def test_microversion_gates(world: World, admin_token: str) -> None:
    await world.template(admin_token)
    old = {"OpenStack-API-Version": "container-infra 1.9"}
    r = await world.client.post(
        f"{V}/clusters",
        json={"cluster_template_id": "tpl", "node_count": 0},
        headers=h(admin_token, **old),
    )
    assert r.status_code == 400
    uuid = await world.cluster(admin_token, node_count=0)
    await world.work()
    r = await world.client.post(
        f"{V}/clusters/{uuid}/actions/resize",
        json={"node_count": 1},
        headers=h(admin_token, **{"OpenStack-API-Version": "container-infra 1.6"}),
    )
    assert r.status_code == 406
    patch = [{"op": "replace", "path": "/name", "value": "other"}]
    r = await world.client.patch(f"{V}/clusters/{uuid}", json=patch, headers=h(admin_token))
    assert r.status_code == 400 and "cannot change" in r.json()["errors"][0]["detail"]


async def test_other_projects_see_and_touch_nothing(world: World, admin_token: str) -> None:
    alice = await make_member(world.client, admin_token, "team-a", "alice")
    bob = await make_member(world.client, admin_token, "team-b", "bob")
    await world.template(alice)
    uuid = await world.cluster(alice)
    await world.work()
    assert (await world.client.get(f"{V}/clusters", headers=h(bob))).json()["clusters"] == []
    r = await world.client.get(f"{V}/clusters/detail", headers=h(bob))
    assert r.json()["clusters"] == []
    patch = [{"op": "replace", "path": "/node_count", "value": 5}]
    for ident in (uuid, "c1"):
        c = world.client
        assert (await c.get(f"{V}/clusters/{ident}", headers=h(bob))).status_code == 404
        r = await c.patch(f"{V}/clusters/{ident}", json=patch, headers=h(bob))
        assert r.status_code == 404
        r = await c.post(
            f"{V}/clusters/{ident}/actions/resize", json={"node_count": 5}, headers=h(bob)
        )
        assert r.status_code == 404
        assert (await c.get(f"{V}/certificates/{ident}", headers=h(bob))).status_code == 404
        assert (await c.patch(f"{V}/certificates/{ident}", headers=h(bob))).status_code == 404
        r = await c.get(f"{V}/clusters/{ident}/nodegroups", headers=h(bob))
        assert r.status_code == 404
        r = await c.post(
            f"{V}/certificates", json={"cluster_uuid": ident, "csr": _csr()}, headers=h(bob)
        )
        assert r.status_code == 400
        assert (await c.delete(f"{V}/clusters/{ident}", headers=h(bob))).status_code == 404
    # Bob cannot build on Alice's private template either; stats of her project are refused.
    r = await world.client.post(
        f"{V}/clusters", json={"cluster_template_id": "tpl"}, headers=h(bob)
    )
    assert r.status_code == 404
    r = await world.client.get(f"{V}/stats", headers=h(bob))
    assert r.json() == {"clusters": 0, "nodes": 0}
    alice_project = (await world.show(alice, uuid))["project_id"]
    r = await world.client.get(f"{V}/stats?project_id={alice_project}", headers=h(bob))
    assert r.status_code == 403
    # Health fields are for admins (the in-cluster auto-healer); admins see every cluster.
    health = [{"op": "replace", "path": "/health_status", "value": "HEALTHY"}]
    r = await world.client.patch(f"{V}/clusters/{uuid}", json=health, headers=h(alice))
    assert r.status_code == 403
    r = await world.client.patch(f"{V}/clusters/{uuid}", json=health, headers=h(admin_token))
    assert r.status_code == 202
    every = (await world.client.get(f"{V}/clusters", headers=h(admin_token))).json()["clusters"]
    assert [c["health_status"] for c in every] == ["HEALTHY"]


@pytest.mark.parametrize(
    ("method", "path", "content"),
    [
        ("POST", "/clusters", b"[]"),
        ("POST", "/clusters", b"not json"),
        ("POST", "/clusters", b'{"cluster_template_id": "tpl", "labels": "k=v"}'),
        ("POST", "/clusters", b'{"cluster_template_id": "tpl", "node_count": "many"}'),
        ("POST", "/clusters", b'{"cluster_template_id": "tpl", "create_timeout": -1}'),
        ("POST", "/clusters", b'{"cluster_template_id": ["x"]}'),
        ("POST", "/clustertemplates", b'"x"'),
        ("POST", "/clustertemplates", b""),
        ("PATCH", "/clusters/c1", b'{"op": "replace"}'),
        ("PATCH", "/clusters/c1", b'[{"op": "replace", "path": "/labels", "value": "[1"}]'),
        ("PATCH", "/clusters/c1", b'[{"op": "replace", "path": "/node_count", "value": "x"}]'),
        ("POST", "/clusters/c1/actions/resize", b'{"node_count": "3"}'),
        ("POST", "/clusters/c1/actions/resize", b'{"node_count": 1, "extra": 1}'),
        ("POST", "/clusters/c1/actions/resize", b"{}"),
        ("POST", "/certificates", b'{"cluster_uuid": "c1"}'),
        ("POST", "/certificates", b'{"cluster_uuid": 5, "csr": 7}'),
        ("GET", "/clusters?sort_key=node_count&sort_dir=desc", b""),
        ("GET", "/clusters?limit=-1", b""),
    ],
)
async def test_junk_is_4xx_never_500(
    world: World, admin_token: str, method: str, path: str, content: bytes
) -> None:
    await world.template(admin_token)
    await world.cluster(admin_token)
    await world.work()
    r = await world.client.request(
        method,
        V + path,
        content=content,
        headers={**h(admin_token), "Content-Type": "application/json"},
    )
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert r.json()["errors"][0]["code"] == "client"


@pytest.mark.parametrize("first", ["create", "delete"])
async def test_a_template_deleted_while_a_cluster_is_created_with_it(
    world: World, admin_token: str, monkeypatch: pytest.MonkeyPatch, first: str
) -> None:
    """Either the cluster is created and the template's delete refused (referenced),
    or the delete happens and the create is refused; the delete used to count the
    clusters before its transaction, so both passed (a cluster naming a template
    that was gone), on SQLite as well."""
    alice = await make_member(world.client, admin_token, "team-a", "alice")
    tpl = (await world.template(alice))["uuid"]
    if first == "create":  # held in its transaction, the template already checked
        pause = Pause(cluster_service.magnum_quotas.hard_limit, after=False)
        monkeypatch.setattr(cluster_service.magnum_quotas, "hard_limit", pause)
    else:  # held in its transaction, having found no cluster on the template
        pause = Pause(cluster_repo.uses_template, after=True)
        monkeypatch.setattr(cluster_repo, "uses_template", pause)
    body = {"cluster_template_id": tpl, "name": "c1", "node_count": 1}
    create = world.client.post(f"{V}/clusters", json=body, headers=h(alice))
    delete = world.client.delete(f"{V}/clustertemplates/{tpl}", headers=h(alice))
    one, other = await meet(pause, *((create, delete) if first == "create" else (delete, create)))
    answers = {first: one, ("delete" if first == "create" else "create"): other}
    if first == "create":
        assert answers["create"].status_code == 202, answers["create"].text
        assert answers["delete"].status_code == 400, answers["delete"].text
        assert "referenced" in answers["delete"].text
    else:
        assert answers["delete"].status_code == 204, answers["delete"].text
        assert 400 <= answers["create"].status_code < 500, answers["create"].text
        listed = await world.client.get(f"{V}/clusters", headers=h(alice))
        assert listed.json()["clusters"] == []


async def test_a_template_changed_while_a_cluster_is_created_with_it(
    world: World, admin_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A template in use may change only its name, public, hidden and tags; its update
    looked for clusters before its transaction, so a cluster created meanwhile was
    built from a template whose other settings then changed under it."""
    alice = await make_member(world.client, admin_token, "team-a", "alice")
    tpl = (await world.template(alice))["uuid"]
    pause = Pause(cluster_service.magnum_quotas.hard_limit, after=False)
    monkeypatch.setattr(cluster_service.magnum_quotas, "hard_limit", pause)
    body = {"cluster_template_id": tpl, "name": "c1", "node_count": 1}
    patch = [{"op": "replace", "path": "/flavor_id", "value": "m1.large"}]
    created, changed = await meet(
        pause,
        world.client.post(f"{V}/clusters", json=body, headers=h(alice)),
        world.client.patch(f"{V}/clustertemplates/{tpl}", json=patch, headers=h(alice)),
    )
    assert created.status_code == 202, created.text
    assert changed.status_code == 400 and "referenced" in changed.text, changed.text
