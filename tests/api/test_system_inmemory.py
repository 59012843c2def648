"""The whole control loop in memory: real app, real Agent loop, FakeDriver runtime.

These cover the synchronous agent calls (logs, exec, top, stats) and the
reconcile round trips through the API, on SQLite and PostgreSQL, in seconds.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from berth.config import Settings
from berth.events.amqp import RELAY_CURSOR
from berth.runtimes.fake import FakeDriver
from berth.services.containers import ops
from berth.services.hosts import hosts as host_service
from berth.services.worker import trim_history
from berth.store.tables import (
    ActionEventRow,
    ContainerActionRow,
    ContainerRow,
    EventRow,
    OutboxCursorRow,
)
from tests.api.conftest import IMAGE
from tests.helpers import make_member, slow_reader
from tests.helpers import zun_headers as h


async def wait_status(
    client: httpx.AsyncClient, token: str, ident: str, want: str, within: float = 10.0
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for _ in range(int(within / 0.05)):
        r = await client.get(f"/container/v1/containers/{ident}", headers=h(token))
        if r.status_code == 404 and want == "gone":
            return {}
        body = r.json()
        if body.get("status") == want:
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"{ident} never reached {want}: {body}")


async def run(client: httpx.AsyncClient, token: str, **body: Any) -> dict[str, Any]:
    body.setdefault("image", IMAGE)
    r = await client.post("/container/v1/containers?run=true", json=body, headers=h(token))
    assert r.status_code == 202, r.text
    created: dict[str, Any] = r.json()
    return await wait_status(client, token, created["uuid"], "Running")


async def test_logs_exec_top_stats_through_the_agent(
    client: httpx.AsyncClient, admin_token: str, runtime: FakeDriver
) -> None:
    c = await run(client, admin_token, name="svc", memory=64)
    runtime.containers[c["uuid"]].logs.extend(["one\n", "two\n", "three\n"])
    url = f"/container/v1/containers/{c['uuid']}"
    r = await client.get(
        f"{url}/logs?stdout=True&stderr=True&timestamps=False&tail=2", headers=h(admin_token)
    )
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json() == "two\nthree\n"
    r = await client.post(f'{url}/execute?command="echo" "a b"', headers=h(admin_token))
    assert r.json() == {"output": "echo a b\n", "exit_code": 0, "exec_id": None, "proxy_url": None}
    r = await client.post(f"{url}/execute?command=sleep 60", headers=h(admin_token))
    assert r.status_code == 409
    assert (await client.get(f"{url}/top?ps_args=None", headers=h(admin_token))).json()[
        "Titles"
    ] == ["PID", "CMD"]
    stats = (await client.get(f"{url}/stats", headers=h(admin_token))).json()
    assert stats["CONTAINER"] == "svc" and stats["MEM LIMIT(MiB)"] == 64.0


async def test_lifecycle_round_trips(
    client: httpx.AsyncClient, admin_token: str, runtime: FakeDriver
) -> None:
    c = await run(client, admin_token)
    url = f"/container/v1/containers/{c['uuid']}"
    for action, status in (
        ("stop", "Stopped"),
        ("start", "Running"),
        ("pause", "Paused"),
        ("unpause", "Running"),
        ("reboot", "Running"),
        ("kill?signal=SIGKILL", "Stopped"),
    ):
        r = await client.post(f"{url}/{action}", headers=h(admin_token))
        assert r.status_code == 202, (action, r.text)
        await wait_status(client, admin_token, c["uuid"], status)
    assert runtime.count("restart", c["uuid"]) == 1
    assert (await client.delete(url, headers=h(admin_token))).status_code == 204
    await wait_status(client, admin_token, c["uuid"], "gone")
    assert c["uuid"] not in runtime.containers
    host = (await client.get("/container/v1/hosts/test-host", headers=h(admin_token))).json()
    assert host["mem_used"] == 0 and host["total_containers"] == 0


async def test_exited_container_is_stopped_and_stays_stopped(
    client: httpx.AsyncClient, admin_token: str, runtime: FakeDriver
) -> None:
    c = await run(client, admin_token)
    runtime.exit(c["uuid"], code=0)
    await wait_status(client, admin_token, c["uuid"], "Stopped")
    await asyncio.sleep(1.2)  # two reconcile passes: nothing restarts it
    assert runtime.count("start", c["uuid"]) == 1


async def test_an_auto_remove_container_that_exited_runs_once_and_is_deleted(
    client: httpx.AsyncClient, admin_token: str, runtime: FakeDriver
) -> None:
    """The engine removes an ``auto_remove`` container as it exits: the agent must report
    it gone, never make it again (its view of the desired state may not hold the runtime id
    its own report recorded: an incremental poll does not carry it back)."""
    c = await run(client, admin_token, auto_remove=True, command=["sh", "-c", "true"])
    runtime.exit(c["uuid"], code=0)
    runtime.vanish(c["uuid"])  # what the engine does with an auto_remove container
    for _ in range(200):
        r = await client.get(f"/container/v1/containers/{c['uuid']}", headers=h(admin_token))
        if r.status_code == 404:
            break
        await asyncio.sleep(0.05)
    assert r.status_code == 404, r.text
    await asyncio.sleep(1.2)  # two more reconcile passes: nothing makes it again
    assert runtime.count("create", c["uuid"]) == 1
    assert c["uuid"] not in runtime.containers


@pytest.mark.allows_5xx("a host that is really down is a 503, not bad input")
async def test_logs_of_unreachable_agent_is_503_not_500(
    app: FastAPI,
    client: httpx.AsyncClient,
    admin_token: str,
    runtime: FakeDriver,
    settings: Settings,
) -> None:
    c = await run(client, admin_token)
    app.state.berth.env.agents.local.pop(settings.agent_host)
    r = await client.get(f"/container/v1/containers/{c['uuid']}/logs", headers=h(admin_token))
    assert r.status_code == 503
    assert "agent" in r.json()["errors"][0]["detail"]


@pytest.mark.allows_5xx("the 503 of a log read that found no turn in time is the point")
async def test_log_reads_of_a_project_take_turns_past_the_bound(
    app: FastAPI,
    client: httpx.AsyncClient,
    admin_token: str,
    runtime: FakeDriver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A log read holds the whole log several times over in the API process, so a
    project's reads past ``max_log_reads_per_project`` wait for a turn (answered once
    one ends), and a 503 to retry if none ends in time; other projects go on."""
    state = app.state.berth
    state.env.settings = state.settings.model_copy(update={"max_log_reads_per_project": 1})
    c = await run(client, admin_token)
    runtime.containers[c["uuid"]].logs.append("slow\n")
    url = f"/container/v1/containers/{c['uuid']}/logs"
    gate = runtime.gates[f"logs:{c['uuid']}"] = asyncio.Event()
    first = asyncio.create_task(client.get(url, headers=h(admin_token)))
    await runtime.wait_for(lambda: ("logs", c["uuid"]) in runtime.calls)
    # The second read waits its turn, and is answered once the first ends.
    second = asyncio.create_task(client.get(url, headers=h(admin_token)))
    await asyncio.sleep(0.3)
    assert not second.done() and runtime.calls.count(("logs", c["uuid"])) == 1
    # A turn is taken once the caller may read the container: a wrong one is its 404 now.
    r = await asyncio.wait_for(
        client.get(url.replace(c["uuid"], "nope"), headers=h(admin_token)), 5
    )
    assert r.status_code == 404, r.text
    # Another project's read is not held up by this one's.
    other = await make_member(client, admin_token, "logs-other", "logs-other-user")
    theirs = await run(client, other)
    r = await client.get(f"/container/v1/containers/{theirs['uuid']}/logs", headers=h(other))
    assert r.status_code == 200, r.text
    gate.set()
    assert (await asyncio.wait_for(first, 5)).json() == "slow\n"
    assert (await asyncio.wait_for(second, 5)).json() == "slow\n"

    # No turn within the wait: 503 to retry, naming the setting; nothing was read.
    monkeypatch.setattr(ops, "TURN_WAIT", 0.3)
    gate.clear()
    first = asyncio.create_task(client.get(url, headers=h(admin_token)))
    await runtime.wait_for(lambda: runtime.calls.count(("logs", c["uuid"])) == 3)
    r = await client.get(url, headers=h(admin_token))
    assert r.status_code == 503 and r.headers.get("retry-after"), r.text
    assert "max_log_reads_per_project" in r.json()["errors"][0]["detail"]
    assert runtime.calls.count(("logs", c["uuid"])) == 3
    gate.set()
    assert (await asyncio.wait_for(first, 5)).status_code == 200
    assert (await client.get(url, headers=h(admin_token))).status_code == 200


@pytest.mark.allows_5xx("the 503 of a command that found no turn in time is the point")
async def test_commands_of_a_project_take_turns_past_the_bound(
    app: FastAPI,
    client: httpx.AsyncClient,
    admin_token: str,
    runtime: FakeDriver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each command (and top, and stats) holds an engine thread of its host while it
    runs: a project's past ``max_execs_per_project`` wait for a turn, then a 503; other
    projects go on."""
    state = app.state.berth
    state.env.settings = state.settings.model_copy(update={"max_execs_per_project": 2})
    c = await run(client, admin_token)
    url = f"/container/v1/containers/{c['uuid']}/execute"
    gate = runtime.gates[f"execute:{c['uuid']}"] = asyncio.Event()

    def post() -> Any:
        return asyncio.create_task(
            client.post(url, json={"command": "echo hi", "run": True}, headers=h(admin_token))
        )

    held = [post(), post()]
    await runtime.wait_for(lambda: runtime.calls.count(("execute", c["uuid"])) == 2)
    waiting = post()
    # top and stats hold an engine thread too: they wait their turn with the commands
    sample = asyncio.create_task(
        client.get(f"/container/v1/containers/{c['uuid']}/stats", headers=h(admin_token))
    )
    await asyncio.sleep(0.3)
    assert not waiting.done() and runtime.calls.count(("execute", c["uuid"])) == 2
    assert not sample.done()
    # A turn is taken once the caller may act on the container: a wrong one is its 404 now.
    for path in ("execute", "stats", "top"):
        wrong = f"/container/v1/containers/nope/{path}"
        call = (
            client.post(wrong, json={"command": "echo hi", "run": True}, headers=h(admin_token))
            if path == "execute"
            else client.get(wrong, headers=h(admin_token))
        )
        assert (await asyncio.wait_for(call, 5)).status_code == 404, path
    other = await make_member(client, admin_token, "exec-other", "exec-other-user")
    theirs = await run(client, other)
    r = await client.post(
        f"/container/v1/containers/{theirs['uuid']}/execute",
        json={"command": "echo hi", "run": True},
        headers=h(other),
    )
    assert r.status_code == 200, r.text
    gate.set()
    for task in (*held, waiting, sample):
        assert (await asyncio.wait_for(task, 5)).status_code == 200

    monkeypatch.setattr(ops, "TURN_WAIT", 0.3)
    gate.clear()
    held = [post(), post()]
    await runtime.wait_for(lambda: runtime.calls.count(("execute", c["uuid"])) == 5)
    r = await client.post(url, json={"command": "echo hi", "run": True}, headers=h(admin_token))
    assert r.status_code == 503 and "max_execs_per_project" in r.text, r.text
    gate.set()
    for task in held:
        assert (await asyncio.wait_for(task, 5)).status_code == 200


async def test_signals_waiting_for_their_host_are_bounded(
    app: FastAPI, client: httpx.AsyncClient, admin_token: str, runtime: FakeDriver
) -> None:
    """A signal that does not stop the container waits in its row until its host has
    delivered it: past ``max_waiting_signals`` one more is a 409 that says to retry,
    and once they are delivered signals are taken again."""
    state = app.state.berth
    state.env.settings = state.settings.model_copy(update={"max_waiting_signals": 3})
    c = await run(client, admin_token)
    gate = runtime.gates[f"kill:{c['uuid']}"] = asyncio.Event()
    url = f"/container/v1/containers/{c['uuid']}/kill?signal=SIGUSR1"
    for _ in range(3):
        r = await client.post(url, headers=h(admin_token))
        assert r.status_code == 202, r.text
    r = await client.post(url, headers=h(admin_token))
    assert r.status_code == 409 and "max_waiting_signals" in r.text, r.text
    assert "retry once they are delivered" in r.json()["errors"][0]["detail"]
    gate.set()
    await runtime.wait_for(lambda: runtime.calls.count(("kill", c["uuid"])) == 3)
    for _ in range(100):  # once the host has reported them delivered
        r = await client.post(url, headers=h(admin_token))
        if r.status_code == 202:
            break
        assert r.status_code == 409, r.text
        await asyncio.sleep(0.05)
    assert r.status_code == 202, r.text
    await runtime.wait_for(lambda: runtime.calls.count(("kill", c["uuid"])) >= 4)
    assert runtime.calls.count(("kill", c["uuid"])) == 4, runtime.calls
    shown = await client.get(f"/container/v1/containers/{c['uuid']}", headers=h(admin_token))
    assert shown.json()["status"] == "Running"


async def test_a_container_keeps_its_newest_actions(
    app: FastAPI, client: httpx.AsyncClient, admin_token: str, runtime: FakeDriver
) -> None:
    """Zun lists every action of a container; a loop of signals would grow that list
    (and its answer) without end, so the newest ``max_actions_per_container`` are kept
    and older ones dropped with their events."""
    state = app.state.berth
    state.env.settings = state.settings.model_copy(update={"max_actions_per_container": 10})
    c = await run(client, admin_token)
    url = f"/container/v1/containers/{c['uuid']}/container_actions"
    (created,) = (await client.get(url, headers=h(admin_token))).json()["containerActions"]
    assert created["action"] == "create"
    for _ in range(12):
        r = await client.post(
            f"/container/v1/containers/{c['uuid']}/kill?signal=SIGUSR1", headers=h(admin_token)
        )
        assert r.status_code == 202, r.text
    listed = (await client.get(url, headers=h(admin_token))).json()["containerActions"]
    assert [a["action"] for a in listed] == ["kill"] * 10
    r = await client.get(f"{url}/{created['request_id']}", headers=h(admin_token))
    assert r.status_code == 404, r.text
    newest = listed[0]["request_id"]
    r = await client.get(f"{url}/{newest}", headers=h(admin_token))
    assert r.status_code == 200 and r.json()["events"], r.text
    async with state.env.db.read() as session:
        events = (await session.execute(select(func.count()).select_from(ActionEventRow))).scalar()
    assert events == 10  # the dropped actions' events went with them


async def test_old_events_and_a_deleted_containers_actions_are_trimmed(
    app: FastAPI, client: httpx.AsyncClient, admin_token: str, runtime: FakeDriver
) -> None:
    """Every change writes an event and every request an action; the worker drops
    events past ``event_retention_hours`` (not before the notification relay has sent
    them) and the actions of containers that are gone, and keeps a live one's."""
    state = app.state.berth
    env = state.env
    gone = await run(client, admin_token)
    kept = await run(client, admin_token)
    r = await client.delete(
        f"/container/v1/containers/{gone['uuid']}?force=True", headers=h(admin_token)
    )
    assert r.status_code == 204, r.text
    await wait_status(client, admin_token, gone["uuid"], "gone")

    async def counts() -> tuple[int, int, int]:
        async with env.db.read() as session:
            events = (await session.execute(select(func.count()).select_from(EventRow))).scalar()
            actions = (
                await session.execute(
                    select(ContainerActionRow.container_uuid, func.count()).group_by(
                        ContainerActionRow.container_uuid
                    )
                )
            ).all()
        by = dict(actions)
        return int(events or 0), by.get(gone["uuid"], 0), by.get(kept["uuid"], 0)

    events, of_gone, of_kept = await counts()
    assert events > 0 and of_gone == 2 and of_kept == 1  # create (+ delete), create
    assert await trim_history(env) == 0  # nothing is a week old
    async with env.db.read() as session:
        newest = (await session.execute(select(func.max(EventRow.id)))).scalar()
    env.settings = state.settings.model_copy(
        update={"event_retention_hours": 1e-9, "notification_url": "amqp://127.0.0.1:1/"}
    )
    # The relay has sent nothing yet: its events stay; the gone container's actions go.
    assert await trim_history(env) == 2
    assert await counts() == (events, 0, 1)
    async with env.db.transaction() as session:
        session.add(OutboxCursorRow(name=RELAY_CURSOR, last_event_id=newest - 1))
    assert await trim_history(env) == events - 1  # all but the one not yet relayed
    env.settings = state.settings.model_copy(update={"event_retention_hours": 1e-9})
    assert await trim_history(env) == 1
    assert await counts() == (0, 0, 1)
    r = await client.get(
        f"/container/v1/containers/{kept['uuid']}/container_actions", headers=h(admin_token)
    )
    assert [a["action"] for a in r.json()["containerActions"]] == ["create"]


async def test_a_signal_sent_while_its_host_reports_is_not_lost(
    app: FastAPI,
    client: httpx.AsyncClient,
    admin_token: str,
    runtime: FakeDriver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A report writes back the ops still pending once it has taken out the ones its
    host did: a kill committed between the report's read and its write was dropped on
    PostgreSQL, and never delivered. The report holds the row; the kill waits its turn."""
    c = await run(client, admin_token)
    url = f"/container/v1/containers/{c['uuid']}/kill?signal=SIGUSR1"
    gate = runtime.gates[f"kill:{c['uuid']}"] = asyncio.Event()
    assert (await client.post(url, headers=h(admin_token))).status_code == 202
    await runtime.wait_for(lambda: ("kill", c["uuid"]) in runtime.calls)
    reporting = asyncio.Event()
    fold = host_service.apply_observation

    async def slow_fold(session: Any, row: Any, obs: Any) -> Any:
        if obs.done_ops:  # the report that the first signal was delivered
            reporting.set()
            await asyncio.sleep(0.3)
        return await fold(session, row, obs)

    async def pending() -> list[str]:
        async with app.state.berth.env.db.read() as session:
            ops = (
                await session.execute(
                    select(ContainerRow.pending_ops).where(ContainerRow.uuid == c["uuid"])
                )
            ).scalar_one()
        return [op["id"] for op in ops]

    (first,) = await pending()
    monkeypatch.setattr(host_service, "apply_observation", slow_fold)
    gate.set()
    await asyncio.wait_for(reporting.wait(), 5)
    gate.clear()  # the host delivers the second one only when the test says
    r = await client.post(url, headers=h(admin_token))
    assert r.status_code == 202, r.text
    for _ in range(100):  # the report has been written
        if first not in await pending():
            break
        await asyncio.sleep(0.05)
    assert await pending() == [r.headers["x-openstack-request-id"]]
    gate.set()
    await runtime.wait_for(lambda: runtime.calls.count(("kill", c["uuid"])) == 2)


@pytest.mark.allows_5xx("the 503 of a read that found no turn in time is the point")
async def test_a_log_read_keeps_its_turn_until_its_answer_is_handed_over(
    app: FastAPI,
    client: httpx.AsyncClient,
    admin_token: str,
    runtime: FakeDriver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A log's answer (up to ~30 MB) is in memory until its client has read it: the turn
    was given back before the answer was sent, so a project could pile up answers
    nobody read. The turn is held until the answer is handed over."""
    state = app.state.berth
    state.env.settings = state.settings.model_copy(update={"max_log_reads_per_project": 1})
    monkeypatch.setattr(ops, "TURN_WAIT", 0.3)
    c = await run(client, admin_token)
    runtime.containers[c["uuid"]].logs.append("held\n")
    url = f"/container/v1/containers/{c['uuid']}/logs"
    reader = slow_reader(app, url, "stdout=True", h(admin_token))
    await asyncio.wait_for(reader.reading.wait(), 5)
    r = await client.get(url, headers=h(admin_token))
    assert r.status_code == 503 and "max_log_reads_per_project" in r.text, r.text
    reader.release.set()
    await asyncio.wait_for(reader.task, 5)
    assert reader.messages[0]["status"] == 200 and reader.body() == b'"held\\n"'
    r = await client.get(url, headers=h(admin_token))
    assert r.status_code == 200 and r.json() == "held\n", r.text
