"""Overlay networks' control-plane half through the real app, with two scripted agents.

With ``network_driver = overlay`` a host's desired state carries each
container's leased address and its network's segment, and the members of its
networks on other hosts (where to tunnel to).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from berth.config import Settings
from tests.api.test_containers import create, h
from tests.conftest import make_settings
from tests.helpers import ScriptedAgent

pytestmark = pytest.mark.asyncio


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return make_settings(tmp_path, db_url, network_driver="overlay")


async def _host(client: httpx.AsyncClient, name: str, underlay_ip: str) -> ScriptedAgent:
    agent = ScriptedAgent(client, name)
    await agent.register(underlay_ip=underlay_ip)
    return agent


async def _desired_host(agent: ScriptedAgent) -> dict[str, Any]:
    r = await agent.client.get(
        f"/internal/v1/hosts/{agent.hostname}/desired", headers={"X-Auth-Token": agent.token}
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_members_get_unique_addresses_and_learn_of_each_other(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    a = await _host(client, "host-a", "10.251.0.11")
    b = await _host(client, "host-b", "10.251.0.12")
    made = {}
    for agent in (a, b):
        r = await create(client, admin_token, host=agent.hostname, command=["sleep", "60"])
        assert r.status_code == 202, r.text
        made[agent.hostname] = r.json()["uuid"]
    on_a, on_b = await _desired_host(a), await _desired_host(b)
    (ca,), (cb,) = on_a["containers"], on_b["containers"]
    (net_a,), (net_b,) = ca["networks"], cb["networks"]
    assert net_a["id"] == net_b["id"] and net_a["segment"] == net_b["segment"]
    segment = net_a["segment"]
    assert segment["subnet"] == "10.96.0.0/24" and segment["gateway"] == "10.96.0.1"
    assert segment["mtu"] == 1450 and segment["vni"] >= 1
    assert {net_a["address"], net_b["address"]} == {"10.96.0.2", "10.96.0.3"}
    # Each host hears of the other's member (MAC as Docker derives it until reported):
    # host-b's lease was made after host-a last asked (host-a's agent is woken for it).
    on_a = await _desired_host(a)
    (remote,) = on_a["remote_members"][net_a["id"]]
    assert remote["address"] == net_b["address"] and remote["host_ip"] == "10.251.0.12"
    assert remote["mac"] == "02:42:0a:60:00:0" + net_b["address"][-1]
    assert remote["security_groups"] == cb["security_groups"]
    # The MAC the host reports wins; the address survives the report (it is a lease).
    await b.observe(
        made["host-b"],
        "running",
        addresses={net_b["id"]: [{"addr": net_b["address"], "version": 4}]},
        macs={net_b["address"]: "02:42:AB:CD:EF:01"},
    )
    on_a = await _desired_host(a)
    assert on_a["remote_members"][net_a["id"]][0]["mac"] == "02:42:ab:cd:ef:01"
    assert (await _desired_host(b))["containers"][0]["networks"][0]["address"] == net_b["address"]
    # Deleted: it leaves the others' remote members.
    r = await client.delete(
        f"/container/v1/containers/{made['host-b']}",
        params={"force": "true"},
        headers=h(admin_token),
    )
    assert r.status_code == 204, r.text
    assert (await _desired_host(a))["remote_members"] == {}


async def test_an_evacuated_member_keeps_its_address_and_the_others_follow_at_once(
    app: FastAPI, client: httpx.AsyncClient, admin_token: str
) -> None:
    a = await _host(client, "host-a", "10.251.0.11")
    b = await _host(client, "host-b", "10.251.0.12")
    c = await _host(client, "host-c", "10.251.0.13")
    r = await create(client, admin_token, host="host-a", auto_heal=True, command=["sleep", "60"])
    assert r.status_code == 202, r.text
    moving = r.json()["uuid"]
    r = await create(client, admin_token, host="host-c", command=["sleep", "60"])
    assert r.status_code == 202, r.text
    (net,) = (await _desired_host(a))["containers"][0]["networks"]
    (member,) = (await _desired_host(c))["remote_members"][net["id"]]
    assert (member["address"], member["host_ip"]) == (net["address"], "10.251.0.11")

    body = {"host": "host-a", "binary": "berth-agent", "forced_down": True}
    r = await client.put("/container/v1/services/force_down", json=body, headers=h(admin_token))
    assert r.status_code == 200, r.text
    notifier = app.state.berth.env.notifier
    seen = notifier.generation("host-c")
    r = await client.post("/container/v1/hosts/host-a/evacuate", headers=h(admin_token), json={})
    assert r.status_code == 202, r.text
    target = r.json()["moved"][moving]
    assert target in ("host-b", "host-c"), r.json()
    # host-c's agent is woken now (not at its next poll) even when the container
    # went elsewhere: its tunnel entry must point at the new host. (On PostgreSQL
    # the wake-up comes back through LISTEN/NOTIFY, a moment later.)
    for _ in range(100):
        if notifier.generation("host-c") != seen:
            break
        await asyncio.sleep(0.05)
    assert notifier.generation("host-c") != seen
    (moved,) = [x for x in (await _desired_host(b if target == "host-b" else c))["containers"]
                if x["uuid"] == moving]  # fmt: skip
    assert moved["networks"][0]["address"] == net["address"]  # the lease followed it
    remote = (await _desired_host(c))["remote_members"].get(net["id"], [])
    if target == "host-b":
        assert [(m["address"], m["host_ip"]) for m in remote] == [(net["address"], "10.251.0.12")]
    else:  # on host-c itself now: no tunnel to it there
        assert remote == []
