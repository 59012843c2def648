"""Schemathesis against Berth's own OpenAPI: no generated request gets a 5xx or hangs.

Every operation of the three APIs (and the internal one) is called with
generated path, query and body values (the bodies from the schemas the routes
declare) through the real app (lifespan, SQLite), as a project member who owns
real resources, as the admin, and as a member of another project. Half of the
path parameters are replaced by the IDs of those resources, so the fuzz gets
past the lookups into the handlers. A second test plants a crashing route in a
throw-away app and checks the same harness reports it: the fuzz can fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from fastapi import FastAPI, Request
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from pydantic import TypeAdapter
from schemathesis.generation import GenerationMode

from berth.api.app import create_app
from berth.api.magnum.microversions import MAX_VERSION as MAGNUM_MAX
from berth.api.zun.microversions import MAX_VERSION as ZUN_MAX
from berth.config import Settings
from berth.domain.hostsync import DesiredHost
from berth.runtimes import dockermap, podmanmap
from tests.helpers import ScriptedAgent, make_member, open_clusters

pytestmark = pytest.mark.slow
# Examples per operation and generation mode: ~150 operations x 2 modes; the module
# stays under three minutes on two shared cores. A deeper hunt, by hand:
# BERTH_FUZZ_EXAMPLES=100 BERTH_FUZZ_STORES=sqlite,postgres pytest tests/api/test_fuzz_openapi.py
EXAMPLES = int(os.environ.get("BERTH_FUZZ_EXAMPLES", "12"))
STORES = os.environ.get("BERTH_FUZZ_STORES", "sqlite").split(",")
# A response slower than this is a finding: nothing a tenant sends may park a worker.
SLOW_SECONDS = 5.0
_PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")


@dataclass
class Findings:
    """What the fuzz saw that it must not: 5xx (but a genuine 503), crashes, slow answers."""

    problems: list[str] = field(default_factory=list)
    requests: int = 0
    statuses: dict[int, int] = field(default_factory=dict)


def real_params(path: str, known: Mapping[str, str]) -> dict[str, str]:
    """Known IDs for the path parameters of ``path``, keyed by the collection before each.

    ``/v1/containers/{ident}/stop`` takes ``known["containers"]``; a parameter that
    follows another one (``/quotas/{project_id}/{resource}``) goes by its own name.
    """
    parts = path.strip("/").split("/")
    out: dict[str, str] = {}
    for i, part in enumerate(parts):
        match = _PARAM.fullmatch(part)
        if match is None:
            continue
        before = parts[i - 1] if i else ""
        key = before if before in known and not _PARAM.fullmatch(before) else match.group(1)
        if key in known:
            out[match.group(1)] = known[key]
    return out


def fuzz(
    client: httpx.AsyncClient,
    loop: asyncio.AbstractEventLoop,
    operations: Sequence[Any],
    personas: Sequence[str],
    known: Mapping[str, str],
    examples: int = EXAMPLES,
) -> Findings:
    """Run every operation's generated cases through ``client``; the findings, never raises.

    Called from a worker thread (hypothesis drives sync functions): each request
    goes through the test's own event loop. Derandomized, so CI is reproducible.
    """
    findings = Findings()

    def send(case: Any, token: str) -> None:
        kwargs = case.as_transport_kwargs(base_url="http://testserver")
        sent = {str(k): str(v) for k, v in (kwargs.get("headers") or {}).items()}
        sent.update(_versions(token, case.operation.path))
        what = f"{kwargs['method']} {kwargs['url']}"
        request = client.request(
            kwargs["method"],
            kwargs["url"],
            params=kwargs.get("params"),
            headers=sent,
            json=kwargs.get("json"),
        )
        started = time.monotonic()
        try:
            r = asyncio.run_coroutine_threadsafe(request, loop).result(timeout=60)
        except Exception as exc:  # the app itself raised: the worst finding
            findings.problems.append(f"{what}: raised {exc!r}")
            return
        took = time.monotonic() - started
        findings.requests += 1
        findings.statuses[r.status_code] = findings.statuses.get(r.status_code, 0) + 1
        genuine_503 = r.status_code == 503 and "unexpected" not in r.text
        if r.status_code >= 500 and not genuine_503:
            findings.problems.append(f"{what}: {r.status_code} {r.text[:300]}")
        if took > SLOW_SECONDS:
            findings.problems.append(f"{what}: took {took:.1f}s")

    def run(operation: Any, mode: GenerationMode) -> None:
        try:
            strategy = operation.as_strategy(generation_mode=mode)
        except Exception:  # nothing to negate in this operation (no parameters, no body)
            return
        substitute = real_params(operation.path, known)

        @hypothesis.settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        )
        @given(case=strategy, persona=st.sampled_from(personas), real=st.booleans())
        def call(case: Any, persona: str, real: bool) -> None:
            if real and substitute and case.path_parameters is not None:
                case.path_parameters = {**case.path_parameters, **substitute}
            send(case, persona)

        # Unsatisfiable: a schema hypothesis cannot fill here; the other mode still runs.
        with contextlib.suppress(hypothesis.errors.Unsatisfiable):
            call()

    # Deletes last, so the known resources live while the rest is fuzzed.
    for operation in sorted(operations, key=lambda op: op.method.upper() == "DELETE"):
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            run(operation, mode)
    return findings


def _operations(document: dict[str, Any]) -> list[Any]:
    schema = schemathesis.openapi.from_dict(document)
    return [op.ok() for op in schema.get_all_operations() if op.ok() is not None]


def _versions(token: str, path: str = "/container/") -> dict[str, str]:
    """The token, and the newest microversion of the API ``path`` belongs to."""
    headers = {"X-Auth-Token": token}
    if path.startswith("/container-infra/"):
        headers["OpenStack-API-Version"] = f"container-infra {MAGNUM_MAX}"
    elif path.startswith("/container/"):
        headers["OpenStack-API-Version"] = f"container {ZUN_MAX}"
    return headers


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Members may run clusters here, so the member persona reaches cluster handlers.
    return open_clusters(settings)


async def _world(client: httpx.AsyncClient, admin: str) -> tuple[dict[str, str], str, str]:
    """A host, and a member's project with one resource of each kind: (known IDs, tokens)."""
    await ScriptedAgent(client).register()
    member = await make_member(client, admin, "fuzzed", "fuzzer")
    other = await make_member(client, admin, "bystanders", "bystander")
    h = _versions(member)
    hm = _versions(member, "/container-infra/")
    known: dict[str, str] = {"resource": "Cluster", "hostname": "test-host", "hosts": "test-host"}

    async def made(kind: str, path: str, body: dict[str, Any], wrapper: str = "") -> None:
        r = await client.post(path, json=body, headers=h)
        assert r.status_code < 300, (path, r.text)
        data = r.json()
        data = data.get(wrapper, data)
        known[kind] = str(data.get("uuid") or data["id"])

    await made("containers", "/container/v1/containers", {"image": "nginx", "name": "web"})
    await made("networks", "/container/v1/networks", {"name": "net1"})
    await made("volumes", "/container/v1/volumes", {"name": "vol1", "size": 1})
    await made(
        "security_groups",
        "/container/v1/security_groups",
        {"security_group": {"name": "sg1"}},
        "security_group",
    )
    await made(
        "registries",
        "/container/v1/registries",
        {"registry": {"name": "reg1", "domain": "registry.example", "username": "u"}},
        "registry",
    )
    await made(
        "capsules",
        "/container/v1/capsules",
        {
            "template": {
                "kind": "capsule",
                "metadata": {"name": "cap1"},
                "spec": {"containers": [{"image": "nginx"}]},
            }
        },
    )
    r = await client.post(
        "/container-infra/v1/clustertemplates",
        json={"name": "tpl", "coe": "swarm-mode", "image_id": "node"},
        headers=hm,
    )
    assert r.status_code == 201, r.text
    known["clustertemplates"] = r.json()["uuid"]
    r = await client.post(
        "/container-infra/v1/clusters",
        json={"cluster_template_id": "tpl", "name": "c1", "node_count": 1},
        headers=hm,
    )
    assert r.status_code == 202, r.text
    known["clusters"] = known["certificates"] = r.json()["uuid"]
    known["nodegroups"] = "default-worker"
    me = await client.get("/identity/v3/auth/tokens", headers={**h, "X-Subject-Token": member})
    token = me.json()["token"]
    known["projects"] = known["quotas"] = known["project_id"] = token["project"]["id"]
    known["users"] = token["user"]["id"]
    roles_url = "/identity/v3/roles?name=member"
    roles = (await client.get(roles_url, headers=_versions(admin, "/"))).json()
    known["roles"] = roles["roles"][0]["id"]
    known["domains"] = "default"
    known["quota_classes"] = "default"
    return known, member, other


@pytest.mark.parametrize("db_url", STORES, indirect=True)
@pytest.mark.allows_5xx("a 503 (the scripted host's agent is unreachable) is genuine")
async def test_no_generated_request_gets_a_5xx_or_hangs(
    client: httpx.AsyncClient,
    admin_token: str,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    known, member, other = await _world(client, admin_token)
    document = (await client.get("/openapi.json")).json()
    operations = _operations(document)
    assert len(operations) > 100, "the OpenAPI lost the APIs' routes"
    with_body = [op for op in operations if op.definition.raw.get("requestBody")]
    assert len(with_body) >= 45, "the routes' request bodies are no longer described"
    personas = [member, admin_token, other]
    loop = asyncio.get_running_loop()
    found = await asyncio.to_thread(fuzz, client, loop, operations, personas, known)
    assert not found.problems, "\n".join(found.problems[:30])
    # The fuzz got past authentication and lookups: real successes, not only 4xx.
    assert sum(n for s, n in found.statuses.items() if s < 300) > 100, found.statuses
    # What it left behind is read again later: by the host's agent, and by a restart.
    await _the_agent_can_take_what_was_left(client, admin_token)
    await _a_restart_reads_what_was_left(settings, admin_token, operations, caplog)


async def _the_agent_can_take_what_was_left(client: httpx.AsyncClient, admin: str) -> None:
    """The host's whole desired state parses as the agent parses it, every container in it
    maps to both engines' create calls, and none of a project's reaches the host."""
    agent = ScriptedAgent(client)
    await agent.register()
    r = await client.get(
        "/internal/v1/hosts/test-host/desired", headers={"X-Auth-Token": agent.token}
    )
    assert r.status_code == 200, r.text
    state = TypeAdapter(DesiredHost).validate_python(r.json())
    me = await client.get(
        "/identity/v3/auth/tokens", headers={"X-Auth-Token": admin, "X-Subject-Token": admin}
    )
    admin_project = me.json()["token"]["project"]["id"]
    assert state.containers, "the fuzz left no containers to check"
    for spec in state.containers:
        _, host = dockermap.create_params(spec, "berth")
        body = podmanmap.container_spec(spec, "berth")
        if spec.project_id == admin_project or spec.node_profile:
            continue  # the admin may (host paths, privileged); cluster nodes: test_host_guard
        assert not host["privileged"] and not body["privileged"], spec
        assert all(m.host_path is None for m in spec.volumes), spec
        assert host.get("network_mode") not in ("host",), spec


async def _a_restart_reads_what_was_left(
    settings: Settings, admin: str, operations: Sequence[Any], caplog: pytest.LogCaptureFixture
) -> None:
    """A new API process over the same database starts, runs every background job once
    without a failure, and answers every list (every GET without a path parameter) as
    the admin without a 5xx."""
    again = create_app(settings, run_workers=True, migrate=False)
    lists = sorted(
        {op.path for op in operations if op.method.upper() == "GET" and "{" not in op.path}
    )
    assert len(lists) > 20, lists
    with caplog.at_level(logging.ERROR, logger="berth"):
        async with again.router.lifespan_context(again):
            transport = httpx.ASGITransport(app=again)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                await asyncio.sleep(3)  # every worker job runs once, at start
                for path in lists:
                    query = "?all_projects=True" if path.startswith("/container/") else ""
                    r = await c.get(path + query, headers=_versions(admin, path))
                    assert r.status_code < 500, (path, r.status_code, r.text[:300])
    failed = [rec.getMessage() for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert not failed, failed[:10]
    assert not again.state.berth.saw_server_error


def _planted_app() -> FastAPI:
    app = FastAPI()

    @app.post(
        "/v1/things",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["count"],
                            "properties": {"count": {"type": "integer"}},
                        }
                    }
                },
            }
        },
    )
    async def things(request: Request) -> dict[str, Any]:
        body = await request.json()
        if body.get("count", 0) > 1000:  # the planted bug: a bound nobody checked
            raise RuntimeError("planted crash")
        return {"ok": True}

    @app.get("/v1/things/{ident}")
    async def thing(ident: str) -> dict[str, Any]:
        return {"ident": ident}

    return app


async def test_the_fuzz_reports_a_planted_crash() -> None:
    app = _planted_app()
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        operations = _operations(app.openapi())
        loop = asyncio.get_running_loop()
        found = await asyncio.to_thread(fuzz, c, loop, operations, ["a-token"], {"things": "known"})
    assert any("POST" in p and ": 500" in p for p in found.problems), found
    assert not any("GET" in p for p in found.problems), found.problems
    assert found.requests > 0


def test_real_params_fill_ids_by_collection() -> None:
    known = {"containers": "c-1", "clusters": "k-1", "nodegroups": "ng", "resource": "Cluster"}
    assert real_params("/container/v1/containers/{ident}/stop", known) == {"ident": "c-1"}
    assert real_params("/container-infra/v1/clusters/{ident}/nodegroups/{ng}", known) == {
        "ident": "k-1",
        "ng": "ng",
    }
    assert real_params("/container-infra/v1/quotas/{project_id}/{resource}", known) == {
        "resource": "Cluster"
    }
