"""The cluster, image, registry, network, volume and capsule pages over HTTP, in memory
(no browser, no engine).

Clusters run through the real lifecycle engine with the e2e fake driver (steps, no nodes);
these run on SQLite and PostgreSQL like the API tests.
"""

from __future__ import annotations

import io
import re
import zipfile

import httpx
import pytest
from cryptography import x509
from fastapi import FastAPI

from berth.clusters.registry import DriverRegistry
from berth.config import Settings
from berth.dashboard.capsule_pages import EXAMPLE
from berth.services.clusters import lifecycle as cluster_lifecycle
from berth.services.clusters.nodes import provisioner_for
from tests.conftest import ADMIN_PASSWORD
from tests.e2e.fake_cluster_driver import FakeClusterDriver
from tests.e2e.test_dashboard_http import MEMBER_PW, _csrf, login
from tests.helpers import ScriptedAgent, make_member, open_clusters

pytestmark = pytest.mark.e2e


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # alice runs her own cluster from the dashboard, as an operator's policy file
    # allows (by default creating nodes and their certificates is admin-only).
    return open_clusters(settings)


@pytest.fixture
def drivers(app: FastAPI) -> DriverRegistry:
    registry = DriverRegistry([FakeClusterDriver()])
    app.state.cluster_drivers = registry
    return registry


async def _work(app: FastAPI, drivers: DriverRegistry) -> None:
    env = app.state.berth.env
    await cluster_lifecycle.process_pending(env, drivers, provisioner_for(env))


async def test_a_cluster_from_template_to_config_download(
    app: FastAPI, client: httpx.AsyncClient, admin_token: str, drivers: DriverRegistry
) -> None:
    await make_member(client, admin_token, "team-a", "alice", MEMBER_PW)
    await make_member(client, admin_token, "team-b", "bob", MEMBER_PW)
    await login(client, "alice", MEMBER_PW, "team-a")
    page = await client.get("/clustertemplates")
    assert page.status_code == 200 and "No cluster templates yet" in page.text
    csrf = _csrf(page.text)
    form = {"csrf": csrf, "name": "tpl", "coe": "swarm-mode", "image_id": "", "driver": "e2e-fake"}
    r = await client.post("/clustertemplates/new", data=form)
    assert r.status_code == 303
    page = await client.get(r.headers["location"])
    assert "Give the node image" in page.text
    form |= {"image_id": "berth-test/busybox:latest", "labels": "e2e_step_seconds=0\nnot a label"}
    r = await client.post("/clustertemplates/new", data=form)
    assert "Labels line 2" in (await client.get(r.headers["location"])).text
    r = await client.post("/clustertemplates/new", data={**form, "labels": "e2e_step_seconds=0"})
    page = await client.get(r.headers["location"])
    assert "Cluster template tpl is created" in page.text and "e2e_step_seconds=0" in page.text

    page = await client.get("/clusters/new?template=tpl")
    assert page.status_code == 200 and "selected>tpl</option>" in page.text
    bad = {"csrf": csrf, "template": "tpl", "name": "c1", "master_count": "2", "node_count": "1"}
    r = await client.post("/clusters/new", data=bad)
    assert r.status_code == 400 and "c1" in r.text  # the form comes back filled in
    assert "master_count" in r.text or "odd" in r.text
    r = await client.post("/clusters/new", data={**bad, "node_count": "two"})
    assert r.status_code == 400 and "Nodes must be a whole number" in r.text
    r = await client.post(
        "/clusters/new", data={**bad, "master_count": "1", "node_count": "2", "labels": "x=1"}
    )
    assert r.status_code == 303, r.text
    detail = r.headers["location"]
    uuid = detail.rsplit("/", 1)[1]
    page = await client.get(detail)
    assert "CREATE_IN_PROGRESS" in page.text and "Cluster create requested." in page.text
    assert "download-config" not in page.text  # no CA before the worker ran
    await _work(app, drivers)
    live = await client.get(f"{detail}/live")
    assert "CREATE_COMPLETE" in live.text and "Starting node 2 of 2" in live.text
    assert "tcp://10.99.0.10:2376" in live.text and "10.99.0.101" in live.text
    assert "default-worker" in live.text and "download-config" in live.text
    rows = await client.get("/clusters/rows")
    assert "c1" in rows.text and "CREATE_COMPLETE" in rows.text

    r = await client.post(f"{detail}/config", data={"csrf": "forged"})
    assert r.status_code == 403
    r = await client.post(f"{detail}/config", data={"csrf": csrf})
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    assert 'filename="c1-config.zip"' in r.headers["content-disposition"]
    bundle = zipfile.ZipFile(io.BytesIO(r.content))
    files = {n.split("/", 1)[1]: bundle.read(n).decode() for n in bundle.namelist()}
    assert set(files) == {"ca.pem", "cert.pem", "key.pem", "env.sh"}
    assert bundle.getinfo("c1/key.pem").external_attr >> 16 & 0o777 == 0o600
    ca = x509.load_pem_x509_certificate(files["ca.pem"].encode())
    cert = x509.load_pem_x509_certificate(files["cert.pem"].encode())
    cert.verify_directly_issued_by(ca)
    assert "alice" in cert.subject.rfc4514_string()
    assert "export DOCKER_HOST=tcp://10.99.0.10:2376" in files["env.sh"]
    assert "DOCKER_TLS_VERIFY=1" in files["env.sh"]
    client.cookies.clear()

    # Another project sees none of it, and cannot download or delete.
    await login(client, "bob", MEMBER_PW, "team-b")
    bob_csrf = _csrf((await client.get("/clusters")).text)
    assert "c1" not in (await client.get("/clusters/rows")).text
    assert (await client.get(detail)).status_code == 404
    assert (await client.get(f"{detail}/live")).headers["hx-redirect"] == "/clusters"
    r = await client.post(f"{detail}/config", data={"csrf": bob_csrf})
    assert r.status_code == 303 and r.headers["location"] == detail
    assert (await client.get(detail)).status_code == 404
    r = await client.post(f"{detail}/delete", data={"csrf": bob_csrf})
    assert r.status_code == 303
    assert "tpl" not in (await client.get("/clustertemplates")).text
    client.cookies.clear()

    await login(client, "alice", MEMBER_PW, "team-a")
    csrf = _csrf((await client.get("/clusters")).text)
    assert "CREATE_COMPLETE" in (await client.get(f"{detail}/live")).text
    r = await client.post("/clustertemplates/tpl/delete", data={"csrf": csrf})
    assert r.status_code == 303, r.text
    page = await client.get(r.headers["location"])
    assert "ClusterTemplate tpl is referenced by one or multiple clusters" in page.text
    r = await client.post(f"{detail}/delete", data={"csrf": csrf, "name": "c1"})
    assert r.headers["location"] == "/clusters"
    await _work(app, drivers)
    assert uuid not in (await client.get("/clusters/rows")).text


async def test_a_failed_cluster_says_why_and_what_next(
    app: FastAPI, client: httpx.AsyncClient, drivers: DriverRegistry
) -> None:
    await login(client, "admin", ADMIN_PASSWORD)
    csrf = _csrf((await client.get("/clustertemplates")).text)
    body = {"csrf": csrf, "name": "t", "image_id": "node", "driver": "e2e-fake"}
    await client.post("/clustertemplates/new", data=body)
    r = await client.post(
        "/clusters/new",
        data={"csrf": csrf, "template": "t", "labels": "e2e_fail=no capacity\ne2e_step_seconds=0"},
    )
    detail = r.headers["location"]
    await _work(app, drivers)
    live = await client.get(f"{detail}/live")
    assert "CREATE_FAILED" in live.text and "Cluster create failed: no capacity" in live.text
    assert "Delete the cluster and create it again" in live.text


async def test_images_and_registries_pages(client: httpx.AsyncClient, admin_token: str) -> None:
    await make_member(client, admin_token, "team-a", "alice", MEMBER_PW)
    await login(client, "alice", MEMBER_PW, "team-a")
    page = await client.get("/registries")
    assert page.status_code == 200 and 'href="/images"' not in page.text
    assert (await client.get("/images")).status_code == 403
    csrf = _csrf(page.text)
    form = {"csrf": csrf, "name": "reg", "domain": "reg.team-a.example:5000"}
    r = await client.post("/registries/new", data={**form, "username": "u"})
    assert "both a user name and a password" in (await client.get(r.headers["location"])).text
    r = await client.post("/registries/new", data={**form, "domain": "not a domain"})
    assert "like registry.example.com:5000" in (await client.get(r.headers["location"])).text
    r = await client.post("/registries/new", data={**form, "username": "u", "password": "s3cr3t"})
    page = await client.get(r.headers["location"])
    assert "Registry reg is added to project team-a" in page.text
    assert "s3cr3t" not in page.text and "***" in page.text
    found = re.search(r'action="/registries/([0-9a-f-]{36})/delete"', page.text)
    assert found, page.text
    uuid = found.group(1)
    client.cookies.clear()

    await login(client, "admin", ADMIN_PASSWORD)
    page = await client.get("/images")
    assert page.status_code == 200 and 'id="pull-form"' in page.text
    admin_csrf = _csrf(page.text)
    r = await client.post("/images/pull", data={"csrf": admin_csrf, "repo": "x", "host": "h"})
    assert "Give the image to pull" in (await client.get(r.headers["location"])).text
    r = await client.post("/images/pull", data={"csrf": admin_csrf, "repo": "busybox", "host": ""})
    assert "Choose the host" in (await client.get(r.headers["location"])).text
    r = await client.post(
        "/images/pull", data={"csrf": admin_csrf, "repo": "busybox", "host": "nowhere"}
    )
    assert "Host nowhere could not be found" in (await client.get(r.headers["location"])).text
    # The admin's own project has no registries; alice's stays hers.
    assert "reg.team-a.example" not in (await client.get("/registries")).text
    client.cookies.clear()

    await login(client, "alice", MEMBER_PW, "team-a")
    csrf = _csrf((await client.get("/registries")).text)
    r = await client.post(f"/registries/{uuid}/delete", data={"csrf": csrf, "name": "reg"})
    page = await client.get(r.headers["location"])
    assert "Registry reg is deleted" in page.text and "reg.team-a.example" not in page.text


async def test_networks_and_volumes_pages(client: httpx.AsyncClient, admin_token: str) -> None:
    await make_member(client, admin_token, "team-a", "alice", MEMBER_PW)
    await make_member(client, admin_token, "team-b", "bob", MEMBER_PW)
    await login(client, "alice", MEMBER_PW, "team-a")
    page = await client.get("/networks")
    assert page.status_code == 200 and "(default)" in page.text
    csrf = _csrf(page.text)
    r = await client.post("/networks/new", data={"csrf": csrf, "name": "-bad"})
    assert "network name must be" in (await client.get(r.headers["location"])).text
    r = await client.post("/networks/new", data={"csrf": csrf, "name": "backend-a"})
    page = await client.get(r.headers["location"])
    assert "Network backend-a is created" in page.text
    r = await client.post("/networks/new", data={"csrf": csrf, "name": "backend-a"})
    assert "already exists" in (await client.get(r.headers["location"])).text
    net = re.search(r'action="/networks/([0-9a-f-]{36})/delete"', page.text)
    assert net

    r = await client.post("/volumes/new", data={"csrf": csrf, "name": "vol-alpha", "size": "x"})
    assert "whole number of GiB" in (await client.get(r.headers["location"])).text
    r = await client.post("/volumes/new", data={"csrf": csrf, "name": "vol-alpha", "size": "2"})
    page = await client.get(r.headers["location"])
    assert "Volume vol-alpha (2 GiB) is created" in page.text and "not placed yet" in page.text
    vol = re.search(r'action="/volumes/([0-9a-f-]{36})/delete"', page.text)
    assert vol
    client.cookies.clear()

    await login(client, "bob", MEMBER_PW, "team-b")
    bob_csrf = _csrf((await client.get("/networks")).text)
    assert "backend-a" not in (await client.get("/networks")).text
    assert "vol-alpha" not in (await client.get("/volumes")).text
    r = await client.post(f"/volumes/{vol.group(1)}/delete", data={"csrf": bob_csrf})
    assert "could not be found" in (await client.get(r.headers["location"])).text
    r = await client.post(f"/networks/{net.group(1)}/delete", data={"csrf": bob_csrf})
    assert "could not be found" in (await client.get(r.headers["location"])).text
    client.cookies.clear()

    await login(client, "alice", MEMBER_PW, "team-a")
    csrf = _csrf((await client.get("/volumes")).text)
    r = await client.post(
        f"/volumes/{vol.group(1)}/delete", data={"csrf": csrf, "name": "vol-alpha"}
    )
    assert "Volume vol-alpha is deleted" in (await client.get(r.headers["location"])).text
    r = await client.post(f"/networks/{net.group(1)}/delete", data={"csrf": csrf, "name": "b"})
    page = await client.get(r.headers["location"])
    assert "Network b is deleted" in page.text and "backend-a" not in page.text


async def test_capsules_page(client: httpx.AsyncClient, admin_token: str) -> None:
    agent = ScriptedAgent(client)
    await agent.register()
    await make_member(client, admin_token, "team-a", "alice", MEMBER_PW)
    await make_member(client, admin_token, "team-b", "bob", MEMBER_PW)
    await login(client, "alice", MEMBER_PW, "team-a")
    page = await client.get("/capsules")
    assert page.status_code == 200 and "kind: capsule" in page.text
    csrf = _csrf(page.text)
    r = await client.post("/capsules/new", data={"csrf": csrf, "template": "kind: [capsule"})
    assert r.status_code == 400 and "not valid YAML (line 1)" in r.text
    assert "kind: [capsule" in r.text  # the form comes back with what was typed
    r = await client.post("/capsules/new", data={"csrf": csrf, "template": "kind: capsule\n"})
    assert r.status_code == 400 and "Invalid capsule template" in r.text
    # PyYAML composes recursively: 16,000 nested "[" ended in a RecursionError (a 500).
    for deep in ("[" * 16000, "a: " + "{a: " * 8000, "- " * 10000 + "x"):
        r = await client.post("/capsules/new", data={"csrf": csrf, "template": deep})
        assert r.status_code == 400 and "nests deeper than 32 levels" in r.text, r.text[:300]
    r = await client.post("/capsules/new", data={"csrf": csrf, "template": EXAMPLE})
    assert r.status_code == 303, r.text
    page = await client.get(r.headers["location"])
    assert "Capsule web-pod is being created" in page.text
    rows = await client.get("/capsules/rows")
    assert "web-pod" in rows.text and 'href="/containers/' in rows.text
    found = re.search(r'action="/capsules/([0-9a-f-]{36})/delete"', rows.text)
    assert found
    client.cookies.clear()

    await login(client, "bob", MEMBER_PW, "team-b")
    bob_csrf = _csrf((await client.get("/capsules")).text)
    assert "web-pod" not in (await client.get("/capsules/rows")).text
    r = await client.post(f"/capsules/{found.group(1)}/delete", data={"csrf": bob_csrf})
    assert "could not be found" in (await client.get(r.headers["location"])).text
    client.cookies.clear()

    await login(client, "alice", MEMBER_PW, "team-a")
    csrf = _csrf((await client.get("/capsules")).text)
    r = await client.post(
        f"/capsules/{found.group(1)}/delete", data={"csrf": csrf, "name": "web-pod"}
    )
    assert "Deleting capsule web-pod" in (await client.get(r.headers["location"])).text
