"""The stock ``openstack coe`` CLI for node groups, resize/upgrade, quotas and services.

The live server gets a cluster driver the way an operator installs one: a
distribution on the path whose ``berth.cluster_drivers`` entry point names it.
This one runs no nodes (the real swarm-mode driver has its own tests); it writes
down each ``ClusterSpec`` it is handed, so the test sees what the driver would build.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.compat.oscli import ADMIN_PASSWORD, OPENSTACK, Cli
from tests.helpers import open_clusters_file
from tests.live import live_server

pytestmark = [pytest.mark.compat, pytest.mark.slow]

PW = "member-pw-123"
ALICE = {"user": "ng-alice", "password": PW, "project": "ng-a"}
BOB = {"user": "ng-bob", "password": PW, "project": "ng-b"}

_DRIVER = """
import json, os
from dataclasses import asdict
from berth.clusters import DriverInfo, Outcome


class SpecRecorder:
    info = DriverInfo("spec-recorder", "vm", "debian", "swarm-mode", "0.1")

    async def create(self, spec, nodes, report):
        with open(os.environ["COMPAT_SPEC_LOG"], "a") as out:
            groups = [asdict(g) for g in spec.nodegroups]
            out.write(json.dumps({"cluster": spec.name, "nodegroups": groups}) + "\\n")
        await report(f"{len(spec.nodegroups)} node groups converged")
        return Outcome("tcp://127.0.0.1:2376", ("m0",), ("w0",), "24.0", "24.0")

    update = create

    async def delete(self, spec, nodes, report):
        return None


def factory():
    return SpecRecorder()
"""


def _install_driver(where: Path) -> None:
    where.mkdir(parents=True)
    (where / "berth_spec_recorder.py").write_text(_DRIVER)
    meta = where / "berth_spec_recorder-0.1.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: berth-spec-recorder\nVersion: 0.1\n"
    )
    (meta / "entry_points.txt").write_text(
        "[berth.cluster_drivers]\nspec-recorder = berth_spec_recorder:factory\n"
    )


class World:
    def __init__(self, cli: Cli, spec_log: Path) -> None:
        self.cli, self.spec_log = cli, spec_log
        self.http = httpx.Client(base_url=cli.base_url, timeout=30)
        self.tokens: dict[str, str] = {}

    def token(self, who: dict[str, str]) -> str:
        if who["user"] not in self.tokens:
            scope = {"project": {"name": who["project"], "domain": {"name": "Default"}}}
            user = {"name": who["user"], "domain": {"name": "Default"}, "password": who["password"]}
            body = {
                "auth": {
                    "identity": {"methods": ["password"], "password": {"user": user}},
                    "scope": scope,
                }
            }
            r = self.http.post("/identity/v3/auth/tokens", json=body)
            assert r.status_code == 201, r.text
            self.tokens[who["user"]] = r.headers["x-subject-token"]
        return self.tokens[who["user"]]

    def cluster(self, who: dict[str, str], name: str) -> dict[str, Any] | None:
        r = self.http.get(
            f"/container-infra/v1/clusters/{name}",
            headers={"X-Auth-Token": self.token(who)},
        )
        return r.json() if r.status_code == 200 else None  # type: ignore[no-any-return]

    def settle(self, who: dict[str, str], name: str, status: str) -> dict[str, Any]:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            shown = self.cluster(who, name)
            if shown is not None and not shown["status"].endswith("_IN_PROGRESS"):
                assert shown["status"] == status, shown
                return shown
            time.sleep(0.3)
        raise AssertionError(f"cluster {name} did not reach {status}: {self.cluster(who, name)}")

    def last_spec(self) -> dict[str, Any]:
        lines = self.spec_log.read_text().splitlines()
        return json.loads(lines[-1])  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    if not OPENSTACK.exists():
        pytest.fail(f"{OPENSTACK} is missing: install the test extras")
    work = tmp_path_factory.mktemp("compat-coe-ng")
    _install_driver(work / "driver")
    spec_log = work / "specs.jsonl"
    env = {
        "BERTH_DATA_DIR": str(work / "data"),
        "BERTH_DATABASE_URL": f"sqlite+aiosqlite:///{work / 'berth.db'}",
        "BERTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
        # Members run clusters here, as an operator's policy file allows (admin-only by default).
        "BERTH_POLICY_FILE": str(open_clusters_file(work)),
        "BERTH_HEARTBEAT_INTERVAL": "1",
        "PYTHONPATH": os.pathsep.join([str(work / "driver"), os.environ.get("PYTHONPATH", "")]),
        "COMPAT_SPEC_LOG": str(spec_log),
    }
    with live_server(env) as base_url:
        c = Cli(base_url, work)
        for who in (ALICE, BOB):
            c.add_member(who["project"], who["user"], PW)
        w = World(c, spec_log)
        yield w
        w.http.close()


def test_nodegroups_resize_and_upgrade(world: World) -> None:
    cli = world.cli
    for name, image in (("ng-tpl", "node-v1"), ("ng-tpl-v2", "node-v2")):
        cli.run(
            "coe", "cluster", "template", "create", name, "--coe", "swarm-mode",
            "--image", image, "--external-network", "public", "--keypair", "mykey",
            "--driver", "spec-recorder",
            "--flavor", "m1.small", "--master-flavor", "m1.medium", **ALICE,
        )  # fmt: skip
    proc = cli.run(
        "coe", "cluster", "create", "--cluster-template", "ng-tpl", "--flavor", "huge", "bad",
        check=False, **ALICE,
    )  # fmt: skip
    assert proc.returncode != 0 and "HTTP 400" in proc.stderr and "m1.large" in proc.stderr
    cli.run("coe", "cluster", "create", "--cluster-template", "ng-tpl", "--node-count", "1",
            "c1", **ALICE)  # fmt: skip
    world.settle(ALICE, "c1", "CREATE_COMPLETE")
    rows = cli.json("coe", "nodegroup", "list", "c1", **ALICE)
    assert [(r["name"], r["role"], r["node_count"]) for r in rows] == [
        ("default-master", "master", 1),
        ("default-worker", "worker", 1),
    ]
    # Create a group: the driver is handed it with its flavor's CPU/memory preset.
    out = cli.run(
        "coe", "nodegroup", "create", "c1", "ng1", "--node-count", "2", "--min-nodes", "1",
        "--max-nodes", "3", "--flavor", "m1.large", "--labels", "zone=b", **ALICE,
    ).stdout  # fmt: skip
    assert "Request to create nodegroup" in out
    world.settle(ALICE, "c1", "UPDATE_COMPLETE")
    shown = cli.json("coe", "nodegroup", "show", "c1", "ng1", **ALICE)
    assert (shown["status"], shown["flavor_id"], shown["node_count"]) == (
        "CREATE_COMPLETE", "m1.large", 2,
    )  # fmt: skip
    assert shown["image_id"] == "node-v1" and shown["is_default"] is False
    groups = {g["name"]: g for g in world.last_spec()["nodegroups"]}
    assert (groups["ng1"]["cpu"], groups["ng1"]["memory_mb"]) == (2.0, 4096)
    assert (groups["default-master"]["cpu"], groups["default-master"]["memory_mb"]) == (1.0, 2048)
    # Update min/max; resize the group inside its bounds, and not outside.
    out = cli.run("coe", "nodegroup", "update", "c1", "ng1", "--max-nodes", "4", **ALICE).stdout
    assert "has been accepted" in out
    assert cli.json("coe", "nodegroup", "show", "c1", "ng1", **ALICE)["max_node_count"] == 4
    proc = cli.run("coe", "cluster", "resize", "c1", "5", "--nodegroup", "ng1", check=False,
                   **ALICE)  # fmt: skip
    assert proc.returncode != 0 and "outside the allowed range" in proc.stderr
    cli.run("coe", "cluster", "resize", "c1", "3", "--nodegroup", "ng1", **ALICE)
    shown_cluster = world.settle(ALICE, "c1", "UPDATE_COMPLETE")
    assert shown_cluster["node_count"] == 4  # default-worker 1 + ng1 3
    assert cli.json("coe", "nodegroup", "show", "c1", "ng1", **ALICE)["node_count"] == 3
    # Upgrade: the cluster records the new template; its default groups take the new image.
    out = cli.run("coe", "cluster", "upgrade", "c1", "ng-tpl-v2", **ALICE).stdout
    assert "Request to upgrade cluster c1 has been accepted" in out
    upgraded = world.settle(ALICE, "c1", "UPDATE_COMPLETE")
    v2 = cli.json("coe", "cluster", "template", "show", "ng-tpl-v2", **ALICE)
    assert upgraded["cluster_template_id"] == v2["uuid"]
    images = {g["name"]: g["image"] for g in world.last_spec()["nodegroups"]}
    assert images == {"default-master": "node-v2", "default-worker": "node-v2", "ng1": "node-v1"}
    cli.run("coe", "cluster", "upgrade", "c1", "ng-tpl-v2", "--nodegroup", "ng1", **ALICE)
    world.settle(ALICE, "c1", "UPDATE_COMPLETE")
    assert cli.json("coe", "nodegroup", "show", "c1", "ng1", **ALICE)["image_id"] == "node-v2"
    # Another project sees and touches none of it.
    proc = cli.run("coe", "nodegroup", "list", "c1", check=False, **BOB)
    assert proc.returncode != 0 and "could not be found" in proc.stderr
    proc = cli.run("coe", "nodegroup", "delete", "c1", "ng1", check=False, **BOB)
    assert "could not be found" in proc.stdout + proc.stderr
    proc = cli.run("coe", "cluster", "upgrade", "c1", "ng-tpl", check=False, **BOB)
    assert proc.returncode != 0 and "could not be found" in proc.stderr
    # Delete: not a default group; a user group goes.
    proc = cli.run("coe", "nodegroup", "delete", "c1", "default-worker", check=False, **ALICE)
    assert "Deleting a default nodegroup is not supported" in proc.stdout + proc.stderr
    cli.run("coe", "nodegroup", "delete", "c1", "ng1", **ALICE)
    world.settle(ALICE, "c1", "UPDATE_COMPLETE")
    names = [r["name"] for r in cli.json("coe", "nodegroup", "list", "c1", **ALICE)]
    assert names == ["default-master", "default-worker"]
    cli.run("coe", "cluster", "delete", "c1", **ALICE)
    deadline = time.monotonic() + 60
    while world.cluster(ALICE, "c1") is not None and time.monotonic() < deadline:
        time.sleep(0.3)
    assert world.cluster(ALICE, "c1") is None


def test_quotas_and_services(world: World) -> None:
    cli = world.cli
    project = cli.json("project", "show", ALICE["project"])["id"]
    cli.run("coe", "cluster", "template", "create", "q-tpl", "--coe", "swarm-mode",
            "--image", "node-v1", "--external-network", "public", "--driver", "spec-recorder",
            **ALICE)  # fmt: skip
    # Members may not write quotas (the stock command prints the failure).
    out = cli.run("coe", "quotas", "create", "--project-id", project, "--resource", "Cluster",
                  "--hard-limit", "1", **ALICE).stdout  # fmt: skip
    assert "failed" in out and "Policy doesn't allow quota:create" in out
    out = cli.run("coe", "quotas", "create", "--project-id", project, "--resource", "Cluster",
                  "--hard-limit", "1").stdout  # fmt: skip
    assert "hard_limit" in out and project in out
    cli.run("coe", "cluster", "create", "--cluster-template", "q-tpl", "q1", **ALICE)
    world.settle(ALICE, "q1", "CREATE_COMPLETE")
    proc = cli.run("coe", "cluster", "create", "--cluster-template", "q-tpl", "q2",
                   check=False, **ALICE)  # fmt: skip
    assert proc.returncode != 0 and "HTTP 403" in proc.stderr
    assert "maximum clusters per project, 1" in proc.stderr
    out = cli.run("coe", "quotas", "update", "--project-id", project, "--resource", "Cluster",
                  "--hard-limit", "2").stdout  # fmt: skip
    assert re.search(r"hard_limit\s*\|\s*2\s*\|", out), out
    out = cli.run("coe", "quotas", "show", "--project-id", project, "--resource", "Cluster",
                  **ALICE).stdout  # fmt: skip
    assert re.search(r"hard_limit\s*\|\s*2\s*\|", out), out
    out = cli.run("coe", "quotas", "list", "--all-tenants").stdout
    assert project in out
    proc = cli.run("coe", "quotas", "list", check=False, **ALICE)
    assert proc.returncode != 0 and "quota:get_all" in proc.stderr
    out = cli.run("coe", "quotas", "delete", "--project-id", project, "--resource",
                  "Cluster").stdout  # fmt: skip
    assert "Request to delete quota" in out
    # mservices: the worker of this server, up; admins only.
    services = cli.json("coe", "service", "list")
    assert [(s["binary"], s["state"]) for s in services] == [("magnum-conductor", "up")]
    proc = cli.run("coe", "service", "list", check=False, **ALICE)
    assert proc.returncode != 0 and "HTTP 403" in proc.stderr
    cli.run("coe", "cluster", "delete", "q1", **ALICE)
