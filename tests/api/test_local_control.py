"""The all-in-one agent's in-memory channel: the internal API's calls and checks, without HTTP."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from berth.agent.client import ControlPlaneError
from berth.api.internal.local import LocalControl
from berth.domain.hostsync import HostReport, Observation
from tests.conftest import ADMIN_PASSWORD, AGENT_PASSWORD
from tests.helpers import zun_headers as h


def _report(hostname: str) -> HostReport:
    return HostReport(
        hostname=hostname,
        cpus=4,
        mem_total=8192,
        disk_total=100,
        runtimes=["runc"],
        agent_url="http://127.0.0.1:1",
    )


async def _show(client: httpx.AsyncClient, token: str, uuid: str) -> dict[str, Any]:
    r = await client.get(f"/container/v1/containers/{uuid}", headers=h(token))
    assert r.status_code == 200, r.text
    return dict(r.json())


async def test_register_long_poll_and_report_in_memory(
    app: FastAPI, client: httpx.AsyncClient, admin_token: str
) -> None:
    control = LocalControl(app.state.berth, AGENT_PASSWORD)
    await control.register(_report("mem-host"))
    r = await client.post(
        "/container/v1/containers?run=true",
        json={"image": "busybox", "memory": 64, "name": "in-memory"},
        headers=h(admin_token),
    )
    assert r.status_code == 202, r.text
    uuid = r.json()["uuid"]

    host = await control.desired("mem-host", -1, 0)
    assert [(c.uuid, c.desired_state) for c in host.containers] == [(uuid, "running")]

    await control.report("mem-host", [Observation(uuid, "running", 1, runtime_id="r-1")])
    shown = await _show(client, admin_token, uuid)
    assert (shown["status"], shown["host"]) == ("Running", "mem-host")

    # Let the report's own wake-up pass (PostgreSQL delivers it asynchronously).
    generation = host.generation
    while (again := await control.desired("mem-host", generation, 0.5)).generation != generation:
        generation = again.generation

    # Nothing changed: the poll waits, and answers as soon as a user changes something.
    poll = asyncio.create_task(control.desired("mem-host", generation, 10))
    await asyncio.sleep(0.2)
    assert not poll.done()
    r = await client.post(f"/container/v1/containers/{uuid}/stop", headers=h(admin_token))
    assert r.status_code == 202, r.text
    changed = await asyncio.wait_for(poll, 5)
    assert changed.generation > generation
    assert [c.desired_state for c in changed.containers] == ["stopped"]
    await control.report("mem-host", [Observation(uuid, "stopped", 1, runtime_id="r-1")])
    assert (await _show(client, admin_token, uuid))["status"] == "Stopped"
    await control.heartbeat("mem-host")


async def test_a_host_it_does_not_know_is_a_404_so_the_agent_registers_again(
    app: FastAPI,
) -> None:
    control = LocalControl(app.state.berth, AGENT_PASSWORD)
    with pytest.raises(ControlPlaneError) as caught:
        await control.heartbeat("never-registered")
    assert caught.value.status == 404


async def test_a_wrong_service_password_is_refused(app: FastAPI) -> None:
    control = LocalControl(app.state.berth, "not-the-agent-password")
    with pytest.raises(ControlPlaneError) as caught:
        await control.register(_report("mem-host"))
    assert caught.value.status == 401
    assert "refused" in caught.value.message


async def test_only_the_service_role_may_act_as_an_agent(app: FastAPI) -> None:
    # The cloud admin's own credential is not an agent's: the policy wants role:service.
    control = LocalControl(app.state.berth, ADMIN_PASSWORD, username="admin", project="admin")
    with pytest.raises(ControlPlaneError) as caught:
        await control.register(_report("mem-host"))
    assert caught.value.status == 403
