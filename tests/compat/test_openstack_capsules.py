"""Acceptance: volumes and capsules with the unmodified ``openstack`` CLI on the real engine.

One API and one standalone agent (so the agent can be killed and restarted);
two projects. Data written to volumes survives container restart, rebuild,
delete-then-remount, capsule re-creation and an agent restart; capsule
members share one network namespace and the capsule's volumes; init
containers run first. The other project sees and touches nothing. Once per
runtime (tests/compat/conftest.py); on Podman a capsule is a real pod.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.compat.oscli import ADMIN_PASSWORD, Cli
from tests.compat.runtimes import EngineView
from tests.functional.docker_engine import TEST_IMAGE
from tests.live import LiveAgent, berth_agent, live_api

pytestmark = [pytest.mark.compat, pytest.mark.docker, pytest.mark.slow]

PW = "member-pw-123"
AGENT_PASSWORD = "capsule-agent-pw"
T = TypeVar("T")


def wait_until(check: Callable[[], T | None], what: str, timeout: float = 60) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class World:
    def __init__(
        self, cli: Cli, agent: LiveAgent, engine: EngineView, host: str, work: Path
    ) -> None:
        self.cli, self.agent, self.engine, self.host, self.work = cli, agent, engine, host, work

    def as_(self, who: str, *args: str, check: bool = True) -> Any:
        project = {"alice": "team-a", "bob": "team-b"}[who]
        return self.cli.run(*args, user=who, password=PW, project=project, check=check)

    def json(self, who: str, *args: str) -> Any:
        # "-f json" right after the command words: a container's own command comes last.
        return json.loads(self.as_(who, *args[:2], "-f", "json", *args[2:]).stdout)

    def rest(self, who: str, method: str, path: str, **kw: Any) -> httpx.Response:
        project = {"alice": "team-a", "bob": "team-b"}[who]
        return self.cli.rest(
            method, f"/container/v1{path}", user=who, password=PW, project=project, **kw
        )

    # Waiting polls the API directly (the CLI's show reads the same body): each
    # `openstack` run costs a second or more, so the CLI is kept for the calls under
    # test; ``cli=True`` shows the result with the CLI where the test reads its output.
    def container_status(
        self, name: str, want: str, timeout: float = 60, *, cli: bool = False
    ) -> dict[str, Any]:
        def shown() -> dict[str, Any] | None:
            c: dict[str, Any] = self.rest("alice", "GET", f"/containers/{name}").json()
            assert c["status"] != "Error", (c["status_reason"], c)
            return c if c["status"] == want else None

        body = wait_until(shown, f"{name} {want}", timeout)
        return dict(self.json("alice", "appcontainer", "show", name)) if cli else body

    def capsule(
        self, name: str, want: str, timeout: float = 90, *, cli: bool = False
    ) -> dict[str, Any]:
        def shown() -> dict[str, Any] | None:
            c: dict[str, Any] = self.rest("alice", "GET", f"/capsules/{name}").json()
            if want != "Error":
                assert c["status"] != "Error", (c["status_reason"], c)
            return c if c["status"] == want else None

        body = wait_until(shown, f"capsule {name} {want}", timeout)
        return dict(self.json("alice", "capsule", "show", name)) if cli else body

    def capsule_gone(self, name: str) -> None:
        wait_until(
            lambda: self.rest("alice", "GET", f"/capsules/{name}").status_code == 404,
            f"capsule {name} deleted",
        )

    def no_containers(self, what: str) -> None:
        wait_until(
            lambda: self.rest("alice", "GET", "/containers").json()["containers"] == [], what
        )

    def exec(self, ident: str, *command: str) -> str:
        return str(self.as_("alice", "appcontainer", "exec", ident, *command).stdout)

    def template(self, name: str, text: str) -> str:
        path = self.work / f"{name}.yaml"
        path.write_text(text)
        return str(path)

    def volumes(self, **labels: str) -> list[dict[str, Any]]:
        return self.engine.volumes(
            f"berth.owner={self.host}", *(f"{k}={v}" for k, v in labels.items())
        )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, engine: EngineView) -> Iterator[World]:
    work = tmp_path_factory.mktemp("compat-capsules")
    host = f"capsule-{uuid.uuid4().hex[:8]}"
    env = {
        "BERTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "BERTH_AGENT_PASSWORD": AGENT_PASSWORD,
        "BERTH_ALL_IN_ONE": "false",
        "BERTH_SANDBOX_IMAGE": TEST_IMAGE,
    }
    agent_env = {
        "BERTH_RECONCILE_INTERVAL": "1",
        "BERTH_HEARTBEAT_INTERVAL": "1",
        **engine.settings,
    }
    try:
        with (
            live_api(env, workdir=work / "api") as api,
            berth_agent(
                api.base_url,
                host=host,
                password=AGENT_PASSWORD,
                workdir=work / "agent",
                settings_env=agent_env,
            ) as agent,
        ):
            cli = Cli(api.base_url, work)
            for project, user in (("team-a", "alice"), ("team-b", "bob")):
                cli.add_member(project, user, PW)
            yield World(cli, agent, engine, host, work)
    finally:
        engine.remove_owned(host)


def test_volume_data_survives_restart_rebuild_and_remount(world: World) -> None:
    w = world
    r = w.rest("alice", "POST", "/volumes", json={"name": "data", "size": 1})
    assert r.status_code == 202, r.text
    vol = r.json()
    created = w.json(
        "alice",
        "appcontainer",
        "run",
        "--name",
        "v1",
        "--mount",
        "source=data,destination=/data",
        TEST_IMAGE,
        "sleep",
        "3600",
    )
    shown = w.container_status("v1", "Running", cli=True)
    assert shown["mounts"] == [
        {
            "type": "volume",
            "source": "data",
            "destination": "/data",
            "volume_id": vol["uuid"],
            "size": 1,
        }
    ]
    # On the host: an engine's named volume labelled with the Berth volume and project.
    (on_host,) = w.volumes(**{"berth.volume": vol["uuid"]})
    assert on_host["Name"] == f"berth-vol-{vol['uuid']}"
    assert on_host["Labels"]["berth.project"] == vol["project_id"]
    assert on_host["Labels"]["berth.volume.size_gib"] == "1"
    info = w.engine.inspect(f"berth-{created['uuid']}")
    assert [(m["Name"], m["Destination"]) for m in info["Mounts"]] == [(on_host["Name"], "/data")]

    w.exec("v1", "sh", "-c", "echo kept > /data/file")
    w.as_("alice", "appcontainer", "restart", "--timeout", "1", "v1")
    w.container_status("v1", "Running")
    assert w.exec("v1", "cat", "/data/file").strip() == "kept"
    w.as_("alice", "appcontainer", "rebuild", "v1")
    w.container_status("v1", "Running")
    assert w.exec("v1", "cat", "/data/file").strip() == "kept"

    # In use: cannot be deleted. Another project can neither see nor mount it.
    r = w.rest("alice", "DELETE", "/volumes/data")
    assert r.status_code == 409 and created["uuid"] in r.json()["errors"][0]["detail"]
    assert w.rest("bob", "GET", f"/volumes/{vol['uuid']}").status_code == 404
    assert w.rest("bob", "DELETE", f"/volumes/{vol['uuid']}").status_code == 404
    if w.engine.runtime == "docker":
        bob_cannot_mount(w)

    # Delete the container, mount the volume again elsewhere: the data is there.
    w.as_("alice", "appcontainer", "delete", "--stop", "v1")
    w.no_containers("v1 deleted")
    assert w.volumes(**{"berth.volume": vol["uuid"]})  # a named volume outlives it
    w.as_(
        "alice",
        "appcontainer",
        "run",
        "--name",
        "v2",
        "--mount",
        f"source={vol['uuid']},destination=/again",
        TEST_IMAGE,
        "sleep",
        "3600",
    )
    w.container_status("v2", "Running")
    assert w.exec("v2", "cat", "/again/file").strip() == "kept"
    w.as_("alice", "appcontainer", "delete", "--stop", "v2")
    w.no_containers("v2 deleted")
    r = w.rest("alice", "DELETE", "/volumes/data")
    assert r.status_code == 204, r.text
    assert w.volumes(**{"berth.volume": vol["uuid"]}) == []


def bob_cannot_mount(w: World) -> None:
    """The stock CLI as bob can mount neither alice's volume nor a host path.

    Refused by the API before any runtime is asked, so checked on one runtime
    (the module runs once per runtime; these CLI runs cost ~1.5 s each).
    """
    for source, refusal in (("data", "could not be found"), ("/etc", "host_path")):
        out = w.as_("bob", "appcontainer", "run", "--mount", f"source={source},destination=/x",
                    TEST_IMAGE, check=False)  # fmt: skip
        assert out.returncode != 0 and refusal in out.stderr, source
    assert w.json("bob", "appcontainer", "list") == []


def test_size_mount_volume_is_removed_with_its_container(world: World) -> None:
    w = world
    created = w.json(
        "alice",
        "appcontainer",
        "run",
        "--name",
        "scratch",
        "--mount",
        "size=1,destination=/scratch",
        TEST_IMAGE,
        "sleep",
        "3600",
    )
    w.container_status("scratch", "Running")
    assert len(w.volumes(**{"berth.volume.owner": created["uuid"]})) == 1
    w.exec("scratch", "sh", "-c", "echo x > /scratch/f")
    w.as_("alice", "appcontainer", "delete", "--stop", "scratch")
    w.no_containers("scratch deleted")
    # Within a pass of the agent, which the deletion wakes (not its long poll's 25 s timeout).
    wait_until(
        lambda: not w.volumes(**{"berth.volume.owner": created["uuid"]}),
        "its volume removed",
        timeout=10,
    )
    assert w.rest("alice", "GET", "/volumes").json()["volumes"] == []


def test_auto_remove_container_leaves_no_volume_of_its_own(world: World) -> None:
    """The engine removes an ``auto_remove`` container when it exits; Berth deletes
    the record, and the agent must still drop the ``size=N`` volume it owned."""
    w = world
    created = w.json(
        "alice",
        "appcontainer",
        "run",
        "--name",
        "oneshot",
        "--auto-remove",
        "--mount",
        "size=1,destination=/scratch",
        TEST_IMAGE,
        "sh",
        "-c",
        "echo x > /scratch/f; sleep 2",
    )
    wait_until(lambda: w.volumes(**{"berth.volume.owner": created["uuid"]}), "its volume created")
    wait_until(
        lambda: w.rest("alice", "GET", f"/containers/{created['uuid']}").status_code == 404,
        "the exited auto_remove container deleted",
    )
    # Within a pass of the agent, which the deletion wakes (not its long poll's 25 s timeout).
    wait_until(
        lambda: not w.volumes(**{"berth.volume.owner": created["uuid"]}),
        "its volume removed",
        timeout=10,
    )
    assert w.rest("alice", "GET", "/volumes").json()["volumes"] == []


POD = """
kind: capsule
capsuleVersion: beta
metadata:
  name: pod-web
  labels: {app: web}
spec:
  restartPolicy: Always
  initContainers:
  - image: berth-test/busybox:latest
    command: [sh, -c, "echo from-init > /work/msg"]
    volumeMounts: [{name: work, mountPath: /work}]
  containers:
  - name: web
    image: berth-test/busybox:latest
    command: [httpd, -f, -p, "8080", -h, /www]
    resources: {requests: {cpu: 0.25, memory: 32}}
    ports: [{containerPort: 8080, protocol: TCP}]
    volumeMounts: [{name: work, mountPath: /www}]
  - name: client
    image: berth-test/busybox:latest
    command: [sleep]
    args: ["3600"]
    env: {PEER: "http://127.0.0.1:8080"}
    workDir: /tmp
  volumes:
  - name: work
    cinder: {size: 1, autoRemove: true}
"""


def test_capsule_members_share_localhost_and_volumes(world: World) -> None:
    w = world
    created = w.json("alice", "capsule", "create", "--file", w.template("pod", POD))
    assert created["name"] == "pod-web" and created["labels"] == {"app": "web"}
    cap = w.capsule("pod-web", "Running", cli=True)
    assert [c["status"] for c in cap["init_containers"]] == ["Stopped"]
    web, client = (c["uuid"] for c in cap["containers"])
    # The client reaches the web container on localhost and reads what the init wrote.
    got = w.exec(client, "sh", "-c", "wget -q -O - $PEER/msg")
    assert got.strip() == "from-init"
    sandbox = w.engine.inspect(f"berth-{cap['uuid']}")
    # The capsule's namespace is on its project's network, not the engine's shared bridge.
    assert (
        [n for n in sandbox["NetworkSettings"]["Networks"]]
        == [n for n in sandbox["NetworkSettings"]["Networks"] if n.startswith("berth-net-")]
        != []
    )
    netns = w.engine.network_namespace(sandbox["Id"])
    assert [w.engine.network_namespace(f"berth-{m}") for m in (web, client)] == [netns] * 2
    # The init container had finished before either member started.
    (init,) = (c["uuid"] for c in cap["init_containers"])
    init_finished = w.engine.ran(f"berth-{init}")[1]
    assert all(init_finished <= w.engine.ran(f"berth-{m}")[0] for m in (web, client))
    pod = w.engine.pod(f"berth-pod-{cap['uuid']}")
    if w.engine.runtime == "podman":  # a real pod: its infra container is the sandbox
        assert pod is not None and {"net", "uts", "ipc"} <= set(pod["SharedNamespaces"])
        assert pod["InfraContainerID"] == sandbox["Id"]
        in_pod = {c["Name"] for c in pod["Containers"]}
        assert {f"berth-{m}" for m in (cap["uuid"], init, web, client)} <= in_pod
    listed = w.json("alice", "capsule", "list")
    assert [(c["name"], c["status"]) for c in listed] == [("pod-web", "Running")]
    assert w.json("alice", "appcontainer", "list") == []  # members are the capsule's

    # The other project sees nothing and touches nothing: the API's project scoping,
    # no runtime involved, so through the stock CLI on one runtime (each run ~1.5 s).
    if w.engine.runtime == "docker":
        assert w.json("bob", "capsule", "list") == []
        for args in (("capsule", "show", "pod-web"), ("capsule", "show", cap["uuid"])):
            out = w.as_("bob", *args, check=False)
            assert out.returncode != 0 and "could not be found" in out.stderr
        out = w.as_("bob", "capsule", "delete", cap["uuid"], check=False)
        assert "could not be found" in out.stdout + out.stderr
        assert w.json("alice", "capsule", "show", "pod-web")["status"] == "Running"
    else:
        assert w.rest("bob", "GET", "/capsules").json()["capsules"] == []
        assert w.rest("bob", "DELETE", f"/capsules/{cap['uuid']}").status_code == 404
        assert w.rest("alice", "GET", "/capsules/pod-web").json()["status"] == "Running"

    w.as_("alice", "capsule", "delete", "pod-web")
    w.capsule_gone("pod-web")
    wait_until(
        lambda: (
            not w.engine.containers(f"berth.uuid={web}")
            and not w.engine.containers(f"berth.uuid={cap['uuid']}")
        ),
        "capsule containers removed",
    )
    wait_until(lambda: not w.volumes(**{"berth.volume.owner": cap["uuid"]}), "volume removed")


FAILING = """
kind: capsule
metadata: {name: pod-bad}
spec:
  initContainers:
  - {image: "berth-test/busybox:latest", command: [sh, -c, "exit 3"]}
  containers:
  - {image: "berth-test/busybox:latest", command: [sleep, "3600"]}
"""


def test_failed_init_container_stops_the_capsule(world: World) -> None:
    w = world
    w.as_("alice", "capsule", "create", "--file", w.template("bad", FAILING))
    cap = w.capsule("pod-bad", "Error", cli=True)
    assert "exited with code 3" in cap["status_reason"]
    assert cap["containers"][0]["status"] == "Creating"  # never started

    # The stock CLI pages capsules as it pages containers (--limit, --marker, sort):
    # the API's listing, the same whatever the runtime, so on one runtime only.
    names = ["pod-bad"]
    if w.engine.runtime == "docker":
        capsule_paging(w, cap["uuid"])
        names.append("pod-bad-2")
    w.as_("alice", "capsule", "delete", *names)
    for name in names:
        w.capsule_gone(name)


def capsule_paging(w: World, first: str) -> None:
    """A second capsule ``pod-bad-2`` after ``first``; the CLI pages and sorts them."""
    w.as_(
        "alice",
        "capsule",
        "create",
        "--file",
        w.template("bad2", FAILING.replace("pod-bad", "pod-bad-2")),
    )
    second = w.capsule("pod-bad-2", "Error")
    page = w.json("alice", "capsule", "list", "--limit", "1")
    assert [c["uuid"] for c in page] == [first]
    after = w.json("alice", "capsule", "list", "--limit", "1", "--marker", first)
    assert [c["uuid"] for c in after] == [second["uuid"]]
    by_name = w.json("alice", "capsule", "list", "--sort-key", "name", "--sort-dir", "desc")
    assert [c["name"] for c in by_name] == ["pod-bad-2", "pod-bad"]


STATEFUL = """
kind: capsule
metadata: {name: pod-state}
spec:
  containers:
  - image: berth-test/busybox:latest
    command: [sh, -c, "echo boot >> /state/log; exec sleep 3600"]
    volumeMounts: [{name: state, mountPath: /state}]
  volumes:
  - name: state
    cinder: {volumeID: VOLUME}
"""


def test_stateful_capsule_keeps_data_across_restart_and_agent_restart(world: World) -> None:
    w = world
    r = w.rest("alice", "POST", "/volumes", json={"name": "state", "size": 1})
    vol = r.json()
    tpl = w.template("state", STATEFUL.replace("VOLUME", vol["uuid"]))
    w.as_("alice", "capsule", "create", "--file", tpl)
    cap = w.capsule("pod-state", "Running")
    member = cap["containers"][0]["uuid"]
    wait_until(lambda: w.exec(member, "cat", "/state/log").split() == ["boot"], "first boot")
    w.exec(member, "sh", "-c", "echo written >> /state/log")
    ids = set(w.engine.containers(f"berth.owner={w.host}"))

    # The agent dies and comes back: nothing is recreated, the data is there.
    w.agent.kill()
    w.agent.start()
    time.sleep(3)  # a few reconcile passes
    assert w.capsule("pod-state", "Running")["uuid"] == cap["uuid"]
    assert set(w.engine.containers(f"berth.owner={w.host}")) == ids
    assert w.exec(member, "cat", "/state/log").split() == ["boot", "written"]

    # The capsule is deleted and created again on the same volume: it finds its data.
    w.as_("alice", "capsule", "delete", "pod-state")
    w.capsule_gone("pod-state")
    assert w.rest("alice", "GET", "/volumes/state").status_code == 200  # kept: not autoRemove
    w.as_("alice", "capsule", "create", "--file", tpl)
    again = w.capsule("pod-state", "Running")
    member = again["containers"][0]["uuid"]
    wait_until(
        lambda: w.exec(member, "cat", "/state/log").split() == ["boot", "written", "boot"],
        "second boot",
    )
    w.as_("alice", "capsule", "delete", "pod-state")
    w.capsule_gone("pod-state")
    assert w.rest("alice", "DELETE", "/volumes/state").status_code == 204
