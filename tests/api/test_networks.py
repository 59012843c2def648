"""Project networks and security groups through the real app, with a scripted agent."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.test_containers import create, h, zun_error
from tests.helpers import ScriptedAgent, make_member

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def agent(client: httpx.AsyncClient) -> ScriptedAgent:
    a = ScriptedAgent(client)
    await a.register()
    return a


@pytest.fixture
async def members(client: httpx.AsyncClient, admin_token: str) -> tuple[str, str]:
    alice = await make_member(client, admin_token, "team-a", "alice")
    bob = await make_member(client, admin_token, "team-b", "bob")
    return alice, bob


async def net(client: httpx.AsyncClient, token: str, name: str) -> dict[str, Any]:
    r = await client.post("/container/v1/networks", json={"name": name}, headers=h(token))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def group(client: httpx.AsyncClient, token: str, name: str) -> dict[str, Any]:
    r = await client.post(
        "/container/v1/security_groups",
        json={"security_group": {"name": name, "description": "test"}},
        headers=h(token),
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()["security_group"]
    return body


async def rule(
    client: httpx.AsyncClient, token: str, group_id: str, **fields: Any
) -> httpx.Response:
    return await client.post(
        f"/container/v1/security_groups/{group_id}/rules",
        json={"security_group_rule": fields},
        headers=h(token),
    )


async def action(
    client: httpx.AsyncClient, token: str, uuid: str, verb: str, version: str = "1.40", **q: str
) -> httpx.Response:
    return await client.post(
        f"/container/v1/containers/{uuid}/{verb}", params=q, headers=h(token, version)
    )


async def test_later_containers_join_the_same_defaults_as_the_first(
    client: httpx.AsyncClient, members: tuple[str, str], agent: ScriptedAgent
) -> None:
    # The first create makes the defaults; the process then knows them and later
    # creates resolve them without reading them again: they must be the same rows.
    alice, bob = members
    first = (await create(client, alice)).json()
    await net(client, alice, "other")  # a network create ensures the defaults too
    second = (await create(client, alice)).json()
    named = (await create(client, alice, security_groups=["default"])).json()
    theirs = (await create(client, bob)).json()
    desired = await agent.desired()
    nets = (await client.get("/container/v1/networks", headers=h(alice))).json()["networks"]
    (default_net,) = [n["uuid"] for n in nets if n["is_default"]]
    groups = (await client.get("/container/v1/security_groups", headers=h(alice))).json()
    (default_group,) = [g["id"] for g in groups["security_groups"] if g["is_default"]]
    for c in (first, second, named):
        assert [n["id"] for n in desired[c["uuid"]]["networks"]] == [default_net]
        assert c["security_groups"] == [default_group]
    assert [n["id"] for n in desired[theirs["uuid"]]["networks"]] != [default_net]
    assert theirs["security_groups"] != [default_group]


async def test_a_container_joins_its_projects_default_network_and_group(
    client: httpx.AsyncClient, members: tuple[str, str], agent: ScriptedAgent
) -> None:
    alice, bob = members
    r = await create(client, alice)
    assert r.status_code == 202, r.text
    c = r.json()
    nets = (await client.get("/container/v1/networks", headers=h(alice))).json()["networks"]
    assert [(n["name"], n["is_default"]) for n in nets] == [("default", True)]
    groups = (await client.get("/container/v1/security_groups", headers=h(alice))).json()
    (default,) = groups["security_groups"]
    assert default["name"] == "default" and c["security_groups"] == [default["id"]]
    (only,) = default["security_group_rules"]
    assert only["remote_group_id"] == default["id"] and only["protocol"] is None

    desired = (await agent.desired())[c["uuid"]]
    # With the bridge driver the engine picks the address: no lease, no segment.
    assert desired["networks"] == [
        {
            "id": nets[0]["uuid"],
            "name": "default",
            "project_id": c["project_id"],
            "address": None,
            "segment": None,
        }
    ]
    assert (
        await agent.client.get(
            f"/internal/v1/hosts/{agent.hostname}/desired", headers={"X-Auth-Token": agent.token}
        )
    ).json()["remote_members"] == {}
    assert desired["security_groups"] == [default["id"]]
    assert desired["ingress"] == [
        {
            "protocol": None,
            "port_min": None,
            "port_max": None,
            "remote_cidr": None,
            "remote_group": default["id"],
        }
    ]
    # bob's project has defaults of its own, and sees none of alice's
    bob_nets = (await client.get("/container/v1/networks", headers=h(bob))).json()["networks"]
    assert [n["name"] for n in bob_nets] == ["default"] and bob_nets[0]["uuid"] != nets[0]["uuid"]
    r = await client.get(f"/container/v1/networks/{nets[0]['uuid']}", headers=h(bob))
    assert r.status_code == 404 and zun_error(r)["code"] == "container.network-not-found"
    r = await client.get(f"/container/v1/security_groups/{default['id']}", headers=h(bob))
    assert r.status_code == 404


async def test_networks_crud_validation_and_tenancy(
    client: httpx.AsyncClient, members: tuple[str, str], agent: ScriptedAgent
) -> None:
    alice, bob = members
    backend = await net(client, alice, "backend")
    assert backend["network_id"] == backend["uuid"] and backend["project_id"]
    r = await client.get("/container/v1/networks/backend", headers=h(alice))
    assert r.status_code == 200 and r.json()["uuid"] == backend["uuid"]
    for body, status in (
        ({"name": "backend"}, 409),
        ({"name": "x"}, 400),
        ({"name": "bad name!"}, 400),
        ({"name": "ok-name", "neutron_net_id": "abc"}, 400),
        ({"name": "ok-name", "shared": True}, 400),
    ):
        r = await client.post("/container/v1/networks", json=body, headers=h(alice))
        assert r.status_code == status, (body, r.text)
        zun_error(r)
    # another project can neither see, use nor delete it
    for ident in (backend["uuid"], "backend"):
        r = await client.get(f"/container/v1/networks/{ident}", headers=h(bob))
        assert r.status_code == 404
    r = await client.delete(f"/container/v1/networks/{backend['uuid']}", headers=h(bob))
    assert r.status_code == 404
    r = await create(client, bob, nets=[{"network": backend["uuid"]}])
    assert r.status_code == 404 and "could not be found" in zun_error(r)["detail"]
    # bad nets at create: clear 4xx
    for nets, status in (
        ([{"network": "nope"}], 404),
        ([{"port": "p1"}], 400),
        ([{"network": "backend", "v4-fixed-ip": "10.0.0.9"}], 400),
        ([{"network": "backend"}, {"network": backend["uuid"]}], 400),
    ):
        r = await create(client, alice, nets=nets)
        assert r.status_code == status, (nets, r.text)
        zun_error(r)
    c = (await create(client, alice, nets=[{"network": "backend"}])).json()
    r = await client.delete(f"/container/v1/networks/{backend['uuid']}", headers=h(alice))
    assert r.status_code == 409 and c["uuid"] in zun_error(r)["detail"]
    default = (await client.get("/container/v1/networks/default", headers=h(alice))).json()
    r = await client.delete(f"/container/v1/networks/{default['uuid']}", headers=h(alice))
    assert r.status_code == 409
    spare = await net(client, alice, "spare")
    r = await client.delete("/container/v1/networks/spare", headers=h(alice))
    assert r.status_code == 204
    r = await client.get(f"/container/v1/networks/{spare['uuid']}", headers=h(alice))
    assert r.status_code == 404


async def test_a_network_held_by_a_container_being_deleted_says_to_retry(
    client: httpx.AsyncClient, members: tuple[str, str], agent: ScriptedAgent
) -> None:
    """Deleting the last member and then its network at once: the member is on the
    host until its agent reports it gone, so the answer is 409 naming it as being
    deleted (not "detach or delete them"), and the network goes once it is gone."""
    alice, _ = members
    backend = await net(client, alice, "backend")
    c = (await create(client, alice, nets=[{"network": "backend"}])).json()
    await agent.observe(c["uuid"], "stopped")
    r = await client.delete(f"/container/v1/containers/{c['uuid']}", headers=h(alice))
    assert r.status_code == 204, r.text
    r = await client.delete(f"/container/v1/networks/{backend['uuid']}", headers=h(alice))
    detail = zun_error(r)["detail"]
    assert r.status_code == 409 and c["uuid"] in detail, r.text
    assert "being deleted; retry once they are gone" in detail
    assert "detach or delete" not in detail
    await agent.observe(c["uuid"], "absent", removed=True)
    r = await client.delete(f"/container/v1/networks/{backend['uuid']}", headers=h(alice))
    assert r.status_code == 204, r.text


async def test_attach_detach_and_network_list(
    client: httpx.AsyncClient, members: tuple[str, str], agent: ScriptedAgent
) -> None:
    alice, bob = members
    backend = await net(client, alice, "backend")
    c = (await create(client, alice, nets=[{"network": "backend"}])).json()
    uuid = c["uuid"]
    addr = {"addr": "172.30.0.5", "version": 4, "port": None, "subnet_id": None}
    await agent.observe(uuid, "running", addresses={backend["uuid"]: [addr]})
    shown = (await client.get(f"/container/v1/containers/{uuid}", headers=h(alice))).json()
    assert shown["addresses"] == {backend["uuid"]: [addr]}
    r = await client.get(f"/container/v1/containers/{uuid}/network_list", headers=h(alice))
    assert r.json() == {
        "networks": [
            {
                "net_id": backend["uuid"],
                "port_id": None,
                "fixed_ips": [{"subnet_id": None, "version": 4, "ip_address": "172.30.0.5"}],
            }
        ]
    }
    old = await client.get(
        f"/container/v1/containers/{uuid}/network_list", headers=h(alice, "1.13")
    )
    assert old.json()["networks"][0]["ip_address"] == "172.30.0.5"

    r = await action(client, alice, uuid, "network_attach", network="default")
    assert r.status_code == 200, r.text
    names = [n["name"] for n in (await agent.desired())[uuid]["networks"]]
    assert names == ["backend", "default"]
    for q, status in (
        ({"network": "default"}, 400),  # already attached
        ({"network": "nope"}, 404),
        ({"port": "p1"}, 400),
        ({"network": "default", "fixed_ip": "10.0.0.1"}, 400),
        ({}, 400),
    ):
        r = await action(client, alice, uuid, "network_attach", **q)
        assert r.status_code == status, (q, r.text)
        zun_error(r)
    r = await action(client, alice, uuid, "network_attach", version="1.7", network="x")
    assert r.status_code == 406

    r = await action(client, alice, uuid, "network_detach", network="backend")
    assert r.status_code == 202, r.text
    assert [n["name"] for n in (await agent.desired())[uuid]["networks"]] == ["default"]
    for q, status in (
        ({"network": "backend"}, 400),  # not attached
        ({"network": "default", "port": "p"}, 400),
        ({"network": "nope"}, 404),
    ):
        r = await action(client, alice, uuid, "network_detach", **q)
        assert r.status_code == status, (q, r.text)
        zun_error(r)
    # another project cannot touch or list the container's networks
    r = await action(client, bob, uuid, "network_attach", network="default")
    assert r.status_code == 404
    r = await action(client, bob, uuid, "network_detach", network="default")
    assert r.status_code == 404
    r = await client.get("/container/v1/networks?all_projects=true", headers=h(bob))
    assert r.status_code == 403
    r = await client.get(f"/container/v1/containers/{uuid}/network_list", headers=h(bob))
    assert r.status_code == 404


async def test_security_groups_rules_and_membership(
    client: httpx.AsyncClient, members: tuple[str, str], agent: ScriptedAgent
) -> None:
    alice, bob = members
    web = await group(client, alice, "web")
    assert web["security_group_rules"] == []
    r = await rule(client, alice, web["id"], protocol="tcp", port_range_min=80,
                   remote_ip_prefix="10.1.2.3/8")  # fmt: skip
    assert r.status_code == 201, r.text
    made = r.json()["security_group_rule"]
    assert (made["protocol"], made["port_range_min"], made["port_range_max"]) == ("tcp", 80, 80)
    assert made["remote_ip_prefix"] == "10.0.0.0/8"
    for fields, status in (
        ({"protocol": "tcp", "port_range_min": 80, "remote_ip_prefix": "10.0.0.0/8"}, 409),
        ({"protocol": "sctp"}, 400),
        ({"protocol": "tcp", "port_range_min": 70000}, 400),
        ({"protocol": "tcp", "port_range_min": 90, "port_range_max": 80}, 400),
        ({"protocol": "icmp", "port_range_min": 80}, 400),
        ({"port_range_min": 80}, 400),
        ({"protocol": "tcp", "port_range_min": "80"}, 400),
        ({"remote_ip_prefix": "10.0.0.300/8"}, 400),
        ({"remote_ip_prefix": "10.0.0.0/8", "remote_group_id": web["id"]}, 400),
        ({"remote_group_id": "nope"}, 400),
        ({"direction": "egress"}, 400),
        ({"colour": "red"}, 400),
    ):
        r = await rule(client, alice, web["id"], **fields)
        assert r.status_code == status, (fields, r.text)
        zun_error(r)
    r = await client.post(
        "/container/v1/security_groups", json={"security_group": {"name": "web"}}, headers=h(alice)
    )
    assert r.status_code == 409
    # another project: invisible, untouchable, and unusable as a remote group
    assert (await rule(client, bob, web["id"], protocol="udp")).status_code == 404
    r = await client.get("/container/v1/security_groups", headers=h(bob))
    assert [g["name"] for g in r.json()["security_groups"]] == ["default"]
    bobs = await group(client, bob, "bobs")
    r = await rule(client, bob, bobs["id"], remote_group_id=web["id"])
    assert r.status_code == 400
    assert (await client.delete(f"/container/v1/security_groups/{web['id']}",
                                headers=h(bob))).status_code == 404  # fmt: skip

    c = (await create(client, alice)).json()
    uuid = c["uuid"]
    r = await action(client, alice, uuid, "add_security_group", name="web")
    assert r.status_code == 409  # Zun's state table: not while Creating
    await agent.observe(uuid, "running")
    r = await action(client, alice, uuid, "add_security_group", name="web")
    assert r.status_code == 202, r.text
    desired = (await agent.desired())[uuid]
    assert desired["security_groups"] == [c["security_groups"][0], web["id"]]
    assert {"protocol": "tcp", "port_min": 80, "port_max": 80, "remote_cidr": "10.0.0.0/8",
            "remote_group": None} in desired["ingress"]  # fmt: skip
    for verb, q, status in (
        ("add_security_group", {"name": "web"}, 400),  # already in it
        ("add_security_group", {"name": "bobs"}, 400),  # another project's
        ("add_security_group", {}, 400),
        ("remove_security_group", {"name": "nope"}, 400),
    ):
        r = await action(client, alice, uuid, verb, **q)
        assert r.status_code == status, (verb, q, r.text)
        zun_error(r)
    for verb in ("add_security_group", "remove_security_group"):
        r = await action(client, bob, uuid, verb, name="default")
        assert r.status_code == 404, (verb, r.text)
    r = await client.delete(
        f"/container/v1/security_groups/{web['id']}/rules/{made['id']}", headers=h(bob)
    )
    assert r.status_code == 404
    r = await client.get("/container/v1/security_groups?all_projects=1", headers=h(bob))
    assert r.status_code == 403
    r = await client.delete(f"/container/v1/security_groups/{web['id']}", headers=h(alice))
    assert r.status_code == 409  # in use
    r = await action(client, alice, uuid, "remove_security_group", name="default")
    assert r.status_code == 202
    r = await action(client, alice, uuid, "remove_security_group", name="web")
    assert r.status_code == 400 and "only group" in zun_error(r)["detail"]
    assert (await agent.desired())[uuid]["security_groups"] == [web["id"]]
    # a rule change reaches the member's desired state
    rule_id = made["id"]
    r = await client.delete(
        f"/container/v1/security_groups/{web['id']}/rules/{rule_id}", headers=h(alice)
    )
    assert r.status_code == 204
    assert (await agent.desired())[uuid]["ingress"] == []
    r = await create(client, alice, security_groups=["nope"])
    assert r.status_code == 400 and "nope" in zun_error(r)["detail"]


async def test_exposed_ports_publish_and_keep_the_other_groups(
    client: httpx.AsyncClient, members: tuple[str, str], agent: ScriptedAgent
) -> None:
    alice, _ = members
    web = await group(client, alice, "web")
    c = (await create(client, alice, exposed_ports={"8080/tcp": {}, "53/udp": {}})).json()
    uuid = c["uuid"]
    [exposed_id] = c["security_groups"]  # as Zun: only the exposed-port group
    exposed = (
        await client.get(f"/container/v1/security_groups/{exposed_id}", headers=h(alice))
    ).json()["security_group"]
    assert exposed["container_uuid"] == uuid
    assert sorted(
        (r["protocol"], r["port_range_min"]) for r in exposed["security_group_rules"]
    ) == [
        ("tcp", 8080),
        ("udp", 53),
    ]
    desired = (await agent.desired())[uuid]
    assert desired["published_ports"] == [
        {"port": 8080, "protocol": "tcp"},
        {"port": 53, "protocol": "udp"},
    ]
    await agent.observe(uuid, "running", published={"53/udp": 32001, "8080/tcp": 32000})
    shown = (await client.get(f"/container/v1/containers/{uuid}", headers=h(alice))).json()
    assert shown["ports"] == [32000, 32001]
    r = await action(client, alice, uuid, "add_security_group", name="web")
    assert r.status_code == 202
    shown = (await client.get(f"/container/v1/containers/{uuid}", headers=h(alice))).json()
    assert shown["security_groups"] == [exposed_id, web["id"]]

    both = (await create(client, alice, security_groups=["web"], exposed_ports={"80": {}})).json()
    assert both["security_groups"][0] == web["id"] and len(both["security_groups"]) == 2
    for ports in (
        {"80": {}, "80/tcp": {}},
        {"80/sctp": {}},
        {"x/tcp": {}},
        {"0": {}},
        {"65536/udp": {}},
        {"80/tcp": {"HostPort": "80"}},
    ):
        r = await create(client, alice, exposed_ports=ports)
        assert r.status_code == 400, (ports, r.text)
        zun_error(r)
    # the container's own group goes with it
    r = await client.delete(f"/container/v1/containers/{both['uuid']}?force=True",
                            headers=h(alice))  # fmt: skip
    assert r.status_code in (204, 403)


async def test_a_network_deleted_while_a_create_reads_is_a_clear_409(
    client: httpx.AsyncClient,
    members: tuple[str, str],
    agent: ScriptedAgent,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Networks are resolved before the create's write transaction; a delete that
    lands in between must not leave a container on a network that is gone."""
    from berth.services.networks import networks as networks_service

    alice, _ = members
    await net(client, alice, "shortlived")
    resolve = networks_service.resolve

    async def resolve_then_delete(*args: Any, **kwargs: Any) -> None:
        await resolve(*args, **kwargs)
        r = await client.delete("/container/v1/networks/shortlived", headers=h(alice))
        assert r.status_code == 204, r.text

    monkeypatch.setattr(networks_service, "resolve", resolve_then_delete)
    r = await create(client, alice, nets=[{"network": "shortlived"}])
    assert r.status_code == 409, r.text
    assert "was deleted while the container was being created" in zun_error(r)["detail"]
    monkeypatch.setattr(networks_service, "resolve", resolve)
    listed = await client.get("/container/v1/containers", headers=h(alice))
    assert listed.json()["containers"] == []  # nothing half-made
    r = await create(client, alice)  # the default network still serves
    assert r.status_code == 202, r.text


async def test_networks_groups_rules_and_volumes_a_project_keeps_are_bounded(
    app: Any, client: httpx.AsyncClient, members: tuple[str, str]
) -> None:
    """Every rule is written into each member's host firewall, and the network and group
    lists are answered whole: past each setting one more is a 403 naming it (as
    Neutron's and Cinder's quotas refuse); another project is not affected."""
    alice, bob = members
    env = app.state.berth.env
    env.settings = env.settings.model_copy(
        update={
            "max_networks_per_project": 3,  # the default network is one of them
            "max_security_groups_per_project": 2,  # the default group is one of them
            "max_rules_per_security_group": 2,
            "max_volumes_per_project": 1,
        }
    )
    await net(client, alice, "one")
    await net(client, alice, "two")
    r = await client.post("/container/v1/networks", json={"name": "three"}, headers=h(alice))
    assert r.status_code == 403 and "max_networks_per_project" in zun_error(r)["detail"], r.text
    await net(client, bob, "three")

    web = await group(client, alice, "web")
    r = await client.post(
        "/container/v1/security_groups",
        json={"security_group": {"name": "db", "description": "test"}},
        headers=h(alice),
    )
    assert r.status_code == 403 and "max_security_groups_per_project" in zun_error(r)["detail"], (
        r.text
    )
    for port in (80, 443):
        r = await rule(client, alice, web["id"], direction="ingress", protocol="tcp",
                       port_range_min=port, port_range_max=port)  # fmt: skip
        assert r.status_code == 201, r.text
    r = await rule(client, alice, web["id"], direction="ingress", protocol="tcp",
                   port_range_min=22, port_range_max=22)  # fmt: skip
    assert r.status_code == 403 and "max_rules_per_security_group" in zun_error(r)["detail"], r.text

    body = {"name": "data", "size": 1}
    assert (await client.post("/container/v1/volumes", json=body, headers=h(alice))).is_success
    body = {"name": "more", "size": 1}
    r = await client.post("/container/v1/volumes", json=body, headers=h(alice))
    assert r.status_code == 403 and "max_volumes_per_project" in zun_error(r)["detail"], r.text
    assert (await client.post("/container/v1/volumes", json=body, headers=h(bob))).is_success
