"""Sessions when the container runs on another host: the API proxies to a standalone agent.

berth-api (no embedded agent) and berth-agent run as separate processes; the
stock CLI only ever talks to the API. Interactive exec and attach, cp and logs
follow must all go API → agent over the network, with the agent's key.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pexpect
import pytest

from tests.compat.oscli import ADMIN_PASSWORD, OPENSTACK, Cli
from tests.functional.docker_engine import engine_or_skip, ensure_test_image, remove_owned
from tests.live import berth_agent, live_api

pytestmark = [pytest.mark.compat, pytest.mark.docker]

AGENT_PASSWORD = "remote-agent-pw"


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    engine: Any = engine_or_skip()
    ensure_test_image(engine)
    work = tmp_path_factory.mktemp("remote-sessions")
    host = f"remote-{uuid.uuid4().hex[:8]}"
    env = {
        "BERTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "BERTH_AGENT_PASSWORD": AGENT_PASSWORD,
        "BERTH_ALL_IN_ONE": "false",
    }
    try:
        with (
            live_api(env, workdir=work / "api") as api,
            berth_agent(api.base_url, host=host, password=AGENT_PASSWORD, workdir=work / "agent"),
        ):
            cli = Cli(api.base_url, work)
            for _ in range(300):  # until the agent registered its host (polled via the API)
                hosts = admin(cli, "GET", "/container/v1/hosts").json()["hosts"]
                if host in [h["hostname"] for h in hosts]:
                    break
                time.sleep(0.2)
            yield cli
    finally:
        remove_owned(engine, host)


def admin(cli: Cli, method: str, path: str, **kw: Any) -> httpx.Response:
    """``method path`` on the API as the admin: for waiting, where no CLI step is under
    test (each ``openstack`` run costs a second or more)."""
    return cli.rest(method, path, user="admin", password=ADMIN_PASSWORD, project="admin", **kw)


def shown(cli: Cli, name: str) -> dict[str, Any]:
    """The admin's container ``name`` as the API shows it (what the CLI's show prints)."""
    r = admin(cli, "GET", f"/container/v1/containers/{name}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def wait_status(cli: Cli, name: str, want: str = "Running") -> dict[str, Any]:
    found: dict[str, Any] = {}
    for _ in range(300):
        found = shown(cli, name)
        if found["status"] == want:
            return found
        time.sleep(0.2)
    raise AssertionError(f"{name} never became {want}: {found}")


def test_exec_and_attach_through_a_remote_agent(cli: Cli) -> None:
    cli.run("appcontainer", "create", "--interactive", "--name", "far", "berth-test/busybox", "sh")
    wait_status(cli, "far", "Created")  # a start while Creating is refused (409)
    assert "accepted" in cli.run("appcontainer", "start", "far").stdout
    wait_status(cli, "far", "Running")
    env = cli.env("admin", ADMIN_PASSWORD, "admin")
    child = pexpect.spawn(
        str(OPENSTACK),
        ["appcontainer", "exec", "--interactive", "far", "sh"],
        env=env,
        encoding="utf-8",
        timeout=60,
        dimensions=(30, 100),
    )
    child.logfile_read = open(os.devnull, "w")  # noqa: SIM115 - closed with the child
    child.expect("connected to far")
    child.expect("# ")
    child.send("echo hi-$((1+2))\r")
    child.expect("hi-3")
    child.send("exit\r")
    child.expect(pexpect.EOF)
    child.close()

    child = pexpect.spawn(
        str(OPENSTACK), ["appcontainer", "attach", "far"], env=env, encoding="utf-8", timeout=60
    )
    child.logfile_read = open(os.devnull, "w")  # noqa: SIM115 - closed with the child
    child.expect("connected to far")
    time.sleep(1)  # the client flushes typed-ahead input when it makes the terminal raw
    child.send("\r")
    child.send("echo far-$((4+4))\r")
    child.expect("far-8")
    for key in "\r~.":
        child.send(key)
        time.sleep(0.2)
    child.expect(pexpect.EOF)
    child.close()
    assert shown(cli, "far")["status"] == "Running"


def test_cp_and_logs_follow_through_a_remote_agent(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "up.txt").write_text("from afar\n")
    cli.run("appcontainer", "run", "--name", "files", "berth-test/busybox", "sleep", "300")
    wait_status(cli, "files")
    cli.run("appcontainer", "cp", str(tmp_path / "up.txt"), "files:/tmp")
    cli.run("appcontainer", "cp", "files:/tmp/up.txt", str(tmp_path / "down"))
    assert (tmp_path / "down" / "up.txt").read_text() == "from afar\n"

    token = cli.token("admin", ADMIN_PASSWORD, "admin")
    with httpx.Client(
        base_url=f"{cli.base_url}/container/v1",
        headers={"X-Auth-Token": token, "OpenStack-API-Version": "container 1.40"},
        timeout=30,
    ) as api:
        script = "for i in 1 2 3; do echo far-line-$i; sleep 1; done"
        body = {"image": "berth-test/busybox", "command": ["sh", "-c", script]}
        uid = api.post("/containers?run=true", json=body).json()["uuid"]
        for _ in range(200):
            if api.get(f"/containers/{uid}").json()["status"] == "Running":
                break
            time.sleep(0.05)
        with api.stream("GET", f"/containers/{uid}/logs", params={"follow": "True"}) as r:
            assert r.status_code == 200
            lines = [line for line in r.iter_lines() if line]
        assert lines[-1] == "far-line-3"
