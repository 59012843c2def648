"""Every version-gated Zun route at the edges of its microversion range, from one map.

The map is Zun 18.0.0's ``@base.Controller.api_version(min, max)`` decorators,
read from ``zun/api/controllers/v1/containers.py`` (add_security_group,
remove_security_group, rename, resize_container, network_detach,
network_attach, network_list), ``v1/networks.py`` (delete) and ``v1/hosts.py``
(get_all, get_one). Routes without a decorator (or whose versioned variants
cover 1.1..latest: container create, get_archive/put_archive, capsules) answer
at every version and are not listed. A version outside a route's range gets
``Controller._no_version_match`` (``zun/api/controllers/base.py``): 406.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.test_containers import create, h, zun_error
from tests.helpers import ScriptedAgent, make_member

pytestmark = pytest.mark.asyncio

LATEST = "1.40"

# (method, path, minimum, maximum or None): Zun 18.0.0's decorators, see the module.
ZUN_VERSIONED_ROUTES: list[tuple[str, str, str, str | None]] = [
    ("POST", "/v1/containers/{c}/add_security_group", "1.1", "1.14"),
    ("POST", "/v1/containers/{c}/remove_security_group", "1.1", "1.14"),
    ("POST", "/v1/containers/{c}/rename", "1.1", "1.13"),
    ("POST", "/v1/containers/{c}/resize_container", "1.19", None),
    ("POST", "/v1/containers/{c}/network_detach", "1.6", None),
    ("POST", "/v1/containers/{c}/network_attach", "1.8", None),
    ("GET", "/v1/containers/{c}/network_list", "1.13", None),
    ("DELETE", "/v1/networks/{n}", "1.27", None),
    ("GET", "/v1/hosts", "1.4", None),
    ("GET", "/v1/hosts/{h}", "1.4", None),
]

# Berth's deliberate differences (docs/compatibility.md): it is its own network
# service, so the security-group actions Zun gave to Neutron at 1.15 stay.
BERTH_KEEPS_ABOVE_MAXIMUM = {"add_security_group", "remove_security_group"}


def _minor(version: str) -> int:
    return int(version.split(".")[1])


def _cases() -> list[tuple[str, str, str, bool]]:
    """(method, path, version, served?) for each route at 1.1, min-1, min, max, max+1, latest."""
    cases: list[tuple[str, str, str, bool]] = []
    for method, path, low, high in ZUN_VERSIONED_ROUTES:
        top = _minor(high) if high else _minor(LATEST)
        kept = path.rsplit("/", 1)[-1] in BERTH_KEEPS_ABOVE_MAXIMUM
        minors = {1, _minor(low) - 1, _minor(low), top, top + 1, _minor(LATEST)}
        for minor in sorted(m for m in minors if 1 <= m <= _minor(LATEST)):
            served = _minor(low) <= minor and (minor <= top or kept)
            version = "latest" if minor == _minor(LATEST) else f"1.{minor}"
            cases.append((method, path, version, served))
    return cases


@pytest.fixture
async def targets(client: httpx.AsyncClient, admin_token: str) -> dict[str, Any]:
    agent = ScriptedAgent(client)
    await agent.register()
    alice = await make_member(client, admin_token, "team-a", "alice")
    r = await create(client, alice)
    assert r.status_code == 202, r.text
    hosts = (await client.get("/container/v1/hosts", headers=h(admin_token))).json()["hosts"]
    return {"alice": alice, "c": r.json()["uuid"], "h": hosts[0]["uuid"]}


async def _network(client: httpx.AsyncClient, token: str, name: str) -> str:
    r = await client.post("/container/v1/networks", json={"name": name}, headers=h(token))
    assert r.status_code == 200, r.text
    uuid: str = r.json()["uuid"]
    return uuid


async def test_each_versioned_route_answers_as_zun_at_the_edges_of_its_range(
    client: httpx.AsyncClient, admin_token: str, targets: dict[str, Any]
) -> None:
    """Below a route's minimum (or above its maximum) Zun answers 406, inside it the route
    is served (any answer but 404/406). Upstream: zun/api/controllers/base.py
    ``Controller.api_version`` and ``_no_version_match``, the decorators named in the module."""
    wrong: list[str] = []
    for i, (method, path, version, served) in enumerate(_cases()):
        ids = {"c": targets["c"], "h": targets["h"], "n": "none"}
        if "{n}" in path:
            ids["n"] = await _network(client, targets["alice"], f"net-{i}")
        token = admin_token if path.startswith("/v1/hosts") else targets["alice"]
        r = await client.request(
            method,
            "/container" + path.format(**ids),
            params={"name": f"renamed-{i}"} if path.endswith("rename") else None,
            headers=h(token, version),
        )
        if served and r.status_code in (404, 406):
            wrong.append(f"{method} {path} at {version}: {r.status_code}, expected it served")
        elif not served:
            if r.status_code != 406:
                wrong.append(f"{method} {path} at {version}: {r.status_code}, expected 406")
            else:
                assert "not supported for this version" in zun_error(r)["detail"]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(
    ("value", "answer"),
    [(None, "container 1.1"), ("container latest", "container 1.40"),
     ("compute LATEST", "container 1.40")],
)  # fmt: skip
async def test_no_header_is_the_minimum_and_latest_the_maximum(
    client: httpx.AsyncClient, admin_token: str, value: str | None, answer: str
) -> None:
    """No header means 1.1; ``latest`` is replaced by the maximum before the service type
    is checked. Upstream: zun/api/controllers/versions.py ``Version.parse_headers``."""
    headers = {"X-Auth-Token": admin_token}
    if value is not None:
        headers["OpenStack-API-Version"] = value
    r = await client.get("/container/v1/containers", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["openstack-api-version"] == answer


async def test_another_major_version_is_406_naming_it(client: httpx.AsyncClient) -> None:
    """Another major version gets Zun's own words and the 406 names the version asked
    for. Upstream: zun/api/controllers/v1/__init__.py ``Controller._check_version``."""
    version = {"OpenStack-API-Version": "container 2.1"}
    r = await client.get("/container/v1/containers", headers=version)
    assert r.status_code == 406
    assert zun_error(r)["detail"].startswith("Mutually exclusive versions requested.")
    assert r.headers["openstack-api-version"] == "container 2.1"
