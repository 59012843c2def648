"""Acceptance: interactive exec/attach, cp, rebuild and logs follow with the stock clients.

A live all-in-one Berth and a member of a project. ``openstack appcontainer
exec --interactive`` and ``attach`` run in a pseudo-terminal (pexpect), the
way a user types; ``cp`` both ways is checked byte for byte; the websocket
handshake rules (single-use, expiring tokens) are checked with the same
websocket-client library the stock client uses; logs follow with httpx.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pexpect
import pytest
import websocket

from tests.compat.oscli import ADMIN_PASSWORD, OPENSTACK, Cli
from tests.compat.runtimes import EngineView
from tests.compat.test_openstack_containers import Members, wait_status, zun_library
from tests.live import all_in_one_env, live_server

pytestmark = [pytest.mark.compat, pytest.mark.docker, pytest.mark.slow]

PW = "member-pw-123"


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, engine: EngineView
) -> Iterator[tuple[Members, str]]:
    work = tmp_path_factory.mktemp("compat-interactive")
    host = f"compat-{uuid.uuid4().hex[:8]}"
    env = all_in_one_env(
        work,
        host,
        ADMIN_PASSWORD,
        BERTH_STREAM_TOKEN_TTL="3",
        **engine.settings,
    )
    try:
        with live_server(env) as base_url:
            cli = Cli(base_url, work)
            for project, user in (("team-a", "alice"), ("team-b", "bob")):
                cli.add_member(project, user, PW)
            yield Members(cli), base_url
    finally:
        engine.remove_owned(host)


def shown(m: Members, name: str) -> dict[str, Any]:
    """Alice's container ``name`` as the API shows it (the body the CLI's ``show``
    prints), read directly where the test is not about the CLI's output."""
    r = m.cli.rest("GET", f"/container/v1/containers/{name}", user="alice", password=PW,
                   project="team-a")  # fmt: skip
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def running(m: Members, name: str, *command: str) -> None:
    """``appcontainer run`` a busybox ``name``, then wait until it runs through the API:
    the CLI's ``run --wait`` polls every 5 s (it is under test in test_openstack_containers.py)."""
    m.alice("appcontainer", "run", "--name", name, "berth-test/busybox", *command)
    wait_status(m, name, "Running")


def terminal(m: Members, *args: str) -> pexpect.spawn:
    """The stock CLI as alice in a pseudo-terminal, its output echoed to the test log."""
    child = pexpect.spawn(
        str(OPENSTACK),
        list(args),
        env=m.cli.env("alice", PW, "team-a"),
        cwd=str(m.cli.home),
        encoding="utf-8",
        timeout=60,
        dimensions=(40, 120),
    )
    child.logfile_read = open(os.devnull, "w")  # noqa: SIM115 - closed with the child
    return child


def ended(child: pexpect.spawn) -> int:
    child.expect(pexpect.EOF, timeout=30)
    child.close()
    return int(child.exitstatus or 0)


def test_exec_interactive_in_a_terminal(world: tuple[Members, str], engine: EngineView) -> None:
    m, _ = world
    running(m, "shell", "sleep", "3600")
    child = terminal(m, "appcontainer", "exec", "--interactive", "shell", "sh")
    child.expect("connected to shell")
    child.expect("# ")  # output arrives once the client's terminal is raw: typing is safe
    child.send("stty size; echo hi-$((1+2))\r")
    child.expect("hi-3")
    assert "40 120" in child.before  # the client's resize went through execute_resize
    child.send("exit\r")
    assert ended(child) == 0
    uid = shown(m, "shell")["uuid"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the exec's shell is gone, the container runs on
        procs = engine.processes(engine.container(uid)["Id"])
        if len(procs) == 1:
            break
        time.sleep(0.2)
    assert procs == ["sleep 3600"]


def test_attach_to_an_interactive_container(world: tuple[Members, str], engine: EngineView) -> None:
    m, _ = world
    m.alice("appcontainer", "create", "--interactive", "--name", "att", "berth-test/busybox", "sh")
    # Zun refuses a start while the container is Creating (409); zunclient prints
    # "Start ... failed" and exits 0, so wait for Created and check it was accepted.
    wait_status(m, "att", "Created")
    assert "accepted" in m.alice("appcontainer", "start", "att").stdout
    wait_status(m, "att", "Running")
    child = terminal(m, "appcontainer", "attach", "att")
    child.expect("connected to att")
    time.sleep(1)  # the client flushes typed-ahead input when it makes the terminal raw
    child.send("\r")
    child.expect("# ")
    child.send("echo att-$((2+5))\r")
    child.expect("att-7")
    for key in "\r~.":  # the escape, typed key by key after an Enter
        child.send(key)
        time.sleep(0.2)
    ended(child)
    assert shown(m, "att")["status"] == "Running"

    if engine.runtime == "docker":  # the API refuses it, whatever the runtime
        r = m.alice("appcontainer", "attach", "shell", check=False)  # not interactive
        assert r.returncode != 0 and "interactive" in r.stderr


def test_cp_both_ways(world: tuple[Members, str], tmp_path: Path, engine: EngineView) -> None:
    m, _ = world
    running(m, "files", "sleep", "3600")
    payload = os.urandom(50_000) + "→ ünïcode\n".encode()
    (tmp_path / "blob.bin").write_bytes(payload)
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "a.txt").write_text("alpha\n")
    m.alice("appcontainer", "cp", str(tmp_path / "blob.bin"), "files:/tmp")
    m.alice("appcontainer", "cp", str(tmp_path / "tree"), "files:/tmp")
    out = m.alice("appcontainer", "exec", "files", "cat", "/tmp/tree/a.txt").stdout
    assert "alpha" in out
    m.alice("appcontainer", "cp", "files:/tmp/blob.bin", str(tmp_path / "back"))
    assert (tmp_path / "back" / "blob.bin").read_bytes() == payload
    m.alice("appcontainer", "cp", "files:/tmp/tree", str(tmp_path / "back"))
    assert (tmp_path / "back" / "tree" / "a.txt").read_text() == "alpha\n"
    r = m.alice("appcontainer", "cp", str(tmp_path / "blob.bin"), "files:/no/such/dir", check=False)
    assert "/no/such/dir" in r.stdout + r.stderr
    if engine.runtime == "docker":  # the API's project scoping, whatever the runtime
        r = m.bob("appcontainer", "cp", "files:/tmp/blob.bin", str(tmp_path / "bob"), check=False)
        assert "could not be found" in r.stdout + r.stderr


def test_rebuild_keeps_uuid_and_name(world: tuple[Members, str], engine: EngineView) -> None:
    m, _ = world
    running(m, "rb", "sleep", "3600")
    uid = shown(m, "rb")["uuid"]
    before = engine.container(uid)["Id"]
    out = m.alice("appcontainer", "rebuild", "--wait", "rb").stdout
    assert "success" in out
    after = engine.container(uid)
    assert after["Id"] != before and after["State"]["Running"]
    assert after["Name"] == f"/berth-{uid}"
    shown_after = m.alice_json("appcontainer", "show", "rb")
    assert shown_after["uuid"] == uid and shown_after["status"] == "Running"
    actions = [a["action"] for a in m.alice_json("appcontainer", "action", "list", "rb")]
    assert "rebuild" in actions


def test_session_tokens_are_single_use_and_expire(world: tuple[Members, str]) -> None:
    m, _ = world
    result = zun_library(
        m, "containers.execute('shell', command='sh', interactive=True, run=False)"
    )
    url = result["proxy_url"]
    assert url.startswith("ws://127.0.0.1:")
    origin = "http://" + url.split("/")[2]
    ws = websocket.create_connection(url, origin=origin, subprotocols=["binary", "base64"])
    assert ws.getsubprotocol() == "binary"
    ws.settimeout(10)
    ws.send_binary(b"echo once\r")
    seen = b""
    while b"\nonce" not in seen:
        data = ws.recv()
        seen += data if isinstance(data, bytes) else data.encode()
    ws.close()
    with pytest.raises(websocket.WebSocketBadStatusException) as reused:
        websocket.create_connection(url, origin=origin, subprotocols=["binary", "base64"])
    assert reused.value.status_code == 401

    url = zun_library(m, "containers.attach('att')")
    time.sleep(4)  # the test server's tokens live 3 s
    with pytest.raises(websocket.WebSocketBadStatusException) as expired:
        websocket.create_connection(url, origin=origin, subprotocols=["binary", "base64"])
    assert expired.value.status_code == 401
    url = zun_library(m, "containers.attach('att')")
    with pytest.raises(websocket.WebSocketBadStatusException) as foreign:
        websocket.create_connection(url, origin="http://evil.example", subprotocols=["binary"])
    assert foreign.value.status_code == 403


def _shell_session(m: Members) -> Any:
    result = zun_library(
        m, "containers.execute('shell', command='sh', interactive=True, run=False)"
    )
    url = result["proxy_url"]
    ws = websocket.create_connection(
        url, origin="http://" + url.split("/")[2], subprotocols=["binary"]
    )
    ws.settimeout(10)
    return ws


def _until(ws: Any, text: bytes) -> None:
    seen = b""
    while text not in seen:
        data = ws.recv()
        seen += data if isinstance(data, bytes) else data.encode()


def test_a_message_over_the_limit_ends_only_its_own_session(world: tuple[Members, str]) -> None:
    """A session's input is bounded per message (1 MiB by default, not uvicorn's 16 MiB
    that a project's 64 sessions could each hold in the API process): a larger one ends
    that session with 1009; a big paste under it passes, and other sessions go on."""
    m, _ = world
    other = _shell_session(m)
    ws = _shell_session(m)
    ws.send_binary(b"#" + b"y" * (512 * 1024) + b"\r")  # a long paste: taken
    ws.send_binary(b"echo still-here\r")
    _until(ws, b"\nstill-here")
    # The server answers 1009 and closes as soon as the frame's header says its length;
    # with the rest of the message unread on its side the kernel may reset the connection
    # while the client still sends it, or before the client reads the close frame.
    code = None
    gone = (ConnectionResetError, BrokenPipeError, websocket.WebSocketConnectionClosedException)
    with contextlib.suppress(*gone):
        ws.send_binary(b"z" * (1024 * 1024 + 1))
        while code is None:
            opcode, frame = ws.recv_data_frame(True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                code = int.from_bytes(frame.data[:2], "big")
    assert code in (None, 1009), code  # message too big
    with pytest.raises((ConnectionResetError, BrokenPipeError, websocket.WebSocketException)):
        ws.send_binary(b"echo gone\r")
        ws.recv()
    other.send_binary(b"echo other-fine\r")
    _until(other, b"\nother-fine")
    other.close()


def test_logs_follow_streams_as_the_container_writes(world: tuple[Members, str]) -> None:
    m, base_url = world
    token = m.cli.token("alice", PW, "team-a")
    api = httpx.Client(
        base_url=f"{base_url}/container/v1",
        headers={"X-Auth-Token": token, "OpenStack-API-Version": "container 1.40"},
        timeout=30,
    )
    script = "for i in 1 2 3 4 5; do echo line-$i; sleep 1; done"
    body = {"name": "talker", "image": "berth-test/busybox", "command": ["sh", "-c", script]}
    uid = api.post("/containers?run=true", json=body).json()["uuid"]
    for _ in range(200):
        if api.get(f"/containers/{uid}").json()["status"] == "Running":
            break
        time.sleep(0.05)
    arrivals: list[tuple[float, str]] = []
    with api.stream("GET", f"/containers/{uid}/logs", params={"follow": "True"}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/plain; charset=utf-8"
        assert r.headers.get("transfer-encoding") == "chunked"
        for line in r.iter_lines():
            if line:
                arrivals.append((time.monotonic(), line))
    assert [line for _, line in arrivals][-1] == "line-5"
    assert arrivals[-1][0] - arrivals[0][0] > 2.0  # streamed as written, not at the end
    # the stock client never follows: its logs are the whole text, as before
    assert m.alice("appcontainer", "logs", "talker").stdout.count("line-") == 5

    # a caller that leaves early just stops the stream; the API stays healthy
    body = {"name": "quiet", "image": "berth-test/busybox", "command": ["sleep", "300"]}
    quiet = api.post("/containers?run=true", json=body).json()["uuid"]
    for _ in range(200):
        if api.get(f"/containers/{quiet}").json()["status"] == "Running":
            break
        time.sleep(0.05)
    for _ in range(3):
        with api.stream("GET", f"/containers/{quiet}/logs", params={"follow": "True"}) as r:
            assert r.status_code == 200
    assert api.get(f"/containers/{quiet}/logs").status_code == 200
    api.close()
