"""The agent's own HTTP API over the FakeDriver."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from berth.agent.server import create_agent_app, parse_since, parse_tail
from berth.domain.hostsync import DesiredContainer
from berth.runtimes.fake import FakeDriver

KEY = "s3cret-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
async def runtime() -> FakeDriver:
    driver = FakeDriver(images={"busybox:1"})
    spec = DesiredContainer("c1", "web", "p1", "busybox:1", "running", 1, memory=64)
    await driver.create(spec)
    await driver.start("c1")
    driver.containers["c1"].logs = ["one\n", "two\n", "three\n"]
    return driver


@pytest.fixture
async def agent(runtime: FakeDriver) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_agent_app(runtime, KEY))
    async with httpx.AsyncClient(transport=transport, base_url="http://agent") as client:
        yield client


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}])
async def test_every_route_wants_the_key(agent: httpx.AsyncClient, headers: dict[str, str]) -> None:
    r = await agent.get("/v1/containers/c1/stats", headers=headers)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized"


async def test_healthz_is_open(agent: httpx.AsyncClient) -> None:
    assert (await agent.get("/healthz")).json() == {"status": "ok"}


async def test_logs_with_tail(agent: httpx.AsyncClient) -> None:
    r = await agent.get(
        "/v1/containers/c1/logs", params={"tail": "2", "stdout": "True"}, headers=AUTH
    )
    assert r.status_code == 200
    assert r.json() == {"logs": "two\nthree\n"}


async def test_execute(agent: httpx.AsyncClient) -> None:
    r = await agent.post(
        "/v1/containers/c1/execute", json={"command": ["echo", "hi"], "timeout": 2}, headers=AUTH
    )
    assert r.json() == {"output": "echo hi\n", "exit_code": 0}


async def test_execute_timeout_is_409(agent: httpx.AsyncClient) -> None:
    r = await agent.post(
        "/v1/containers/c1/execute", json={"command": ["sleep", "9"], "timeout": 1}, headers=AUTH
    )
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "conflict"


async def test_execute_needs_a_command(agent: httpx.AsyncClient) -> None:
    r = await agent.post("/v1/containers/c1/execute", json={"command": []}, headers=AUTH)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid"


async def test_top_and_stats(agent: httpx.AsyncClient) -> None:
    top = await agent.get("/v1/containers/c1/top", params={"ps_args": "None"}, headers=AUTH)
    assert top.json()["Titles"] == ["PID", "CMD"]
    stats = (await agent.get("/v1/containers/c1/stats", headers=AUTH)).json()
    assert stats["MEM LIMIT(MiB)"] == 64.0
    assert set(stats) == {
        "CONTAINER", "CPU %", "MEM USAGE(MiB)", "MEM LIMIT(MiB)", "MEM %", "BLOCK I/O(B)",
        "NET I/O(B)",
    }  # fmt: skip


async def test_update(agent: httpx.AsyncClient, runtime: FakeDriver) -> None:
    r = await agent.post("/v1/containers/c1/update", json={"cpu": 0.5, "memory": 32}, headers=AUTH)
    assert r.status_code == 200
    assert (runtime.containers["c1"].cpu, runtime.containers["c1"].memory) == (0.5, 32)


async def test_missing_container_is_404(agent: httpx.AsyncClient) -> None:
    r = await agent.get("/v1/containers/nope/logs", headers=AUTH)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "container-not-found"


async def test_wrong_state_is_409(agent: httpx.AsyncClient, runtime: FakeDriver) -> None:
    await runtime.stop("c1", 1)
    r = await agent.get("/v1/containers/c1/top", headers=AUTH)
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "invalid-state-exception"


async def test_bad_since_is_400(agent: httpx.AsyncClient) -> None:
    r = await agent.get("/v1/containers/c1/logs", params={"since": "yesterday"}, headers=AUTH)
    assert r.status_code == 400


@pytest.mark.parametrize(
    ("text", "expected"),
    [(None, None), ("None", None), ("", None), ("1700000000", 1700000000.0),
     ("2023-11-14 22:13:20,000", 1700000000.0), ("2023-11-14T22:13:20+00:00", 1700000000.0)],
)  # fmt: skip
def test_parse_since(text: str | None, expected: float | None) -> None:
    assert parse_since(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"), [(None, None), ("all", None), ("5", 5), ("-1", None)]
)
def test_parse_tail(text: str | None, expected: int | None) -> None:
    assert parse_tail(text) == expected
