"""Images end to end on the real engine: a private registry behind htpasswd, Berth's image
store (upload, tenancy, commit), and the sandboxed runtime, through a live all-in-one Berth."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker.errors
import httpx
import pytest

from tests.functional.docker_engine import engine_or_skip, ensure_test_image, remove_owned
from tests.functional.registry import image_store, local_registry
from tests.live import free_port, live_login, live_server

pytestmark = pytest.mark.docker

ADMIN_PW = "images-admin-pw"
PW = "member-pw-123"
REG_AUTH = ("reguser", "regpass-123")
BERTH = Path(sys.executable).parent / "berth"


class World:
    def __init__(self, url: str, host: str, registry: str, store: str, work: Path) -> None:
        self.url, self.host, self.registry, self.store, self.work = url, host, registry, store, work
        self.tokens: dict[str, str] = {}
        self.projects: dict[str, str] = {}

    def login(self, user: str, password: str, project: str) -> None:
        r = live_login(self.url, user, password, project)
        self.tokens[user] = r.headers["x-subject-token"]
        self.projects[user] = r.json()["token"]["project"]["id"]

    def call(self, user: str, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {"X-Auth-Token": self.tokens[user], "OpenStack-API-Version": "container 1.40"}
        return httpx.request(
            method, f"{self.url}/container/v1{path}", headers=headers, timeout=120, **kw
        )

    def run(self, user: str, **body: Any) -> dict[str, Any]:
        r = self.call(user, "POST", "/containers?run=true", json={"memory": 64, **body})
        assert r.status_code == 202, r.text
        created: dict[str, Any] = r.json()
        return created

    def wait(self, user: str, ident: str, *want: str, timeout: float = 90) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            body = self.call(user, "GET", f"/containers/{ident}").json()
            if body.get("status") in want:
                return body
            time.sleep(0.3)
        raise AssertionError(f"{ident} never became {want}: {body}")

    def berth(self, user: str, password: str, project: str, *args: str) -> str:
        env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("OS_")}
        env.update(
            OS_AUTH_URL=f"{self.url}/identity/v3",
            OS_USERNAME=user,
            OS_PASSWORD=password,
            OS_PROJECT_NAME=project,
            OS_USER_DOMAIN_NAME="Default",
            OS_PROJECT_DOMAIN_NAME="Default",
        )
        out = subprocess.run(
            [str(BERTH), *args], env=env, capture_output=True, text=True, timeout=300
        )
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout


def _member(world: World, project: str, user: str) -> None:
    admin = {"X-Auth-Token": world.tokens["admin"]}
    ident = f"{world.url}/identity/v3"
    pid = httpx.post(
        f"{ident}/projects",
        headers=admin,
        json={"project": {"name": project, "domain_id": "default"}},
    ).json()["project"]["id"]
    user_body = {"name": user, "domain_id": "default", "password": PW, "default_project_id": pid}
    uid = httpx.post(f"{ident}/users", headers=admin, json={"user": user_body}).json()["user"]["id"]
    role = httpx.get(f"{ident}/roles?name=member", headers=admin).json()["roles"][0]["id"]
    r = httpx.put(f"{ident}/projects/{pid}/users/{uid}/roles/{role}", headers=admin)
    assert r.status_code == 204, r.text
    world.login(user, PW, project)


@pytest.fixture(scope="module")
def engine() -> Any:
    api = engine_or_skip()
    ensure_test_image(api)
    return api


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, engine: Any) -> Iterator[World]:
    work = tmp_path_factory.mktemp("images-live")
    host = f"images-{uuid.uuid4().hex[:8]}"
    with local_registry(auth=REG_AUTH) as registry, image_store() as store:
        env = {
            "BERTH_ADMIN_PASSWORD": ADMIN_PW,
            "BERTH_ALL_IN_ONE": "true",
            "BERTH_AGENT_HOST": host,
            "BERTH_AGENT_PORT": str(free_port()),
            "BERTH_IMAGE_STORE": store.address,
            "BERTH_IMAGE_STORE_USERNAME": store.username,
            "BERTH_IMAGE_STORE_PASSWORD": store.password,
            # The test registry is on loopback: projects may use it only when allowed.
            "BERTH_IMAGE_REGISTRY_ALLOWLIST": json.dumps([registry]),
        }
        try:
            with live_server(env) as url:
                w = World(url, host, registry, store.address, work)
                w.login("admin", ADMIN_PW, "admin")
                _member(w, "team-a", "alice")
                _member(w, "team-b", "bob")
                yield w
        finally:
            remove_owned(engine, host)
            for image in engine.images():
                for tag in image.get("RepoTags") or []:
                    if tag.startswith((registry, store.address)):
                        with contextlib.suppress(docker.errors.APIError):
                            engine.remove_image(tag, force=True)


def _push_to_registry(engine: Any, registry: str) -> str:
    ref = f"{registry}/berth/busybox:{uuid.uuid4().hex[:8]}"
    repo, tag = ref.rsplit(":", 1)
    engine.tag("berth-test/busybox:latest", repo, tag)
    auth = {"username": REG_AUTH[0], "password": REG_AUTH[1]}
    for line in engine.push(repo, tag=tag, stream=True, decode=True, auth_config=auth):
        assert "error" not in line, line
    engine.remove_image(ref)
    return ref


def test_private_registry_needs_the_projects_credentials(world: World, engine: Any) -> None:
    ref = _push_to_registry(engine, world.registry)
    bare = ref.removeprefix(world.registry + "/")
    denied = world.run("alice", image=ref, command=["sleep", "300"])
    failed = world.wait("alice", denied["uuid"], "Error")
    assert "credentials" in failed["status_reason"], failed["status_reason"]

    r = world.call(
        "alice",
        "POST",
        "/registries",
        json={
            "registry": {
                "name": "private",
                "domain": world.registry,
                "username": REG_AUTH[0],
                "password": REG_AUTH[1],
            }
        },
    )
    assert r.status_code == 201, r.text
    reg = r.json()["registry"]
    assert reg["password"] == "***"
    ok = world.run("alice", image=bare, registry="private", command=["sleep", "300"])
    shown = world.wait("alice", ok["uuid"], "Running", "Error")
    assert shown["status"] == "Running", shown["status_reason"]
    assert shown["registry_id"] == reg["uuid"]

    for ident in (reg["uuid"], "private"):
        r = world.call("bob", "POST", "/containers", json={"image": bare, "registry": ident})
        assert r.status_code == 404, r.text
    for c in (denied, ok):
        world.call("alice", "DELETE", f"/containers/{c['uuid']}?force=True&stop=True")


def test_image_store_upload_tenancy_and_commit(world: World, engine: Any) -> None:
    archive = world.work / "busybox.tar"
    with archive.open("wb") as f:
        for chunk in engine.get_image("berth-test/busybox:latest"):
            f.write(chunk)
    out = world.berth("alice", PW, "team-a", "image", "upload", str(archive), "--name", "tools:1")
    assert "tools:1" in out
    world.berth(
        "admin",
        ADMIN_PW,
        "admin",
        "image",
        "upload",
        str(archive),
        "--name",
        "shared:1",
        "--public",
    )

    own = world.run("alice", image="tools:1", image_driver="glance", command=["sleep", "300"])
    shown = world.wait("alice", own["uuid"], "Running", "Error")
    assert shown["status"] == "Running", shown["status_reason"]
    r = world.call(
        "bob", "POST", "/containers", json={"image": "tools:1", "image_driver": "glance"}
    )
    assert r.status_code == 400 and "not in the image store" in r.text
    r = world.call(
        "bob",
        "POST",
        "/containers",
        json={"image": f"{world.store}/{world.projects['alice']}/tools:1"},
    )
    assert r.status_code == 400
    public = world.run("bob", image="shared:1", image_driver="glance", command=["sleep", "300"])
    assert world.wait("bob", public["uuid"], "Running", "Error")["status"] == "Running"

    hits = world.call("alice", "GET", "/images/tools/search?image_driver=glance").json()
    assert [h["name"] for h in hits] == ["tools"]
    assert world.call("bob", "GET", "/images/tools/search?image_driver=glance").json() == []

    world.call("alice", "POST", f"/containers/{own['uuid']}/execute?command=touch /snapshot-mark")
    r = world.call("alice", "POST", f"/containers/{own['uuid']}/commit?repository=snap&tag=v1")
    assert r.status_code == 202, r.text
    image = world.call("admin", "GET", f"/images/{r.json()['uuid']}").json()
    assert image["status"] == "active", image["status_reason"]
    assert world.wait("alice", own["uuid"], "Running")["status"] == "Running"  # unpaused after
    snap = world.run("alice", image="snap:v1", image_driver="glance", command=["sleep", "300"])
    assert world.wait("alice", snap["uuid"], "Running", "Error")["status"] == "Running"
    out = world.call("alice", "POST", f"/containers/{snap['uuid']}/execute?command=ls /").json()
    assert "snapshot-mark" in out["output"]

    r = world.call("admin", "DELETE", f"/images/{image['uuid']}")
    assert r.status_code == 200
    for c, user in ((own, "alice"), (public, "bob"), (snap, "alice")):
        world.call(user, "DELETE", f"/containers/{c['uuid']}?force=True&stop=True")


def test_sandboxed_runtime(world: World, engine: Any) -> None:
    hosts = world.call("admin", "GET", "/hosts").json()["hosts"]
    runtimes = next(h["runtimes"] for h in hosts if h["hostname"] == world.host)
    ghost = world.run("admin", image="berth-test/busybox", runtime="kata-nope", command=["true"])
    failed = world.wait("admin", ghost["uuid"], "Error")
    assert "runtime kata-nope not available" in failed["status_reason"]
    r = world.call(
        "alice", "POST", "/containers", json={"image": "berth-test/busybox", "runtime": "runsc"}
    )
    assert r.status_code == 403 and "container:create:runtime" in r.text
    if "runsc" not in runtimes:
        pytest.skip(f"runsc is not registered with this engine ({runtimes}): scripts/up does it")
    c = world.run("admin", image="berth-test/busybox", runtime="runsc", command=["sleep", "300"])
    shown = world.wait("admin", c["uuid"], "Running", "Error")
    assert shown["status"] == "Running", shown["status_reason"]
    found = engine.containers(filters={"label": f"berth.uuid={c['uuid']}"})
    assert engine.inspect_container(found[0]["Id"])["HostConfig"]["Runtime"] == "runsc"
    out = world.call("admin", "POST", f"/containers/{c['uuid']}/execute?command=dmesg").json()
    assert "gVisor" in out["output"] or out["exit_code"] == 0
    world.call("admin", "DELETE", f"/containers/{c['uuid']}?force=True")
