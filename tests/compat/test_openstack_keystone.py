"""Acceptance: Berth inside an OpenStack cloud, with the cloud's real Keystone (#17 part 1).

A Keystone from PyPI (tests/keystone_server.py: SQLite, Fernet, bootstrapped)
and an all-in-one Berth with ``identity_backend = keystone`` serve the module.
``berth openstack register`` put Berth's service users and its ``container``
and ``container-infra`` endpoints into that Keystone; users, projects and
roles are made with the unmodified ``openstack`` CLI against Keystone, which
then finds Berth through Keystone's catalog. In order: the register command
(idempotent), the container lifecycle, a reader who may not write, a revoked
token refused within the cache interval, a swarm cluster, a standalone agent
logging in to Keystone (and another service's user refused on the agents'
API), and Keystone down (503, never 500).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from tests.compat.oscli import ADMIN_PASSWORD, Cli
from tests.functional.docker_engine import remove_owned, remove_owned_networking
from tests.helpers import open_clusters_file
from tests.keystone_server import KeystoneServer, keystone_server
from tests.live import all_in_one_env, berth_agent, free_port, live_api

pytestmark = [pytest.mark.compat, pytest.mark.docker, pytest.mark.slow]

PW = "ks-member-pw-1"
SERVICE_PW = "berth-service-pw-1"
AGENT_PW = "berth-agent-pw-1"
CACHE_SECONDS = 3.0
NODE_IMAGE = "berth/swarm-node:1"
ALICE = {"user": "ks-alice", "password": PW, "project": "ks-a"}
READER = {"user": "ks-reader", "password": PW, "project": "ks-a"}
_BERTH_CLI = "from berth.cli.main import app; app()"  # the `berth` command, this checkout's
CREATE_DENIED = "Policy doesn't allow container:create to be performed."


@dataclass
class World:
    keystone: KeystoneServer
    cli: Cli
    base_url: str
    work: Path
    settings: dict[str, str]
    registered: str
    host: str

    def alice(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.cli.run(*args, check=check, **ALICE)

    def alice_json(self, *args: str) -> Any:
        return self.cli.json(*args, **ALICE)

    def register(self) -> str:
        """``berth openstack register`` as the cloud's admin; its output."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "BERTH_"))}
        env.update(self.settings)
        env.update(
            OS_AUTH_URL=f"{self.keystone.url}/v3",
            OS_USERNAME="admin",
            OS_PASSWORD=ADMIN_PASSWORD,
            OS_PROJECT_NAME="admin",
            HOME=str(self.work),
        )
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                "from berth.cli.main import app; app()",
                "openstack",
                "register",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def alice_rest(self, path: str, version: str = "container 1.40") -> Any:
        """GET ``path`` on Berth's API as alice, its JSON body: for the waits between
        CLI steps (each ``openstack`` run costs a second or more of CPU)."""
        r = self.cli.rest("GET", path, version=version, **ALICE)
        assert r.status_code == 200, r.text
        return r.json()

    def get(self, path: str, token: str) -> httpx.Response:
        return httpx.get(
            f"{self.base_url}{path}",
            headers={"X-Auth-Token": token, "OpenStack-API-Version": "container 1.40"},
            timeout=30,
        )


def _wait(check: Any, what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout} s")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, docker_api: Any) -> Iterator[World]:
    work = tmp_path_factory.mktemp("compat-keystone")
    host = f"ks-{uuid.uuid4().hex[:8]}"
    try:
        with contextlib.ExitStack() as stack:
            ks = stack.enter_context(keystone_server(work / "keystone", ADMIN_PASSWORD))
            port = free_port()
            settings = {
                "BERTH_IDENTITY_BACKEND": "keystone",
                "BERTH_KEYSTONE_URL": ks.url,
                "BERTH_KEYSTONE_SERVICE_PASSWORD": SERVICE_PW,
                "BERTH_AGENT_PASSWORD": AGENT_PW,
                "BERTH_KEYSTONE_TOKEN_CACHE_SECONDS": str(CACHE_SECONDS),
                "BERTH_PUBLIC_URL": f"http://127.0.0.1:{port}",
            }
            world = World(ks, Cli("", work, auth_url=f"{ks.url}/v3"), "", work, settings, "", host)
            # Registered before Berth starts, as an operator would: its agent logs in at once.
            world.registered = world.register()
            env = all_in_one_env(
                work,
                host,
                ADMIN_PASSWORD,
                # Members run clusters here, as an operator's policy file allows.
                BERTH_POLICY_FILE=str(open_clusters_file(work)),
                BERTH_CLUSTER_HEALTH_INTERVAL="3",
                **settings,
            )
            api = stack.enter_context(live_api(env, workdir=work / "api", port=port))
            world.base_url = world.cli.base_url = api.base_url
            world.cli.add_member("ks-a", "ks-alice", PW)
            world.cli.run("user", "create", "--project", "ks-a", "--password", PW, "ks-reader")
            world.cli.run("role", "add", "--user", "ks-reader", "--project", "ks-a", "reader")
            yield world
    finally:
        for owner in (host, f"{host}-2"):
            remove_owned(docker_api, owner)
            remove_owned_networking(docker_api, owner)


@pytest.mark.timeout(600)  # the module's Keystone and Berth start on this test's clock
def test_register_created_everything_and_a_second_run_changes_nothing(world: World) -> None:
    first = world.registered
    for line in (
        "created user berth",
        "granted role service to user berth",
        "created user berth-agent",
        "created service container (zun)",
        "created service container-infra (magnum)",
        f"created endpoint container public {world.base_url}/container/v1",
        f"created endpoint container-infra internal {world.base_url}/container-infra/v1",
    ):
        assert line in first, first
    again = world.register()
    assert "nothing to change: all in place" in again, again
    assert "created" not in again and "granted" not in again, again


def test_keystone_catalog_leads_to_berth_and_berth_serves_no_identity(world: World) -> None:
    catalog = world.cli.json("catalog", "list")
    urls = {
        entry["Type"]: {e["url"] for e in entry["Endpoints"]}
        for entry in catalog
        if entry["Type"] in ("container", "container-infra")
    }
    assert urls == {
        "container": {f"{world.base_url}/container/v1"},
        "container-infra": {f"{world.base_url}/container-infra/v1"},
    }
    assert httpx.get(f"{world.base_url}/identity/v3", timeout=10).status_code == 404
    refused = world.get("/container/v1/containers", "not-a-token")
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == f'Keystone uri="{world.keystone.url}/v3"'


def test_container_lifecycle_with_keystone_tokens(world: World) -> None:
    world.alice("appcontainer", "run", "--name", "ks-web", "berth-test/busybox", "sleep", "600")
    # Waited for through the API: the CLI's own --wait polls every 5 s.
    _wait(lambda: world.alice_rest("/container/v1/containers/ks-web")["status"] == "Running",
          "ks-web running")  # fmt: skip
    shown = world.alice_json("appcontainer", "show", "ks-web")
    assert shown["status"] == "Running", shown
    listed = world.alice_json("appcontainer", "list")
    assert [c["name"] for c in listed] == ["ks-web"]
    # The container belongs to the Keystone project the token was scoped to.
    assert shown["project_id"] == world.cli.project_id("ks-a")
    out = world.alice("appcontainer", "exec", "ks-web", "echo", "hello-from-keystone").stdout
    assert "hello-from-keystone" in out
    # Another Keystone project (the admin's) sees none of it.
    assert "ks-web" not in [c["name"] for c in world.cli.json("appcontainer", "list")]
    world.alice("appcontainer", "delete", "--stop", "ks-web")
    _wait(lambda: world.alice_rest("/container/v1/containers")["containers"] == [],
          "ks-web deleted")  # fmt: skip
    assert world.alice_json("appcontainer", "list") == []


def test_a_keystone_reader_reads_but_cannot_write(world: World) -> None:
    assert world.cli.json("appcontainer", "list", **READER) == []
    proc = world.cli.run(
        "appcontainer", "create", "--name", "nope", "berth-test/busybox", check=False, **READER
    )
    assert proc.returncode != 0 and CREATE_DENIED in proc.stderr, proc.stderr
    token = world.keystone.token(READER["user"], PW, READER["project"])
    r = httpx.post(
        f"{world.base_url}/container/v1/containers",
        json={"image": "berth-test/busybox"},
        headers={"X-Auth-Token": token, "OpenStack-API-Version": "container 1.40"},
        timeout=30,
    )
    assert r.status_code == 403
    assert r.json()["errors"][0]["detail"] == CREATE_DENIED


def test_a_token_revoked_in_keystone_is_refused_within_the_cache_interval(world: World) -> None:
    token = world.keystone.token(ALICE["user"], PW, ALICE["project"])
    assert world.get("/container/v1/containers", token).status_code == 200
    world.alice("token", "revoke", token)
    revoked_at = time.monotonic()
    _wait(
        lambda: world.get("/container/v1/containers", token).status_code == 401,
        "the revoked token refused",
        timeout=CACHE_SECONDS + 10,
    )
    assert time.monotonic() - revoked_at <= CACHE_SECONDS + 2


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


def _dashboard_login(
    web: httpx.Client, user: str, password: str, project: str = ""
) -> httpx.Response:
    form = {"csrf": _csrf(web.get("/login").text), "username": user, "password": password,
            "project": project, "domain": "Default", "next": "/containers"}  # fmt: skip
    return web.post("/login", data=form)


def _working_in(web: httpx.Client) -> str:
    page = web.get("/containers")
    assert page.status_code == 200, page.headers
    found = re.search(r'<span class="muted">in ([^<]+)</span>', page.text)
    assert found, page.text[:800]
    return found.group(1)


def test_the_dashboard_logs_in_through_keystone(world: World) -> None:
    """The dashboard's login asks the cloud's Keystone for the user's own token: by
    project, or the default project, or (none) the first the user holds a role in;
    the project switcher lists and re-scopes through Keystone; logout revokes it."""
    world.cli.add_member("ks-dash", "ks-dasher", PW)
    world.cli.grant("ks-alice", "ks-dash", "member")
    uid = world.cli.identity("POST", "/users", json={"user": {
        "name": "ks-roamer", "password": PW, "domain_id": "default"}})  # fmt: skip
    assert uid.status_code == 201, uid.text
    world.cli.grant("ks-roamer", "ks-dash", "member")  # no default project
    world.cli.identity("POST", "/users", json={"user": {
        "name": "ks-nobody", "password": PW, "domain_id": "default"}})  # fmt: skip
    with httpx.Client(base_url=world.base_url, timeout=30) as web:
        wrong = _dashboard_login(web, "ks-alice", "not-the-password")
        assert wrong.status_code == 401 and "Wrong user name" in wrong.text
        assert _dashboard_login(web, "ks-nobody", PW).status_code == 403
        r = _dashboard_login(web, "ks-alice", PW)  # her default project
        assert r.status_code == 303 and r.headers["location"] == "/containers", r.text[:300]
        assert _working_in(web) == "ks-a"
        page = web.get("/containers").text
        assert ">ks-a</option>" in page and ">ks-dash</option>" in page  # the switcher
        token = web.cookies.get("berth_session") or next(iter(web.cookies.values()))
        assert world.get("/container/v1/containers", token).status_code == 200
        dash = world.cli.identity("GET", "/projects", params={"name": "ks-dash"}).json()
        switched = web.post("/project", data={"csrf": _csrf(page),
                                              "project_id": dash["projects"][0]["id"]})  # fmt: skip
        assert switched.status_code == 303
        assert _working_in(web) == "ks-dash"
        # The token the switch replaced is revoked (in Keystone, and at once here).
        assert world.get("/container/v1/containers", token).status_code == 401
        out = web.post("/logout", data={"csrf": _csrf(web.get("/containers").text)})
        assert out.status_code == 303 and out.headers["location"].startswith("/login")
        assert web.get("/containers").headers.get("location", "").startswith("/login")
    with httpx.Client(base_url=world.base_url, timeout=30) as web:
        assert _dashboard_login(web, "ks-alice", PW, project="ks-dash").status_code == 303
        assert _working_in(web) == "ks-dash"
    with httpx.Client(base_url=world.base_url, timeout=30) as web:
        assert _dashboard_login(web, "ks-roamer", PW).status_code == 303
        assert _working_in(web) == "ks-dash"  # the one project it holds a role in


def test_the_dashboards_quotas_page_lists_keystones_projects(world: World) -> None:
    """The admin's quotas page lists the cloud's Keystone projects (as Keystone lists
    them to the admin's own token) and sets their limits; a member is refused."""
    world.cli.add_member("ks-quota", "ks-quotaer", PW)
    listed = world.cli.identity("GET", "/projects", params={"name": "ks-quota"}).json()
    project_id = listed["projects"][0]["id"]
    with httpx.Client(base_url=world.base_url, timeout=30) as web:
        assert _dashboard_login(web, "admin", ADMIN_PASSWORD, project="admin").status_code == 303
        page = web.get("/admin/quotas")
        assert page.status_code == 200, page.text[:500]
        assert "<td>ks-quota</td>" in page.text and f"/admin/quotas/{project_id}" in page.text
        assert "<td>admin</td>" in page.text
        set_limit = {"csrf": _csrf(page.text), "containers": "7", "project_name": "ks-quota"}
        r = web.post(f"/admin/quotas/{project_id}", data=set_limit)
        assert r.status_code == 303 and r.headers["location"] == "/admin/quotas", r.text[:300]
    shown = world.cli.rest("GET", f"/container/v1/quotas/{project_id}", user="admin",
                           password=ADMIN_PASSWORD, project="admin")  # fmt: skip
    assert shown.status_code == 200 and shown.json()["containers"] == 7, shown.text
    with httpx.Client(base_url=world.base_url, timeout=30) as web:
        assert _dashboard_login(web, "ks-quotaer", PW).status_code == 303
        assert web.get("/admin/quotas").status_code == 403


@pytest.mark.timeout(900)  # create (up to 300 s on a loaded machine) and delete
def test_swarm_cluster_create_through_keystone(world: World, docker_api: Any) -> None:
    try:
        docker_api.inspect_image(NODE_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"{NODE_IMAGE} is missing: run scripts/lib.sh build_swarm_node_image")
    world.alice(
        "coe", "cluster", "template", "create", "ks-tpl",
        "--coe", "swarm-mode", "--image", NODE_IMAGE, "--external-network", "public",
        "--flavor", "m1.small", "--master-flavor", "m1.small",
    )  # fmt: skip
    world.alice(
        "coe", "cluster", "create", "ks-swarm", "--cluster-template", "ks-tpl",
        "--master-count", "1", "--node-count", "1", "--timeout", "10",
    )  # fmt: skip

    magnum = "container-infra latest"

    def complete() -> dict[str, Any] | None:  # polled through the API, not a CLI run each
        shown: dict[str, Any] = world.alice_rest("/container-infra/v1/clusters/ks-swarm", magnum)
        assert not shown["status"].endswith("_FAILED"), shown
        return shown if shown["status"] == "CREATE_COMPLETE" else None

    _wait(complete, "ks-swarm CREATE_COMPLETE", timeout=300)
    shown = world.alice_json("coe", "cluster", "show", "ks-swarm")
    assert shown["status"] == "CREATE_COMPLETE", shown
    assert len(shown["master_addresses"]) == 1 and len(shown["node_addresses"]) == 1
    world.alice("coe", "cluster", "delete", "ks-swarm")
    _wait(lambda: world.alice_rest("/container-infra/v1/clusters", magnum)["clusters"] == [],
          "ks-swarm deleted", 180)  # fmt: skip
    assert world.alice_json("coe", "cluster", "list") == []
    world.alice("coe", "cluster", "template", "delete", "ks-tpl")


def test_a_standalone_agent_logs_in_to_keystone_and_other_services_are_refused(
    world: World,
) -> None:
    second = f"{world.host}-2"

    def hosts() -> list[str]:  # polled through the API as the admin
        r = world.cli.rest("GET", "/container/v1/hosts", user="admin", password=ADMIN_PASSWORD,
                           project="admin")  # fmt: skip
        assert r.status_code == 200, r.text
        return [h["hostname"] for h in r.json()["hosts"]]

    agent_env = {"BERTH_IDENTITY_BACKEND": "keystone", "BERTH_KEYSTONE_URL": world.keystone.url}
    with berth_agent(
        world.base_url,
        host=second,
        password=AGENT_PW,
        workdir=world.work / "agent2",
        settings_env=agent_env,
    ):
        _wait(lambda: second in hosts(), f"agent {second} registered", timeout=60)
    # Nova's user holds Keystone's service role too, but the agents' API is Berth's own.
    # (Made through the identity API: ``user create``/``role add`` are under test in the
    # fixture, which makes ks-reader with the CLI.)
    r = world.cli.identity("POST", "/users", json={"user": {
        "name": "nova", "password": PW, "domain_id": "default"}})  # fmt: skip
    assert r.status_code == 201, r.text
    world.cli.grant("nova", "service", "service")
    nova = world.keystone.token("nova", PW, "service")
    r = httpx.get(
        f"{world.base_url}/internal/v1/hosts/{world.host}/desired",
        headers={"X-Auth-Token": nova},
        params={"generation": 0, "wait": 0},
        timeout=30,
    )
    assert r.status_code == 403, r.text


def test_keystone_down_is_503_not_500(world: World) -> None:
    fresh = world.keystone.token(ALICE["user"], PW, ALICE["project"])  # never shown to Berth
    world.keystone.stop()
    try:
        r = world.get("/container/v1/containers", fresh)
        assert r.status_code == 503, r.text
        error = r.json()["errors"][0]
        assert error["code"] == "container.identity-unavailable"
        assert "Keystone" in error["detail"]
        magnum = httpx.get(
            f"{world.base_url}/container-infra/v1/clusters",
            headers={"X-Auth-Token": fresh, "OpenStack-API-Version": "container-infra latest"},
            timeout=30,
        )
        assert magnum.status_code == 503 and magnum.json()["errors"][0]["code"] == "server"
    finally:
        world.keystone.start()
    assert world.get("/container/v1/containers", fresh).status_code == 200
