"""The dashboard follows the policy's personas over HTTP, in memory (no browser, no engine).

A reader looks: no create, delete, action, terminal or upload controls, and a form
posted anyway gets the policy's refusal as a page message. A member changes its
project's things but, under the default policy, runs no clusters (nodes are
root-equivalent on the host): no "Create cluster", no config download. An admin
sees all of it. These run on SQLite and PostgreSQL like the API tests.
"""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi import FastAPI

from berth.clusters.registry import DriverRegistry
from berth.services.clusters import lifecycle as cluster_lifecycle
from berth.services.clusters.nodes import provisioner_for
from tests.conftest import ADMIN_PASSWORD, issue_token
from tests.e2e.fake_cluster_driver import FakeClusterDriver
from tests.e2e.test_dashboard_http import MEMBER_PW, _csrf, login
from tests.helpers import ZUN, ScriptedAgent, make_member

pytestmark = pytest.mark.e2e

K = "/identity/v3"
# The create forms of the project resource pages, by the id the templates give them.
CREATE_FORMS = {
    "/networks": 'id="network-form"',
    "/volumes": 'id="volume-form"',
    "/security_groups": 'id="group-form"',
    "/registries": 'id="registry-form"',
    "/capsules": 'id="capsule-form"',
    "/clustertemplates": 'id="template-form"',
}


async def grant(
    client: httpx.AsyncClient, admin: str, project: str, user: str, role: str
) -> None:
    """Give ``user`` (created when new) ``role`` in the existing ``project``."""
    h = {"X-Auth-Token": admin}
    pid = (await client.get(f"{K}/projects?name={project}", headers=h)).json()["projects"][0]["id"]
    found = (await client.get(f"{K}/users?name={user}", headers=h)).json()["users"]
    if found:
        uid = found[0]["id"]
    else:
        body = {"user": {"name": user, "domain_id": "default", "password": MEMBER_PW}}
        r = await client.post(f"{K}/users", headers=h, json=body)
        assert r.status_code == 201, r.text
        uid = r.json()["user"]["id"]
    rid = (await client.get(f"{K}/roles?name={role}", headers=h)).json()["roles"][0]["id"]
    r = await client.put(f"{K}/projects/{pid}/users/{uid}/roles/{rid}", headers=h)
    assert r.status_code == 204, r.text


async def running_container(client: httpx.AsyncClient, token: str, name: str) -> str:
    """A container of the token's project that its (scripted) agent reports Running."""
    agent = ScriptedAgent(client)
    await agent.register()
    r = await client.post(
        "/container/v1/containers",
        json={"image": "busybox", "name": name},
        headers={**ZUN, "X-Auth-Token": token},
    )
    assert r.status_code == 202, r.text
    uuid: str = r.json()["uuid"]
    await agent.observe(uuid, "running")
    return uuid


async def flash_after(client: httpx.AsyncClient, r: httpx.Response) -> str:
    """The page a form's 303 leads to (where its flash message shows)."""
    assert r.status_code == 303, r.text
    return (await client.get(r.headers["location"])).text


def action_buttons(html: str) -> set[str]:
    return set(re.findall(r'name="action" value="([a-z_]+)"', html))


async def test_a_reader_sees_no_controls_and_posting_anyway_is_refused_clearly(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    alice = await make_member(client, admin_token, "team-a", "alice", MEMBER_PW)
    uuid = await running_container(client, alice, "web")
    await grant(client, admin_token, "team-a", "rita", "reader")

    await login(client, "alice", MEMBER_PW, "team-a")  # the member has every control
    page = await client.get("/containers")
    assert "Create container" in page.text
    detail = await client.get(f"/containers/{uuid}")
    assert {"stop", "reboot", "pause", "kill", "delete"} <= action_buttons(detail.text)
    assert 'id="terminal-card"' in detail.text
    for path, form in CREATE_FORMS.items():
        assert form in (await client.get(path)).text, path
    client.cookies.clear()

    r = await login(client, "rita", MEMBER_PW, "team-a")
    assert r.status_code == 303
    page = await client.get("/containers")
    assert page.status_code == 200 and "web" in (await client.get("/containers/rows")).text
    assert "Create container" not in page.text and "/containers/new" not in page.text
    csrf = _csrf(page.text)
    detail = await client.get(f"/containers/{uuid}")
    assert detail.status_code == 200 and "Running" in detail.text
    assert action_buttons(detail.text) == set() and 'id="terminal-card"' not in detail.text
    assert action_buttons((await client.get(f"/containers/{uuid}/live")).text) == set()
    assert 'id="refresh-logs"' in detail.text  # reading the logs is a reader's
    for path, form in CREATE_FORMS.items():
        shown = await client.get(path)
        assert shown.status_code == 200 and form not in shown.text, path
    assert "Delete" not in (await client.get("/security_groups")).text
    assert "Delete" not in (await client.get("/networks")).text

    # The form itself is refused up front, and every post says why and what to do.
    r = await client.get("/containers/new")
    assert r.status_code == 403 and "Not allowed" in r.text
    assert "Your roles in project team-a do not allow it" in r.text
    r = await client.post("/containers/new", data={"csrf": csrf, "image": "busybox"})
    assert r.status_code == 403 and "do not allow it" in r.text
    for action in ("stop", "delete", "force_delete"):
        r = await client.post(f"/containers/{uuid}/action", data={"csrf": csrf, "action": action})
        assert "Your roles in project team-a do not allow it" in await flash_after(client, r)
    r = await client.post(f"/containers/{uuid}/terminal", data={"csrf": csrf})
    assert r.status_code == 403 and "do not allow it" in r.json()["error"]
    for path in ("/networks/new", "/volumes/new", "/security_groups/new", "/registries/new"):
        r = await client.post(path, data={"csrf": csrf, "name": "xy", "domain": "r.example"})
        shown = await flash_after(client, r)
        assert "do not allow it" in shown, (path, re.findall(r"class=\"flash[^<]*<", shown))
    r = await client.post("/capsules/new", data={"csrf": csrf, "template": "kind: capsule"})
    assert r.status_code in (400, 403) and "do not allow it" in r.text
    client.cookies.clear()

    await login(client, "alice", MEMBER_PW, "team-a")  # nothing the reader sent took effect
    assert "Running" in (await client.get(f"/containers/{uuid}/live")).text


@pytest.fixture
def drivers(app: FastAPI) -> DriverRegistry:
    registry = DriverRegistry([FakeClusterDriver()])
    app.state.cluster_drivers = registry
    return registry


async def admins_cluster_in(
    app: FastAPI, client: httpx.AsyncClient, drivers: DriverRegistry, admin: str, project: str
) -> str:
    """A finished cluster in ``project``, made by the admin (members may not, by default)."""
    await grant(client, admin, project, "admin", "admin")
    token = await issue_token(client, "admin", ADMIN_PASSWORD, project)
    h = {"X-Auth-Token": token, "OpenStack-API-Version": "container-infra latest"}
    body = {
        "name": "tpl",
        "coe": "swarm-mode",
        "image_id": "berth-test/busybox:latest",
        "driver": "e2e-fake",
        "labels": {"e2e_step_seconds": "0"},
    }
    r = await client.post("/container-infra/v1/clustertemplates", json=body, headers=h)
    assert r.status_code == 201, r.text
    body = {"name": "c1", "cluster_template_id": "tpl", "master_count": 1, "node_count": 1}
    r = await client.post("/container-infra/v1/clusters", json=body, headers=h)
    assert r.status_code == 202, r.text
    env = app.state.berth.env
    await cluster_lifecycle.process_pending(env, drivers, provisioner_for(env))
    uuid: str = r.json()["uuid"]
    return uuid


async def test_a_member_runs_no_clusters_under_the_default_policy_and_an_admin_does(
    app: FastAPI, client: httpx.AsyncClient, admin_token: str, drivers: DriverRegistry
) -> None:
    await make_member(client, admin_token, "team-a", "alice", MEMBER_PW)
    uuid = await admins_cluster_in(app, client, drivers, admin_token, "team-a")
    detail = f"/clusters/{uuid}"

    await login(client, "alice", MEMBER_PW, "team-a")
    page = await client.get("/clusters")
    assert "Create cluster" not in page.text and "/clusters/new" not in page.text
    csrf = _csrf(page.text)
    templates = await client.get("/clustertemplates")
    assert "tpl" in templates.text and 'id="template-form"' in templates.text  # templates are data
    assert "Create cluster" not in templates.text
    live = await client.get(f"{detail}/live")
    assert "CREATE_COMPLETE" in live.text
    assert "download-config" not in live.text and "Download config" not in live.text
    assert f'action="{detail}/delete"' in live.text  # removing nodes gives nobody access
    r = await client.get("/clusters/new")
    assert r.status_code == 403 and "do not allow it" in r.text
    form = {"csrf": csrf, "template": "tpl", "name": "mine", "node_count": "1"}
    r = await client.post("/clusters/new", data=form)
    assert r.status_code == 403 and "do not allow it" in r.text
    r = await client.post(f"{detail}/config", data={"csrf": csrf})
    assert "do not allow it" in await flash_after(client, r)
    client.cookies.clear()

    await login(client, "admin", ADMIN_PASSWORD, "team-a")
    page = await client.get("/clusters")
    assert "Create cluster" in page.text
    assert "Create cluster" in (await client.get("/clustertemplates")).text
    live = await client.get(f"{detail}/live")
    assert "download-config" in live.text and f'action="{detail}/delete"' in live.text
    assert (await client.get("/clusters/new")).status_code == 200
