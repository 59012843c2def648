"""A capsule is admitted like a container: the checks containers get apply to its members.

Zun runs a capsule through the same ``container_create`` as a container: its
create is recorded as an action on the capsule, and its images are checked
where a container's are. Berth's one admission path
(``berth.services.containers.admission``) does the same.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from berth.config import Settings
from berth.store.tables import ContainerActionRow
from tests.helpers import make_member
from tests.helpers import zun_headers as h

pytestmark = pytest.mark.asyncio

V = "/container/v1"
STORE = "127.0.0.1:5999"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "image_store": STORE,
            "image_store_username": "berth",
            "image_store_password": "store-pw",
        }
    )


@pytest.fixture
async def member(client: httpx.AsyncClient, admin_token: str) -> str:
    return await make_member(client, admin_token, "team-a", "alice")


def template(image: str) -> dict[str, Any]:
    return {
        "kind": "capsule",
        "capsuleVersion": "beta",
        "metadata": {"name": "pod"},
        "spec": {"containers": [{"image": image, "resources": {"requests": {"memory": 64}}}]},
    }


def detail(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    return str(r.json()["errors"][0]["detail"])


async def test_a_capsule_member_naming_the_image_store_gets_a_containers_400(
    client: httpx.AsyncClient, member: str
) -> None:
    image = f"{STORE}/team-a/web:1"
    container = await client.post(
        f"{V}/containers", json={"image": image, "memory": 64}, headers=h(member)
    )
    capsule = await client.post(
        f"{V}/capsules", json={"template": template(image)}, headers=h(member)
    )
    assert "image_driver=glance" in detail(container, 400)
    assert detail(capsule, 400) == detail(container, 400)
    assert (await client.get(f"{V}/capsules", headers=h(member))).json()["capsules"] == []


async def test_a_capsule_create_is_an_action_of_the_capsule(
    app: FastAPI, client: httpx.AsyncClient, member: str
) -> None:
    # No host registered: the capsule is stored in error, and so is its create action.
    r = await client.post(
        f"{V}/capsules", json={"template": template("busybox")}, headers=h(member)
    )
    assert r.status_code == 202, r.text
    uuid = r.json()["uuid"]
    shown = (await client.get(f"{V}/capsules/{uuid}", headers=h(member))).json()
    assert shown["status"] == "Error"
    async with app.state.berth.db.read() as session:
        stmt = select(ContainerActionRow).where(ContainerActionRow.container_uuid == uuid)
        actions = (await session.execute(stmt)).scalars().all()
    assert [(a.action, a.message) for a in actions] == [("create", "Error")]
    assert actions[0].finish_time is not None
