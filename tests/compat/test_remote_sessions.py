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
            for _ in range(100):  # until the agent registered its host
                if host in cli.run("appcontainer", "host", "list", "-f", "value").stdout:
                    break
                time.sleep(0.2)
            yield cli
    finally:
        remove_owned(engine, host)


def wait_running(cli: Cli, name: str) -> dict[str, Any]:
    shown: dict[str, Any] = {}
    for _ in range(200):
        shown = cli.json("appcontainer", "show", name)
        if shown["status"] == "Running":
            return shown
        time.sleep(0.2)
    raise AssertionError(f"{name} never ran: {shown}")


def test_exec_and_attach_through_a_remote_agent(cli: Cli) -> None:
    cli.run("appcontainer", "create", "--interactive", "--name", "far", "berth-test/busybox", "sh")
    cli.run("appcontainer", "start", "far")
    wait_running(cli, "far")
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
    assert cli.json("appcontainer", "show", "far")["status"] == "Running"


def test_cp_and_logs_follow_through_a_remote_agent(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "up.txt").write_text("from afar\n")
    cli.run("appcontainer", "run", "--name", "files", "berth-test/busybox", "sleep", "300")
    wait_running(cli, "files")
    cli.run("appcontainer", "cp", str(tmp_path / "up.txt"), "files:/tmp")
    cli.run("appcontainer", "cp", "files:/tmp/up.txt", str(tmp_path / "down"))
    assert (tmp_path / "down" / "up.txt").read_text() == "from afar\n"

    token = cli.run("token", "issue", "-c", "id", "-f", "value").stdout.strip()
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
