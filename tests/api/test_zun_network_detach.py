"""Zun's network_detach of the last network: 202, then none until one is attached."""

from __future__ import annotations

import httpx
import pytest

from tests.api.test_containers import create, h
from tests.api.test_networks import action
from tests.helpers import ScriptedAgent, make_member

pytestmark = pytest.mark.asyncio


async def test_detaching_the_only_network_leaves_the_container_without_one(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    """Zun detaches whatever network is named, the last one too (upstream:
    zun/api/controllers/v1/containers.py ``ContainersController.network_detach``
    and zun/compute/manager.py ``_do_network_detach``: no last-network rule); the
    container keeps running with none, and a later network_attach gives it one."""
    agent = ScriptedAgent(client)
    await agent.register()
    alice = await make_member(client, admin_token, "team-a", "alice")
    r = await create(client, alice)
    assert r.status_code == 202, r.text
    uuid = r.json()["uuid"]
    net = (await agent.desired())[uuid]["networks"][0]["id"]
    await agent.observe(uuid, "running", addresses={net: [{"addr": "172.30.0.5", "version": 4}]})

    r = await action(client, alice, uuid, "network_detach", network="default")
    assert r.status_code == 202, r.text
    listed = await client.get(f"/container/v1/containers/{uuid}/network_list", headers=h(alice))
    assert listed.json() == {"networks": []}
    desired = (await agent.desired())[uuid]
    assert desired["networks"] == [] and desired["no_network"] is True
    assert desired["desired_state"] == "running"
    # The host reports it has no address any more; the container view says so.
    await agent.observe(uuid, "running", addresses={})
    shown = (await client.get(f"/container/v1/containers/{uuid}", headers=h(alice))).json()
    assert shown["addresses"] == {} and shown["status"] == "Running"

    r = await action(client, alice, uuid, "network_attach", network="default")
    assert r.status_code == 200, r.text
    desired = (await agent.desired())[uuid]
    assert [n["id"] for n in desired["networks"]] == [net] and desired["no_network"] is False
    listed = await client.get(f"/container/v1/containers/{uuid}/network_list", headers=h(alice))
    assert [n["net_id"] for n in listed.json()["networks"]] == [net]
