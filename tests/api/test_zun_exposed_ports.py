"""exposed_ports without security_groups: only the exposed-port group, as in Zun."""

from __future__ import annotations

import httpx
import pytest

from tests.api.test_containers import create, h
from tests.helpers import ScriptedAgent, make_member

pytestmark = pytest.mark.asyncio


async def test_exposed_ports_alone_give_only_the_exposed_port_group(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    """Zun's driver makes ``[exposed group]`` the groups of a container created with
    exposed_ports and no security_groups (upstream: zun/container/docker/driver.py
    ``DockerDriver._process_exposed_ports``; zun/network/neutron.py ``expose_ports``:
    one ingress rule per port from 0.0.0.0/0). Its host lets in those ports only."""
    agent = ScriptedAgent(client)
    await agent.register()
    alice = await make_member(client, admin_token, "team-a", "alice")
    r = await create(client, alice, exposed_ports={"8080/tcp": {}, "53/udp": {}})
    assert r.status_code == 202, r.text
    c = r.json()
    groups = (await client.get("/container/v1/security_groups", headers=h(alice))).json()
    exposed = [g for g in groups["security_groups"] if g["name"] == f"exposed-{c['uuid']}"]
    assert c["security_groups"] == [exposed[0]["id"]]
    desired = (await agent.desired())[c["uuid"]]
    assert sorted((i["protocol"], i["port_min"], i["remote_cidr"]) for i in desired["ingress"]) == [
        ("tcp", 8080, "0.0.0.0/0"),
        ("udp", 53, "0.0.0.0/0"),
    ]
    # Without exposed ports the project's default group stays the container's group.
    plain = (await create(client, alice)).json()
    default = [g for g in groups["security_groups"] if g["name"] == "default"]
    assert plain["security_groups"] == [default[0]["id"]]
