"""Every API route against every persona: who may call it is a table, and the table is complete.

The routes come from the app itself (``app.routes``); ``ACCESS`` says who may call
each. A route that is not in the table fails ``test_every_route_is_in_the_table``, so
a new endpoint cannot ship without deciding its rule. Then, for each route and
persona, the status must say the policy let it through (not 401/403) or stopped it:

- no token: 401 (unless the route is public);
- reader of project A: reads pass, writes 403;
- member of A: reads and writes pass, admin-only routes 403;
- member of B, on A's resources: 403 or 404, never a success;
- admin: passes (internal routes are the agents' ``service`` role's only).

"Passes" is any status but 401/403 (a minimal body may well get a 400, 404 or 409),
and never a 5xx. Path parameters are real resources of project A made once per
module. The dashboard's HTML pages and static files are not here: they are a
browser front end over these same services (its sessions and CSRF have their own
tests in tests/e2e); only the JSON APIs are an attack surface for a token.
"""

from __future__ import annotations

import base64
import enum
import io
import logging
import tarfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from berth.api.app import create_app
from berth.clusters import DriverRegistry
from berth.config import Settings
from berth.identity import passwords
from berth.services.clusters import lifecycle as cluster_lifecycle
from tests.api.test_magnum_clusters import FakeDriver, FakeNodes, _csr
from tests.conftest import ADMIN_PASSWORD, AGENT_PASSWORD, _migrate, issue_token
from tests.helpers import ZUN, ScriptedAgent, make_member

pytestmark = pytest.mark.asyncio(loop_scope="module")

MAG = {"OpenStack-API-Version": "container-infra latest"}


class Who(enum.IntEnum):
    """The weakest caller a route lets through (each level includes those above it)."""

    PUBLIC = 0  # no token needed
    TOKEN = 1  # any valid token
    READER = 2
    MEMBER = 3
    ADMIN = 4
    SELF = 5  # the user named in the path, or an admin
    ONLY_SELF = 8  # the user named in the path, not even an admin (a password change)
    SERVICE = 6  # the agents only
    NOBODY = 7  # refused to everybody (a 403 that is not a persona's)


R, M, A = Who.READER, Who.MEMBER, Who.ADMIN
C, MAG_V1, K = "/container/v1", "/container-infra/v1", "/identity/v3"

# (method, path) -> who may call it. Paths as the app declares them.
ACCESS: dict[tuple[str, str], Who] = {
    # Version documents: public, as in Zun, Magnum and Keystone.
    ("GET", "/container"): Who.PUBLIC,
    ("GET", f"{C}"): Who.PUBLIC,
    ("GET", "/container-infra"): Who.PUBLIC,
    ("GET", f"{MAG_V1}"): Who.PUBLIC,
    ("GET", "/identity"): Who.PUBLIC,
    ("GET", "/identity/"): Who.PUBLIC,
    ("GET", f"{K}"): Who.PUBLIC,
    ("GET", f"{K}/"): Who.PUBLIC,
    # Zun: containers.
    ("POST", f"{C}/containers"): M,
    ("GET", f"{C}/containers"): R,
    ("GET", f"{C}/containers/{{ident}}"): R,
    ("PATCH", f"{C}/containers/{{ident}}"): M,
    ("DELETE", f"{C}/containers/{{ident}}"): M,
    **{("POST", f"{C}/containers/{{ident}}/{verb}"): M for verb in (
        "start", "stop", "reboot", "pause", "unpause", "kill", "rename", "execute",
        "resize", "execute_resize", "put_archive", "rebuild", "resize_container",
        "commit", "network_attach", "network_detach", "add_security_group",
        "remove_security_group",
    )},
    **{("GET", f"{C}/containers/{{ident}}/{verb}"): R for verb in (
        "logs", "top", "stats", "container_actions", "get_archive", "network_list",
    )},
    ("GET", f"{C}/containers/{{ident}}/container_actions/{{request_id}}"): R,
    # attach hands out a stream that takes input: a write.
    ("GET", f"{C}/containers/{{ident}}/attach"): M,
    # Zun: operators' resources.
    ("GET", f"{C}/hosts"): A,
    ("GET", f"{C}/hosts/{{ident}}"): A,
    ("POST", f"{C}/hosts/{{ident}}/evacuate"): A,
    ("GET", f"{C}/services"): A,
    ("DELETE", f"{C}/services"): A,
    ("PUT", f"{C}/services/enable"): A,
    ("PUT", f"{C}/services/disable"): A,
    ("PUT", f"{C}/services/force_down"): A,
    ("GET", f"{C}/availability_zones"): R,
    ("GET", f"{C}/quotas/{{project_id}}"): R,
    ("PUT", f"{C}/quotas/{{project_id}}"): A,
    ("DELETE", f"{C}/quotas/{{project_id}}"): A,
    ("GET", f"{C}/quotas/{{project_id}}/defaults"): R,
    ("GET", f"{C}/quota_classes/{{name}}"): A,
    ("PUT", f"{C}/quota_classes/{{name}}"): A,
    ("GET", f"{C}/images"): A,
    ("POST", f"{C}/images"): A,
    ("POST", f"{C}/images/upload"): M,
    ("GET", f"{C}/images/{{ident}}"): A,
    ("DELETE", f"{C}/images/{{ident}}"): A,
    ("GET", f"{C}/images/{{image:path}}/search"): R,
    # Zun: the project's other resources.
    ("POST", f"{C}/registries"): M,
    ("GET", f"{C}/registries"): R,
    ("GET", f"{C}/registries/{{ident}}"): R,
    ("PATCH", f"{C}/registries/{{ident}}"): M,
    ("DELETE", f"{C}/registries/{{ident}}"): M,
    ("POST", f"{C}/networks"): M,
    ("GET", f"{C}/networks"): R,
    ("GET", f"{C}/networks/{{ident}}"): R,
    ("DELETE", f"{C}/networks/{{ident}}"): M,
    ("GET", f"{C}/security_groups"): R,
    ("POST", f"{C}/security_groups"): M,
    ("GET", f"{C}/security_groups/{{ident}}"): R,
    ("DELETE", f"{C}/security_groups/{{ident}}"): M,
    ("POST", f"{C}/security_groups/{{ident}}/rules"): M,
    ("DELETE", f"{C}/security_groups/{{ident}}/rules/{{rule_id}}"): M,
    ("POST", f"{C}/volumes"): M,
    ("GET", f"{C}/volumes"): R,
    ("GET", f"{C}/volumes/{{ident}}"): R,
    ("DELETE", f"{C}/volumes/{{ident}}"): M,
    ("POST", f"{C}/capsules"): M,
    ("POST", f"{C}/capsules/"): M,
    ("GET", f"{C}/capsules"): R,
    ("GET", f"{C}/capsules/"): R,
    ("GET", f"{C}/capsules/{{ident}}"): R,
    ("DELETE", f"{C}/capsules/{{ident}}"): M,
    # The stream endpoint: its one-use token (from attach/execute) is its credential.
    ("WS", f"{C}/ws"): Who.PUBLIC,
    # Magnum. Creating nodes or their client certificates is admin-only (docs/clusters.md).
    ("GET", f"{MAG_V1}/clustertemplates"): R,
    ("GET", f"{MAG_V1}/clustertemplates/detail"): R,
    ("POST", f"{MAG_V1}/clustertemplates"): M,
    ("GET", f"{MAG_V1}/clustertemplates/{{ident}}"): R,
    ("PATCH", f"{MAG_V1}/clustertemplates/{{ident}}"): M,
    ("DELETE", f"{MAG_V1}/clustertemplates/{{ident}}"): M,
    ("GET", f"{MAG_V1}/clusters"): R,
    ("GET", f"{MAG_V1}/clusters/detail"): R,
    ("POST", f"{MAG_V1}/clusters"): A,
    ("GET", f"{MAG_V1}/clusters/{{ident}}"): R,
    ("PATCH", f"{MAG_V1}/clusters/{{ident}}"): A,
    ("POST", f"{MAG_V1}/clusters/{{ident}}/actions/resize"): A,
    ("POST", f"{MAG_V1}/clusters/{{ident}}/actions/upgrade"): A,
    ("DELETE", f"{MAG_V1}/clusters/{{ident}}"): M,
    ("GET", f"{MAG_V1}/certificates/{{ident}}"): R,
    ("POST", f"{MAG_V1}/certificates"): A,
    ("PATCH", f"{MAG_V1}/certificates/{{ident}}"): A,
    ("GET", f"{MAG_V1}/clusters/{{ident}}/nodegroups"): R,
    ("GET", f"{MAG_V1}/clusters/{{ident}}/nodegroups/{{ng}}"): R,
    ("POST", f"{MAG_V1}/clusters/{{ident}}/nodegroups"): A,
    ("PATCH", f"{MAG_V1}/clusters/{{ident}}/nodegroups/{{ng}}"): A,
    ("DELETE", f"{MAG_V1}/clusters/{{ident}}/nodegroups/{{ng}}"): M,
    ("GET", f"{MAG_V1}/quotas"): A,
    ("GET", f"{MAG_V1}/quotas/{{project_id}}/{{resource}}"): R,
    ("POST", f"{MAG_V1}/quotas"): A,
    ("PATCH", f"{MAG_V1}/quotas/{{project_id}}/{{resource}}"): A,
    ("DELETE", f"{MAG_V1}/quotas/{{project_id}}/{{resource}}"): A,
    ("GET", f"{MAG_V1}/mservices"): A,
    ("GET", f"{MAG_V1}/stats"): R,
    # Keystone (its defaults): tokens are the caller's own; users, projects, roles
    # and grants are the admin's; a user reads itself and its projects.
    ("POST", f"{K}/auth/tokens"): Who.PUBLIC,
    ("GET", f"{K}/auth/tokens"): Who.TOKEN,
    ("DELETE", f"{K}/auth/tokens"): Who.TOKEN,
    ("GET", f"{K}/auth/catalog"): Who.TOKEN,
    ("GET", f"{K}/auth/projects"): Who.TOKEN,
    ("GET", f"{K}/auth/domains"): Who.TOKEN,
    ("GET", f"{K}/projects"): A,
    ("POST", f"{K}/projects"): A,
    ("GET", f"{K}/projects/{{project_id}}"): R,
    ("PATCH", f"{K}/projects/{{project_id}}"): A,
    ("DELETE", f"{K}/projects/{{project_id}}"): A,
    ("GET", f"{K}/users"): A,
    ("POST", f"{K}/users"): A,
    ("GET", f"{K}/users/{{user_id}}"): Who.SELF,
    ("PATCH", f"{K}/users/{{user_id}}"): A,
    ("DELETE", f"{K}/users/{{user_id}}"): A,
    ("GET", f"{K}/users/{{user_id}}/projects"): Who.SELF,
    ("POST", f"{K}/users/{{user_id}}/password"): Who.ONLY_SELF,
    ("GET", f"{K}/roles"): A,
    ("POST", f"{K}/roles"): A,
    ("GET", f"{K}/roles/{{role_id}}"): A,
    ("DELETE", f"{K}/roles/{{role_id}}"): A,
    ("GET", f"{K}/domains/{{domain_id}}/users/{{user_id}}/roles"): A,
    ("GET", f"{K}/projects/{{project_id}}/users/{{user_id}}/roles"): A,
    ("PUT", f"{K}/domains/{{domain_id}}/users/{{user_id}}/roles/{{role_id}}"): A,
    ("PUT", f"{K}/projects/{{project_id}}/users/{{user_id}}/roles/{{role_id}}"): A,
    ("DELETE", f"{K}/domains/{{domain_id}}/users/{{user_id}}/roles/{{role_id}}"): A,
    ("DELETE", f"{K}/projects/{{project_id}}/users/{{user_id}}/roles/{{role_id}}"): A,
    ("GET", f"{K}/role_assignments"): A,
    # Keystone lists domains to admins and shows a project's own domain to its users;
    # Berth has the Default domain only and shows it to any token.
    ("GET", f"{K}/domains"): Who.TOKEN,
    ("POST", f"{K}/domains"): Who.NOBODY,  # only the Default domain exists
    ("GET", f"{K}/domains/{{domain_id}}"): Who.TOKEN,
    # The agents' API.
    ("POST", "/internal/v1/hosts"): Who.SERVICE,
    ("POST", "/internal/v1/hosts/{hostname}/heartbeat"): Who.SERVICE,
    ("GET", "/internal/v1/hosts/{hostname}/desired"): Who.SERVICE,
    ("POST", "/internal/v1/hosts/{hostname}/observations"): Who.SERVICE,
    ("GET", "/internal/v1/hosts/{hostname}/containers/{uuid}/files"): Who.SERVICE,
    ("GET", "/internal/v1/hosts/{hostname}/containers/{uuid}/glance-data"): Who.SERVICE,
}  # fmt: skip

# Routes outside the JSON APIs (see the module docstring).
_NOT_API = ("/openapi.json",)
_API_PREFIXES = ("/container", "/container-infra", "/identity", "/internal")


def app_routes(app: FastAPI) -> set[tuple[str, str]]:
    """Every (method, path) the app serves under the API prefixes."""

    def walk(routes: list[Any], prefix: str) -> Iterator[tuple[str, str]]:
        for route in routes:
            inner = getattr(route, "original_router", None)
            if inner is not None:  # an included router (FastAPI keeps it unflattened)
                yield from walk(inner.routes, prefix + route.include_context.prefix)
                continue
            path = prefix + route.path
            for method in getattr(route, "methods", None) or {"WS"}:
                if method != "HEAD":
                    yield method, path

    return {
        (m, p)
        for m, p in walk(list(app.routes), "")
        if p not in _NOT_API and p.split("/")[1] in {x.strip("/") for x in _API_PREFIXES}
    }


@dataclass
class World:
    """One app, project A's resources and a token per persona."""

    client: httpx.AsyncClient
    tokens: dict[str, str]
    params: dict[str, str]
    bodies: dict[tuple[str, str], Any] = field(default_factory=dict)
    unknown_rules: list[str] = field(default_factory=list)


def _settings(tmp: Path) -> Settings:
    db = tmp / "berth.db"
    _migrate(f"sqlite+aiosqlite:///{db}")
    return Settings(
        data_dir=tmp / "data",
        database_url=f"sqlite+aiosqlite:///{db}",
        admin_password=ADMIN_PASSWORD,
        agent_password=AGENT_PASSWORD,
        all_in_one=False,
        agent_host="test-host",
    )


class _Unknown(logging.Handler):
    def __init__(self, seen: list[str]) -> None:
        super().__init__(logging.ERROR)
        self.seen = seen

    def emit(self, record: logging.LogRecord) -> None:
        if "is not defined" in record.getMessage():
            self.seen.append(record.getMessage())


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(passwords, "_N", 2**10)  # as tests/conftest.py: cheap hashing in tests
        yield create_app(_settings(tmp_path_factory.mktemp("matrix")), run_workers=False)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(app: FastAPI) -> AsyncIterator[World]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            seen: list[str] = []
            handler = _Unknown(seen)
            logging.getLogger("berth.domain.policy").addHandler(handler)
            try:
                w = await _build(app, c)
                w.unknown_rules = seen
                yield w
            finally:
                logging.getLogger("berth.domain.policy").removeHandler(handler)
    errors = app.state.berth.saw_server_error
    assert not errors, f"the API answered 5xx: {errors}"


async def _ok(r: httpx.Response, *codes: int) -> Any:
    assert r.status_code in (codes or (200, 201, 202)), f"{r.request.url}: {r.text}"
    return r.json() if r.content else None


async def _grant(c: httpx.AsyncClient, admin: str, project: str, user: str, role: str) -> str:
    """Add ``user`` (new) to the existing ``project`` with ``role``; return its token."""
    h = {"X-Auth-Token": admin}
    pid = (await c.get(f"{K}/projects?name={project}", headers=h)).json()["projects"][0]["id"]
    body = {"user": {"name": user, "domain_id": "default", "password": "pw-" + "y" * 8}}
    uid = (await _ok(await c.post(f"{K}/users", headers=h, json=body)))["user"]["id"]
    rid = (await c.get(f"{K}/roles?name={role}", headers=h)).json()["roles"][0]["id"]
    await _ok(await c.put(f"{K}/projects/{pid}/users/{uid}/roles/{rid}", headers=h), 204)
    return await issue_token(c, user, "pw-" + "y" * 8, project)


def _tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    return buf.getvalue()


def _capsule(name: str) -> dict[str, Any]:
    spec = {"containers": [{"image": "busybox"}]}
    return {"template": {"kind": "capsule", "capsuleVersion": "beta",
                         "metadata": {"name": name}, "spec": spec}}  # fmt: skip


async def _build(app: FastAPI, c: httpx.AsyncClient) -> World:
    admin = await issue_token(c, "admin", ADMIN_PASSWORD, "admin")
    agent = ScriptedAgent(c)
    await agent.register()
    member_a = await make_member(c, admin, "team-a", "alice")
    member_b = await make_member(c, admin, "team-b", "bob")
    reader_a = await _grant(c, admin, "team-a", "rita", "reader")
    ops_a = await _grant(c, admin, "team-a", "ops", "admin")  # creates A's cluster
    hadm = {"X-Auth-Token": admin}

    async def make(path: str, body: Any, token: str = member_a) -> Any:
        hdr = {"X-Auth-Token": token, **(ZUN if path.startswith(C) else MAG)}
        return await _ok(await c.post(path, json=body, headers=hdr))

    async def find(kind: str, name: str) -> Any:
        return (await c.get(f"{K}/{kind}?name={name}", headers=hadm)).json()[kind][0]

    project_a, alice = await find("projects", "team-a"), await find("users", "alice")
    # A role of the operator's (built-in roles cannot be deleted: no policy's 403).
    role = (await make(f"{K}/roles", {"role": {"name": "auditor"}}, admin))["role"]
    ctr = await make(f"{C}/containers", {"image": "busybox", "name": "c-a"})
    actions_url = f"{C}/containers/{ctr['uuid']}/container_actions"
    actions = (await c.get(actions_url, headers={"X-Auth-Token": member_a, **ZUN})).json()
    net = await make(f"{C}/networks", {"name": "net-a"})
    sg = (await make(f"{C}/security_groups", {"security_group": {"name": "sg-a"}}))
    sg = sg.get("security_group", sg)
    port = {"protocol": "tcp", "port_range_min": 80, "port_range_max": 80}
    rule = await make(f"{C}/security_groups/{sg['uuid']}/rules", {"security_group_rule": port})
    rule = rule.get("security_group_rule", rule)
    vol = await make(f"{C}/volumes", {"name": "vol-a", "size": 1})
    reg = await make(f"{C}/registries", {"registry": {"domain": "r.example.com", "name": "reg-a"}})
    cap = await make(f"{C}/capsules", _capsule("pod-a"))
    template = {"name": "tpl-a", "coe": "swarm-mode", "image_id": "i"}
    await make(f"{MAG_V1}/clustertemplates", template)
    registry = DriverRegistry([FakeDriver()])
    app.state.cluster_drivers = registry
    nodes: dict[str, FakeNodes] = {}
    body = {"cluster_template_id": "tpl-a", "name": "cl-a", "node_count": 1}
    cluster = await make(f"{MAG_V1}/clusters", body, ops_a)
    await cluster_lifecycle.process_pending(
        app.state.berth.env, registry, lambda row: nodes.setdefault(row.uuid, FakeNodes())
    )
    groups_url = f"{MAG_V1}/clusters/{cluster['uuid']}/nodegroups"
    groups = (await c.get(groups_url, headers={"X-Auth-Token": member_a, **MAG})).json()
    quota = {"project_id": project_a["id"], "resource": "Cluster", "hard_limit": 5}
    await make(f"{MAG_V1}/quotas", quota, admin)
    params = {
        "ident": ctr["uuid"],
        "uuid": ctr["uuid"],
        "request_id": actions["containerActions"][0]["request_id"],
        "project_id": project_a["id"],
        "user_id": alice["id"],
        "role_id": role["id"],
        "domain_id": "default",
        "name": "default",
        "image:path": "busybox",
        "resource": "Cluster",
        "hostname": "test-host",
        "ng": groups["nodegroups"][-1]["uuid"],
        "rule_id": rule["id"],
    }
    by_prefix = {
        f"{C}/networks/": net["uuid"],
        f"{C}/security_groups/": sg["uuid"],
        f"{C}/volumes/": vol.get("volume", vol)["uuid"],
        f"{C}/registries/": reg.get("registry", reg)["uuid"],
        f"{C}/capsules/": cap["uuid"],
        f"{C}/hosts/": "test-host",
        # Images are admin-only: any image id shows a non-admin gets no further.
        f"{C}/images/": "00000000-0000-0000-0000-000000000000",
        f"{MAG_V1}/clustertemplates/": "tpl-a",
        f"{MAG_V1}/clusters/": cluster["uuid"],
        f"{MAG_V1}/certificates/": cluster["uuid"],
    }
    for prefix, value in by_prefix.items():
        params[f"ident@{prefix}"] = value
    tokens = {
        "reader-A": reader_a,
        "member-A": member_a,
        "member-B": member_b,
        "admin": admin,
        "service": agent.token,
    }
    return World(c, tokens, params, bodies=_bodies(cluster["uuid"], project_a["id"]))


def _bodies(cluster: str, project: str) -> dict[tuple[str, str], Any]:
    """Request bodies valid enough that a denial is the policy's, not the schema's."""
    tpl = [{"op": "replace", "path": "/name", "value": "tpl-a"}]
    two = [{"op": "replace", "path": "/node_count", "value": 2}]
    port = {"protocol": "tcp", "port_range_min": 81, "port_range_max": 81}
    service = {"host": "test-host", "binary": "zun-compute"}
    quota = {"project_id": project, "resource": "Cluster", "hard_limit": 2}
    template = {"name": "t2", "coe": "swarm-mode", "image_id": "x"}
    return {
        ("POST", f"{C}/containers"): {"image": "busybox"},
        ("PATCH", f"{C}/containers/{{ident}}"): {"cpu": 0.5},
        ("POST", f"{C}/containers/{{ident}}/execute"): {"command": "true"},
        ("POST", f"{C}/containers/{{ident}}/resize_container"): {"cpu": 0.5},
        ("POST", f"{C}/containers/{{ident}}/put_archive"): {
            "path": "/tmp", "data": base64.b64encode(_tar()).decode()
        },
        **{("PUT", f"{C}/services/{v}"): service for v in ("enable", "disable", "force_down")},
        ("PUT", f"{C}/quotas/{{project_id}}"): {"containers": 10},
        ("PUT", f"{C}/quota_classes/{{name}}"): {"containers": 10},
        ("POST", f"{C}/images"): {"repo": "busybox", "host": "test-host"},
        ("POST", f"{C}/registries"): {"registry": {"domain": "r.example.com", "name": "r2"}},
        ("PATCH", f"{C}/registries/{{ident}}"): {"registry": {"name": "r3"}},
        ("POST", f"{C}/networks"): {"name": "net-2"},
        ("POST", f"{C}/security_groups"): {"security_group": {"name": "sg-2"}},
        ("POST", f"{C}/security_groups/{{ident}}/rules"): {"security_group_rule": port},
        ("POST", f"{C}/volumes"): {"name": "vol-2", "size": 1},
        ("POST", f"{C}/capsules"): _capsule("pod-2"),
        ("POST", f"{C}/capsules/"): _capsule("pod-3"),
        ("POST", f"{K}/projects"): {"project": {"name": "p-new", "domain_id": "default"}},
        ("PATCH", f"{K}/projects/{{project_id}}"): {"project": {"description": "A"}},
        ("POST", f"{K}/users"): {"user": {"name": "u-new", "domain_id": "default"}},
        ("PATCH", f"{K}/users/{{user_id}}"): {"user": {"email": "a@example.com"}},
        ("POST", f"{K}/users/{{user_id}}/password"): {
            "user": {"original_password": "wrong-pw-123", "password": "new-pw-12345"}
        },
        ("POST", f"{K}/roles"): {"role": {"name": "r-new"}},
        ("POST", f"{K}/domains"): {"domain": {"name": "d-new"}},
        ("POST", "/internal/v1/hosts"): {
            "hostname": "test-host", "cpus": 4, "mem_total": 8192, "disk_total": 100,
            "runtimes": ["runc"], "agent_url": "http://127.0.0.1:1",
        },
        ("POST", f"{MAG_V1}/clustertemplates"): template,
        ("PATCH", f"{MAG_V1}/clustertemplates/{{ident}}"): tpl,
        ("POST", f"{MAG_V1}/clusters"): {"cluster_template_id": "tpl-a", "name": "cl-2"},
        ("PATCH", f"{MAG_V1}/clusters/{{ident}}"): two,
        ("POST", f"{MAG_V1}/clusters/{{ident}}/actions/resize"): {"node_count": 2},
        ("POST", f"{MAG_V1}/clusters/{{ident}}/actions/upgrade"): {"cluster_template": "tpl-a"},
        ("POST", f"{MAG_V1}/certificates"): {"cluster_uuid": cluster, "csr": _csr()},
        ("POST", f"{MAG_V1}/clusters/{{ident}}/nodegroups"): {"name": "ng-2", "node_count": 1},
        ("PATCH", f"{MAG_V1}/clusters/{{ident}}/nodegroups/{{ng}}"): two,
        ("POST", f"{MAG_V1}/quotas"): quota,
        ("PATCH", f"{MAG_V1}/quotas/{{project_id}}/{{resource}}"): {"hard_limit": 4},
    }  # fmt: skip


# Zun's actions read their arguments from the query string.
QUERY: dict[tuple[str, str], dict[str, str]] = {
    ("POST", f"{C}/containers/{{ident}}/add_security_group"): {"name": "sg-a"},
    ("POST", f"{C}/containers/{{ident}}/remove_security_group"): {"name": "sg-a"},
    ("POST", f"{C}/containers/{{ident}}/network_attach"): {"network": "net-a"},
    ("POST", f"{C}/containers/{{ident}}/network_detach"): {"network": "net-a"},
    ("POST", f"{C}/containers/{{ident}}/execute_resize"): {"exec_id": "a" * 64, "w": "8", "h": "2"},
    ("POST", f"{C}/containers/{{ident}}/resize"): {"w": "80", "h": "24"},
    ("POST", f"{C}/containers/{{ident}}/commit"): {"repository": "img-b"},
    ("POST", f"{C}/containers/{{ident}}/rename"): {"name": "c-renamed"},
    ("DELETE", f"{C}/services"): {"host": "test-host", "binary": "zun-compute"},
}
# rename is Zun's before 1.14 (PATCH renames after).
VERSIONS = {
    ("POST", f"{C}/containers/{{ident}}/rename"): {"OpenStack-API-Version": "container 1.13"}
}

# Magnum names the cluster in the body here: another project's cluster is a 400
# "could not be found", as a missing one is.
BODY_REFERENCE = {("POST", f"{MAG_V1}/certificates"): (400,)}

PERSONAS = ("anonymous", "member-B", "reader-A", "member-A", "admin", "service")


def _order() -> list[tuple[str, tuple[str, str]]]:
    # Denied personas first, while project A's resources all exist; deletes last per persona.
    def key(route: tuple[str, str]) -> tuple[int, str, str]:
        return (route[0] == "DELETE", route[1], route[0])

    cases = []
    for persona in PERSONAS:
        for route in sorted(ACCESS, key=key):
            if persona == "service" and ACCESS[route] != Who.SERVICE:
                continue
            if route[0] == "WS":
                continue  # not HTTP: its one-use stream token is tested in test_sessions.py
            cases.append((persona, route))
    return cases


CASES = _order()


async def test_every_route_is_in_the_table(app: FastAPI) -> None:
    served = app_routes(app)
    assert sorted(served - set(ACCESS)) == [], "a new route: say who may call it in ACCESS"
    assert sorted(set(ACCESS) - served) == [], "a route in ACCESS the app no longer serves"


def _fill(world: World, path: str) -> str:
    idents = sorted((k for k in world.params if k.startswith("ident@")), key=len, reverse=True)
    for prefix in idents:
        p = prefix.removeprefix("ident@")
        if path.startswith(p + "{ident}"):
            path = path.replace("{ident}", world.params[prefix], 1)
            break
    for name, value in world.params.items():
        if "@" not in name:
            path = path.replace("{" + name + "}", value)
    return path


def _expected(persona: str, route: tuple[str, str]) -> str:
    who = ACCESS[route]
    if persona == "anonymous":
        return "pass" if who == Who.PUBLIC else "401"
    if who == Who.PUBLIC or who == Who.TOKEN:
        return "pass"
    if who == Who.SERVICE:
        return "pass" if persona == "service" else "403"
    if who == Who.NOBODY:
        return "403"
    if who == Who.ONLY_SELF:
        # The body's original password is wrong on purpose (a right one would revoke
        # alice's token): her 401 says the policy let her through to the check.
        return "wrong-password" if persona == "member-A" else "403"
    if persona == "admin":
        return "pass"
    if who == Who.ADMIN and "{ident}" in route[1]:
        # Admin-only lookups (images, hosts) look the resource up in the caller's
        # scope first: another project's image is "not found". Never a success.
        return "denied"
    # Path parameters name A's resources, except an image search's term.
    on_a = "{" in route[1] and not route[1].startswith(f"{C}/images/{{image")
    if persona == "member-B":
        if who == Who.SELF:
            return "403"
        return "denied" if on_a or who == Who.ADMIN else "pass"
    if who == Who.SELF:
        return "pass" if persona == "member-A" else "403"
    level = Who.READER if persona == "reader-A" else Who.MEMBER
    return "pass" if who <= level else "403"


@pytest.mark.parametrize(
    ("persona", "route"), CASES, ids=[f"{r[0]} {r[1]} as {p}" for p, r in CASES]
)
async def test_route_persona(world: World, persona: str, route: tuple[str, str]) -> None:
    method, template = route
    url = _fill(world, template)
    headers = {**(ZUN if template.startswith("/container/") else MAG)}
    if persona != "anonymous":
        headers["X-Auth-Token"] = world.tokens[persona]
    kw: dict[str, Any] = {}
    if method in ("POST", "PUT", "PATCH"):
        body = world.bodies.get(route, {})
        if route == ("POST", f"{C}/images/upload"):
            kw["files"] = {"file": ("img.tar", _tar())}
            kw["data"] = {"name": "img-2"}
        elif body is not None:
            kw["json"] = body
    headers.update(VERSIONS.get(route, {}))
    r = await world.client.request(method, url, headers=headers, params=QUERY.get(route), **kw)
    expected = _expected(persona, route)
    assert r.status_code < 500, r.text
    if expected == "pass":
        assert r.status_code not in (401, 403), r.text
    elif expected == "denied":
        assert r.status_code in (403, 404, *BODY_REFERENCE.get(route, ())), r.text
    elif expected == "wrong-password":
        assert r.status_code == 401 and "original password" in r.text, r.text
    else:
        assert r.status_code == int(expected), r.text


async def test_no_undefined_rule_was_asked_for(world: World) -> None:
    assert world.unknown_rules == []
