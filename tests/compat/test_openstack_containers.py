"""Acceptance: the unmodified ``openstack appcontainer`` CLI against a live all-in-one Berth.

Two projects, two members; a member drives a container through its whole life
and the engine is checked at each step; the other member sees nothing. Once per
runtime (tests/compat/conftest.py): an agent on Docker, then on Podman.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.compat.oscli import ADMIN_PASSWORD, Cli
from tests.compat.runtimes import EngineView
from tests.live import all_in_one_env, live_server

pytestmark = [pytest.mark.compat, pytest.mark.docker, pytest.mark.slow]

PW = "member-pw-123"


class Members:
    def __init__(self, cli: Cli) -> None:
        self.cli = cli

    def alice(self, *args: str, **kw: Any) -> Any:
        return self.cli.run(*args, user="alice", password=PW, project="team-a", **kw)

    def alice_json(self, *args: str) -> Any:
        return self.cli.json(*args, user="alice", password=PW, project="team-a")

    def bob(self, *args: str, **kw: Any) -> Any:
        return self.cli.run(*args, user="bob", password=PW, project="team-b", **kw)


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, engine: EngineView
) -> Iterator[tuple[Members, str]]:
    work = tmp_path_factory.mktemp("compat-containers")
    host = f"compat-{uuid.uuid4().hex[:8]}"
    env = all_in_one_env(work, host, ADMIN_PASSWORD, **engine.settings)
    try:
        with live_server(env) as base_url:
            cli = Cli(base_url, work)
            for project, user in (("team-a", "alice"), ("team-b", "bob")):
                cli.add_member(project, user, PW)
            yield Members(cli), host
    finally:
        engine.remove_owned(host)


def zun_library(m: Members, call: str) -> Any:
    """Evaluate ``zun.<call>`` on an unmodified zunclient Client logged in as alice."""
    return m.cli.zun_library(f"zun.{call}", user="alice", password=PW, project="team-a")


def wait_status(m: Members, name: str, want: str, timeout: float = 60) -> dict[str, Any]:
    """Poll alice's container ``name`` until its status is ``want``: the same body the
    CLI's ``show`` prints, read directly (the CLI drives each step, not the waits)."""
    deadline = time.monotonic() + timeout
    shown: dict[str, Any] = {}
    while time.monotonic() < deadline:
        r = m.cli.rest("GET", f"/container/v1/containers/{name}", user="alice", password=PW,
                       project="team-a")  # fmt: skip
        assert r.status_code == 200, r.text
        shown = r.json()
        if shown["status"] == want:
            return shown
        time.sleep(0.2)
    raise AssertionError(f"{name} never became {want}: {shown}")


def wait_runtime(engine: EngineView, uid: str, check: Any, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    info = engine.container(uid)
    while not check(info) and time.monotonic() < deadline:
        time.sleep(0.2)
        info = engine.container(uid)
    assert check(info), info["State"]
    return info


def test_member_drives_a_container_through_its_life(
    world: tuple[Members, str], engine: EngineView
) -> None:
    m, _ = world
    created = json.loads(
        m.alice(
            "appcontainer",
            "run",
            "-f",
            "json",
            "--wait",
            "--name",
            "web",
            "--memory",
            "64",
            "--cpu",
            "0.5",
            "--environment",
            "GREETING=hello",
            "--workdir",
            "/tmp",
            "berth-test/busybox",
            "sh",
            "-c",
            "echo hello-from-berth; exec sleep 3600",
        ).stdout
    )
    uid = created["uuid"]
    wait_status(m, "web", "Running")
    shown = m.alice_json("appcontainer", "show", "web")
    assert shown["status"] == "Running" and shown["memory"] == "64" and shown["cpu"] == 0.5
    info = engine.container(uid)
    assert info["HostConfig"]["Memory"] == 64 * 1024 * 1024
    assert info["HostConfig"]["NanoCpus"] == 500_000_000
    assert "GREETING=hello" in info["Config"]["Env"]
    assert info["Config"]["WorkingDir"] == "/tmp"

    listed = m.alice_json("appcontainer", "list")
    assert [c["name"] for c in listed] == ["web"]
    assert "hello-from-berth" in m.alice("appcontainer", "logs", "web").stdout
    out = m.alice("appcontainer", "exec", "web", "sh", "-c", "echo $GREETING-there")
    assert "hello-there" in out.stdout
    # `openstack appcontainer top` itself is broken in python-zunclient 5.5.0 (a
    # Python 2 print statement), so top goes through the stock client library.
    top = zun_library(m, "containers.top('web')")
    assert top["Titles"] and any("sleep" in " ".join(p) for p in top["Processes"])
    assert "MEM" in m.alice("appcontainer", "stats", "web").stdout

    m.alice("appcontainer", "stop", "--timeout", "1", "web")  # PID 1 ignores TERM
    wait_status(m, "web", "Stopped")
    assert not engine.container(uid)["State"]["Running"]
    m.alice("appcontainer", "start", "web")
    wait_status(m, "web", "Running")
    m.alice("appcontainer", "pause", "web")
    wait_status(m, "web", "Paused")
    assert engine.container(uid)["State"]["Paused"]
    m.alice("appcontainer", "unpause", "web")
    wait_status(m, "web", "Running")
    started = engine.container(uid)["State"]["StartedAt"]
    m.alice("appcontainer", "restart", "--timeout", "1", "web")
    wait_runtime(
        engine, uid, lambda i: i["State"]["StartedAt"] != started and i["State"]["Running"]
    )
    wait_status(m, "web", "Running")
    m.alice("appcontainer", "kill", "web")
    wait_status(m, "web", "Stopped")
    assert not engine.container(uid)["State"]["Running"]
    m.alice("appcontainer", "start", "web")
    wait_status(m, "web", "Running")

    m.alice("appcontainer", "set", "--memory", "128", "web")
    ident = engine.container(uid)["Id"]
    deadline = time.monotonic() + 30
    while engine.memory_limit(ident) != 128 * 1024 * 1024 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert engine.memory_limit(ident) == 128 * 1024 * 1024
    m.alice("appcontainer", "set", "--name", "web2", "web")
    assert m.alice_json("appcontainer", "show", "web2")["memory"] == "128"
    actions = {a["action"] for a in m.alice_json("appcontainer", "action", "list", "web2")}
    assert {"create", "stop", "start", "pause", "unpause", "reboot", "kill", "update"} <= actions

    # the other project sees and touches nothing
    for verb in ("show", "delete"):
        r = m.bob("appcontainer", verb, uid, check=False)
        assert "could not be found" in r.stdout + r.stderr, verb
    assert m.bob("appcontainer", "list", "-f", "value").stdout.strip() == ""

    m.alice("appcontainer", "delete", "--stop", "web2")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = m.cli.rest("GET", f"/container/v1/containers/{uid}", user="alice", password=PW,
                       project="team-a")  # fmt: skip
        if r.status_code == 404:
            break
        time.sleep(0.2)
    assert "could not be found" in m.alice("appcontainer", "show", uid, check=False).stderr
    assert m.alice_json("appcontainer", "list") == []
    assert engine.containers(f"berth.uuid={uid}") == []


def test_member_is_refused_privileged_hosts_and_services(world: tuple[Members, str]) -> None:
    m, _ = world
    r = m.alice("appcontainer", "run", "--privileged", "berth-test/busybox", "true", check=False)
    assert r.returncode != 0 and "container:create:privileged" in r.stderr
    for args in (("appcontainer", "host", "list"), ("appcontainer", "service", "list")):
        r = m.alice(*args, check=False)
        assert r.returncode != 0 and "Policy doesn't allow" in r.stderr


def test_missing_image_ends_in_error_with_reason(world: tuple[Members, str]) -> None:
    m, _ = world
    m.alice("appcontainer", "run", "--name", "ghost", "berth-test/no-such-image:1", "true")
    shown = wait_status(m, "ghost", "Error", timeout=60)
    assert "not found" in shown["status_reason"]
    m.alice("appcontainer", "delete", "ghost")


def test_admin_sees_hosts_and_services(world: tuple[Members, str]) -> None:
    m, host = world
    hosts = m.cli.json("appcontainer", "host", "list")
    assert host in [h["hostname"] for h in hosts]
    services = m.cli.json("appcontainer", "service", "list")
    mine = [s for s in services if s["Host"] == host]
    assert mine and mine[0]["State"] == "up"
    assert mine[0]["Binary"] == "zun-compute"  # Zun's name, as clients and tempest expect
