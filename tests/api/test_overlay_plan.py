"""Overlay networks' control-plane half through the real app, with two scripted agents.

With ``network_driver = overlay`` a host's desired state carries each
container's leased address and its network's segment, and the members of its
networks on other hosts (where to tunnel to).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

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
