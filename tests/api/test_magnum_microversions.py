"""Every Magnum route at the edges of its microversion range, from one map, and the header rules.

The map is Magnum 23.0.0's ``@base.Controller.api_version(min, max)`` decorators in
``magnum/api/controllers/v1/``: ``cluster_actions.py`` (``resize`` 1.7-1.9 and 1.10+,
``upgrade`` 1.7-1.7 and 1.8+), ``nodegroup.py`` (``get_all``, ``get_one``, ``post``,
``patch``, ``delete``: 1.9+) and ``credential.py`` (``patch`` 1.12+). ``cluster.py``'s
``post`` (1.1-1.9, 1.10+) and ``patch`` (1.1-1.2, 1.3-1.9, 1.10+) cover the whole range;
``cluster_template.py``, ``certificate.py`` (rotation included, despite the 1.5 history
line: no decorator), ``quota.py``, ``magnum_services.py`` and ``stats.py`` have no
decorator. Every route is walked at 1.1, min-1, min, max, max+1 (1.15: outside the API,
``Controller._check_version`` in ``v1/__init__.py``), ``latest`` and with no header (the
minimum, ``versions.Version.parse_headers``'s default). Inside a route's range it is
served (any answer but 404/406); a version inside the API's range but outside the route's
is 406 (``base.Controller.__getattribute__``'s ``version_select``); outside the API's
range it is the 406 ``magnum.microversion-unsupported`` of ``HTTPNotAcceptableAPIVersion``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from berth.config import Settings
from tests.api.test_magnum_clusters import World
from tests.helpers import open_clusters

pytestmark = pytest.mark.asyncio

V = "/container-infra/v1"
SERVICE = "container-infrastructure-management"
TOP = 14  # CURRENT_MAX_VER in magnum/api/controllers/versions.py

# (method, path, minimum, maximum or None): Magnum 23.0.0's decorators, see the module.
MAGNUM_ROUTES: list[tuple[str, str, str, str | None]] = [
    ("GET", "/clustertemplates", "1.1", None),
    ("GET", "/clustertemplates/detail", "1.1", None),
    ("POST", "/clustertemplates", "1.1", None),
    ("GET", "/clustertemplates/{t}", "1.1", None),
    ("PATCH", "/clustertemplates/{t}", "1.1", None),
    ("DELETE", "/clustertemplates/{t}", "1.1", None),
    ("GET", "/clusters", "1.1", None),
    ("GET", "/clusters/detail", "1.1", None),
    ("POST", "/clusters", "1.1", None),
    ("GET", "/clusters/{c}", "1.1", None),
    ("PATCH", "/clusters/{c}", "1.1", None),
    ("DELETE", "/clusters/{fresh}", "1.1", None),
    ("POST", "/clusters/{c}/actions/resize", "1.7", None),
    ("POST", "/clusters/{c}/actions/upgrade", "1.7", None),
    ("GET", "/clusters/{c}/nodegroups", "1.9", None),
    ("GET", "/clusters/{c}/nodegroups/{ng}", "1.9", None),
    ("POST", "/clusters/{c}/nodegroups", "1.9", None),
    ("PATCH", "/clusters/{c}/nodegroups/{ng}", "1.9", None),
    ("DELETE", "/clusters/{c}/nodegroups/{ng}", "1.9", None),
    ("GET", "/certificates/{c}", "1.1", None),
    ("POST", "/certificates", "1.1", None),
    ("PATCH", "/certificates/{c}", "1.1", None),
    ("GET", "/quotas", "1.1", None),
    ("GET", "/quotas/{p}/Cluster", "1.1", None),
    ("POST", "/quotas", "1.1", None),
    ("PATCH", "/quotas/{p}/Cluster", "1.1", None),
    ("DELETE", "/quotas/{p}/Cluster", "1.1", None),
    ("GET", "/mservices", "1.1", None),
    ("GET", "/stats", "1.1", None),
]
# Not served by Berth at any version (docs/compatibility.md says why): ``credential.py``
# (PATCH /credentials/{c}, 1.12+) and ``federation.py`` (no decorator).


def _minor(version: str) -> int:
    return int(version.split(".")[1])


def _cases() -> list[tuple[str, str, str | None, str]]:
    """(method, path, version or None for no header, expected) for each route.

    ``expected`` is ``served``, ``route-406`` (inside the API's range, outside the
    route's) or ``api-406`` (outside the API's range).
    """
    cases: list[tuple[str, str, str | None, str]] = []
    for method, path, low, high in MAGNUM_ROUTES:
        top = _minor(high) if high else TOP
        minors = {1, _minor(low) - 1, _minor(low), top, top + 1, TOP + 1}
        for minor in sorted(m for m in minors if m >= 1):
            if minor > TOP:
                expected = "api-406"
            elif _minor(low) <= minor <= top:
                expected = "served"
            else:
                expected = "route-406"
            cases.append((method, path, f"1.{minor}", expected))
        cases.append((method, path, "latest", "served" if high is None else "route-406"))
        cases.append((method, path, None, "served" if _minor(low) == 1 else "route-406"))
    return cases


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return open_clusters(settings).model_copy(
        update={"max_clusters_per_project": 100, "quota_cpu": 1000, "quota_memory": 10**7}
    )


@pytest.fixture
def world(app: FastAPI, client: httpx.AsyncClient) -> World:
    return World(app, client)


def hdr(token: str, version: str | None) -> dict[str, str]:
    """The token, and ``OpenStack-API-Version`` unless ``version`` is None."""
    headers = {"X-Auth-Token": token}
    if version is not None:
        headers["OpenStack-API-Version"] = f"container-infra {version}"
    return headers


async def _project_id(client: httpx.AsyncClient, token: str) -> str:
    r = await client.get("/identity/v3/projects?name=admin", headers={"X-Auth-Token": token})
    pid: str = r.json()["projects"][0]["id"]
    return pid


def _bodies(i: int, ids: dict[str, str]) -> dict[tuple[str, str], Any]:
    """A plausible body per (method, path): each served request does something real."""
    return {
        ("POST", "/clustertemplates"): {"name": f"t-{i}", "coe": "swarm-mode", "image_id": "node"},
        ("PATCH", "/clustertemplates/{t}"): [
            {"op": "replace", "path": "/name", "value": "tpl"}
        ],
        ("POST", "/clusters"): {"cluster_template_id": "tpl", "name": f"new-{i}"},
        ("PATCH", "/clusters/{c}"): [
            {"op": "replace", "path": "/health_status", "value": "HEALTHY"}
        ],
        ("POST", "/clusters/{c}/actions/resize"): {"node_count": 1},
        ("POST", "/clusters/{c}/actions/upgrade"): {"cluster_template": "tpl"},
        ("POST", "/clusters/{c}/nodegroups"): {"name": f"ng-{i}", "node_count": 1},
        ("PATCH", "/clusters/{c}/nodegroups/{ng}"): [
            {"op": "replace", "path": "/max_node_count", "value": 50}
        ],
        ("POST", "/certificates"): {"cluster_uuid": ids["c"], "csr": "not a csr"},
        ("POST", "/quotas"): {"project_id": ids["p"], "resource": "Cluster", "hard_limit": 9},
        ("PATCH", "/quotas/{p}/Cluster"): {"hard_limit": 7},
    }


async def test_each_route_answers_as_magnum_at_the_edges_of_its_range(
    world: World, admin_token: str
) -> None:
    """Inside a route's range it is served; below it (or with no header, which is 1.1)
    406; beyond 1.14 the API's own 406. Upstream: magnum/api/controllers/base.py
    ``Controller.api_version`` and ``__getattribute__``, v1/__init__.py ``_check_version``,
    the decorators named in the module."""
    client = world.client
    await world.template(admin_token)
    c = await world.cluster(admin_token)
    await world.work()
    ids = {"t": "tpl", "c": c, "ng": "default-worker", "p": await _project_id(client, admin_token)}
    prepare: dict[str, Callable[[int], Awaitable[None]]] = {}

    async def fresh_cluster(i: int) -> None:
        ids["fresh"] = await world.cluster(admin_token, name=f"gone-{i}")

    async def quota(i: int) -> None:
        body = {"project_id": ids["p"], "resource": "Cluster", "hard_limit": 5}
        await client.post(f"{V}/quotas", json=body, headers=hdr(admin_token, "latest"))

    prepare["/clusters/{fresh}"] = fresh_cluster
    prepare["/quotas/{p}/Cluster"] = quota
    wrong: list[str] = []
    for i, (method, path, version, expected) in enumerate(_cases()):
        if path in prepare and method != "GET":
            await prepare[path](i)
        r = await client.request(
            method,
            V + path.format(**ids),
            json=_bodies(i, ids).get((method, path)),
            headers=hdr(admin_token, version),
        )
        at = f"{method} {path} at {version or 'no header'}"
        if expected == "served":
            if r.status_code in (404, 406):
                wrong.append(f"{at}: {r.status_code} {r.text[:120]}, expected it served")
        elif r.status_code != 406:
            wrong.append(f"{at}: {r.status_code}, expected 406")
        else:
            code = r.json()["errors"][0]["code"]
            want = "magnum.microversion-unsupported" if expected == "api-406" else "client"
            if code != want:
                wrong.append(f"{at}: 406 with code {code}, expected {want}")
    assert not wrong, "\n".join(wrong)


async def test_no_header_is_the_minimum_and_the_legacy_header_is_ignored(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    """No ``OpenStack-API-Version`` means 1.1, and magnumclient sends no other header:
    Magnum reads none (``versions.Version.parse_headers`` defaults to ``MIN_VER_STR``;
    magnumclient's ``HTTPClient._http_request`` sets only ``OpenStack-API-Version``), so
    ``X-OpenStack-Magnum-API-Version`` changes nothing."""
    for extra in ({}, {"X-OpenStack-Magnum-API-Version": "1.9"}):
        r = await client.get(
            f"{V}/clusters/any/nodegroups", headers={"X-Auth-Token": admin_token, **extra}
        )
        assert r.status_code == 406, r.text
        assert r.headers["openstack-api-version"] == f"{SERVICE} 1.1"
        assert "use 1.9 or later" in r.json()["errors"][0]["detail"]


@pytest.mark.parametrize("value", ["container-infra latest", "magnum LATEST", "x latest"])
async def test_latest_is_the_maximum_whatever_the_service_type(
    client: httpx.AsyncClient, admin_token: str, value: str
) -> None:
    """``latest`` is replaced by the maximum before the service type is checked.
    Upstream: magnum/api/controllers/versions.py ``Version.parse_headers`` (pinned by
    Magnum's own test_base.py ``test_parse_headers_latest`` with ``magnum latest``)."""
    r = await client.get(
        f"{V}/clustertemplates",
        headers={"X-Auth-Token": admin_token, "OpenStack-API-Version": value},
    )
    assert r.status_code == 200, r.text
    assert r.headers["openstack-api-version"] == f"{SERVICE} 1.14"


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        (
            "container-infra 2.0",
            "Mutually exclusive versions requested. Version 2.0 requested but not supported "
            f"by this service. The supported version range is: [{SERVICE} 1.1, {SERVICE} 1.14].",
        ),
        (
            "container-infra 1.15",
            "Version 1.15 was requested but the minor version is not supported by this "
            f"service. The supported version range is: [{SERVICE} 1.1, {SERVICE} 1.14].",
        ),
    ],
)
async def test_a_version_outside_the_api_is_406_naming_it(
    client: httpx.AsyncClient, value: str, detail: str
) -> None:
    """Another major version and a minor beyond the maximum get their own words, and the
    406 carries the version asked for next to the range headers (``_route`` sets the
    headers before ``_check_version`` raises). Upstream: magnum/api/controllers/v1/
    __init__.py ``Controller._check_version`` and ``_route``."""
    r = await client.get(f"{V}/clusters", headers={"OpenStack-API-Version": value})
    assert r.status_code == 406
    error = r.json()["errors"][0]
    assert error["code"] == "magnum.microversion-unsupported"
    assert error["detail"] == detail
    asked = value.split()[1]
    assert r.headers["openstack-api-version"] == f"{SERVICE} {asked}"
    assert r.headers["openstack-api-maximum-version"] == f"{SERVICE} 1.14"


async def test_patch_to_zero_nodes_needs_1_10(world: World, admin_token: str) -> None:
    """A PATCH of node_count to 0 is 400 ZeroNodeCountNotSupported at 1.1-1.9 and an
    update from 1.10, as the resize action. Upstream: magnum/api/controllers/v1/cluster.py
    ``ClustersController.patch`` (the 1.1-1.2 and 1.3-1.9 variants raise
    ``ZeroNodeCountNotSupported``; the 1.10 one does not)."""
    await world.template(admin_token)
    uuid = await world.cluster(admin_token)
    await world.work()
    patch = [{"op": "replace", "path": "/node_count", "value": 0}]
    for version in ("1.1", "1.9"):
        r = await world.client.patch(
            f"{V}/clusters/{uuid}", json=patch, headers=hdr(admin_token, version)
        )
        assert r.status_code == 400, r.text
        assert "1.10" in r.json()["errors"][0]["detail"]
    r = await world.client.patch(
        f"{V}/clusters/{uuid}", json=patch, headers=hdr(admin_token, "1.10")
    )
    assert r.status_code == 202, r.text


async def test_create_with_zero_nodes_needs_1_10(world: World, admin_token: str) -> None:
    """A cluster posted with node_count 0 is Magnum's 400 ZeroNodeCountNotSupported below
    1.10, also with no header (1.1), and accepted from 1.10. Upstream:
    magnum/api/controllers/v1/cluster.py ``ClustersController.post`` (the 1.1-1.9 variant
    raises ``ZeroNodeCountNotSupported``), which is why magnum-tempest-plugin's
    ``test_create_cluster_with_zero_nodes`` (no header) fails against Magnum 23 too."""
    await world.template(admin_token)
    body = {"cluster_template_id": "tpl", "node_count": 0}
    for headers in ({"X-Auth-Token": admin_token}, hdr(admin_token, "1.9")):
        r = await world.client.post(f"{V}/clusters", json=body, headers=headers)
        assert r.status_code == 400, r.text
        assert r.json()["errors"][0]["detail"] == (
            "Resizing a nodegroup to zero is not supported in the provided microversion: "
            "use 1.10 or later."
        )
    r = await world.client.post(f"{V}/clusters", json=body, headers=hdr(admin_token, "1.10"))
    assert r.status_code == 202, r.text


@pytest.mark.parametrize(
    ("version", "present", "absent"),
    [("1.1", "stack_id", "cluster_id"), ("1.12", "stack_id", "cluster_id"),
     ("1.13", "cluster_id", "stack_id"), ("latest", "cluster_id", "stack_id"),
     (None, "stack_id", "cluster_id")],
)  # fmt: skip
async def test_cluster_bodies_name_the_stack_by_version(
    world: World, admin_token: str, version: str | None, present: str, absent: str
) -> None:
    """List, detail and show carry ``stack_id`` below 1.13 and ``cluster_id`` from 1.13,
    never both. Upstream: magnum/api/controllers/v1/cluster.py ``Cluster.convert_with_links``
    (``use_cluster_id = pecan.request.version.minor >= 13``) and ``_convert_with_links``."""
    await world.template(admin_token)
    await world.cluster(admin_token)
    for path in ("/clusters", "/clusters/detail"):
        r = await world.client.get(V + path, headers=hdr(admin_token, version))
        body = r.json()["clusters"][0]
        assert present in body and absent not in body, (path, body)
    body = (await world.client.get(f"{V}/clusters/c1", headers=hdr(admin_token, version))).json()
    assert present in body and absent not in body


async def test_nodegroup_node_labels_and_taints_are_shown_from_1_9(
    world: World, admin_token: str
) -> None:
    """The 1.14 fields are not gated: a node group shows ``node_labels`` and
    ``node_taints`` at 1.9 as at ``latest``. Upstream: magnum/api/controllers/v1/
    nodegroup.py ``NodeGroup`` (plain attributes; no ``pecan.request.version`` check)."""
    await world.template(admin_token)
    await world.cluster(admin_token)
    for version in ("1.9", "1.13", "latest"):
        r = await world.client.get(
            f"{V}/clusters/c1/nodegroups/default-worker", headers=hdr(admin_token, version)
        )
        assert r.status_code == 200, r.text
        assert r.json()["node_labels"] == {} and r.json()["node_taints"] == [], version
