"""A host that stops heartbeating: Unknown containers, and evacuation of auto_heal ones."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from berth.config import Settings
from berth.services.hosts.watch import mark_lost_hosts
from berth.store import hosts as hosts_repo
from berth.store.base import utcnow
from tests.helpers import ScriptedAgent
from tests.helpers import zun_headers as h

# Short, for quick tests, but not so short that a loaded CI machine (another
# worker building swarm clusters) spends it between a heartbeat and the next call.
DOWN = 2.0


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"service_down_time": DOWN})


async def show(client: httpx.AsyncClient, token: str, uuid: str) -> dict[str, Any]:
    return dict((await client.get(f"/container/v1/containers/{uuid}", headers=h(token))).json())


async def _running_on(
    client: httpx.AsyncClient, admin_token: str, hostname: str
) -> tuple[ScriptedAgent, str]:
    """A scripted host ``hostname`` and a container it reports running."""
    agent = ScriptedAgent(client, hostname)
    await agent.register()
    r = await client.post(
        "/container/v1/containers?run=true",
        json={"image": "busybox", "memory": 64},
        headers=h(admin_token),
    )
    uuid = r.json()["uuid"]
    await agent.observe(uuid, "running", started_at="2099-01-01T00:00:00+00:00")
    return agent, uuid


async def test_lost_host_shows_unknown_and_evacuates_auto_heal(
    app: FastAPI, client: httpx.AsyncClient, admin_token: str
) -> None:
    dead, alive = ScriptedAgent(client, "dead-host"), ScriptedAgent(client, "alive-host")
    await dead.register()
    await alive.register()

    async def create(**body: Any) -> str:
        # Fresh heartbeats: on a loaded machine a second can pass since registration.
        for agent in (dead, alive):
            beat = await client.post(
                f"/internal/v1/hosts/{agent.hostname}/heartbeat",
                headers={"X-Auth-Token": agent.token},
            )
            assert beat.status_code == 200, beat.text
        r = await client.post(
            "/container/v1/containers?run=true",
            json={"image": "busybox", "host": "dead-host", "memory": 64, **body},
            headers=h(admin_token),
        )
        assert r.status_code == 202 and r.json()["host"] == "dead-host", r.text
        return str(r.json()["uuid"])

    healer, plain = await create(auto_heal=True), await create()
    for uuid in (healer, plain):
        await dead.observe(uuid, "running", started_at="2099-01-01T00:00:00+00:00")
    r = await client.post("/container/v1/hosts/dead-host/evacuate", headers=h(admin_token))
    assert r.status_code == 409 and "force its service down" in r.json()["errors"][0]["detail"]

    await asyncio.sleep(DOWN + 0.2)
    await client.post(
        "/internal/v1/hosts/alive-host/heartbeat", headers={"X-Auth-Token": alive.token}
    )
    env = app.state.berth.env
    assert await mark_lost_hosts(env) == 2
    for uuid in (healer, plain):
        c = await show(client, admin_token, uuid)
        assert c["status"] == "Unknown"
        assert "Host dead-host is down" in c["status_reason"]
    assert await mark_lost_hosts(env) == 0  # idempotent

    # The living host's agent keeps heartbeating (on a loaded machine the checks
    # above can outlast the down time, and an unheard host takes no evacuees).
    await client.post(
        "/internal/v1/hosts/alive-host/heartbeat", headers={"X-Auth-Token": alive.token}
    )
    r = await client.post("/container/v1/hosts/dead-host/evacuate", headers=h(admin_token))
    assert r.status_code == 202, r.text
    assert r.json() == {"moved": {healer: "alive-host"}, "failed": {}, "left": [plain]}
    moved = await show(client, admin_token, healer)
    assert moved["host"] == "alive-host" and moved["status"] == "Creating"
    assert healer in await alive.desired()
    assert healer not in await dead.desired()  # the old agent would garbage-collect it
    dead_host = (await client.get("/container/v1/hosts/dead-host", headers=h(admin_token))).json()
    assert dead_host["mem_used"] == 64  # only the container that stayed


async def test_evacuate_is_admin_only(client: httpx.AsyncClient, admin_token: str) -> None:
    from tests.helpers import make_member

    alice = await make_member(client, admin_token, "evac-p", "evac-u")
    r = await client.post("/container/v1/hosts/any/evacuate", headers=h(alice))
    assert r.status_code == 403


async def test_a_host_that_answers_again_shows_its_containers_as_last_seen(
    app: FastAPI, client: httpx.AsyncClient, admin_token: str
) -> None:
    agent, uuid = await _running_on(client, admin_token, "blip-host")
    await asyncio.sleep(DOWN + 0.2)
    env = app.state.berth.env
    assert await mark_lost_hosts(env) == 1
    assert (await show(client, admin_token, uuid))["status"] == "Unknown"
    # The agent did not restart: it has nothing new to report, it just heartbeats again.
    r = await client.post(
        "/internal/v1/hosts/blip-host/heartbeat", headers={"X-Auth-Token": agent.token}
    )
    assert r.status_code == 200
    c = await show(client, admin_token, uuid)
    assert (c["status"], c["status_reason"]) == ("Running", None)

    # Forced down by an admin while heartbeating: lifting it restores the status too.
    body = {"host": "blip-host", "binary": "berth-agent", "forced_down": True}
    r = await client.put("/container/v1/services/force_down", json=body, headers=h(admin_token))
    assert r.status_code == 200, r.text
    assert await mark_lost_hosts(env) == 1
    assert (await show(client, admin_token, uuid))["status"] == "Unknown"
    # Its agent keeps heartbeating meanwhile (the down time here is 2 s, which a
    # loaded database can spend on the two calls above).
    r = await client.post(
        "/internal/v1/hosts/blip-host/heartbeat", headers={"X-Auth-Token": agent.token}
    )
    assert r.status_code == 200
    body["forced_down"] = False
    r = await client.put("/container/v1/services/force_down", json=body, headers=h(admin_token))
    assert r.status_code == 200, r.text
    assert (await show(client, admin_token, uuid))["status"] == "Running"


async def test_the_scheduler_cache_sees_a_silent_host_turn_down_on_time(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    from berth.services.hosts.cache import HostCache

    quiet, talking = ScriptedAgent(client, "cd-quiet"), ScriptedAgent(client, "cd-talking")
    await quiet.register()
    await talking.register()
    env, now = app.state.berth.env, [0.0]
    cache = HostCache(ttl=60.0, with_projects=False, clock=lambda: now[0])

    async def states() -> tuple[dict[str, bool], bool]:
        async with env.db.read() as session:
            hosts, checked = await cache.hosts(session, 1.0)
        return {h.hostname: h.up for h in hosts}, checked

    for agent in (quiet, talking):  # on a loaded machine a second can pass since registering
        r = await client.post(
            f"/internal/v1/hosts/{agent.hostname}/heartbeat", headers={"X-Auth-Token": agent.token}
        )
        assert r.status_code == 200
    assert await states() == ({"cd-quiet": True, "cd-talking": True}, True)  # the full read
    assert await states() == ({"cd-quiet": True, "cd-talking": True}, False)  # cached
    now[0] = 61.0
    assert (await states())[1] and cache.checks == 1  # the ttl ran out: a check
    for _ in range(3):
        await asyncio.sleep(0.4)
        r = await client.post(
            "/internal/v1/hosts/cd-talking/heartbeat", headers={"X-Auth-Token": talking.token}
        )
        assert r.status_code == 200
    # Well within the ttl, but cd-quiet's last heartbeat is older than service_down_time.
    assert await states() == ({"cd-quiet": False, "cd-talking": True}, True)


async def test_a_pending_rebuild_shows_rebuilding_until_the_agent_did_it(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    agent = ScriptedAgent(client)
    await agent.register()
    r = await client.post(
        "/container/v1/containers?run=true", json={"image": "busybox"}, headers=h(admin_token)
    )
    uuid = r.json()["uuid"]
    await agent.observe(uuid, "running", runtime_id="old")
    r = await client.post(f"/container/v1/containers/{uuid}/rebuild", headers=h(admin_token))
    assert r.status_code == 202, r.text
    (op,) = (await agent.desired())[uuid]["pending_ops"]
    await agent.observe(uuid, "running", runtime_id="old")  # a pass before the rebuild ran
    assert (await show(client, admin_token, uuid))["status"] == "Rebuilding"
    await agent.observe(uuid, "running", runtime_id="new", done_ops=[op["id"]])
    assert (await show(client, admin_token, uuid))["status"] == "Running"


async def test_a_host_heard_from_while_the_lost_hosts_job_runs_is_not_left_unknown(
    app: FastAPI, client: httpx.AsyncClient, admin_token: str
) -> None:
    """The call ending an outage and the lost-hosts job at the same moment: the job
    used to mark the containers Unknown after that call had made the host up again,
    and with nothing new to report the agent never changed them back (600 of 50,000
    in the pool bench, docs/benchmarks.md)."""
    _, uuid = await _running_on(client, admin_token, "race-host")
    await asyncio.sleep(DOWN + 0.2)  # silent for longer than the down time: lost
    env = app.state.berth.env
    # The agent's call is in flight: its transaction has written "heard now", not committed.
    async with env.db.transaction() as session:
        svc = await hosts_repo.agent_service(session, "race-host", lock=True)
        assert svc is not None
        svc.last_seen_up = utcnow()
        await session.flush()
        job = asyncio.create_task(mark_lost_hosts(env))
        await asyncio.sleep(0.5)  # the job runs meanwhile (on the old code: to the end)
    assert await asyncio.wait_for(job, 10) == 0
    c = await show(client, admin_token, uuid)
    assert (c["status"], c["status_reason"]) == ("Running", None)
    # Once the host is silent again, the job marks it as before.
    await asyncio.sleep(DOWN + 0.2)
    assert await mark_lost_hosts(env) == 1
    assert (await show(client, admin_token, uuid))["status"] == "Unknown"


async def test_a_host_this_process_heard_is_not_lost_while_its_write_waits(
    app: FastAPI, client: httpx.AsyncClient, admin_token: str
) -> None:
    """Under overload an agent's calls reach the API but their write waits for a
    database connection; the lost-hosts job used to take the silence in the database
    for the host's and mark it lost (~170 hosts in the 50,000 bench)."""
    _, uuid = await _running_on(client, admin_token, "busy-host")
    await asyncio.sleep(DOWN + 0.2)  # the database has nothing newer than DOWN ago
    env = app.state.berth.env
    # A call this process noted for its next batch (not written yet).
    env.liveness.confirm("busy-host", time.time())
    assert env.liveness.note("busy-host")
    assert await mark_lost_hosts(env) == 0
    assert (await show(client, admin_token, uuid))["status"] == "Running"
    # Forced down by an admin, it is marked whatever this process heard.
    body = {"host": "busy-host", "binary": "berth-agent", "forced_down": True}
    r = await client.put("/container/v1/services/force_down", json=body, headers=h(admin_token))
    assert r.status_code == 200, r.text
    assert await mark_lost_hosts(env) == 1
    assert (await show(client, admin_token, uuid))["status"] == "Unknown"
