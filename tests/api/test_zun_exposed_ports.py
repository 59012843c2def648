"""exposed_ports without security_groups: only the exposed-port group, as in Zun."""

from __future__ import annotations

import httpx
import pytest

from berth.config import Settings
from tests.api.test_containers import create, h, zun_error
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


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"max_published_ports_per_project": 5})


async def test_a_project_publishes_a_bounded_number_of_ports(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    """Each exposed port is a host port and a proxy process on its host: past
    ``max_published_ports_per_project`` (5 here) across the project's containers and
    capsules, one more is a 403 naming the setting, before anything is stored; another
    project has its own count."""
    await ScriptedAgent(client).register()
    alice = await make_member(client, admin_token, "team-a", "alice")
    three = {f"{p}/tcp": {} for p in (80, 443, 8080)}
    assert (await create(client, alice, name="web", exposed_ports=three)).status_code == 202
    r = await create(
        client, alice, name="two", exposed_ports={"1/tcp": {}, "2/udp": {}, "3/tcp": {}}
    )
    assert r.status_code == 403, r.text
    detail = zun_error(r)["detail"]
    assert "max_published_ports_per_project" in detail and "publishes 3 ports" in detail
    template = {
        "kind": "capsule",
        "metadata": {"name": "cap"},
        "spec": {
            "containers": [{"image": "busybox", "ports": [{"containerPort": p} for p in (1, 2, 3)]}]
        },
    }
    r = await client.post("/container/v1/capsules", json={"template": template}, headers=h(alice))
    assert r.status_code == 403 and "max_published_ports_per_project" in r.text, r.text
    assert (await create(client, alice, name="no-ports")).status_code == 202  # none asked
    r = await create(client, alice, name="two", exposed_ports={"1/tcp": {}, "2/udp": {}})
    assert r.status_code == 202, r.text  # exactly at the bound
    names = [
        c["name"]
        for c in (await client.get("/container/v1/containers", headers=h(alice))).json()[
            "containers"
        ]
    ]
    assert sorted(names) == ["no-ports", "two", "web"]
    bob = await make_member(client, admin_token, "team-b", "bob")
    assert (await create(client, bob, name="web", exposed_ports=three)).status_code == 202
