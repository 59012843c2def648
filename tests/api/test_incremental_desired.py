"""The incremental desired-state protocol (#19): revisions, epochs, resyncs, no lost update.

An agent that sends ``since=<epoch>:<revision>`` gets what changed after it
(``base`` = its revision) or everything (``base`` None) when the control plane
cannot account for the gap. ``Folder`` plays such an agent over the internal
API and keeps the view the answers add up to; the tests compare that view with
a fresh full read (what a restarted agent would see), against the real API on
SQLite and PostgreSQL. The real agent loop (``Agent``) is run where what
matters is that the engine converges.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import delete, select, update

from berth.agent.client import ControlClient, ControlPlane, Since
from berth.agent.loop import Agent
from berth.api.app import create_app
from berth.config import Settings
from berth.domain.hostsync import DesiredHost, Observation
from berth.runtimes.fake import FakeDriver
from berth.store.tables import DesiredChangeRow, HostRow
from tests.api.conftest import IMAGE
from tests.conftest import AGENT_PASSWORD
from tests.helpers import ScriptedAgent
from tests.helpers import zun_headers as h

HOST = "test-host"
PATH = f"/internal/v1/hosts/{HOST}/desired"


class Folder:
    """An agent of the incremental protocol, minus the engine: folds answers into a view."""

    def __init__(self, client: httpx.AsyncClient, token: str) -> None:
        self.client, self.token = client, token
        self.since = ""
        self.view: dict[str, dict[str, Any]] = {}
        self.answers: list[dict[str, Any]] = []

    async def poll(self, wait: float = 0.0) -> dict[str, Any]:
        r = await self.client.get(
            PATH,
            params={"since": self.since, "wait": wait},
            headers={"X-Auth-Token": self.token},
            timeout=wait + 30,
        )
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        if body["base"] is None:
            self.view = {c["uuid"]: c for c in body["containers"]}
        else:
            assert self.since == f"{body['epoch']}:{body['base']}", "a delta from elsewhere"
            self.view.update((c["uuid"], c) for c in body["containers"])
            for uuid in body["removed"]:
                self.view.pop(uuid, None)
        self.since = f"{body['epoch']}:{body['revision']}"
        self.answers.append(body)
        return body

    async def everything(self) -> dict[str, dict[str, Any]]:
        r = await self.client.get(
            PATH, params={"since": ""}, headers={"X-Auth-Token": self.token}
        )
        assert r.status_code == 200, r.text
        return {c["uuid"]: c for c in r.json()["containers"]}


async def create(client: httpx.AsyncClient, token: str) -> str:
    r = await client.post(
        "/container/v1/containers?run=true", json={"image": IMAGE}, headers=h(token)
    )
    assert r.status_code == 202, r.text
    return str(r.json()["uuid"])


@pytest.fixture
async def agent(client: httpx.AsyncClient) -> ScriptedAgent:
    scripted = ScriptedAgent(client, HOST)
    await scripted.register()
    return scripted


async def test_a_change_comes_as_a_delta_from_the_revision_held(
    client: httpx.AsyncClient, agent: ScriptedAgent, admin_token: str
) -> None:
    folder = Folder(client, agent.token)
    first = await folder.poll()
    assert first["base"] is None and first["epoch"] and first["containers"] == []
    nothing = await folder.poll()
    assert (nothing["base"], nothing["revision"]) == (first["revision"], first["revision"])
    assert nothing["containers"] == [] and nothing["removed"] == []

    uuid = await create(client, admin_token)
    delta = await folder.poll()
    assert delta["base"] == first["revision"] and delta["revision"] > first["revision"]
    assert [c["uuid"] for c in delta["containers"]] == [uuid]
    assert delta["containers"][0]["desired_state"] == "running"

    await agent.observe(uuid, "running", runtime_id="r1")
    delta = await folder.poll()
    assert [c["runtime_id"] for c in delta["containers"]] == ["r1"]
    # Only what changed travels: another container's change names only it.
    other = await create(client, admin_token)
    delta = await folder.poll()
    assert [c["uuid"] for c in delta["containers"]] == [other]
    assert folder.view == await folder.everything()


async def test_an_idle_poll_waits_and_a_change_wakes_it(
    client: httpx.AsyncClient, agent: ScriptedAgent, admin_token: str
) -> None:
    folder = Folder(client, agent.token)
    await folder.poll()
    poll = asyncio.create_task(folder.poll(wait=20))
    await asyncio.sleep(0.3)
    assert not poll.done()
    uuid = await create(client, admin_token)
    answer = await asyncio.wait_for(poll, 10)
    assert [c["uuid"] for c in answer["containers"]] == [uuid]


async def test_a_trimmed_revision_forces_a_full_answer(
    app: FastAPI, client: httpx.AsyncClient, agent: ScriptedAgent, admin_token: str
) -> None:
    """The agent holds N; the entry of N+1 is gone: it gets everything, not N+2 alone."""
    folder = Folder(client, agent.token)
    held = await folder.poll()
    first = await create(client, admin_token)
    second = await create(client, admin_token)
    db = app.state.berth.db
    async with db.transaction() as session:
        await session.execute(
            delete(DesiredChangeRow).where(
                DesiredChangeRow.host == HOST, DesiredChangeRow.revision == held["revision"] + 1
            )
        )
    answer = await folder.poll()
    assert answer["base"] is None
    assert set(folder.view) == {first, second}


async def test_a_host_wide_change_forces_a_full_answer(
    client: httpx.AsyncClient, agent: ScriptedAgent, admin_token: str
) -> None:
    """A security group's rule changes every member's ingress: no delta names them all."""
    uuid = await create(client, admin_token)
    folder = Folder(client, agent.token)
    await folder.poll()
    groups = (await client.get("/container/v1/security_groups", headers=h(admin_token))).json()
    group = groups["security_groups"][0]["id"]
    rule = {"direction": "ingress", "protocol": "tcp", "port_range_min": 80, "port_range_max": 80}
    r = await client.post(
        f"/container/v1/security_groups/{group}/rules",
        json={"security_group_rule": rule},
        headers=h(admin_token),
    )
    assert r.status_code == 201, r.text
    answer = await folder.poll()
    assert answer["base"] is None and [c["uuid"] for c in answer["containers"]] == [uuid]


async def test_another_epoch_or_a_revision_ahead_reads_everything(
    app: FastAPI, client: httpx.AsyncClient, agent: ScriptedAgent, admin_token: str
) -> None:
    """A host made anew, or a database restored from a backup: the agent's revision is void."""
    uuid = await create(client, admin_token)
    folder = Folder(client, agent.token)
    held = await folder.poll()
    epoch, revision = held["epoch"], held["revision"]
    folder.since = f"{epoch}:{revision + 5}"  # ahead of the feed (a restored database)
    assert (await folder.poll())["base"] is None
    async with app.state.berth.db.transaction() as session:
        await session.execute(
            update(HostRow).where(HostRow.hostname == HOST).values(desired_epoch="restored")
        )
    folder.since = f"{epoch}:{revision}"
    answer = await folder.poll()
    assert answer["base"] is None and answer["epoch"] == "restored"
    assert list(folder.view) == [uuid]


async def test_an_api_restart_keeps_the_feed_and_loses_no_change(
    settings: Settings, app: FastAPI, client: httpx.AsyncClient, agent: ScriptedAgent,
    admin_token: str,
) -> None:  # fmt: skip
    """The revision lives in the database: a new API process continues it, a change made
    while the agent polled the old one arrives as a delta from the new one."""
    folder = Folder(client, agent.token)
    held = await folder.poll()
    uuid = await create(client, admin_token)  # made before the "restart"
    again = create_app(settings, run_workers=False)
    async with again.router.lifespan_context(again):
        transport = httpx.ASGITransport(app=again)
        async with httpx.AsyncClient(transport=transport, base_url="http://again") as other:
            folder.client = other
            answer = await folder.poll()
            assert answer["base"] == held["revision"] and answer["epoch"] == held["epoch"]
            assert list(folder.view) == [uuid]
            assert folder.view == await folder.everything()
    assert not again.state.berth.saw_server_error


async def test_a_report_lost_or_duplicated_changes_nothing_twice(
    app: FastAPI, client: httpx.AsyncClient, agent: ScriptedAgent, admin_token: str
) -> None:
    uuid = await create(client, admin_token)
    for _ in range(3):  # a retried report (the first answer was lost) is the same report
        await agent.observe(uuid, "running", runtime_id="r1")
    shown = (await client.get(f"/container/v1/containers/{uuid}", headers=h(admin_token))).json()
    assert shown["status"] == "Running"
    actions = (
        await client.get(f"/container/v1/containers/{uuid}/container_actions",
                         headers=h(admin_token))
    ).json()["containerActions"]  # fmt: skip
    assert [a["action"] for a in actions] == ["create"]
    folder = Folder(client, agent.token)
    await folder.poll()
    await agent.observe(uuid, "running", runtime_id="r1")  # nothing new: no revision
    assert (await folder.poll())["containers"] == []


# -- the real agent loop ---------------------------------------------------------


class Skipping:
    """A ControlPlane that, once armed, hides one delta from the agent (it sees N, then N+2)."""

    def __init__(self, inner: ControlPlane) -> None:
        self.inner = inner
        self.armed = False
        self.skipped: list[DesiredHost] = []
        self.full = 0

    async def register(self, report: Any) -> None:
        await self.inner.register(report)

    async def heartbeat(self, hostname: str) -> None:
        await self.inner.heartbeat(hostname)

    async def report(self, hostname: str, observations: list[Observation]) -> None:
        await self.inner.report(hostname, observations)

    async def files(self, hostname: str, uuid: str) -> Any:
        return await self.inner.files(hostname, uuid)

    async def desired(
        self, hostname: str, generation: int, wait: float, since: Since = None
    ) -> DesiredHost:
        answer = await self.inner.desired(hostname, generation, wait, since)
        if self.armed and answer.base is not None and answer.revision != answer.base:
            self.armed = False
            self.skipped.append(answer)
            later = (answer.epoch, answer.revision)
            answer = await self.inner.desired(hostname, generation, 30.0, later)
        if answer.base is None:
            self.full += 1
        return answer


@contextlib.asynccontextmanager
async def running_agent(
    app: FastAPI, settings: Settings, driver: FakeDriver, wrap: Any = None
) -> AsyncIterator[Any]:
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://berth")
    fast = settings.model_copy(
        update={"heartbeat_interval": 0.5, "reconcile_interval": 0.5, "agent_poll_wait": 20.0}
    )
    control: Any = ControlClient(http, AGENT_PASSWORD)
    if wrap is not None:
        control = wrap(control)
    task = asyncio.create_task(Agent(fast, control, driver).run())

    async def registered() -> bool:
        async with app.state.berth.db.read() as session:
            found = await session.execute(select(HostRow.id).where(HostRow.hostname == HOST))
            return found.first() is not None

    try:
        await until(registered)
        yield control
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await http.aclose()


async def until(predicate: Any, within: float = 20.0) -> None:
    for _ in range(int(within / 0.05)):
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("not within the time allowed")


async def held(driver: FakeDriver) -> dict[str, str]:
    return {c.uuid: c.state for c in await driver.list_managed() if c.uuid}


async def test_an_agent_that_misses_a_revision_notices_and_reads_everything(
    app: FastAPI, settings: Settings, client: httpx.AsyncClient, admin_token: str
) -> None:
    driver = FakeDriver(images={IMAGE})
    async with running_agent(app, settings, driver, Skipping) as control:
        first = await create(client, admin_token)
        await until(lambda: _is(driver, {first: "running"}))
        await asyncio.sleep(0.3)  # the agent's poll is waiting again
        fulls = control.full
        control.armed = True
        second = await create(client, admin_token)  # revision N+1: hidden from the agent
        await asyncio.sleep(0.3)
        third = await create(client, admin_token)  # N+2: what the agent at N is shown
        await until(lambda: _is(driver, dict.fromkeys((first, second, third), "running")))
        assert control.skipped and second in [c.uuid for c in control.skipped[0].containers]
        assert control.full > fulls  # it noticed the gap: everything again


async def _is(driver: FakeDriver, wanted: dict[str, str]) -> bool:
    return await held(driver) == wanted


async def test_an_agent_restarted_after_changes_converges(
    app: FastAPI, settings: Settings, client: httpx.AsyncClient, admin_token: str
) -> None:
    """Away while containers were created, stopped and deleted: its first poll is a resync."""
    driver = FakeDriver(images={IMAGE})
    async with running_agent(app, settings, driver):
        kept, stopped, gone = [await create(client, admin_token) for _ in range(3)]
        await until(lambda: _is(driver, dict.fromkeys((kept, stopped, gone), "running")))

        async def reported() -> bool:
            r = await client.get("/container/v1/containers", headers=h(admin_token))
            return {c["status"] for c in r.json()["containers"]} == {"Running"}

        await until(reported)
    # Away: the control plane changes three things.
    r = await client.post(f"/container/v1/containers/{stopped}/stop", headers=h(admin_token))
    assert r.status_code == 202, r.text
    r = await client.delete(f"/container/v1/containers/{gone}?stop=True", headers=h(admin_token))
    assert r.status_code == 204, r.text
    new = await create(client, admin_token)
    async with running_agent(app, settings, driver):
        wanted = {kept: "running", stopped: "stopped", new: "running"}
        await until(lambda: _is(driver, wanted))


async def test_two_apis_writing_one_host_give_strictly_increasing_revisions(
    settings: Settings, app: FastAPI, client: httpx.AsyncClient, agent: ScriptedAgent,
    admin_token: str,
) -> None:  # fmt: skip
    """Creates and reports through two API apps on one PostgreSQL at once: the feed has
    one revision per committed change, in order, and the agent's folded view misses none."""
    if not settings.effective_database_url.startswith("postgresql"):
        pytest.skip("two API processes share PostgreSQL")
    other_app = create_app(settings, run_workers=False)
    async with other_app.router.lifespan_context(other_app):
        transport = httpx.ASGITransport(app=other_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://second") as second:
            folder = Folder(second, agent.token)
            await folder.poll()
            peer = ScriptedAgent(second, HOST)
            peer.token = agent.token

            async def writer(api: httpx.AsyncClient, reporter: ScriptedAgent) -> None:
                for _ in range(8):
                    uuid = await create(api, admin_token)
                    await reporter.observe(uuid, "running", runtime_id=f"r-{uuid[:8]}")

            async def poller() -> None:
                for _ in range(40):
                    await folder.poll(wait=0.2)

            await asyncio.gather(writer(client, agent), writer(second, peer), poller())
            await folder.poll()
            revisions = [a["revision"] for a in folder.answers]
            assert revisions == sorted(revisions)
            everything = await folder.everything()
            assert len(everything) == 16 and folder.view == everything
            async with app.state.berth.db.read() as session:
                feed = (
                    await session.execute(
                        select(DesiredChangeRow.revision).where(DesiredChangeRow.host == HOST)
                    )
                ).scalars().all()
            assert set(feed) == set(range(1, max(feed) + 1))
    assert not other_app.state.berth.saw_server_error


# -- property: any sequence of changes and polls adds up to the full state ---------

_OPS = st.lists(
    st.sampled_from(["create", "run", "stop", "start", "delete", "poll", "poll"]),
    min_size=1, max_size=14,
)  # fmt: skip


@hsettings(max_examples=12, deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(ops=_OPS, picks=st.lists(st.integers(0, 1000), min_size=14, max_size=14))
async def test_random_changes_and_polls_add_up_to_the_full_state(
    client: httpx.AsyncClient, agent: ScriptedAgent, admin_token: str,
    ops: list[str], picks: list[int],
) -> None:  # fmt: skip
    folder = Folder(client, agent.token)
    await folder.poll()
    mine: list[str] = []
    for op, pick in zip(ops, picks, strict=False):
        target = mine[pick % len(mine)] if mine else None
        if op == "create":
            mine.append(await create(client, admin_token))
        elif op == "poll":
            await folder.poll()
        elif target is None:
            continue
        elif op == "run":
            await agent.observe(target, "running", runtime_id=f"r-{target[:8]}")
        elif op == "delete":
            await client.delete(f"/container/v1/containers/{target}?force=True",
                                headers=h(admin_token))  # fmt: skip
        else:
            await client.post(f"/container/v1/containers/{target}/{op}", headers=h(admin_token))
    await folder.poll()
    assert folder.view == await folder.everything()
    for uuid in mine:  # leave the host empty for the next example
        await client.delete(f"/container/v1/containers/{uuid}?force=True", headers=h(admin_token))
        await agent.observe(uuid, "absent", removed=True)


async def test_a_malformed_since_is_a_400(client: httpx.AsyncClient, agent: ScriptedAgent) -> None:
    for bad in ("nocolon", "e:-1", "e:12x", "x" * 40 + ":1", "e:" + "9" * 30):
        r = await client.get(PATH, params={"since": bad}, headers={"X-Auth-Token": agent.token})
        assert r.status_code == 400, (bad, r.text)
        assert "since" in r.text
    r = await client.get(
        "/internal/v1/hosts/nobody/desired", params={"since": ""},
        headers={"X-Auth-Token": agent.token},
    )  # fmt: skip
    assert r.status_code == 404, r.text
