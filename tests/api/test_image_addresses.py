"""A project cannot make the engine fetch from inside the platform (SQLite and PostgreSQL).

Image references and registry domains on loopback, link-local, unspecified or
a Berth host's own addresses, however written, are a 400 in Zun's format for
members, before anything is stored or pulled; the operator's allowlist and
admins pass.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from berth.config import Settings
from tests.conftest import make_settings
from tests.helpers import ScriptedAgent, make_member
from tests.helpers import zun_headers as h

V = "/container/v1"
ALLOWED = "127.0.0.1:7000"


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return make_settings(tmp_path, db_url, image_registry_allowlist=[ALLOWED])


@pytest.fixture
async def member(client: httpx.AsyncClient, admin_token: str) -> str:
    return await make_member(client, admin_token, "team-a", "alice")


def zun_400(r: httpx.Response) -> str:
    assert r.status_code == 400, r.text
    err: dict[str, Any] = r.json()["errors"][0]
    assert err["status"] == 400 and err["code"].startswith("container.")
    return str(err["detail"])


INTERNAL = [
    "127.0.0.1:5000/x",
    "localhost:5000/x",
    "[::1]:5000/x",
    "169.254.169.254/x",
    "2130706433:5000/x",
    "0x7f.1:5000/x",
    "127.1:5000/x",
    "[::ffff:127.0.0.1]:5000/x",
    "0.0.0.0:5000/x",
    "127.0.0.1:7001/x",  # the allowlist names port 7000 only
]


@pytest.mark.parametrize("image", INTERNAL)
async def test_a_member_cannot_run_an_image_from_an_internal_address(
    client: httpx.AsyncClient, member: str, image: str
) -> None:
    agent = ScriptedAgent(client)
    await agent.register()
    r = await client.post(f"{V}/containers?run=true", json={"image": image}, headers=h(member))
    detail = zun_400(r)
    assert detail.startswith(f"Image {image} names the registry ")
    assert "image_registry_allowlist" in detail
    listed = await client.get(f"{V}/containers", headers=h(member))
    assert listed.json()["containers"] == []
    assert await agent.desired() == {}  # nothing for the agent to pull


async def test_a_name_resolving_to_the_host_is_refused(
    client: httpx.AsyncClient, member: str
) -> None:
    # The machine's own name resolves (through /etc/hosts) to one of its addresses.
    image = f"{socket.gethostname()}:5000/x"
    r = await client.post(f"{V}/containers", json={"image": image}, headers=h(member))
    assert "names the registry" in zun_400(r)


async def test_a_capsule_member_image_is_checked_too(
    client: httpx.AsyncClient, member: str
) -> None:
    template = {
        "kind": "capsule",
        "capsuleVersion": "beta",
        "metadata": {"name": "pod"},
        "spec": {"containers": [{"image": "localhost:5000/x"}]},
    }
    r = await client.post(f"{V}/capsules", json={"template": template}, headers=h(member))
    assert "localhost:5000" in zun_400(r)
    assert (await client.get(f"{V}/capsules", headers=h(member))).json()["capsules"] == []


@pytest.mark.parametrize(
    ("who", "image"),
    [
        ("member", f"{ALLOWED}/x"),  # on the allowlist
        ("member", "registry.invalid:5000/x"),  # does not resolve: the pull will say so
        ("member", "203.0.113.9:5000/x"),
        ("admin", "127.0.0.1:5000/x"),  # admins are not restricted
    ],
)
async def test_allowlisted_outside_and_admin_images_are_accepted(
    client: httpx.AsyncClient, member: str, admin_token: str, who: str, image: str
) -> None:
    token = member if who == "member" else admin_token
    r = await client.post(f"{V}/containers", json={"image": image}, headers=h(token))
    assert r.status_code == 202, r.text


@pytest.mark.parametrize(
    "domain", ["127.0.0.1:5000", "http://localhost:5000", "[::1]", "169.254.169.254", "0x7f.1"]
)
async def test_a_member_cannot_register_an_internal_registry(
    client: httpx.AsyncClient, member: str, admin_token: str, domain: str
) -> None:
    body = {"registry": {"domain": domain, "name": "internal"}}
    r = await client.post(f"{V}/registries", json=body, headers=h(member))
    assert "Invalid input for field 'domain'" in zun_400(r)
    assert (await client.get(f"{V}/registries", headers=h(member))).json()["registries"] == []
    ok = await client.post(
        f"{V}/registries",
        json={"registry": {"domain": "203.0.113.9:5000", "name": "ok"}},
        headers=h(member),
    )
    assert ok.status_code == 201, ok.text
    r = await client.patch(
        f"{V}/registries/ok", json={"registry": {"domain": domain}}, headers=h(member)
    )
    zun_400(r)
    shown = await client.get(f"{V}/registries/ok", headers=h(member))
    assert shown.json()["registry"]["domain"] == "203.0.113.9:5000"
    body = {"registry": {"domain": domain, "name": "admins"}}
    admin = await client.post(f"{V}/registries", json=body, headers=h(admin_token))
    assert admin.status_code == 201, admin.text
