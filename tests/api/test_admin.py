"""Services, hosts, availability zones, quotas and quota classes through the API."""

from __future__ import annotations

import httpx
import pytest

from tests.helpers import ScriptedAgent, make_member
from tests.helpers import zun_headers as h


@pytest.fixture
async def agent(client: httpx.AsyncClient) -> ScriptedAgent:
    a = ScriptedAgent(client)
    await a.register(availability_zone="zone-1", labels={"ssd": "yes"})
    return a


async def test_disable_enable_and_force_down(
    client: httpx.AsyncClient, admin_token: str, agent: ScriptedAgent
) -> None:
    q = "host=test-host&binary=berth-agent"
    r = await client.put(
        f"/container/v1/services/disable?{q}&disabled_reason=maintenance", headers=h(admin_token)
    )
    assert r.json() == {
        "service": {
            "host": "test-host",
            "binary": "berth-agent",
            "disabled": True,
            "disabled_reason": "maintenance",
        }
    }
    r = await client.post(
        "/container/v1/containers?run=true", json={"image": "busybox"}, headers=h(admin_token)
    )
    assert r.json()["status"] == "Error"
    assert "service disabled" in r.json()["status_reason"]
    await client.put(f"/container/v1/services/enable?{q}", headers=h(admin_token))
    r = await client.put(
        f"/container/v1/services/force_down?{q}&forced_down=True", headers=h(admin_token)
    )
    assert r.json()["service"]["forced_down"] is True
    services = (await client.get("/container/v1/services", headers=h(admin_token))).json()
    svc = services["services"][0]
    assert svc["state"] == "down" and svc["availability_zone"] == "zone-1"
    assert "next" not in services
    r = await client.put(
        f"/container/v1/services/force_down?{q}&forced_down=maybe", headers=h(admin_token)
    )
    assert r.status_code == 400


async def test_unknown_service_and_host_are_404(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    r = await client.put(
        "/container/v1/services/enable?host=nope&binary=berth-agent", headers=h(admin_token)
    )
    assert r.status_code == 404
    r = await client.delete(
        "/container/v1/services?host=nope&binary=berth-agent", headers=h(admin_token)
    )
    assert r.status_code == 404
    assert (await client.get("/container/v1/hosts/nope", headers=h(admin_token))).status_code == 404
    r = await client.put("/container/v1/services/enable", headers=h(admin_token))
    assert r.status_code == 400


async def test_delete_service(
    client: httpx.AsyncClient, admin_token: str, agent: ScriptedAgent
) -> None:
    r = await client.delete(
        "/container/v1/services?host=test-host&binary=berth-agent", headers=h(admin_token)
    )
    assert r.status_code == 200 and r.json() is None
    assert (await client.get("/container/v1/services", headers=h(admin_token))).json()[
        "services"
    ] == []


async def test_hosts_need_1_4_and_show_by_name_or_uuid(
    client: httpx.AsyncClient, admin_token: str, agent: ScriptedAgent
) -> None:
    assert (
        await client.get("/container/v1/hosts", headers=h(admin_token, "1.3"))
    ).status_code == 406
    hosts = (await client.get("/container/v1/hosts/", headers=h(admin_token))).json()["hosts"]
    host = hosts[0]
    assert host["labels"] == {"ssd": "yes"} and host["cpus"] == 4
    by_uuid = (
        await client.get(f"/container/v1/hosts/{host['uuid']}", headers=h(admin_token))
    ).json()
    assert by_uuid["hostname"] == "test-host"


async def test_availability_zones(
    client: httpx.AsyncClient, admin_token: str, agent: ScriptedAgent
) -> None:
    alice = await make_member(client, admin_token, "proj-az", "azuser")
    zones = (await client.get("/container/v1/availability_zones", headers=h(alice))).json()
    assert zones["availability_zones"] == [{"availability_zone": "zone-1"}]


async def test_placement_honours_zone_and_label_hints(
    client: httpx.AsyncClient, admin_token: str, agent: ScriptedAgent
) -> None:
    async def create(**body: object) -> dict[str, object]:
        r = await client.post(
            "/container/v1/containers", json={"image": "busybox", **body}, headers=h(admin_token)
        )
        assert r.status_code == 202, r.text
        return dict(r.json())

    assert (await create(availability_zone="zone-1"))["host"] == "test-host"
    other = await create(availability_zone="zone-2")
    assert "not in availability zone zone-2" in str(other["status_reason"])
    assert (await create(hints={"label:ssd": "yes"}))["host"] == "test-host"
    assert (await create(hints={"label:ssd": "no"}))["status"] == "Error"
    assert (await create(host="test-host"))["host"] == "test-host"


async def test_quota_defaults_classes_and_delete(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    alice = await make_member(client, admin_token, "proj-qc", "qcuser")
    pid = "some-project"
    defaults = (
        await client.get(f"/container/v1/quotas/{pid}/defaults", headers=h(admin_token))
    ).json()
    assert defaults == {"containers": 40, "memory": 51200, "cpu": 20, "disk": 100}
    r = await client.put(
        "/container/v1/quota_classes/default", json={"cpu": 10}, headers=h(admin_token)
    )
    assert r.json()["cpu"] == 10
    assert (await client.get(f"/container/v1/quotas/{pid}", headers=h(admin_token))).json()[
        "cpu"
    ] == 10
    # The class's value and the project's own, each where it is set.
    await client.put(f"/container/v1/quotas/{pid}", json={"memory": 100}, headers=h(admin_token))
    both = (await client.get(f"/container/v1/quotas/{pid}", headers=h(admin_token))).json()
    assert both == {"containers": 40, "memory": 100, "cpu": 10, "disk": 100}
    await client.put(f"/container/v1/quotas/{pid}", json={"cpu": "-1"}, headers=h(admin_token))
    assert (await client.get(f"/container/v1/quotas/{pid}", headers=h(admin_token))).json()[
        "cpu"
    ] == -1
    r = await client.delete(f"/container/v1/quotas/{pid}", headers=h(admin_token))
    assert r.status_code == 200 and r.json() is None
    assert (await client.get(f"/container/v1/quotas/{pid}", headers=h(admin_token))).json()[
        "cpu"
    ] == 10
    for bad in ({"cpu": -2}, {"cpu": "x"}, {"bogus": 1}):
        r = await client.put(f"/container/v1/quotas/{pid}", json=bad, headers=h(admin_token))
        assert r.status_code == 400, bad
    assert (
        await client.get("/container/v1/quota_classes/default", headers=h(alice))
    ).status_code == 403
    assert (await client.get(f"/container/v1/quotas/{pid}", headers=h(alice))).status_code == 403
