"""An agent's long polls say it is alive: no heartbeat needed, no write per poll (#19).

Each API process notes the calls it hears in memory and writes the hosts heard
in one UPDATE per ``flush_period`` (``services/hosts/liveness.py``). These tests
play the agent over the internal API with polls only and check what a user
sees: the host stays up, its containers keep their status; once the polls stop
it goes down after ``service_down_time``; and two API processes over one
database each write what they heard, without moving a host's last call back.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from berth.api.app import create_app
from berth.config import Settings
from berth.services.env import Env
from berth.services.hosts.heartbeats import flush_heard
from berth.services.hosts.watch import mark_lost_hosts
from berth.store import hosts as repo
from berth.store.db import Writes
from tests.helpers import ScriptedAgent
from tests.helpers import zun_headers as h

# As in test_host_failures: short, but not so short that a loaded machine spends it.
DOWN = 2.0
HOST = "poll-host"


@pytest.fixture
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """``service_down_time`` as the test asks (parametrized), else the default 180 s: then
    a background batch runs every 10 s, rarely during a test."""
    down = getattr(request, "param", None)
    return settings if down is None else settings.model_copy(update={"service_down_time": down})


class Poller(ScriptedAgent):
    """An agent that only long-polls (the incremental protocol), never heartbeats."""

    since = ""

    async def poll(self, client: httpx.AsyncClient | None = None, wait: float = 0.0) -> None:
        r = await (client or self.client).get(
            f"/internal/v1/hosts/{self.hostname}/desired",
            params={"since": self.since, "wait": wait},
            headers={"X-Auth-Token": self.token},
            timeout=wait + 30,
        )
        assert r.status_code == 200, r.text
        body = r.json()
        self.since = f"{body['epoch']}:{body['revision']}"


async def _running_container(
    client: httpx.AsyncClient, token: str, agent: Poller, env: Env | None = None
) -> str:
    if env is not None:  # up when placed, however long the steps before took (CI's load)
        await agent.poll()
        await flush_heard(env)
    r = await client.post(
        "/container/v1/containers?run=true",
        json={"image": "busybox", "host": agent.hostname, "memory": 64},
        headers=h(token),
    )
    assert r.status_code == 202, r.text
    uuid = str(r.json()["uuid"])
    await agent.observe(uuid, "running", started_at="2099-01-01T00:00:00+00:00")
    return uuid


async def _status(client: httpx.AsyncClient, token: str, uuid: str) -> tuple[str, str | None]:
    body: dict[str, Any] = (
        await client.get(f"/container/v1/containers/{uuid}", headers=h(token))
    ).json()
    return body["status"], body["status_reason"]


async def _last_seen(env: Env) -> dt.datetime:
    async with env.db.read() as session:
        svc = await repo.agent_service(session, HOST)
    assert svc is not None and svc.last_seen_up is not None
    return svc.last_seen_up


@pytest.mark.parametrize("settings", [DOWN], indirect=True)
async def test_a_host_whose_only_calls_are_long_polls_stays_up_then_goes_down(
    app: FastAPI, client: httpx.AsyncClient, admin_token: str
) -> None:
    env: Env = app.state.berth.env
    agent = Poller(client, HOST)
    await agent.register()
    uuid = await _running_container(client, admin_token, agent, env)
    await agent.poll()
    # Polls for longer than the down time. Each waits at most a third of it
    # (whatever the agent asks), so they start often enough to keep it up.
    loop = asyncio.get_running_loop()
    until = loop.time() + DOWN * 1.5
    while loop.time() < until:
        await agent.poll(wait=60)
    await flush_heard(env)  # what the background batch does every DOWN / 6 s
    assert await mark_lost_hosts(env) == 0
    assert await _status(client, admin_token, uuid) == ("Running", None)
    services = (await client.get("/container/v1/services", headers=h(admin_token))).json()
    (svc,) = [s for s in services["services"] if s["host"] == HOST]
    assert svc["state"] == "up"

    # The agent dies: no call any more. After the down time the host is lost.
    await asyncio.sleep(DOWN + 0.2)
    await flush_heard(env)
    assert await mark_lost_hosts(env) == 1
    status, reason = await _status(client, admin_token, uuid)
    assert status == "Unknown" and reason and f"Host {HOST} is down" in reason

    # It comes back and polls: that first call is written at once, the container restored.
    await agent.poll()
    assert await _status(client, admin_token, uuid) == ("Running", None)
    assert await mark_lost_hosts(env) == 0


async def test_polls_are_written_in_batches_not_one_write_each(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    env: Env = app.state.berth.env
    agent = Poller(client, HOST)
    await agent.register()
    await agent.poll()
    writes: list[Writes] = []
    env.db.watch_writes(lambda w: writes.append(w) if "services:update" in w else None)
    before = await _last_seen(env)
    for _ in range(30):
        await agent.poll()
    await flush_heard(env)
    # One batch here, and perhaps one by the background task meanwhile (every
    # 10 s); a write per poll would be 30.
    assert 1 <= len(writes) <= 3
    assert await _last_seen(env) > before


async def test_two_api_processes_each_write_what_they_heard(
    settings: Settings, app: FastAPI, client: httpx.AsyncClient, admin_token: str
) -> None:
    """An agent moves to another API process (the one holding its poll died, with calls
    noted but not written): its first call there is written at once, and a late batch
    of the first process does not move the host's last call back."""
    first: Env = app.state.berth.env
    other = create_app(settings, run_workers=False, migrate=False)
    async with other.router.lifespan_context(other):
        second: Env = other.state.berth.env
        transport = httpx.ASGITransport(app=other)
        async with httpx.AsyncClient(transport=transport, base_url="http://second") as api2:
            agent = Poller(client, HOST)
            await agent.register()
            uuid = await _running_container(client, admin_token, agent)
            seen = await _last_seen(first)
            await agent.poll()  # to the first process: noted in its memory
            first.liveness.take()  # ... which dies before its next batch

            await agent.poll(api2)  # the agent polls the second process: written at once
            moved = await _last_seen(first)
            assert moved > seen and not len(second.liveness)

            await agent.poll(api2)  # its next calls there wait for a batch
            assert len(second.liveness) == 1
            first.liveness.put_back({HOST: seen.timestamp()})  # an older call, written late
            await flush_heard(first)
            assert await _last_seen(first) == moved  # never moved back
            await flush_heard(second)
            assert await _last_seen(first) >= moved
            assert await mark_lost_hosts(first) == 0
            assert await _status(client, admin_token, uuid) == ("Running", None)
    assert not other.state.berth.saw_server_error
