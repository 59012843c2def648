"""Volumes and capsules through the real app, with a scripted agent instead of an engine.

The real engine (data surviving restart/rebuild/remount, shared network
namespaces, init containers) is covered by tests/compat/test_openstack_capsules.py.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import AGENT_PASSWORD
from tests.helpers import ScriptedAgent, make_member
from tests.helpers import zun_headers as h

pytestmark = pytest.mark.asyncio

V = "/container/v1"


def zun_error(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    err: dict[str, Any] = r.json()["errors"][0]
    assert err["status"] == status and err["code"].startswith("container.")
    return str(err["detail"])


class _NoVolumes:
    """The agent side of a volume delete when the runtime has no volume driver."""


@pytest.fixture
async def agent(app: FastAPI, client: httpx.AsyncClient) -> ScriptedAgent:
    from berth.agent.server import create_agent_app

    a = ScriptedAgent(client)
    await a.register()
    # Synchronous agent calls (volume delete) reach an in-memory agent app.
    app.state.berth.env.agents.local[a.hostname] = httpx.ASGITransport(
        app=create_agent_app(_NoVolumes(), AGENT_PASSWORD)  # type: ignore[arg-type]
    )
    return a


@pytest.fixture
async def tokens(client: httpx.AsyncClient, admin_token: str) -> dict[str, str]:
    return {
        "alice": await make_member(client, admin_token, "team-a", "alice"),
        "bob": await make_member(client, admin_token, "team-b", "bob"),
    }


async def run(client: httpx.AsyncClient, token: str, **body: Any) -> httpx.Response:
    body.setdefault("image", "berth-test/busybox")
    return await client.post(f"{V}/containers?run=true", json=body, headers=h(token))


async def test_volume_crud_and_tenancy(
    client: httpx.AsyncClient, tokens: dict[str, str], agent: ScriptedAgent
) -> None:
    alice, bob = tokens["alice"], tokens["bob"]
    r = await client.post(f"{V}/volumes", json={"name": "data", "size": 2}, headers=h(alice))
    assert r.status_code == 202, r.text
    vol = r.json()
    assert (vol["name"], vol["size"], vol["driver"]) == ("data", 2, "local")
    assert "host" not in vol  # admin-only, as a container's host
    assert r.headers["location"].endswith(f"/v1/volumes/{vol['uuid']}")
    dup = await client.post(f"{V}/volumes", json={"name": "data", "size": 1}, headers=h(alice))
    zun_error(dup, 409)
    for bad in ({"name": "x", "size": 1}, {"name": "ok-name", "size": 0}, {"name": "ok"}):
        zun_error(await client.post(f"{V}/volumes", json=bad, headers=h(alice)), 400)
    extra = {"name": "ok-name", "size": 1, "mode": "rw"}
    assert "mode" in zun_error(await client.post(f"{V}/volumes", json=extra, headers=h(alice)), 400)

    listed = (await client.get(f"{V}/volumes", headers=h(alice))).json()["volumes"]
    assert [v["uuid"] for v in listed] == [vol["uuid"]]
    assert (await client.get(f"{V}/volumes", headers=h(bob))).json()["volumes"] == []
    zun_error(await client.get(f"{V}/volumes?all_projects=1", headers=h(bob)), 403)
    for ident in (vol["uuid"], "data"):
        zun_error(await client.get(f"{V}/volumes/{ident}", headers=h(bob)), 404)
        zun_error(await client.delete(f"{V}/volumes/{ident}", headers=h(bob)), 404)
    # Bob cannot mount Alice's volume, by name or by uuid.
    for source in ("data", vol["uuid"]):
        mount = [{"source": source, "destination": "/data"}]
        zun_error(await run(client, bob, mounts=mount), 404)

    # Mounted: the agent gets it, the container shows it, it cannot be deleted.
    r = await run(client, alice, name="user-1", mounts=[{"source": "data", "destination": "/data"}])
    assert r.status_code == 202, r.text
    c = r.json()
    assert c["mounts"] == [
        {
            "type": "volume",
            "source": "data",
            "destination": "/data",
            "volume_id": vol["uuid"],
            "size": 2,
        }
    ]
    desired = (await agent.desired())[c["uuid"]]
    assert desired["volumes"] == [
        {
            "volume_uuid": vol["uuid"],
            "destination": "/data",
            "read_only": False,
            "size": 2,
            "owner": None,
            "host_path": None,
        }
    ]
    msg = zun_error(await client.delete(f"{V}/volumes/data", headers=h(alice)), 409)
    assert c["uuid"] in msg
    await agent.observe(c["uuid"], "running")
    await client.post(f"{V}/containers/{c['uuid']}/stop", headers=h(alice))
    await agent.observe(c["uuid"], "stopped")
    r = await client.delete(f"{V}/containers/{c['uuid']}", headers=h(alice))
    assert r.status_code == 204, r.text
    await agent.observe(c["uuid"], "absent", removed=True)
    # The named volume outlives its container; it now lives on the agent's host.
    admin_view = await client.get(f"{V}/volumes/data", headers=h(alice))
    assert admin_view.status_code == 200
    r = await client.delete(f"{V}/volumes/data", headers=h(alice))
    assert r.status_code == 204, r.text
    zun_error(await client.get(f"{V}/volumes/data", headers=h(alice)), 404)


async def test_volume_list_pages_like_every_zun_collection(
    client: httpx.AsyncClient, tokens: dict[str, str], agent: ScriptedAgent
) -> None:
    alice, bob = tokens["alice"], tokens["bob"]
    made = []
    for name, size in (("b-vol", 3), ("a-vol", 1), ("c-vol", 2)):
        r = await client.post(f"{V}/volumes", json={"name": name, "size": size}, headers=h(alice))
        assert r.status_code == 202, r.text
        made.append(r.json()["uuid"])
    r = await client.post(f"{V}/volumes", json={"name": "bobs", "size": 1}, headers=h(bob))
    bobs = r.json()["uuid"]

    first = (await client.get(f"{V}/volumes?limit=2", headers=h(alice))).json()
    assert [v["uuid"] for v in first["volumes"]] == made[:2]
    assert first["next"].endswith(f"/v1/volumes?sort_key=id&sort_dir=asc&limit=2&marker={made[1]}")
    rest = (await client.get(f"{V}/volumes?limit=2&marker={made[1]}", headers=h(alice))).json()
    assert [v["uuid"] for v in rest["volumes"]] == made[2:] and rest["next"] is None
    by_name = await client.get(f"{V}/volumes?sort_key=name&sort_dir=desc", headers=h(alice))
    assert [v["name"] for v in by_name.json()["volumes"]] == ["c-vol", "b-vol", "a-vol"]
    by_size = await client.get(f"{V}/volumes?sort_key=size", headers=h(alice))
    assert [v["size"] for v in by_size.json()["volumes"]] == [1, 2, 3]

    msg = zun_error(await client.get(f"{V}/volumes?marker={bobs}", headers=h(alice)), 400)
    assert "could not be found" in msg
    zun_error(await client.get(f"{V}/volumes?limit=0", headers=h(alice)), 400)
    msg = zun_error(await client.get(f"{V}/volumes?sort_key=secret", headers=h(alice)), 400)
    assert "choose one of" in msg
    assert "colour" in zun_error(await client.get(f"{V}/volumes?colour=red", headers=h(alice)), 400)


async def test_size_mount_creates_a_volume_removed_with_the_container(
    client: httpx.AsyncClient, tokens: dict[str, str], agent: ScriptedAgent
) -> None:
    alice = tokens["alice"]
    r = await run(client, alice, name="scratch", mounts=[{"size": "1", "destination": "/scratch"}])
    assert r.status_code == 202, r.text
    c = r.json()
    vols = (await client.get(f"{V}/volumes", headers=h(alice))).json()["volumes"]
    assert len(vols) == 1 and vols[0]["owner"] == c["uuid"]
    desired = (await agent.desired())[c["uuid"]]
    assert desired["volumes"][0]["owner"] == c["uuid"]  # the host removes it with the container
    await agent.observe(c["uuid"], "stopped")
    assert (await client.delete(f"{V}/containers/{c['uuid']}", headers=h(alice))).status_code == 204
    await agent.observe(c["uuid"], "absent", removed=True)
    assert (await client.get(f"{V}/volumes", headers=h(alice))).json()["volumes"] == []


async def test_mounts_outside_policy_and_bad_mounts_are_4xx(
    client: httpx.AsyncClient, tokens: dict[str, str], admin_token: str, agent: ScriptedAgent
) -> None:
    alice = tokens["alice"]
    cases: list[tuple[list[dict[str, Any]], int, str]] = [
        ([{"source": "/etc", "destination": "/host"}], 403, "host_path"),
        ([{"type": "bind", "source": "a!", "destination": "/f"}], 400, "Base 64"),
        ([{"source": "nope", "destination": "/d"}], 404, "nope"),
        ([{"size": 1, "destination": "relative"}], 400, "absolute"),
        ([{"size": 0, "destination": "/d"}], 400, "size"),
        ([{"size": 1, "destination": "/d"}, {"size": 1, "destination": "/d"}], 400, "same"),
        ([{"size": 1, "source": "x1", "destination": "/d"}], 400, "not both"),
        ([{"destination": "/d"}], 400, "required"),
        ([{"size": 1, "destination": "/d", "mode": "rw"}], 400, "mode"),
        # runc refused these only at start, an Error whose reason showed the host's paths.
        ([{"size": 1, "destination": "/proc/x"}], 400, "under /proc, /sys or /dev"),
        ([{"size": 1, "destination": "//sys/fs/cgroup"}], 400, "under /proc, /sys or /dev"),
        ([{"size": 1, "destination": "/dev"}], 400, "under /proc, /sys or /dev"),
    ]
    for mounts, status, words in cases:
        if status == 400 and words == "not both":
            await client.post(f"{V}/volumes", json={"name": "x1", "size": 1}, headers=h(alice))
        msg = zun_error(await run(client, alice, mounts=mounts), status)
        assert words in msg, (mounts, msg)
    # An admin may mount a host path.
    r = await run(client, admin_token, mounts=[{"source": "/tmp", "destination": "/host"}])
    assert r.status_code == 202, r.text
    assert (await agent.desired())[r.json()["uuid"]]["volumes"][0]["host_path"] == "/tmp"
    # The older microversion refuses mounts altogether.
    old = await client.post(
        f"{V}/containers",
        json={"image": "berth-test/busybox", "mounts": []},
        headers=h(alice, "1.10"),
    )
    zun_error(old, 400)


TEMPLATE: dict[str, Any] = {
    "kind": "capsule",
    "capsuleVersion": "beta",
    "metadata": {"name": "pod-a", "labels": {"app": "web"}, "annotations": {"k": "v"}},
    "spec": {
        "restartPolicy": "Always",
        "initContainers": [
            {
                "image": "berth-test/busybox",
                "command": ["sh", "-c", "echo hi > /work/index.html"],
                "volumeMounts": [{"name": "work", "mountPath": "/work"}],
            }
        ],
        "containers": [
            {
                "image": "berth-test/busybox",
                "command": ["sleep", "1000"],
                "resources": {"requests": {"cpu": 0.5, "memory": 64}},
                "env": {"A": "b"},
                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                "workDir": "/work",
                "volumeMounts": [{"name": "work", "mountPath": "/usr/share/html"}],
            },
            {"image": "berth-test/busybox", "command": ["sleep"], "args": ["1000"]},
        ],
        "volumes": [{"name": "work", "cinder": {"size": 1, "autoRemove": True}}],
    },
}


async def test_capsule_lifecycle_init_first_and_tenancy(
    client: httpx.AsyncClient, tokens: dict[str, str], admin_token: str, agent: ScriptedAgent
) -> None:
    alice, bob = tokens["alice"], tokens["bob"]
    r = await client.post(f"{V}/capsules", json={"template": TEMPLATE}, headers=h(alice))
    assert r.status_code == 202, r.text
    cap = r.json()
    uid = cap["uuid"]
    assert r.headers["location"].endswith(f"/v1/capsules/{uid}")
    assert (cap["name"], cap["labels"], cap["annotations"]) == ("pod-a", {"app": "web"}, {"k": "v"})
    assert cap["status"] == "Creating" and "host" not in cap
    assert cap["restart_policy"] == {"Name": "always", "MaximumRetryCount": "0"}
    assert (cap["cpu"], cap["memory"]) == (1.5, "576")  # 0.5 + default 1.0 cpu; 64 + 512 MiB
    assert len(cap["containers"]) == 2 and len(cap["init_containers"]) == 1
    app0 = cap["containers"][0]
    assert "links" not in app0 and app0["environment"] == {"A": "b"}
    assert app0["workdir"] == "/work" and app0["memory"] == "64"
    assert cap["containers"][1]["command"] == ["sleep", "1000"]
    assert app0["mounts"][0]["destination"] == "/usr/share/html"

    # Only the sandbox reaches the host at first; it holds the capsule's volume.
    desired = await agent.desired()
    assert list(desired) == [uid]
    assert desired[uid]["volumes"][0]["destination"] is None
    assert desired[uid]["volumes"][0]["owner"] == uid
    await agent.observe(uid, "running")
    desired = await agent.desired()
    init = cap["init_containers"][0]["uuid"]
    assert set(desired) == {uid, init}
    assert desired[init]["network_container"] == uid
    assert desired[init]["volumes"][0]["destination"] == "/work"
    await agent.observe(init, "running", started_at="2099-01-01T00:00:00+00:00")
    assert set(await agent.desired()) == {uid, init}  # apps wait for the init container
    await agent.observe(init, "stopped", exit_code=0, started_at="2099-01-01T00:00:00+00:00")
    desired = await agent.desired()
    apps = [c["uuid"] for c in cap["containers"]]
    assert set(desired) == {uid, init, *apps}
    for a in apps:
        await agent.observe(a, "running")
    shown = (await client.get(f"{V}/capsules/pod-a", headers=h(alice))).json()
    assert shown["status"] == "Running", shown

    # Members are not listed as containers and cannot be deleted on their own.
    listed = (await client.get(f"{V}/containers", headers=h(alice))).json()["containers"]
    assert listed == []
    zun_error(await client.delete(f"{V}/containers/{apps[0]}?force=1", headers=h(alice)), 409)
    patch = await client.patch(f"{V}/containers/{apps[0]}", json={"memory": 128}, headers=h(alice))
    zun_error(patch, 409)

    # Another project sees nothing and touches nothing.
    assert (await client.get(f"{V}/capsules", headers=h(bob))).json()["capsules"] == []
    for ident in (uid, "pod-a"):
        zun_error(await client.get(f"{V}/capsules/{ident}", headers=h(bob)), 404)
        zun_error(await client.delete(f"{V}/capsules/{ident}", headers=h(bob)), 404)
    zun_error(await client.get(f"{V}/capsules?all_projects=1", headers=h(bob)), 403)
    listed = (await client.get(f"{V}/capsules/", headers=h(alice))).json()["capsules"]
    assert [c["uuid"] for c in listed] == [uid]
    admin = h(admin_token)
    assert (await client.get(f"{V}/capsules", headers=admin)).json()["capsules"] == []
    everyone = (await client.get(f"{V}/capsules?all_projects=1", headers=admin)).json()
    assert [c["uuid"] for c in everyone["capsules"]] == [uid]
    assert everyone["capsules"][0]["host"] == agent.hostname  # admins see the host
    legacy = (await client.get(f"{V}/capsules/{uid}", headers=h(alice, "1.31"))).json()
    assert legacy["meta_name"] == "pod-a" and legacy["restart_policy"] == "always"

    # Delete: the members go first, then the sandbox, then the capsule and its volume.
    assert (await client.delete(f"{V}/capsules/{uid}", headers=h(alice))).status_code == 204
    desired = await agent.desired()
    assert all(desired[m]["desired_state"] == "deleted" for m in (init, *apps))
    assert desired[uid]["desired_state"] == "running"
    assert (await client.get(f"{V}/capsules/{uid}", headers=h(alice))).json()["status"] == (
        "Deleting"
    )
    for m in (init, *apps):
        await agent.observe(m, "absent", removed=True)
    assert (await agent.desired())[uid]["desired_state"] == "deleted"
    await agent.observe(uid, "absent", removed=True)
    zun_error(await client.get(f"{V}/capsules/{uid}", headers=h(alice)), 404)
    assert await agent.desired() == {}
    assert (await client.get(f"{V}/volumes", headers=h(alice))).json()["volumes"] == []


async def test_failed_init_container_is_a_capsule_error(
    client: httpx.AsyncClient, tokens: dict[str, str], agent: ScriptedAgent
) -> None:
    alice = tokens["alice"]
    r = await client.post(f"{V}/capsules", json={"template": TEMPLATE}, headers=h(alice))
    cap = r.json()
    await agent.observe(cap["uuid"], "running")
    init = cap["init_containers"][0]["uuid"]
    await agent.observe(init, "stopped", exit_code=3, started_at="2099-01-01T00:00:00+00:00")
    shown = (await client.get(f"{V}/capsules/{cap['uuid']}", headers=h(alice))).json()
    assert shown["status"] == "Error"
    assert "exited with code 3" in shown["status_reason"]
    assert set(await agent.desired()) == {cap["uuid"], init}  # the apps never start


async def test_capsule_quota_counts_its_containers(
    client: httpx.AsyncClient, tokens: dict[str, str], admin_token: str, agent: ScriptedAgent
) -> None:
    alice = tokens["alice"]
    projects = await client.get(
        "/identity/v3/projects?name=team-a", headers={"X-Auth-Token": admin_token}
    )
    pid = projects.json()["projects"][0]["id"]
    r = await client.put(f"{V}/quotas/{pid}", json={"containers": 2}, headers=h(admin_token))
    assert r.status_code == 200, r.text
    msg = zun_error(
        await client.post(f"{V}/capsules", json={"template": TEMPLATE}, headers=h(alice)), 403
    )
    assert "containers" in msg
    r = await client.put(f"{V}/quotas/{pid}", json={"containers": 3}, headers=h(admin_token))
    r = await client.post(f"{V}/capsules", json={"template": TEMPLATE}, headers=h(alice))
    assert r.status_code == 202, r.text
    usage = (await client.get(f"{V}/quotas/{pid}?usages=True", headers=h(admin_token))).json()
    assert usage["containers"]["in_use"] == 3  # the sandbox is not counted
    assert usage["memory"]["in_use"] == 576
    zun_error(await run(client, alice), 403)


@pytest.mark.parametrize(
    ("template", "words"),
    [
        ("not-an-object", "must be an object"),
        ({"kind": "capsule", "metadata": {}}, "needs 'spec'"),
        ({"kind": "pod", "metadata": {}, "spec": {"containers": [{"image": "ab"}]}}, "kind"),
        ({"kind": "capsule", "metadata": {}, "spec": {"containers": []}}, "at least one"),
        ({"kind": "capsule", "metadata": {}, "spec": {"containers": [{}]}}, "image"),
        (
            {"kind": "capsule", "metadata": {}, "spec": {"containers": [{"image": "ab", "x": 1}]}},
            "unknown key",
        ),
        (
            {
                "kind": "capsule",
                "metadata": {},
                "spec": {
                    "containers": [
                        {"image": "ab", "volumeMounts": [{"name": "v9", "mountPath": "/d"}]}
                    ]
                },
            },
            "v9",
        ),
        (
            {
                "kind": "capsule",
                "metadata": {},
                "spec": {
                    "containers": [{"image": "ab"}],
                    "volumes": [{"name": "vv", "cinder": {"size": 1, "volumeID": "x"}}],
                },
            },
            "exactly one",
        ),
        (
            {
                "kind": "capsule",
                "metadata": {},
                "spec": {"containers": [{"image": "ab", "resources": {"requests": {"cpu": 99}}}]},
            },
            "out of range",
        ),
        (
            {
                "kind": "capsule",
                "metadata": {"name": "-x"},
                "spec": {"containers": [{"image": "ab"}]},
            },
            "metadata.name",
        ),
        (
            {
                "kind": "capsule",
                "metadata": {},
                "spec": {"containers": [{"image": "ab"}], "restartPolicy": "Sometimes"},
            },
            "restartPolicy",
        ),
        (
            {
                "kind": "capsule",
                "metadata": {},
                "spec": {
                    "containers": [
                        {"image": "ab", "volumeMounts": [{"name": "vv", "mountPath": "/proc/sys"}]}
                    ],
                    "volumes": [{"name": "vv", "cinder": {"size": 1}}],
                },
            },
            "mountPath may not lie under /proc, /sys or /dev",
        ),
    ],
)
async def test_malformed_templates_are_400(
    client: httpx.AsyncClient, tokens: dict[str, str], template: Any, words: str
) -> None:
    r = await client.post(f"{V}/capsules", json={"template": template}, headers=h(tokens["alice"]))
    assert words in zun_error(r, 400)


async def test_capsule_bad_requests(
    client: httpx.AsyncClient, tokens: dict[str, str], agent: ScriptedAgent
) -> None:
    alice = tokens["alice"]
    zun_error(await client.post(f"{V}/capsules", json={}, headers=h(alice)), 400)
    zun_error(await client.post(f"{V}/capsules", content=b"x", headers=h(alice)), 415)
    tpl = {
        "kind": "capsule",
        "metadata": {"name": "c2"},
        "spec": {
            "containers": [{"image": "ab"}],
            "volumes": [{"name": "vv", "cinder": {"volumeID": "missing-vol"}}],
        },
    }
    assert "missing-vol" in zun_error(
        await client.post(f"{V}/capsules", json={"template": tpl}, headers=h(alice)), 404
    )


async def test_capsule_list_pages_like_every_zun_collection(
    client: httpx.AsyncClient, tokens: dict[str, str], agent: ScriptedAgent
) -> None:
    alice, bob = tokens["alice"], tokens["bob"]
    made = []
    for n in range(3):
        tpl = {**TEMPLATE, "metadata": {"name": f"pod-{n}"}}
        r = await client.post(f"{V}/capsules", json={"template": tpl}, headers=h(alice))
        assert r.status_code == 202, r.text
        made.append(r.json()["uuid"])
    r = await client.post(f"{V}/capsules", json={"template": TEMPLATE}, headers=h(bob))
    bobs = r.json()["uuid"]

    first = (await client.get(f"{V}/capsules?limit=2", headers=h(alice))).json()
    assert [c["uuid"] for c in first["capsules"]] == made[:2]
    assert first["capsules"][0]["containers"]  # each capsule still shows its members
    assert first["next"].endswith(f"/v1/capsules?sort_key=id&sort_dir=asc&limit=2&marker={made[1]}")
    rest = (await client.get(f"{V}/capsules?limit=2&marker={made[1]}", headers=h(alice))).json()
    assert [c["uuid"] for c in rest["capsules"]] == made[2:] and rest["next"] is None

    newest = await client.get(f"{V}/capsules?sort_key=name&sort_dir=desc", headers=h(alice))
    assert [c["uuid"] for c in newest.json()["capsules"]] == made[::-1]

    # Another project's capsule is no marker: it is not there for alice.
    msg = zun_error(await client.get(f"{V}/capsules?marker={bobs}", headers=h(alice)), 400)
    assert "could not be found" in msg
    zun_error(await client.get(f"{V}/capsules?limit=0", headers=h(alice)), 400)
    msg = zun_error(await client.get(f"{V}/capsules?sort_key=secret", headers=h(alice)), 400)
    assert "choose one of" in msg
    zun_error(await client.get(f"{V}/capsules?sort_dir=up", headers=h(alice)), 400)
    msg = zun_error(await client.get(f"{V}/capsules?colour=red", headers=h(alice)), 400)
    assert "colour" in msg
