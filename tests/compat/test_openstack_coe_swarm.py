"""Acceptance: real swarm-mode clusters through the unmodified ``openstack coe`` CLI.

One live all-in-one Berth (embedded agent, the local Docker engine) and one
cluster (1 master + 2 workers, Docker-in-Docker nodes from the
``berth/swarm-node`` image) serve the whole module, in order: create, cluster
config + ``docker node ls``, a replicated service pulled from a local registry
the template names, tenancy, health per node, resize up and down (drained), node
group add and delete, self-healing of a killed node, CA rotation, upgrade to a
newer node image, delete. The ``docker`` CLI talks to the cluster exactly as
a user would, with the files ``openstack coe cluster config`` wrote.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.compat.oscli import ADMIN_PASSWORD, Cli
from tests.functional.docker_engine import remove_owned
from tests.functional.registry import local_registry
from tests.helpers import open_clusters_file
from tests.live import all_in_one_env, live_server

pytestmark = [pytest.mark.compat, pytest.mark.docker, pytest.mark.slow]

PW = "member-pw-123"
NODE_IMAGE = "berth/swarm-node:1"
NODE_IMAGE_NEXT = "berth/swarm-node:2"  # the upgrade target: a second tag of the same image
CLUSTER_LABEL = "berth.cluster"
ALICE = {"user": "swarm-alice", "password": PW, "project": "swarm-a"}
BOB = {"user": "swarm-bob", "password": PW, "project": "swarm-b"}


class World:
    def __init__(self, cli: Cli, engine: Any, registry: str, work: Path) -> None:
        self.cli, self.engine, self.registry, self.work = cli, engine, registry, work
        self.cluster: dict[str, Any] = {}
        self._certs: Path | None = None

    def alice(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.cli.run(*args, check=check, **ALICE)

    def alice_json(self, *args: str) -> Any:
        return self.cli.json(*args, **ALICE)

    def bob(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.cli.run(*args, check=False, **BOB)

    def show(self, name: str = "swarm1") -> dict[str, Any]:
        """``openstack coe cluster show`` (the CLI's view, for the checks of what it prints)."""
        shown: dict[str, Any] = self.alice_json("coe", "cluster", "show", name)
        return shown

    def rest(self, method: str, path: str) -> Any:
        """``method path`` on the cluster API as alice, direct: for the waits in between
        the CLI's steps (each ``openstack`` run costs a second or more of CPU)."""
        r = self.cli.rest(
            method, f"/container-infra/v1{path}", version="container-infra 1.14", **ALICE
        )
        assert r.status_code == 200, f"{method} {path}: {r.status_code} {r.text}"
        return r.json()

    def poll(self, name: str = "swarm1") -> dict[str, Any]:
        """The cluster as the API shows it (the body ``coe cluster show`` prints)."""
        shown: dict[str, Any] = self.rest("GET", f"/clusters/{name}")
        return shown

    def containers_api(self, path: str) -> Any:
        """``GET path`` on the container API as alice, direct (a lookup, not under test)."""
        r = self.cli.rest("GET", f"/container/v1{path}", **ALICE)
        assert r.status_code == 200, f"GET {path}: {r.status_code} {r.text}"
        return r.json()

    def containers(self) -> list[dict[str, Any]]:
        """alice's containers as the API lists them (``appcontainer list`` without the CLI)."""
        found: list[dict[str, Any]] = self.containers_api("/containers")["containers"]
        return found

    def wait(self, want: str, name: str = "swarm1", timeout: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        shown: dict[str, Any] = {}
        while time.monotonic() < deadline:
            shown = self.poll(name)
            if shown["status"] == want:
                return shown
            if shown["status"].endswith("_FAILED"):
                break
            time.sleep(0.5)
        raise AssertionError(f"cluster {name} never reached {want}: {shown}")

    def node_containers(self) -> list[dict[str, Any]]:
        uid = self.cluster["uuid"]
        found: list[dict[str, Any]] = self.engine.containers(
            all=True, filters={"label": f"{CLUSTER_LABEL}={uid}"}
        )
        return found

    def nodes_left(self, count: int, timeout: float = 1) -> list[dict[str, Any]]:
        """The node containers, asserted to be ``count`` in the engine.

        A removed node counts as removed once its host removed the container: when
        the cluster is UPDATE_COMPLETE (or gone from the list) the engine has none
        of them left (1 s for the engine's own list to catch up; it took up to 30 s
        when COMPLETE followed the request to remove).
        """
        deadline = time.monotonic() + timeout
        found = self.node_containers()
        while len(found) != count and time.monotonic() < deadline:
            time.sleep(0.2)
            found = self.node_containers()
        assert len(found) == count, found
        return found

    def config(self, name: str) -> Path:
        """``openstack coe cluster config --dir D --output-certs``: ca.pem, cert.pem, key.pem."""
        target = self.work / name
        target.mkdir()
        out = self.alice(
            "coe", "cluster", "config", "swarm1", "--dir", str(target), "--output-certs"
        ).stdout
        assert "DOCKER_HOST" in out
        self._certs = target
        return target

    def certs(self) -> Path:
        """The client certificates ``config`` wrote last (until a CA rotation they all
        work alike: one ``coe cluster config`` run less per test), else new ones."""
        return self._certs or self.config("config")

    def docker(
        self, certs: Path, *args: str, check: bool = True, host: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """The docker CLI as a user of the cluster (DOCKER_HOST from api_address)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env.update(
            DOCKER_HOST=host or self.poll()["api_address"],
            DOCKER_CERT_PATH=str(certs),
            DOCKER_TLS_VERIFY="1",
            HOME=str(self.work),
        )
        proc = subprocess.run(
            ["docker", *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        if check:
            assert proc.returncode == 0, f"docker {' '.join(args)}:\n{proc.stderr}"
        return proc

    def swarm_nodes(self, certs: Path) -> list[dict[str, Any]]:
        out = self.docker(certs, "node", "ls", "--format", "{{json .}}").stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]


def _bridge_gateway(engine: Any) -> str:
    """The host's address on Docker's default bridge (nodes reach the host through it)."""
    config = engine.inspect_network("bridge")["IPAM"]["Config"][0]
    if config.get("Gateway"):
        return str(config["Gateway"])
    return str(next(ipaddress.ip_network(config["Subnet"]).hosts()))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, docker_api: Any) -> Iterator[World]:
    # Docker only (tests/compat/conftest.py): the swarm driver's nodes are Docker containers.
    engine = docker_api
    try:
        engine.inspect_image(NODE_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"{NODE_IMAGE} is missing: run scripts/lib.sh build_swarm_node_image")
    work = tmp_path_factory.mktemp("compat-swarm")
    host = f"swarm-{uuid.uuid4().hex[:8]}"
    env = all_in_one_env(
        work,
        host,
        ADMIN_PASSWORD,
        # Members run clusters here, as an operator's policy file allows (admin-only by default).
        BERTH_POLICY_FILE=str(open_clusters_file(work)),
        BERTH_CLUSTER_HEALTH_INTERVAL="3",
    )
    try:
        with contextlib.ExitStack() as stack:
            registry = stack.enter_context(local_registry(bind="0.0.0.0"))
            # The nodes pull from the registry through the bridge's gateway: the operator
            # lists it, which also opens its port in the host guard.
            port = registry.rsplit(":", 1)[1]
            node_side = f"{_bridge_gateway(engine)}:{port}"
            env["BERTH_IMAGE_REGISTRY_ALLOWLIST"] = json.dumps([node_side])
            base_url = stack.enter_context(live_server(env))
            engine.tag("berth-test/busybox:latest", f"{registry}/busybox", "latest")
            for line in engine.push(f"{registry}/busybox", "latest", stream=True, decode=True):
                assert "error" not in line, line
            engine.remove_image(f"{registry}/busybox:latest")
            cli = Cli(base_url, work)
            for project, user in (("swarm-a", "swarm-alice"), ("swarm-b", "swarm-bob")):
                cli.add_member(project, user, PW)
            yield World(cli, engine, node_side, work)
    finally:
        remove_owned(engine, host)
        with contextlib.suppress(docker.errors.APIError):
            engine.remove_image(NODE_IMAGE_NEXT)  # only the upgrade test's extra tag


def test_create_three_node_cluster(world: World) -> None:
    out = world.alice(
        "coe", "cluster", "template", "create", "swarm-tpl",
        "--coe", "swarm-mode", "--image", NODE_IMAGE, "--external-network", "public",
        "--flavor", "m1.small", "--master-flavor", "m1.small",
        "--insecure-registry", world.registry,
    ).stdout  # fmt: skip
    assert "swarm-tpl" in out
    started = time.monotonic()
    world.alice(
        "coe", "cluster", "create", "swarm1", "--cluster-template", "swarm-tpl",
        "--master-count", "1", "--node-count", "2", "--timeout", "10",
        "--labels", "auto_healing_enabled=true",
    )  # fmt: skip
    world.wait("CREATE_COMPLETE")
    print(f"swarm1: CREATE_COMPLETE after {time.monotonic() - started:.1f} s")
    shown = world.show()  # what the CLI prints, once complete
    assert shown["status"] == "CREATE_COMPLETE"
    world.cluster = shown
    assert shown["api_address"].startswith("tcp://") and shown["api_address"].endswith(":2376")
    assert len(shown["master_addresses"]) == 1 and len(shown["node_addresses"]) == 2
    assert shown["coe_version"]
    # The nodes are Berth containers in alice's project, running with the DinD profile.
    nodes = world.node_containers()
    assert len(nodes) == 3 and all(c["State"] == "running" for c in nodes)
    host_config = world.engine.inspect_container(nodes[0]["Id"])["HostConfig"]
    assert host_config["CapAdd"] == ["ALL"] and host_config["CgroupnsMode"] == "host"
    assert not host_config["Privileged"]
    listed = world.alice_json("appcontainer", "list")
    assert len([c for c in listed if c["name"].startswith(shown["uuid"][:8])]) == 3


def test_cluster_config_lists_every_node(world: World) -> None:
    certs = world.config("config-1")
    assert {p.name for p in certs.iterdir()} >= {"ca.pem", "cert.pem", "key.pem"}
    nodes = world.swarm_nodes(certs)
    assert len(nodes) == 3
    assert all(n["Status"] == "Ready" for n in nodes)
    assert sum(1 for n in nodes if n["ManagerStatus"] == "Leader") == 1
    # The master's 2376 is also published on the host; its certificate names 127.0.0.1.
    master = next(c for c in world.containers() if "-default-master-" in c["name"])
    ports = world.containers_api(f"/containers/{master['uuid']}")["ports"]
    assert ports, master
    published = world.docker(
        certs, "node", "ls", "-q", host=f"tcp://127.0.0.1:{ports[0]}"
    ).stdout.split()
    assert len(published) == 3


def _service_tasks(world: World, certs: Path, service: str) -> list[dict[str, Any]]:
    out = world.docker(
        certs, "service", "ps", service, "--filter", "desired-state=running",
        "--format", "{{json .}}",
    ).stdout  # fmt: skip
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _wait_running(world: World, certs: Path, service: str, replicas: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 120
    tasks: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        tasks = _service_tasks(world, certs, service)
        if len(tasks) == replicas and all(t["CurrentState"].startswith("Running") for t in tasks):
            return tasks
        time.sleep(0.5)
    every = world.docker(certs, "service", "ps", "--no-trunc", service, check=False)
    raise AssertionError(f"{service} never had {replicas} running tasks:\n{every.stdout}")


def test_replicated_service_spreads_across_nodes(world: World) -> None:
    certs = world.certs()
    image = f"{world.registry}/busybox:latest"
    world.docker(
        certs, "service", "create", "--detach", "--name", "web", "--replicas", "3",
        image, "sleep", "3600",
    )  # fmt: skip
    tasks = _wait_running(world, certs, "web", 3)
    # Every node pulled the image from the template's registry and runs one replica.
    assert len({t["Node"] for t in tasks}) == 3


def test_another_project_sees_and_touches_nothing(world: World) -> None:
    uid, name = world.cluster["uuid"], "swarm1"
    assert world.cli.json("coe", "cluster", "list", **BOB) == []
    for args in (
        ("coe", "cluster", "show", name),
        ("coe", "cluster", "show", uid),
        ("coe", "ca", "show", uid),
        ("coe", "cluster", "resize", uid, "5"),
    ):
        proc = world.bob(*args)
        assert proc.returncode != 0 and "could not be found" in proc.stderr, args
    proc = world.bob("coe", "cluster", "delete", uid)
    assert "could not be found" in proc.stdout + proc.stderr
    # The node containers belong to alice's project: bob neither lists nor deletes them.
    nodes = [c["Names"][0] for c in world.node_containers()]
    assert nodes
    assert world.cli.json("appcontainer", "list", **BOB) == []
    node_name = world.containers()[0]["name"]
    proc = world.bob("appcontainer", "delete", "--force", node_name)
    assert "could not be found" in proc.stdout + proc.stderr  # (the stock command exits 0)
    assert len(world.node_containers()) == 3
    assert world.poll()["status"] == "CREATE_COMPLETE"


def _wait_health(world: World, want: str, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    shown: dict[str, Any] = {}
    while time.monotonic() < deadline:
        shown = world.poll()
        if shown["health_status"] == want and shown["status"].endswith("_COMPLETE"):
            return shown
        time.sleep(0.5)
    raise AssertionError(f"health never became {want}: {shown}")


def test_health_is_polled_per_node(world: World) -> None:
    shown = _wait_health(world, "HEALTHY")
    reasons = shown["health_status_reason"]
    nodes = [n for n in reasons if n != "api"]
    assert reasons["api"] == "ok" and len(nodes) == 3
    assert all(reasons[n] == "Ready" for n in nodes)


def test_resize_up_then_down_drains_removed_nodes(world: World) -> None:
    certs = world.certs()
    world.alice("coe", "cluster", "resize", "swarm1", "3")
    shown = world.wait("UPDATE_COMPLETE")
    assert len(shown["node_addresses"]) == 3
    assert len(world.swarm_nodes(certs)) == 4 and len(world.node_containers()) == 4
    # Down to one worker, naming the two to remove (the stock --nodes-to-remove):
    # the lowest two go, so the survivor is worker 2, not the usual worker 0.
    workers = sorted(
        n["Hostname"] for n in world.swarm_nodes(certs) if "-default-worker-" in n["Hostname"]
    )
    gone = [w for w in workers if "-default-worker-2-" not in w]
    assert len(gone) == 2
    world.alice(
        "coe", "cluster", "resize", "swarm1", "1",
        "--nodes-to-remove", gone[0], "--nodes-to-remove", gone[1],
    )  # fmt: skip
    shown = world.wait("UPDATE_COMPLETE")
    assert len(shown["node_addresses"]) == 1
    nodes = world.swarm_nodes(certs)
    assert len(nodes) == 2 and all(n["Status"] == "Ready" for n in nodes)
    assert [n["Hostname"] for n in nodes if "-default-worker-" in n["Hostname"]] == [
        w for w in workers if w not in gone
    ]
    world.nodes_left(2)
    # The removed nodes were drained: their replicas run on the nodes that remain.
    tasks = _wait_running(world, certs, "web", 3)
    assert {t["Node"] for t in tasks} <= {n["Hostname"] for n in nodes}


def test_node_group_add_and_delete(world: World) -> None:
    certs = world.certs()
    world.alice(
        "coe", "nodegroup", "create", "swarm1", "extra", "--node-count", "1",
        "--node-labels", "disk=ssd",
    )  # fmt: skip
    world.wait("UPDATE_COMPLETE")
    groups = {g["name"]: g for g in world.alice_json("coe", "nodegroup", "list", "swarm1")}
    assert groups["extra"]["status"] == "CREATE_COMPLETE"
    names = sorted(n["Hostname"] for n in world.swarm_nodes(certs))
    assert len(names) == 3 and sum("-extra-0-" in n for n in names) == 1
    # The group's node labels are swarm node labels (for --constraint node.labels.disk==ssd).
    extra = next(n for n in names if "-extra-0-" in n)
    assert _node_labels(world, certs, extra)["disk"] == "ssd"
    assert _node_labels(world, certs, extra)["berth.nodegroup"] == "extra"
    assert "disk" not in _node_labels(world, certs, next(n for n in names if n != extra))
    world.alice("coe", "nodegroup", "update", "swarm1", "extra", "--node-labels", "tier=2")
    world.wait("UPDATE_COMPLETE")
    labels = _node_labels(world, certs, extra)  # the same node, relabelled in place
    assert labels["tier"] == "2" and "disk" not in labels
    # The new node runs the workload too once the swarm rebalances; it is Ready now.
    assert all(n["Status"] == "Ready" for n in world.swarm_nodes(certs))
    world.alice("coe", "nodegroup", "delete", "swarm1", "extra")
    world.wait("UPDATE_COMPLETE")
    names = sorted(n["Hostname"] for n in world.swarm_nodes(certs))
    assert len(names) == 2 and not any("-extra-" in n for n in names)
    world.nodes_left(2)
    _wait_running(world, certs, "web", 3)


def _node_labels(world: World, certs: Path, node: str) -> dict[str, str]:
    out = world.docker(certs, "node", "inspect", node, "--format", "{{json .Spec.Labels}}").stdout
    return dict(json.loads(out) or {})


def test_a_dead_node_is_healed(world: World) -> None:
    certs = world.certs()
    worker = next(
        c
        for c in world.node_containers()
        if "-default-worker-" in world.engine.inspect_container(c["Id"])["Config"]["Hostname"]
    )
    world.engine.kill(worker["Id"])
    # The health poll sees the dead node; auto_healing_enabled=true replaces it.
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        ids = {c["Id"] for c in world.node_containers()}
        healed = worker["Id"] not in ids and len(ids) == 2
        if healed and world.poll()["status"] == "UPDATE_COMPLETE":
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"the dead node was not replaced: {world.poll()}")
    _wait_health(world, "HEALTHY")
    nodes = world.swarm_nodes(certs)
    assert len(nodes) == 2 and all(n["Status"] == "Ready" for n in nodes)
    _wait_running(world, certs, "web", 3)


def test_ca_rotate_refuses_old_client_certificates(world: World) -> None:
    old = world.certs()
    old_ca = world.alice("coe", "ca", "show", "swarm1").stdout
    world.alice("coe", "ca", "rotate", "swarm1")
    world.wait("UPDATE_COMPLETE")
    assert world.alice("coe", "ca", "show", "swarm1").stdout != old_ca
    new = world.config("config-after-rotate")
    nodes = world.swarm_nodes(new)
    assert len(nodes) == 2 and all(n["Status"] == "Ready" for n in nodes)
    # Every node now runs with the new CA: the old client certificate is refused.
    refused = world.docker(old, "node", "ls", check=False)
    assert refused.returncode != 0
    # The workload survived the rolling replacement.
    _wait_running(world, new, "web", 3)


def test_upgrade_to_a_newer_node_image(world: World) -> None:
    world.engine.tag(NODE_IMAGE, NODE_IMAGE_NEXT.split(":")[0], NODE_IMAGE_NEXT.split(":")[1])
    world.alice(
        "coe", "cluster", "template", "create", "swarm-tpl-2",
        "--coe", "swarm-mode", "--image", NODE_IMAGE_NEXT, "--external-network", "public",
        "--flavor", "m1.small", "--master-flavor", "m1.small",
        "--insecure-registry", world.registry,
    )  # fmt: skip
    before = {c["Id"] for c in world.node_containers()}
    out = world.alice("coe", "cluster", "upgrade", "swarm1", "swarm-tpl-2").stdout
    assert "accepted" in out
    world.wait("UPDATE_COMPLETE")
    after = world.nodes_left(2)
    assert len(after) == 2 and not before & {c["Id"] for c in after}
    assert all(c["Image"] == NODE_IMAGE_NEXT for c in after)
    certs = world.config("config-after-upgrade")
    assert len(world.swarm_nodes(certs)) == 2
    _wait_running(world, certs, "web", 3)


def test_delete_leaves_nothing_behind(world: World) -> None:
    uid = world.cluster["uuid"]
    world.alice("coe", "cluster", "delete", "swarm1")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if world.rest("GET", "/clusters")["clusters"] == []:
            break
        time.sleep(0.5)
    else:
        raise AssertionError("the cluster was never deleted")
    assert world.alice_json("coe", "cluster", "list") == []
    assert world.nodes_left(0) == []
    assert world.alice_json("appcontainer", "list") == []
    proc = world.alice("coe", "ca", "show", uid, check=False)
    assert proc.returncode != 0 and "could not be found" in proc.stderr
    # Docker-in-Docker nodes kept their data on tmpfs: no volume is left either.
    assert not [v for v in world.engine.volumes()["Volumes"] or [] if uid[:8] in v["Name"]]
