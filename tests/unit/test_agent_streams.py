"""The agent's session websocket and archive routes over a FakeDriver, in memory."""

from __future__ import annotations

import asyncio
import base64
import io
import signal
import tarfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from berth.agent.server import create_agent_app
from berth.domain.hostsync import DesiredContainer
from berth.runtimes.fake import FakeDriver
from berth.runtimes.hangup import session_members, signal_session
from berth.services.hosts.asgi_memory import MemoryResponse, MemoryWebSocket

KEY = "agent-key"
AUTH = {"authorization": f"Bearer {KEY}"}


@pytest.fixture
async def driver() -> FakeDriver:
    fake = FakeDriver(images={"img"})
    spec = DesiredContainer("u1", "c", "p", "img", "running", 1)
    await fake.create(spec)
    await fake.start("u1")
    return fake


async def test_session_protocol(driver: FakeDriver) -> None:
    app = create_agent_app(driver, KEY)
    ws = MemoryWebSocket(app, "/v1/containers/u1/attach", "idle=30", {"authorization": "Bearer x"})
    assert not await ws.connect() and ws.close_code == 1008  # wrong key: refused

    ws = MemoryWebSocket(app, "/v1/containers/nope/attach", "", AUTH)
    assert await ws.connect()
    assert await ws.receive() is None and ws.close_code == 4404  # the error, as a close code

    ws = MemoryWebSocket(app, "/v1/containers/u1/attach", "idle=30", AUTH)
    assert await ws.connect() and await ws.receive() == "ready"
    await ws.send(b"ping")
    assert await ws.receive() == b"ping"
    await ws.close()
    await driver.wait_for(lambda: driver.sessions[-1].closed)


async def test_an_idle_session_is_ended_by_the_agent(driver: FakeDriver) -> None:
    app = create_agent_app(driver, KEY)
    exec_id = await driver.exec_create("u1", ["sh"], tty=True)
    ws = MemoryWebSocket(app, f"/v1/containers/u1/exec/{exec_id}", "idle=1", AUTH)
    assert await ws.connect() and await ws.receive() == "ready"
    assert await ws.receive() is None  # after a second of silence
    assert driver.sessions[-1].closed


async def test_follow_stops_when_the_caller_leaves(driver: FakeDriver) -> None:
    app = create_agent_app(driver, KEY)
    driver.containers["u1"].logs.append("hello\n")
    response = MemoryResponse(app, "GET", "/v1/containers/u1/logs/follow", "tail=5", AUTH)
    await response.start()
    assert response.status == 200 and response.headers["content-type"].startswith("text/plain")
    body = response.body()
    assert await anext(body) == b"hello\n"
    await response.close()  # returns: the app saw the disconnect and ended


async def test_archive_routes_check_uploads_again(driver: FakeDriver) -> None:
    transport = httpx.ASGITransport(app=create_agent_app(driver, KEY))
    async with httpx.AsyncClient(transport=transport, base_url="http://agent", headers=AUTH) as c:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            info = tarfile.TarInfo("../x")
            tar.addfile(info, io.BytesIO(b""))
        bad = base64.b64encode(buffer.getvalue()).decode()
        r = await c.put("/v1/containers/u1/archive", params={"path": "/tmp"}, json={"data": bad})
        assert r.status_code == 400 and "'..'" in r.json()["error"]["message"]
        r = await c.get("/v1/containers/u1/archive", params={"path": "/nope"})
        assert r.status_code == 400


def test_hangup_signals_only_the_session_inside_the_container(tmp_path: Path) -> None:
    def proc(pid: int, session: int, cgroup: str) -> None:
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(f"{pid} (sh (x)) S 1 {pid} {session} 0")
        (tmp_path / str(pid) / "cgroup").write_text(f"0::/docker/{cgroup}\n")

    proc(100, 100, "abc123")  # the exec's shell
    proc(101, 100, "abc123")  # its job
    proc(102, 100, "other")  # same session number, another container: never
    proc(103, 7, "abc123")  # the container's main process: never
    assert session_members(100, "abc123", tmp_path) == [100, 101]
    assert session_members(100, "zzz", tmp_path) == []  # a reused PID: nothing
    assert signal_session(999_999, "abc123", signal.SIGHUP, tmp_path) == 0


async def test_input_waits_while_the_app_is_behind_and_never_piles_up() -> None:
    """A session whose process reads no input (the agent blocked writing to it) makes
    the API's ``send`` wait after a few frames, instead of queueing every frame the
    tenant sends in the API process; it still closes, and a send ends with the app."""
    release = asyncio.Event()
    taken: list[Any] = []

    async def stalled(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        await release.wait()  # the process's stdin is full: nothing is read meanwhile
        while (message := await receive())["type"] == "websocket.receive":
            taken.append(message)

    ws = MemoryWebSocket(stalled, "/x", "", {})
    assert await ws.connect()
    frame = b"x" * 65536
    accepted = 0
    with pytest.raises(TimeoutError):
        for _ in range(1000):
            await asyncio.wait_for(ws.send(frame), 0.2)
            accepted += 1
    assert 0 < accepted <= 32, accepted  # a bounded backlog, not 1000 frames
    release.set()
    await asyncio.wait_for(ws.send(frame), 5)  # the app reads again: sends go through
    await asyncio.wait_for(ws.close(), 10)
    assert len(taken) >= accepted

    release.clear()
    ws = MemoryWebSocket(stalled, "/x", "", {})
    assert await ws.connect()
    for _ in range(accepted):
        await ws.send(frame)
    # A full backlog does not stop the goodbye (the app gets it once it reads again).
    closing = asyncio.create_task(ws.close())
    await asyncio.sleep(0.1)
    release.set()
    await asyncio.wait_for(closing, 10)


async def test_a_send_waiting_on_an_app_that_ends_returns() -> None:
    async def quits(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await asyncio.sleep(0.3)  # ends without reading what was sent

    ws = MemoryWebSocket(quits, "/x", "", {})
    assert await ws.connect()
    for _ in range(100):
        await asyncio.wait_for(ws.send(b"late"), 5)  # dropped once the app is gone
    await ws.close()
