"""Every number has a maximum and no string takes a NUL: 400s naming the field and
the limit, through the real app (the review's findings, one test each)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.helpers import ScriptedAgent, make_member
from tests.helpers import zun_headers as h

HUGE = 10**20


def _detail(r: httpx.Response) -> str:
    assert r.status_code == 400, r.text
    return str(r.json()["errors"][0]["detail"])


async def _create(client: httpx.AsyncClient, token: str, **fields: Any) -> httpx.Response:
    return await client.post(
        "/container/v1/containers", json={"image": "busybox", **fields}, headers=h(token)
    )


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"environment": {"A": "b\x00c"}}, "environment.A"),
        ({"environment": {"A\x00": "b"}}, "environment.A\\u0000"),
        ({"command": ["sh", "-c", "echo\x00"]}, "command[2]"),
        ({"image": "busy\x00box"}, "image"),
        ({"workdir": "/tmp\x00"}, "workdir"),
        ({"hints": {"a": ["x\x00"]}}, "hints.a[0]"),
    ],
)
async def test_nul_is_refused_in_every_field(
    client: httpx.AsyncClient, admin_token: str, fields: dict[str, Any], named: str
) -> None:
    detail = _detail(await _create(client, admin_token, **fields))
    assert f"'{named}'" in detail and "NUL" in detail


async def test_control_characters_are_refused_where_a_line_is_expected(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    assert "workdir" in _detail(await _create(client, admin_token, workdir="/tmp\n/x"))
    assert "environment" in _detail(await _create(client, admin_token, environment={"A\n": "b"}))
    assert "image" in _detail(await _create(client, admin_token, image="busybox\x1b"))


async def test_newlines_stay_legal_in_arguments_and_values(
    client: httpx.AsyncClient, admin_token: str, agent: ScriptedAgent
) -> None:
    r = await _create(
        client,
        admin_token,
        command=["sh", "-c", "echo a\n\techo b"],
        environment={"SCRIPT": "line 1\nline 2"},
    )
    assert r.status_code == 202, r.text


@pytest.mark.parametrize(
    ("fields", "named", "limit"),
    [
        (
            {"restart_policy": {"Name": "on-failure", "MaximumRetryCount": HUGE}},
            "MaximumRetryCount",
            "2147483647",
        ),
        (
            {"restart_policy": {"Name": "on-failure", "MaximumRetryCount": str(HUGE)}},
            "MaximumRetryCount",
            "2147483647",
        ),
        ({"healthcheck": {"cmd": "true", "interval": HUGE}}, "healthcheck.interval", "86400"),
        ({"healthcheck": {"cmd": "true", "timeout": HUGE}}, "healthcheck.timeout", "86400"),
        ({"healthcheck": {"cmd": "true", "retries": HUGE}}, "healthcheck.retries", "2147483647"),
        ({"memory": str(10**30)}, "memory", "8192"),
        ({"memory": "1" * 5000}, "memory", "8192"),
        ({"cpu": "1e400"}, "cpu", "16"),
    ],
)
async def test_numbers_past_their_maximum_are_a_400_naming_the_limit(
    client: httpx.AsyncClient, admin_token: str, fields: dict[str, Any], named: str, limit: str
) -> None:
    detail = _detail(await _create(client, admin_token, **fields))
    assert named in detail and limit in detail


@pytest.fixture
async def agent(client: httpx.AsyncClient) -> ScriptedAgent:
    a = ScriptedAgent(client)
    await a.register()
    return a


async def test_zun_quota_past_the_column_is_a_400(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    for value in (10**30, str(10**30), "1" * 5000, "²"):
        r = await client.put(
            "/container/v1/quotas/some-project", json={"containers": value}, headers=h(admin_token)
        )
        assert "'containers'" in _detail(r)
    r = await client.put(
        "/container/v1/quotas/some-project", json={"containers": -1}, headers=h(admin_token)
    )
    assert r.status_code == 200 and r.json()["containers"] == -1


async def test_logs_since_must_be_a_timestamp(
    client: httpx.AsyncClient, admin_token: str, agent: ScriptedAgent
) -> None:
    r = await _create(client, admin_token)
    assert r.status_code == 202, r.text
    logs = f"/container/v1/containers/{r.json()['uuid']}/logs"
    for since in ("99999999999999999999", "yesterday", "nan", "-5"):
        detail = _detail(await client.get(f"{logs}?since={since}", headers=h(admin_token)))
        assert "'since'" in detail and "253402300799" in detail
    detail = _detail(await client.get(f"{logs}?tail={HUGE}", headers=h(admin_token)))
    assert "'tail'" in detail


async def test_query_integers_have_a_maximum(client: httpx.AsyncClient, admin_token: str) -> None:
    r = await client.get(f"/container/v1/containers?limit={HUGE}", headers=h(admin_token))
    assert "at most 2147483647" in _detail(r)


def _magnum_detail(r: httpx.Response) -> str:
    assert r.status_code == 400, r.text
    err = r.json()["errors"][0]
    assert err["code"] == "client"
    return str(err["detail"])


async def test_cluster_create_timeout_is_bounded(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    mag = {"X-Auth-Token": admin_token}
    r = await client.post(
        "/container-infra/v1/clustertemplates",
        json={"name": "tpl", "coe": "swarm-mode", "image_id": "node"},
        headers=mag,
    )
    assert r.status_code == 201, r.text
    body = {"cluster_template_id": "tpl", "name": "c1", "node_count": 1}
    for value in (HUGE, str(HUGE), -1):
        r = await client.post(
            "/container-infra/v1/clusters", json={**body, "create_timeout": value}, headers=mag
        )
        detail = _magnum_detail(r)
        assert "create_timeout" in detail and "10080" in detail
    r = await client.post(
        "/container-infra/v1/clusters", json={**body, "create_timeout": 0}, headers=mag
    )
    assert r.status_code == 202, r.text  # 0 still means "no deadline"


async def test_magnum_quota_past_the_column_is_a_400(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    r = await client.post(
        "/container-infra/v1/quotas",
        json={"project_id": "p1", "resource": "Cluster", "hard_limit": 10**30},
        headers={"X-Auth-Token": admin_token},
    )
    assert "hard_limit" in _magnum_detail(r)


async def test_nul_is_refused_by_magnum_and_identity(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    r = await client.post(
        "/container-infra/v1/clustertemplates",
        json={"name": "t\x00", "coe": "swarm-mode", "image_id": "node"},
        headers={"X-Auth-Token": admin_token},
    )
    assert "'name'" in _magnum_detail(r)
    r = await client.post(
        "/identity/v3/projects",
        json={"project": {"name": "p\x00", "domain_id": "default"}},
        headers={"X-Auth-Token": admin_token},
    )
    assert r.status_code == 400 and "project.name" in r.json()["error"]["message"]


@pytest.mark.parametrize("key", ["berth.cluster", "berth.rebuild", "berth.owner", "Berth.Capsule"])
async def test_labels_in_berths_own_namespace_are_refused(
    client: httpx.AsyncClient, admin_token: str, key: str
) -> None:
    # The agents and the cluster engine act on these (a berth.cluster label made a
    # container one of that cluster's nodes; berth.rebuild reached the engine as given).
    detail = _detail(await _create(client, admin_token, labels={"team": "a", key: "x"}))
    assert f"'{key}'" in detail and "berth.*" in detail


async def test_labels_that_only_mention_berth_are_kept(
    client: httpx.AsyncClient, admin_token: str, agent: ScriptedAgent
) -> None:
    labels = {"berthing": "a", "app.berth.io/tier": "web"}
    r = await _create(client, admin_token, labels=labels)
    assert r.status_code == 202, r.text
    assert r.json()["labels"] == labels


_BOUND = 256 * 1024  # max_container_spec_bytes' default


@pytest.mark.parametrize(
    "fields",
    [
        {"environment": {f"K{i}": "v" * 1000 for i in range(300)}},  # 300 KB
        {"command": ["sh", "-c", "x" * (_BOUND + 1)]},
        {"labels": {"a": "é" * 80_000, "b": "é" * 80_000}},  # 320,000 bytes in UTF-8
    ],
)
async def test_a_container_whose_settings_pass_the_bound_is_refused_before_it_is_stored(
    client: httpx.AsyncClient, admin_token: str, fields: dict[str, Any]
) -> None:
    await ScriptedAgent(client).register()
    member = await make_member(client, admin_token, "roomy", "roomy-user")
    r = await _create(client, member, name="big", **fields)
    assert "max_container_spec_bytes" in _detail(r)
    assert "bytes" in _detail(r) and "volume" in _detail(r)  # how much, and what to do
    listed = await client.get("/container/v1/containers", headers=h(member))
    assert listed.json()["containers"] == []


async def test_a_container_at_the_bound_is_stored_and_listed_whole(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    await ScriptedAgent(client).register()
    member = await make_member(client, admin_token, "roomy", "roomy-user")
    # {"command":["sh","-c","..."],"entrypoint":null,...}: the rest of the columns
    # take a little over a hundred bytes, so this is just under the bound.
    script = "x" * (_BOUND - 300)
    r = await _create(client, member, name="near", command=["sh", "-c", script])
    assert r.status_code == 202, r.text
    shown = await client.get(f"/container/v1/containers/{r.json()['uuid']}", headers=h(member))
    assert shown.json()["command"] == ["sh", "-c", script]


async def test_a_capsule_whose_members_pass_the_bound_is_refused(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    await ScriptedAgent(client).register()
    member = await make_member(client, admin_token, "roomy", "roomy-user")
    big = {f"K{i}": "v" * 1000 for i in range(300)}
    template = {
        "kind": "capsule",
        "metadata": {"name": "cap"},
        "spec": {"containers": [{"image": "busybox", "env": big}]},
    }
    r = await client.post("/container/v1/capsules", json={"template": template}, headers=h(member))
    assert "max_container_spec_bytes" in _detail(r)
    template["metadata"]["annotations"] = {"note": "n" * (_BOUND + 1)}  # type: ignore[index]
    template["spec"] = {"containers": [{"image": "busybox"}]}
    r = await client.post("/container/v1/capsules", json={"template": template}, headers=h(member))
    assert "capsule cap" in _detail(r) and "max_container_spec_bytes" in _detail(r)
    listed = await client.get("/container/v1/capsules", headers=h(member))
    assert listed.json()["capsules"] == []
