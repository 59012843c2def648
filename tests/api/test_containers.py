"""The container API through the real app, with a scripted agent instead of an engine."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from berth.services.hosts import hosts as host_service
from tests.helpers import ZUN, ScriptedAgent, make_member
from tests.helpers import zun_headers as h

pytestmark = pytest.mark.asyncio


async def create(
    client: httpx.AsyncClient, token: str, run: bool = True, **body: Any
) -> httpx.Response:
    body.setdefault("image", "berth-test/busybox")
    return await client.post(f"/container/v1/containers?run={run}", json=body, headers=h(token))


def zun_error(r: httpx.Response) -> dict[str, Any]:
    assert r.headers["content-type"].startswith("application/json")
    err: dict[str, Any] = r.json()["errors"][0]
    assert err["status"] == r.status_code
    assert err["title"] and err["detail"]
    return err


@pytest.fixture
async def agent(client: httpx.AsyncClient) -> ScriptedAgent:
    a = ScriptedAgent(client)
    await a.register()
    return a


async def test_version_documents_are_public(client: httpx.AsyncClient) -> None:
    r = await client.get("/container")
    assert r.status_code == 200
    v = r.json()["versions"][0]
    assert (v["status"], v["min_version"], v["max_version"]) == ("CURRENT", "1.1", "1.40")
    r = await client.get("/container/v1/")
    assert r.status_code == 200 and r.json()["id"] == "v1"
    assert r.headers["openstack-api-maximum-version"] == "container 1.40"


async def test_bad_microversion_is_406(client: httpx.AsyncClient, admin_token: str) -> None:
    for value in ("container 2.0", "container 1.99", "compute 1.2", "container x"):
        r = await client.get(
            "/container/v1/containers",
            headers={"X-Auth-Token": admin_token, "OpenStack-API-Version": value},
        )
        assert r.status_code == 406, value
        zun_error(r)


async def test_no_token_is_401(client: httpx.AsyncClient) -> None:
    r = await client.get("/container/v1/containers", headers=ZUN)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == 401


async def test_run_reaches_running_through_agent_reports(
    client: httpx.AsyncClient, admin_token: str, agent: ScriptedAgent
) -> None:
    r = await create(
        client,
        admin_token,
        name="web-1",
        memory=64,
        cpu=0.5,
        environment={"A": "b"},
        restart_policy={"Name": "on-failure", "MaximumRetryCount": 3},
    )
    assert r.status_code == 202, r.text
    c = r.json()
    assert c["status"] == "Creating" and c["host"] == "test-host"
    assert c["memory"] == "64" and c["cpu"] == 0.5
    assert c["restart_policy"] == {"Name": "on-failure", "MaximumRetryCount": "3"}
    assert r.headers["location"].endswith(f"/v1/containers/{c['uuid']}")
    desired = await agent.desired()
    assert desired[c["uuid"]]["desired_state"] == "running"
    assert desired[c["uuid"]]["memory"] == 64
    await agent.observe(
        c["uuid"],
        "running",
        runtime_id="abc",
        status_detail="Up 1 second",
        started_at="2099-01-01T00:00:00+00:00",
    )
    shown = (await client.get("/container/v1/containers/web-1", headers=h(admin_token))).json()
    assert shown["status"] == "Running" and shown["task_state"] is None
    assert shown["status_detail"] == "Up 1 second"
    actions = (
        await client.get(
            f"/container/v1/containers/{c['uuid']}/container_actions", headers=h(admin_token)
        )
    ).json()["containerActions"]
    assert [a["action"] for a in actions] == ["create"]
    assert actions[0]["finish_time"] is not None and actions[0]["message"] is None
    detail = (
        await client.get(
            f"/container/v1/containers/{c['uuid']}/container_actions/{actions[0]['request_id']}",
            headers=h(admin_token),
        )
    ).json()
    assert detail["events"][0]["result"] == "Success"


async def test_stop_start_and_state_table(
    client: httpx.AsyncClient, admin_token: str, agent: ScriptedAgent
) -> None:
    c = (await create(client, admin_token)).json()
    await agent.observe(c["uuid"], "running", started_at="2099-01-01T00:00:00+00:00")
    url = f"/container/v1/containers/{c['uuid']}"
    r = await client.post(f"{url}/start", headers=h(admin_token))
    assert r.status_code == 409
    assert "Cannot start container" in zun_error(r)["detail"]
    r = await client.post(f"{url}/stop?timeout=3", headers=h(admin_token))
    assert r.status_code == 202
    d = (await agent.desired())[c["uuid"]]
    assert d["desired_state"] == "stopped" and d["stop_timeout"] == 3
    assert (await client.get(url, headers=h(admin_token))).json()[
        "task_state"
    ] == "container_stopping"
    await agent.observe(c["uuid"], "stopped")
    assert (await client.get(url, headers=h(admin_token))).json()["status"] == "Stopped"
    r = await client.delete(
        f"{url}?force=False&stop=False&all_projects=False", headers=h(admin_token)
    )
    assert r.status_code == 204
    assert (await agent.desired())[c["uuid"]]["desired_state"] == "deleted"
    await agent.observe(c["uuid"], "absent", removed=True)
    assert (await client.get(url, headers=h(admin_token))).status_code == 404


async def test_container_that_exits_is_stopped_not_restarted(
    client: httpx.AsyncClient, admin_token: str, agent: ScriptedAgent
) -> None:
    c = (await create(client, admin_token, command=["true"])).json()
    await agent.observe(c["uuid"], "stopped", started_at="2099-01-01T00:00:00+00:00", exit_code=0)
    assert (await agent.desired())[c["uuid"]]["desired_state"] == "stopped"
    shown = (
        await client.get(f"/container/v1/containers/{c['uuid']}", headers=h(admin_token))
    ).json()
    assert shown["status"] == "Stopped"


async def test_agent_error_becomes_status_reason(
    client: httpx.AsyncClient, admin_token: str, agent: ScriptedAgent
) -> None:
    c = (await create(client, admin_token, image="no-such/image:1")).json()
    await agent.observe(c["uuid"], "absent", error="image 'no-such/image:1' not found")
    shown = (
        await client.get(f"/container/v1/containers/{c['uuid']}", headers=h(admin_token))
    ).json()
    assert shown["status"] == "Error"
    assert "not found" in shown["status_reason"]
    assert (await agent.desired())[c["uuid"]]["held"] is True


async def test_no_host_gives_error_with_reason(client: httpx.AsyncClient, admin_token: str) -> None:
    r = await create(client, admin_token)
    assert r.status_code == 202
    body = r.json()
    assert body["status"] == "Error"
    assert "not enough hosts" in body["status_reason"]
    # Reaching its agent is impossible: the answer says what to do instead.
    h = {"X-Auth-Token": admin_token, **ZUN}
    r = await client.get(f"/container/v1/containers/{body['uuid']}/logs", headers=h)
    assert r.status_code == 409, r.text
    assert "it has no host. Delete it and create it again." in r.text


async def test_capacity_reason_names_the_resource(
    client: httpx.AsyncClient, admin_token: str, agent: ScriptedAgent
) -> None:
    r = await create(client, admin_token, memory=8192)
    assert r.json()["host"] == "test-host"
    body = (await create(client, admin_token, memory=8192)).json()
    assert body["status"] == "Error"
    assert "not enough memory" in body["status_reason"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"memory": -5}, "memory"),
        ({"memory": "lots"}, "memory"),
        ({"cpu": 100}, "cpu"),
        ({"name": "x" * 300}, "name"),
        ({"name": "-bad"}, "name"),
        ({"bogus": 1}, "bogus"),
        ({"image": ""}, "image"),
        ({"restart_policy": {"Name": "always", "MaximumRetryCount": 3}}, "retry"),
        ({"restart_policy": {"Name": "sometimes"}}, "restart_policy"),
        ({"image_driver": "nope"}, "image_driver"),
    ],
)
async def test_bad_create_input_is_400(
    client: httpx.AsyncClient, admin_token: str, body: dict[str, Any], fragment: str
) -> None:
    r = await create(client, admin_token, **body)
    assert r.status_code == 400, r.text
    assert fragment in zun_error(r)["detail"]


async def test_malformed_json_and_content_type(client: httpx.AsyncClient, admin_token: str) -> None:
    r = await client.post(
        "/container/v1/containers",
        content=b"{not json",
        headers={**h(admin_token), "Content-Type": "application/json"},
    )
    assert r.status_code == 400
    assert "JSON" in zun_error(r)["detail"]
    r = await client.post(
        "/container/v1/containers",
        content=b"image=x",
        headers={**h(admin_token), "Content-Type": "text/plain"},
    )
    assert r.status_code == 415


async def test_param_newer_than_version_is_400(client: httpx.AsyncClient, admin_token: str) -> None:
    r = await client.post(
        "/container/v1/containers",
        json={"image": "busybox", "auto_remove": True},
        headers=h(admin_token, "1.2"),
    )
    assert r.status_code == 400
    assert "auto_remove" in zun_error(r)["detail"]


async def test_other_project_sees_nothing(
    client: httpx.AsyncClient, admin_token: str, agent: ScriptedAgent
) -> None:
    alice = await make_member(client, admin_token, "proj-a", "alice")
    bob = await make_member(client, admin_token, "proj-b", "bob")
    c = (await create(client, alice, name="secret")).json()
    assert "host" not in c and "runtime" not in c and "privileged" not in c
    url = f"/container/v1/containers/{c['uuid']}"
    for ident in (c["uuid"], "secret"):
        r = await client.get(f"/container/v1/containers/{ident}", headers=h(bob))
        assert r.status_code == 404
    r = await client.delete(f"{url}?force=True", headers=h(bob))
    assert r.status_code in (403, 404)
    for action in ("stop", "start", "pause", "kill"):
        assert (await client.post(f"{url}/{action}", headers=h(bob))).status_code == 404
    listed = (await client.get("/container/v1/containers", headers=h(bob))).json()
    assert listed["containers"] == []
    r = await client.get("/container/v1/containers?all_projects=1", headers=h(bob))
    assert r.status_code == 403
    assert (await client.get(url, headers=h(alice))).status_code == 200


async def test_member_cannot_run_privileged_or_see_admin_resources(
    client: httpx.AsyncClient, admin_token: str, agent: ScriptedAgent
) -> None:
    alice = await make_member(client, admin_token, "proj-a", "alice")
    r = await create(client, alice, privileged=True)
    assert r.status_code == 403
    assert "container:create:privileged" in zun_error(r)["detail"]
    for path in ("/container/v1/hosts", "/container/v1/services"):
        assert (await client.get(path, headers=h(alice))).status_code == 403
    hosts = (await client.get("/container/v1/hosts", headers=h(admin_token))).json()["hosts"]
    assert hosts[0]["hostname"] == "test-host"
    services = (await client.get("/container/v1/services", headers=h(admin_token))).json()
    assert services["services"][0]["state"] == "up"


async def test_quota_is_enforced(
    client: httpx.AsyncClient, admin_token: str, agent: ScriptedAgent
) -> None:
    alice = await make_member(client, admin_token, "proj-q", "quser")
    pid = (
        await client.get("/identity/v3/projects?name=proj-q", headers={"X-Auth-Token": admin_token})
    ).json()["projects"][0]["id"]
    r = await client.put(
        f"/container/v1/quotas/{pid}", json={"containers": 1}, headers=h(admin_token)
    )
    assert r.status_code == 200 and r.json()["containers"] == 1
    assert (await create(client, alice)).status_code == 202
    r = await create(client, alice)
    assert r.status_code == 403
    assert "Quota exceeded" in zun_error(r)["detail"]
    usage = (await client.get(f"/container/v1/quotas/{pid}?usages=True", headers=h(alice))).json()
    assert usage["containers"] == {"limit": 1, "in_use": 1}
    assert (
        await client.put(f"/container/v1/quotas/{pid}", json={"containers": 5}, headers=h(alice))
    ).status_code == 403


async def test_update_rename_and_memory(
    client: httpx.AsyncClient, admin_token: str, agent: ScriptedAgent
) -> None:
    c = (await create(client, admin_token, memory=64)).json()
    await agent.observe(c["uuid"], "running", started_at="2099-01-01T00:00:00+00:00")
    url = f"/container/v1/containers/{c['uuid']}"
    r = await client.patch(url, json={"memory": 128, "name": "renamed"}, headers=h(admin_token))
    assert r.status_code == 200, r.text
    assert r.json()["memory"] == "128" and r.json()["name"] == "renamed"
    d = (await agent.desired())[c["uuid"]]
    assert d["memory"] == 128 and d["spec_version"] == 2
    host = (await client.get("/container/v1/hosts/test-host", headers=h(admin_token))).json()
    assert host["mem_used"] == 128
    r = await client.patch(url, json={"memory": -1}, headers=h(admin_token))
    assert r.status_code == 400


async def test_trailing_slash_and_unversioned_paths(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    for path in ("/container/v1/containers/", "/container/containers", "/v1/containers"):
        r = await client.get(path, headers=h(admin_token))
        assert r.status_code == 200, path
        assert r.json()["containers"] == []
    r = await client.get("/container/v1/containers?bogus=1", headers=h(admin_token))
    assert r.status_code == 400 and "Unknown parameters" in zun_error(r)["detail"]


async def test_two_reports_of_one_host_in_other_orders_do_not_deadlock(
    client: httpx.AsyncClient,
    admin_token: str,
    agent: ScriptedAgent,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A report locks each container as it reads it: two reports of one host naming the
    same containers in other orders (a retry overtaking its first try) locked them
    crosswise, and PostgreSQL broke the deadlock with an error (a 500). They are folded
    in one order."""
    uuids = []
    for name in ("first", "second"):
        r = await client.post(
            "/container/v1/containers?run=true", json={"image": "busybox", "name": name},
            headers=h(admin_token),
        )  # fmt: skip
        assert r.status_code == 202, r.text
        uuids.append(r.json()["uuid"])
    fold = host_service.apply_observation

    async def slow_fold(session: Any, row: Any, obs: Any) -> Any:
        await asyncio.sleep(0.2)  # the other report takes its first row meanwhile
        return await fold(session, row, obs)

    monkeypatch.setattr(host_service, "apply_observation", slow_fold)

    async def report(order: list[str]) -> httpx.Response:
        body = {"observations": [{"uuid": u, "state": "running", "spec_version": 1} for u in order]}
        return await client.post(
            f"/internal/v1/hosts/{agent.hostname}/observations", json=body, headers=agent._h()
        )

    answers = await asyncio.gather(report(uuids), report(uuids[::-1]))
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]


V1 = "/container/v1"


async def test_a_disk_size_needs_a_host_that_caps_it(
    client: httpx.AsyncClient, admin_token: str, agent: ScriptedAgent
) -> None:
    """Zun's rule: a container's ``disk`` on a host whose engine cannot cap it is refused
    (Zun: "Your host does not support disk quota feature."), never run uncapped."""
    member = await make_member(client, admin_token, "disk-p", "disk-u")
    r = await client.post(
        f"{V1}/containers?run=true", json={"image": "busybox", "disk": 1}, headers=h(member)
    )
    assert r.status_code == 202, r.text
    shown = (await client.get(f"{V1}/containers/{r.json()['uuid']}", headers=h(member))).json()
    assert shown["status"] == "Error", shown
    assert "does not support disk quota" in shown["status_reason"], shown["status_reason"]
    assert "create it without disk" in shown["status_reason"]
    assert await _host_of(client, admin_token, shown["uuid"]) is None
    hosts = (await client.get(f"{V1}/hosts", headers=h(admin_token))).json()["hosts"]
    assert [x["disk_quota_supported"] for x in hosts] == [False]

    # Without disk it runs there; with disk, on a host that says its engine caps it.
    r = await client.post(f"{V1}/containers?run=true", json={"image": "busybox"}, headers=h(member))
    assert await _host_of(client, admin_token, r.json()["uuid"]) == "test-host"
    capped = ScriptedAgent(client, "capped-host")
    await capped.register(disk_quota_supported=True)
    r = await client.post(
        f"{V1}/containers?run=true", json={"image": "busybox", "disk": 1}, headers=h(member)
    )
    assert r.json()["disk"] == 1, r.json()
    assert await _host_of(client, admin_token, r.json()["uuid"]) == "capped-host"


async def _host_of(client: httpx.AsyncClient, admin_token: str, uuid: str) -> str | None:
    r = await client.get(f"{V1}/containers/{uuid}", headers=h(admin_token))
    host: str | None = r.json()["host"]
    return host
