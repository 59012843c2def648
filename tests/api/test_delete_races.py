"""A network, security group or volume deleted while a container is created with it.

Either the container is created and the delete is refused (in use), or the delete
happens and the create is refused: never both. On PostgreSQL transactions overlap,
and both used to pass (the delete counted users that were not committed yet, the
create had read the row before it went), leaving a Running container on a network,
in a group or with a volume that no longer existed. Each test pauses one side inside
its transaction at the point that matters and lets the other one run into it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from berth import errors
from berth.services.containers import admission
from berth.store import networks as networks_repo
from berth.store import volumes as volumes_repo
from berth.store.tables import VolumeRow
from tests.helpers import ZUN, Pause, ScriptedAgent, meet

C = "/container/v1"


async def _made(client: httpx.AsyncClient, kind: str, headers: dict[str, str]) -> str:
    """A fresh network, security group or volume; its uuid."""
    if kind == "network":
        r = await client.post(f"{C}/networks", json={"name": "racy"}, headers=headers)
    elif kind == "security_group":
        body = {"security_group": {"name": "racy"}}
        r = await client.post(f"{C}/security_groups", json=body, headers=headers)
    else:
        r = await client.post(f"{C}/volumes", json={"name": "racy", "size": 1}, headers=headers)
    assert r.status_code < 300, r.text
    body = r.json()
    return str(body["security_group"]["uuid"] if kind == "security_group" else body["uuid"])


def _create_body(kind: str, uuid: str) -> dict[str, Any]:
    body: dict[str, Any] = {"image": "berth-test/busybox", "name": "racer"}
    if kind == "network":
        body["nets"] = [{"network": uuid}]
    elif kind == "security_group":
        body["security_groups"] = [uuid]
    else:
        body["mounts"] = [{"source": uuid, "destination": "/data"}]
    return body


_PATH = {"network": "networks", "security_group": "security_groups", "volume": "volumes"}
# Where a delete has counted its users, inside its transaction.
_USERS = {
    "network": (networks_repo, "network_users"),
    "security_group": (networks_repo, "group_members"),
    "volume": (volumes_repo, "mounted_by"),
}
KINDS = ["network", "security_group", "volume"]


@pytest.fixture
async def headers(client: httpx.AsyncClient, admin_token: str) -> dict[str, str]:
    await ScriptedAgent(client).register()
    return {"X-Auth-Token": admin_token, **ZUN}


@pytest.mark.parametrize("kind", KINDS)
async def test_a_delete_that_meets_a_create_in_flight_finds_it_in_use(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    uuid = await _made(client, kind, headers)
    # The create is held inside its transaction, after its checks, before it commits.
    pause = Pause(admission._place, after=False)
    monkeypatch.setattr(admission, "_place", pause)
    created, deleted = await meet(
        pause,
        client.post(f"{C}/containers?run=true", json=_create_body(kind, uuid), headers=headers),
        client.delete(f"{C}/{_PATH[kind]}/{uuid}", headers=headers),
    )
    assert created.status_code == 202, created.text
    assert deleted.status_code == 409 and "in use" in deleted.text, deleted.text


@pytest.mark.parametrize("kind", KINDS)
async def test_a_create_that_meets_a_delete_in_flight_is_refused(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    uuid = await _made(client, kind, headers)
    # The delete is held inside its transaction, having found no user.
    module, name = _USERS[kind]
    pause = Pause(getattr(module, name), after=True)
    monkeypatch.setattr(module, name, pause)
    deleted, created = await meet(
        pause,
        client.delete(f"{C}/{_PATH[kind]}/{uuid}", headers=headers),
        client.post(f"{C}/containers?run=true", json=_create_body(kind, uuid), headers=headers),
    )
    assert deleted.status_code == 204, deleted.text
    assert 400 <= created.status_code < 500, created.text
    listed = (await client.get(f"{C}/containers", headers=headers)).json()["containers"]
    assert [c["name"] for c in listed] == []  # no container on what is gone


@pytest.mark.parametrize("kind", ["network", "security_group"])
async def test_a_create_whose_reads_went_before_a_delete_is_refused(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    """A create reads its networks and groups before its write transaction (on SQLite
    every create holds the one write lock): one deleted in between was a security
    group that a Running container then named, on SQLite as well."""
    uuid = await _made(client, kind, headers)
    pause = Pause(admission.networks.resolve, after=True)
    monkeypatch.setattr(admission.networks, "resolve", pause)
    create = asyncio.create_task(
        client.post(f"{C}/containers?run=true", json=_create_body(kind, uuid), headers=headers)
    )
    await asyncio.wait_for(pause.reached.wait(), 10)
    deleted = await client.delete(f"{C}/{_PATH[kind]}/{uuid}", headers=headers)
    assert deleted.status_code == 204, deleted.text
    pause.release.set()
    created = await create
    assert created.status_code == 409 and "was deleted while" in created.text, created.text


async def test_a_volume_whose_data_its_host_removes_is_not_mounted_meanwhile(
    app: Any,
    client: httpx.AsyncClient,
    headers: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A volume delete asks the volume's host to remove the data between two
    transactions; a create in that window mounted the volume whose row then went."""
    uuid = await _made(client, "volume", headers)
    async with app.state.berth.db.transaction() as s:  # its data lives on the host now
        await s.execute(update(VolumeRow).where(VolumeRow.uuid == uuid).values(host="test-host"))
    agents = app.state.berth.env.agents
    answers: list[str] = []

    async def removed(*args: Any, **kw: Any) -> Any:
        return answers.append("removed")

    pause = Pause(removed, after=False)
    monkeypatch.setattr(agents, "call", pause)
    delete = asyncio.create_task(client.delete(f"{C}/volumes/{uuid}", headers=headers))
    await asyncio.wait_for(pause.reached.wait(), 10)
    created = await client.post(
        f"{C}/containers?run=true", json=_create_body("volume", uuid), headers=headers
    )
    assert created.status_code == 409 and "is being deleted" in created.text, created.text
    capsule = {
        "kind": "capsule",
        "metadata": {"name": "pod"},
        "spec": {
            "containers": [{"image": "berth-test/busybox", "volumeMounts": []}],
            "volumes": [{"name": "vv", "cinder": {"volumeID": uuid}}],
        },
    }
    made = await client.post(f"{C}/capsules", json={"template": capsule}, headers=headers)
    assert made.status_code == 409 and "is being deleted" in made.text, made.text
    pause.release.set()
    assert (await delete).status_code == 204 and answers == ["removed"]
    assert (await client.get(f"{C}/volumes/{uuid}", headers=headers)).status_code == 404


@pytest.mark.allows_5xx("the volume's host is unreachable: the delete's 503 is genuine")
async def test_a_volume_whose_host_failed_to_remove_it_is_mountable_again(
    app: Any, client: httpx.AsyncClient, headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    uuid = await _made(client, "volume", headers)
    async with app.state.berth.db.transaction() as s:
        await s.execute(update(VolumeRow).where(VolumeRow.uuid == uuid).values(host="test-host"))

    async def unreachable(*args: Any, **kw: Any) -> Any:
        raise errors.HostUnavailable("The agent on host test-host did not answer.")

    monkeypatch.setattr(app.state.berth.env.agents, "call", unreachable)
    r = await client.delete(f"{C}/volumes/{uuid}", headers=headers)
    assert r.status_code == 503, r.text
    created = await client.post(
        f"{C}/containers?run=true", json=_create_body("volume", uuid), headers=headers
    )
    assert created.status_code == 202, created.text


async def test_a_network_delete_that_meets_an_attach_in_flight_finds_it_in_use(
    client: httpx.AsyncClient, headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    made = await client.post(
        f"{C}/containers?run=true", json={"image": "berth-test/busybox"}, headers=headers
    )
    assert made.status_code == 202, made.text
    container, uuid = made.json()["uuid"], await _made(client, "network", headers)
    pause = Pause(admission.networks._record, after=False)  # inside the attach's transaction
    monkeypatch.setattr(admission.networks, "_record", pause)
    attached, deleted = await meet(
        pause,
        client.post(
            f"{C}/containers/{container}/network_attach", params={"network": uuid}, headers=headers
        ),
        client.delete(f"{C}/networks/{uuid}", headers=headers),
    )
    assert attached.status_code == 200, attached.text
    assert deleted.status_code == 409 and "in use" in deleted.text, deleted.text


async def test_rules_naming_each_others_groups_at_once_never_deadlock(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    """A rule locks its group and the group it names (against deletion): in one order,
    or two such rules added at once each wait for the other (PostgreSQL: a 500)."""
    groups = []
    for name in ("left", "right"):
        body = {"security_group": {"name": name}}
        r = await client.post(f"{C}/security_groups", json=body, headers=headers)
        groups.append(r.json()["security_group"]["uuid"])

    async def rule(group: str, names: str, port: int) -> int:
        fields = {"protocol": "tcp", "port_range_min": port, "port_range_max": port}
        body = {"security_group_rule": {**fields, "remote_group_id": names}}
        r = await client.post(f"{C}/security_groups/{group}/rules", json=body, headers=headers)
        return r.status_code

    left, right = groups
    answers = await asyncio.gather(
        *(rule(left, right, 1000 + i) for i in range(10)),
        *(rule(right, left, 2000 + i) for i in range(10)),
    )
    assert answers == [201] * 20
