"""Placement through the API: dedicated cores, tenant-exclusive hosts, affinity hints."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from berth.config import Settings
from tests.helpers import ScriptedAgent, make_member
from tests.helpers import zun_headers as h


async def create(client: httpx.AsyncClient, token: str, **body: Any) -> dict[str, Any]:
    r = await client.post(
        "/container/v1/containers", json={"image": "busybox", **body}, headers=h(token)
    )
    assert r.status_code == 202, r.text
    return dict(r.json())


async def test_dedicated_cores_are_exclusive_and_returned(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    pin = ScriptedAgent(client, "pin-host")
    await pin.register(cpus=4, enable_cpu_pinning=True)
    plain = ScriptedAgent(client, "plain-host")
    await plain.register(cpus=4)
    a = await create(client, admin_token, cpu=2, cpu_policy="dedicated", memory=64)
    b = await create(client, admin_token, cpu=1.5, cpu_policy="dedicated", memory=64)
    assert a["host"] == b["host"] == "pin-host"
    cpusets = [(await pin.desired())[c["uuid"]]["cpuset"] for c in (a, b)]
    assert cpusets == [[0, 1], [2, 3]]
    full = await create(client, admin_token, cpu=1, cpu_policy="dedicated", memory=64)
    assert full["status"] == "Error"
    assert "not enough free cores (need 1, 0 free)" in full["status_reason"]
    assert "no CPU pinning on host" in full["status_reason"]
    shared = await create(client, admin_token, memory=64)
    assert shared["host"] == "plain-host"
    r = await client.patch(
        f"/container/v1/containers/{a['uuid']}", json={"cpu": 1}, headers=h(admin_token)
    )
    assert r.status_code in (400, 409)
    await pin.observe(a["uuid"], "stopped")
    r = await client.delete(f"/container/v1/containers/{a['uuid']}", headers=h(admin_token))
    assert r.status_code == 204
    await pin.observe(a["uuid"], "absent", removed=True)
    again = await create(client, admin_token, cpu=2, cpu_policy="dedicated", memory=64)
    assert (await pin.desired())[again["uuid"]]["cpuset"] == [0, 1]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"tenant_exclusive_hosts": True})


async def test_tenant_exclusive_hosts_keep_projects_apart(
    app: FastAPI, client: httpx.AsyncClient, admin_token: str
) -> None:
    for name in ("host-1", "host-2"):
        await ScriptedAgent(client, name).register()
    alice = await make_member(client, admin_token, "excl-a", "ex-alice")
    bob = await make_member(client, admin_token, "excl-b", "ex-bob")
    carol = await make_member(client, admin_token, "excl-c", "ex-carol")
    a1 = await create(client, alice, memory=64)
    b1 = await create(client, bob, memory=64)
    a2 = await create(client, alice, memory=64)
    hosts = {
        c["uuid"]: c
        for c in [
            (
                await client.get(f"/container/v1/containers/{x['uuid']}", headers=h(admin_token))
            ).json()
            for x in (a1, b1, a2)
        ]
    }
    assert hosts[a1["uuid"]]["host"] != hosts[b1["uuid"]]["host"]
    assert hosts[a1["uuid"]]["host"] == hosts[a2["uuid"]]["host"]
    c1 = await create(client, carol, memory=64)
    assert c1["status"] == "Error"
    assert "2 hosts: host serves another project" in c1["status_reason"]


async def test_same_and_different_host_hints(client: httpx.AsyncClient, admin_token: str) -> None:
    for name in ("host-a", "host-b"):
        await ScriptedAgent(client, name).register()
    first = await create(client, admin_token, name="first", memory=64)
    near = await create(client, admin_token, memory=64, hints={"same_host": "first"})
    far = await create(client, admin_token, memory=64, hints={"different_host": first["uuid"]})
    assert near["host"] == first["host"]
    assert far["host"] not in (None, first["host"])


async def test_snapshot_cache_sees_service_changes_and_new_hosts_at_once(
    app: FastAPI, client: httpx.AsyncClient, admin_token: str
) -> None:
    cache = app.state.berth.env.host_cache
    await ScriptedAgent(client, "cache-1").register()
    await ScriptedAgent(client, "cache-2").register()
    first = await create(client, admin_token, memory=64)
    reads = cache.reads
    r = await client.put(
        "/container/v1/services/disable",
        json={"host": "cache-1", "binary": "berth-agent"},
        headers=h(admin_token),
    )
    assert r.status_code == 200, r.text
    placed = [await create(client, admin_token, memory=64) for _ in range(3)]
    assert {c["host"] for c in placed} == {"cache-2"}, "a disabled service got a placement"
    await ScriptedAgent(client, "cache-3").register(cpus=64, mem_total=65536)
    late = await create(client, admin_token, memory=64)
    assert late["host"] == "cache-3"  # registered after the snapshot: seen, and emptiest
    assert cache.reads == reads, "the whole snapshot was read again for every placement"
    assert first["host"] in ("cache-1", "cache-2")


async def test_stale_cache_never_answers_no_valid_host(
    app: FastAPI, client: httpx.AsyncClient, admin_token: str
) -> None:
    agent = ScriptedAgent(client, "stale-1")
    await agent.register(cpus=64, mem_total=1000)  # 1.5 x 1000 MiB: room for one of 1000
    big = await create(client, admin_token, memory=1000)
    assert big["host"] == "stale-1"
    full = await create(client, admin_token, memory=1000)
    assert full["status"] == "Error" and "not enough memory" in full["status_reason"]
    # Released behind this process's back: the cache still believes the host full.
    await agent.observe(big["uuid"], "stopped")
    r = await client.delete(f"/container/v1/containers/{big['uuid']}", headers=h(admin_token))
    assert r.status_code == 204
    await agent.observe(big["uuid"], "absent", removed=True)
    again = await create(client, admin_token, memory=1000)
    assert again["host"] == "stale-1", again["status_reason"]


async def test_registered_images_attract_placements(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    await ScriptedAgent(client, "img-a").register()
    await ScriptedAgent(client, "img-b").register(images=["busybox:latest", "nginx:1"])
    for _ in range(2):
        assert (await create(client, admin_token, memory=64))["host"] == "img-b"
    assert (await create(client, admin_token, memory=64, image="nginx:1"))["host"] == "img-b"
    assert (await create(client, admin_token, memory=64, image="redis"))["host"] == "img-a"
