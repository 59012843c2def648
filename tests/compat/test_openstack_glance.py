"""Acceptance: ``image_driver=glance`` with the cloud's real Glance (#17 part 2).

A Keystone and a Glance from PyPI (tests/keystone_server.py,
tests/glance_server.py: SQLite, the file store, Glance's endpoints in
Keystone's catalog) and an all-in-one Berth with ``identity_backend =
keystone`` and ``glance_url``. Berth's service user holds ``admin`` in the
service project, as every OpenStack service's user does (Glance serves a
tenant's private image data to nobody else). Images are uploaded with the
unmodified ``openstack image create`` (a ``docker save`` of the local test
image, container_format docker, disk_format raw) and run with ``openstack
appcontainer run --image-driver glance``: by name, by id, a second time
without a second download, another project's private image not found, a
shared image once its member accepted it, commit into Glance, a cluster
template naming a Glance image (Magnum's os_distro check), a swarm cluster
whose nodes run the swarm node image from Glance, and Glance down.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.compat.oscli import ADMIN_PASSWORD, Cli
from tests.functional.docker_engine import TEST_IMAGE, remove_owned, remove_owned_networking
from tests.functional.engines import wait_until
from tests.glance_server import GlanceServer, glance_server
from tests.helpers import open_clusters_file
from tests.keystone_server import KeystoneServer, keystone_server
from tests.live import all_in_one_env, free_port, live_api

pytestmark = [pytest.mark.compat, pytest.mark.docker, pytest.mark.slow]

PW = "gl-member-pw-1"
SERVICE_PW = "berth-service-pw-2"
AGENT_PW = "berth-agent-pw-2"
ALICE = {"user": "gl-alice", "password": PW, "project": "gl-a"}
BOB = {"user": "gl-bob", "password": PW, "project": "gl-b"}
NOT_FOUND = "could not be found."


@dataclass
class World:
    keystone: KeystoneServer
    glance: GlanceServer
    cli: Cli
    work: Path
    host: str
    archive: Path

    def alice(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.cli.run(*args, check=check, **ALICE)

    def bob(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.cli.run(*args, check=check, **BOB)

    def upload(self, name: str, who: dict[str, str], *extra: str) -> dict[str, Any]:
        """``openstack image create`` of the test image's docker save, as ``who``."""
        image: dict[str, Any] = self.cli.json(
            "image", "create", "--container-format", "docker", "--disk-format", "raw",
            "--file", str(self.archive), *extra, name, **who,
        )  # fmt: skip
        assert image["status"] == "active", image
        return image

    def rest(self, method: str, path: str, who: dict[str, str], **kw: Any) -> Any:
        """``method path`` on Berth's API as ``who``, its JSON body (a 2xx asserted)."""
        r = self.cli.rest(method, path, **who, **kw)
        assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content else None

    def run_glance(self, name: str, image: str, who: dict[str, str]) -> dict[str, Any]:
        """``openstack appcontainer run --image-driver glance``, then the container as the
        API shows it once it left Creating (what ``appcontainer show`` would print).

        Waited for through the API: the CLI's own ``--wait`` polls every 5 s and each
        ``show`` is another CLI run."""
        self.cli.run(
            "appcontainer", "run", "--image-driver", "glance", "--name", name,
            image, "sleep", "600", **who,
        )  # fmt: skip

        def started() -> dict[str, Any] | None:
            shown: dict[str, Any] = self.rest("GET", f"/container/v1/containers/{name}", who)
            assert shown["status"] != "Error", shown
            return shown if shown["status"] == "Running" else None

        return wait_until(started, 300, f"{name} running")

    def containers(self, who: dict[str, str]) -> list[dict[str, Any]]:
        """``who``'s containers, from the API (for waits and checks between CLI steps)."""
        found: list[dict[str, Any]] = self.rest("GET", "/container/v1/containers", who)[
            "containers"
        ]
        return found

    def glance_images(self, who: dict[str, str]) -> set[str]:
        """The names of the images Glance lists to ``who`` (its own API, as the CLI asks)."""
        token = self.keystone.token(who["user"], who["password"], who["project"])
        r = httpx.get(f"{self.glance.url}/v2/images", headers={"X-Auth-Token": token},
                      timeout=30)  # fmt: skip
        assert r.status_code == 200, r.text
        return {i["name"] for i in r.json()["images"]}


def _register(ks: KeystoneServer, settings: dict[str, str], work: Path) -> None:
    """``berth openstack register`` as the cloud's admin, as the Keystone module does."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "BERTH_"))}
    env.update(settings)
    env.update(
        OS_AUTH_URL=f"{ks.url}/v3",
        OS_USERNAME="admin",
        OS_PASSWORD=ADMIN_PASSWORD,
        OS_PROJECT_NAME="admin",
        HOME=str(work),
    )
    done = subprocess.run(
        [sys.executable, "-c", "from berth.cli.main import app; app()", "openstack", "register"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, docker_api: Any) -> Iterator[World]:
    work = tmp_path_factory.mktemp("compat-glance")
    host = f"gl-{uuid.uuid4().hex[:8]}"
    archive = work / "busybox.tar"
    with archive.open("wb") as out:
        for chunk in docker_api.get_image(TEST_IMAGE):
            out.write(chunk)
    try:
        with contextlib.ExitStack() as stack:
            ks = stack.enter_context(keystone_server(work / "keystone", ADMIN_PASSWORD))
            gl = stack.enter_context(glance_server(work / "glance", ks))
            port = free_port()
            settings = {
                "BERTH_IDENTITY_BACKEND": "keystone",
                "BERTH_KEYSTONE_URL": ks.url,
                "BERTH_KEYSTONE_SERVICE_PASSWORD": SERVICE_PW,
                "BERTH_AGENT_PASSWORD": AGENT_PW,
                "BERTH_GLANCE_URL": gl.url,
                "BERTH_PUBLIC_URL": f"http://127.0.0.1:{port}",
            }
            _register(ks, settings, work)
            cli = Cli("", work, auth_url=f"{ks.url}/v3")
            # As Zun's install guide has it for its user: admin in the service project.
            # (Through the identity API: ``role add`` is under test in the Keystone module.)
            cli.grant("berth", "service", "admin")
            # Members run clusters here, as an operator's policy file allows.
            policy = str(open_clusters_file(work))
            env = all_in_one_env(work, host, ADMIN_PASSWORD, BERTH_POLICY_FILE=policy, **settings)
            api = stack.enter_context(live_api(env, workdir=work / "api", port=port))
            cli.base_url = api.base_url
            cli.add_member("gl-a", "gl-alice", PW)
            cli.add_member("gl-b", "gl-bob", PW)
            yield World(ks, gl, cli, work, host, archive)
    finally:
        remove_owned(docker_api, host)
        remove_owned_networking(docker_api, host)
        with contextlib.suppress(Exception):
            for ref in docker_api.images(name="berth-glance/*"):
                for tag in ref.get("RepoTags") or []:
                    if tag.startswith("berth-glance/"):
                        docker_api.remove_image(tag)


@pytest.mark.timeout(900)  # the module's Keystone, Glance and Berth start on this test's clock
def test_a_glance_image_runs_by_name_and_by_id(world: World, docker_api: Any) -> None:
    image = world.upload("gl-busybox", ALICE)
    shown = world.run_glance("gl-by-name", "gl-busybox", ALICE)
    assert shown["status"] == "Running", shown
    assert shown["image_driver"] == "glance"
    out = world.alice("appcontainer", "exec", "gl-by-name", "echo", "hello-from-glance").stdout
    assert "hello-from-glance" in out
    # Loaded once on the host, named by Glance's id and checksum.
    local = f"berth-glance/{image['id']}:{image['checksum']}"
    assert docker_api.inspect_image(local)["Id"]
    # Glance's copy of the data goes: the second container can only run from the host's.
    (world.glance.workdir / "images" / image["id"]).unlink()
    by_id = world.run_glance("gl-by-id", image["id"], ALICE)
    assert by_id["status"] == "Running", by_id
    for name in ("gl-by-name", "gl-by-id"):
        world.alice("appcontainer", "delete", "--stop", name)


def test_another_projects_private_image_is_not_found(world: World) -> None:
    image = world.upload("gl-private", ALICE, "--private")
    for ident in ("gl-private", image["id"]):
        proc = world.bob(
            "appcontainer", "run", "--image-driver", "glance", "--name", "gl-nope", ident,
            check=False,
        )  # fmt: skip
        assert proc.returncode != 0
        assert f"Image {ident} {NOT_FOUND}" in proc.stderr, proc.stderr
    assert world.cli.json("appcontainer", "list", **BOB) == []


def test_a_shared_image_is_visible_once_accepted(world: World) -> None:
    image = world.upload("gl-shared", ALICE, "--shared")
    bob_project = world.cli.project_id("gl-b")
    world.alice("image", "add", "project", image["id"], bob_project)
    # Shared but not yet accepted: Glance lists it for bob only by id.
    world.bob("image", "set", "--accept", image["id"])
    shown = world.run_glance("gl-bob-shared", image["id"], BOB)
    assert shown["status"] == "Running", shown
    world.bob("appcontainer", "delete", "--stop", "gl-bob-shared")


def test_commit_uploads_to_glance_and_the_image_runs_again(world: World) -> None:
    world.run_glance("gl-to-commit", "gl-busybox", ALICE)
    world.alice("appcontainer", "exec", "gl-to-commit", "touch", "/committed-here")
    world.alice("appcontainer", "commit", "gl-to-commit", "gl-committed:v1")
    listed = {i["Name"]: i for i in world.cli.json("image", "list", **ALICE)}
    assert "gl-committed" in listed, listed
    image = world.cli.json("image", "show", "gl-committed", **ALICE)
    assert (image["container_format"], image["disk_format"]) == ("docker", "raw"), image
    assert image["status"] == "active" and image["size"] > 0, image
    assert image["owner"] == world.cli.project_id("gl-a")
    # Bob's project does not see it; Alice's next container runs it, with the file.
    assert "gl-committed" not in world.glance_images(BOB)
    world.run_glance("gl-from-commit", image["id"], ALICE)
    out = world.alice("appcontainer", "exec", "gl-from-commit", "ls", "/committed-here").stdout
    assert "/committed-here" in out
    for name in ("gl-to-commit", "gl-from-commit"):
        world.alice("appcontainer", "delete", "--stop", name)


def test_a_cluster_template_names_a_glance_image_as_magnum_checks_it(world: World) -> None:
    image = world.upload("gl-node", ALICE, "--property", "os_distro=busybox")
    plain = world.upload("gl-plain", ALICE)
    world.alice(
        "coe", "cluster", "template", "create", "gl-tpl", "--coe", "swarm-mode",
        "--image", image["id"], "--external-network", "public",
    )  # fmt: skip
    made = world.cli.json("coe", "cluster", "template", "show", "gl-tpl", **ALICE)
    assert made["image_id"] == image["id"], made
    for ident, words in (
        (plain["id"], f"Image {plain['id']} doesn't contain os_distro field."),
        (str(uuid.uuid4()), "could not be found."),
    ):
        proc = world.alice(
            "coe", "cluster", "template", "create", "gl-bad", "--coe", "swarm-mode",
            "--image", ident, "--external-network", "public", check=False,
        )  # fmt: skip
        assert proc.returncode != 0 and words in proc.stderr, proc.stderr
    # Bob's project does not see Alice's private node image in Glance.
    proc = world.bob(
        "coe", "cluster", "template", "create", "gl-bob", "--coe", "swarm-mode",
        "--image", image["id"], "--external-network", "public", check=False,
    )  # fmt: skip
    assert proc.returncode != 0 and "could not be found." in proc.stderr, proc.stderr


SWARM_NODE = "berth/swarm-node:latest"


@pytest.mark.timeout(1200)  # a 400 MB upload and load, then create (minutes on a loaded machine)
def test_a_swarm_clusters_nodes_run_the_templates_glance_image(
    world: World, docker_api: Any
) -> None:
    try:
        docker_api.inspect_image(SWARM_NODE)
    except Exception:
        pytest.fail(f"{SWARM_NODE} is missing: run scripts/lib.sh build_swarm_node_image")
    archive = world.work / "swarm-node.tar"
    with archive.open("wb") as out:
        for chunk in docker_api.get_image(SWARM_NODE):
            out.write(chunk)
    image: dict[str, Any] = world.cli.json(
        "image", "create", "--container-format", "docker", "--disk-format", "raw",
        "--file", str(archive), "--property", "os_distro=debian", "gl-swarm-node", **ALICE,
    )  # fmt: skip
    archive.unlink()
    world.alice(
        "coe", "cluster", "template", "create", "gl-swarm-tpl", "--coe", "swarm-mode",
        "--image", "gl-swarm-node", "--external-network", "public",
        "--flavor", "m1.small", "--master-flavor", "m1.small",
    )  # fmt: skip
    world.alice(
        "coe", "cluster", "create", "gl-swarm", "--cluster-template", "gl-swarm-tpl",
        "--master-count", "1", "--node-count", "1", "--timeout", "15",
    )  # fmt: skip

    magnum = "container-infra latest"

    def complete() -> dict[str, Any] | None:  # polled through the API, not a CLI run a second
        shown: dict[str, Any] = world.rest(
            "GET", "/container-infra/v1/clusters/gl-swarm", ALICE, version=magnum
        )
        assert not shown["status"].endswith("_FAILED"), shown
        return shown if shown["status"] == "CREATE_COMPLETE" else None

    shown = wait_until(complete, 600, "gl-swarm CREATE_COMPLETE", poll=0.5)
    assert len(shown["master_addresses"]) == 1 and len(shown["node_addresses"]) == 1
    # The nodes are Alice's containers running the Glance image, loaded once on the host.
    details = world.containers(ALICE)
    nodes = [d for d in details if (d.get("labels") or {}).get("berth.cluster") == shown["uuid"]]
    assert len(nodes) == 2, details
    for node in nodes:
        assert (node["image"], node["image_driver"]) == ("gl-swarm-node", "glance"), node
    assert docker_api.inspect_image(f"berth-glance/{image['id']}:{image['checksum']}")["Id"]
    world.alice("coe", "cluster", "delete", "gl-swarm")
    wait_until(
        lambda: world.rest("GET", "/container-infra/v1/clusters", ALICE, version=magnum)[
            "clusters"
        ] == [],
        300, "deleted", poll=0.5,
    )  # fmt: skip
    world.alice("coe", "cluster", "template", "delete", "gl-swarm-tpl")


def test_rebuild_onto_another_glance_image(world: World) -> None:
    first = world.upload("gl-rb-1", ALICE)
    world.run_glance("gl-rebuilt", first["id"], ALICE)
    other = world.upload("gl-rb-2", ALICE)
    secret = world.upload("gl-bob-secret", BOB, "--private")
    proc = world.alice(
        "appcontainer", "rebuild", "--image", secret["id"], "--image-driver", "glance",
        "gl-rebuilt", check=False,
    )  # fmt: skip
    # The CLI prints the refusal (it exits 0 after a failed rebuild, as zunclient does).
    assert f"Image {secret['id']} {NOT_FOUND}" in proc.stdout + proc.stderr
    world.alice("appcontainer", "rebuild", "--image", other["id"], "--image-driver", "glance",
                "gl-rebuilt")  # fmt: skip

    def rebuilt() -> dict[str, Any] | None:  # polled through the API
        shown: dict[str, Any] = world.rest("GET", "/container/v1/containers/gl-rebuilt", ALICE)
        return shown if shown["status"] == "Running" and shown["image"] == other["id"] else None

    deadline = time.monotonic() + 120
    while not rebuilt():
        assert time.monotonic() < deadline, "gl-rebuilt not running on its new image"
        time.sleep(0.2)
    world.alice("appcontainer", "delete", "--stop", "gl-rebuilt")


def test_a_missing_image_and_a_non_docker_image_are_not_found(world: World) -> None:
    proc = world.alice(
        "appcontainer", "run", "--image-driver", "glance", "--name", "gl-none", "no-such-image",
        check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert f"Image no-such-image {NOT_FOUND}" in proc.stderr, proc.stderr


def test_glance_down_is_503_not_500(world: World) -> None:
    world.glance.stop()
    try:
        proc = world.alice(
            "appcontainer", "run", "--image-driver", "glance", "--name", "gl-down", "gl-busybox",
            check=False,
        )  # fmt: skip
        assert proc.returncode != 0
        assert "503" in proc.stderr or "Glance" in proc.stderr, proc.stderr
        # Not "500" anywhere: a request id (req-<hex>) holds it now and then.
        assert "HTTP 500" not in proc.stderr and "(500)" not in proc.stderr, proc.stderr
    finally:
        world.glance.start()
    # Nothing was stored for the refused create.
    assert "gl-down" not in [c["name"] for c in world.containers(ALICE)]
