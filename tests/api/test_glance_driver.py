"""``image_driver=glance`` with the cloud's Glance, at the API: what the caller's token sees in
Glance decides, Glance's failures and oversized images are Zun-format 4xx/503, never a 500.
Keystone and Glance are the small in-memory ones (tests/fakes/); tests/compat/
test_openstack_glance.py does this with the real ones."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from berth import errors
from berth.config import Settings
from berth.domain.context import RequestContext
from berth.services.images import glance as glance_service
from berth.store.base import new_uuid
from berth.store.tables import ContainerRow
from tests.fakes.glance import (
    FakeGlance,
    glance_settings,
    serving,
    two_projects_glance,
    two_projects_keystone,
)
from tests.fakes.keystone import FakeKeystone, token_body
from tests.helpers import zun_headers as h

MAX_BYTES = 1 << 20


@pytest.fixture
def keystone() -> FakeKeystone:
    return two_projects_keystone()


@pytest.fixture
def glance() -> FakeGlance:
    return two_projects_glance()


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return glance_settings(tmp_path, db_url, MAX_BYTES)


@pytest.fixture
async def app(
    settings: Settings, keystone: FakeKeystone, glance: FakeGlance
) -> AsyncIterator[FastAPI]:
    async with serving(settings, keystone, glance, MAX_BYTES) as application:
        yield application


async def _run(client: httpx.AsyncClient, image: str, token: str = "alice") -> httpx.Response:
    body = {"image": image, "image_driver": "glance", "command": ["sleep", "60"]}
    return await client.post("/container/v1/containers?run=true", json=body, headers=h(token))


def _error(r: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = r.json()["errors"][0]
    return error


async def test_an_image_of_the_callers_project_is_accepted_by_name_and_id(
    client: httpx.AsyncClient, glance: FakeGlance
) -> None:
    image_id = glance.add("web", "p1", b"tar")
    for ident in ("web", image_id):
        r = await _run(client, ident)
        assert r.status_code == 202, r.text
        assert r.json()["image"] == ident and r.json()["image_driver"] == "glance"


async def test_another_projects_private_image_is_zuns_404(
    client: httpx.AsyncClient, glance: FakeGlance
) -> None:
    image_id = glance.add("secret", "p1", b"tar")
    for ident in ("secret", image_id):
        r = await _run(client, ident, token="bob")
        assert r.status_code == 404, r.text
        assert _error(r)["code"] == "container.image-not-found"
        assert _error(r)["detail"] == f"Image {ident} could not be found."


async def test_public_and_accepted_shared_images_are_visible(
    client: httpx.AsyncClient, glance: FakeGlance
) -> None:
    glance.add("pub", "p1", b"tar", visibility="public")
    shared = glance.add("shared", "p1", b"tar", visibility="shared")
    assert (await _run(client, "pub", token="bob")).status_code == 202
    assert (await _run(client, shared, token="bob")).status_code == 404
    glance.images[shared].members.add("p2")
    assert (await _run(client, shared, token="bob")).status_code == 202


async def test_an_image_that_is_not_docker_is_not_found(
    client: httpx.AsyncClient, glance: FakeGlance
) -> None:
    image_id = glance.add("vm", "p1", b"qcow", container_format="bare")
    for ident in ("vm", image_id):
        assert (await _run(client, ident)).status_code == 404


async def test_two_images_of_one_name_ask_for_the_id(
    client: httpx.AsyncClient, glance: FakeGlance
) -> None:
    glance.add("twin", "p1", b"a")
    glance.add("twin", "p1", b"b")
    r = await _run(client, "twin")
    assert r.status_code == 409
    assert "Please use the image id instead." in _error(r)["detail"]


async def test_an_image_over_the_size_limit_is_refused_before_anything_runs(
    client: httpx.AsyncClient, glance: FakeGlance
) -> None:
    glance.add("huge", "p1", b"tar", size=MAX_BYTES + 1)
    r = await _run(client, "huge")
    assert r.status_code == 400
    assert "glance_image_max_bytes" in _error(r)["detail"]
    listed = await client.get("/container/v1/containers", headers=h("alice"))
    assert listed.json()["containers"] == []


@pytest.mark.allows_5xx("Glance is down: the API answers 503, as it must")
async def test_glance_down_or_failing_is_503_in_zuns_format(
    client: httpx.AsyncClient, glance: FakeGlance
) -> None:
    glance.add("web", "p1", b"tar")
    glance.down = True
    r = await _run(client, "web")
    assert r.status_code == 503
    assert _error(r)["code"] == "container.glance-unavailable"
    glance.down, glance.status = False, 500
    r = await _run(client, "web")
    assert r.status_code == 503 and "Glance" in _error(r)["detail"]


async def _template(client: httpx.AsyncClient, image_id: str) -> httpx.Response:
    body = {"coe": "swarm-mode", "image_id": image_id, "name": f"t-{image_id[:8]}"}
    headers = {"X-Auth-Token": "alice", "OpenStack-API-Version": "container-infra latest"}
    return await client.post("/container-infra/v1/clustertemplates", json=body, headers=headers)


async def test_a_cluster_template_may_name_a_glance_image_checked_as_magnum_does(
    client: httpx.AsyncClient, glance: FakeGlance
) -> None:
    with_distro = glance.add("node-image", "p1", b"tar", container_format="bare")
    glance.images[with_distro].body["os_distro"] = "fedora-coreos"
    without = glance.add("plain", "p1", b"tar")
    assert (await _template(client, "node-image")).status_code == 201
    assert (await _template(client, with_distro)).status_code == 201
    r = await _template(client, without)
    assert r.status_code == 400
    assert r.json()["errors"][0]["detail"] == f"Image {without} doesn't contain os_distro field."
    missing = "0b7e8a6c-57a0-4c2e-9d69-3f1f3c1a2b3c"
    r = await _template(client, missing)
    assert r.status_code == 400
    assert r.json()["errors"][0]["detail"] == f"Image {missing} could not be found."
    # Not in Glance and not a UUID: a node image given as a Docker reference, as before.
    assert (await _template(client, "berth/swarm-node:1")).status_code == 201


async def test_a_hosts_copy_of_a_glance_image_cannot_be_named_directly(
    client: httpx.AsyncClient, glance: FakeGlance
) -> None:
    image_id = glance.add("secret", "p1", b"tar")
    # Bob names the host's cached copy of Alice's private image with the docker driver.
    body = {"image": f"berth-glance/{image_id}:0123", "command": ["true"]}
    r = await client.post("/container/v1/containers", json=body, headers=h("bob"))
    assert r.status_code == 400
    assert "image_driver=glance" in _error(r)["detail"]


async def test_an_agent_gets_the_data_of_its_own_hosts_containers_only(
    app: FastAPI, glance: FakeGlance
) -> None:
    env = app.state.berth.env
    data = b"docker-save-bytes" * 1000
    image_id = glance.add("web", "p1", data)
    row = ContainerRow(
        uuid=new_uuid(), name="c1", project_id="p1", user_id="u", image="web",
        image_driver="glance", host="h1", image_ref=f"{image_id}:x",
    )  # fmt: skip
    async with env.db.transaction() as session:
        session.add(row)
    agent = RequestContext("berth-id", "berth", "service", "service", ("service",))
    got = b"".join([c async for c in glance_service.stream_for_agent(env, agent, "h1", row.uuid)])
    assert got == data
    with pytest.raises(errors.ContainerNotFound):
        await anext(glance_service.stream_for_agent(env, agent, "h2", row.uuid))
    tenant = RequestContext("alice-id", "alice", "p1", "p1", ("member",))
    with pytest.raises(errors.PolicyNotAuthorized):
        await anext(glance_service.stream_for_agent(env, tenant, "h1", row.uuid))


async def test_a_standalone_agent_streams_the_data_over_the_internal_api(
    app: FastAPI, client: httpx.AsyncClient, keystone: FakeKeystone, glance: FakeGlance
) -> None:
    keystone.valid["agent"] = token_body(["service"], user="berth-agent", project="service")
    data = b"layer" * 50_000
    image_id = glance.add("web", "p1", data)
    row = ContainerRow(
        uuid=new_uuid(), name="c2", project_id="p1", user_id="u", image="web",
        image_driver="glance", host="h1", image_ref=f"{image_id}:x",
    )  # fmt: skip
    async with app.state.berth.env.db.transaction() as session:
        session.add(row)
    path = f"/internal/v1/hosts/{{}}/containers/{row.uuid}/glance-data"
    r = await client.get(path.format("h1"), headers={"X-Auth-Token": "agent"})
    assert r.status_code == 200 and r.content == data
    r = await client.get(path.format("h2"), headers={"X-Auth-Token": "agent"})
    assert r.status_code == 404
    r = await client.get(path.format("h1"), headers={"X-Auth-Token": "alice"})
    assert r.status_code == 403
