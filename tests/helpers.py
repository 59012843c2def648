"""Small helpers shared by API tests: identity set-up and a scripted agent."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from berth.config import Settings
from tests.conftest import AGENT_PASSWORD, issue_token

ZUN = {"OpenStack-API-Version": "container 1.40"}


def zun_headers(token: str, version: str = "1.40") -> dict[str, str]:
    """The headers of a Zun request by ``token``'s holder at microversion ``version``."""
    return {"X-Auth-Token": token, "OpenStack-API-Version": f"container {version}"}


# The policy file docs/clusters.md gives operators who let members run clusters:
# by default creating nodes or their client certificates is admin-only.
OPEN_CLUSTERS = """\
"cluster:create": "rule:project_member_or_admin"
"cluster:update": "rule:project_member_or_admin"
"cluster:resize": "rule:project_member_or_admin"
"cluster:upgrade": "rule:project_member_or_admin"
"nodegroup:create": "rule:project_member_or_admin"
"nodegroup:update": "rule:project_member_or_admin"
"certificate:create": "rule:project_member_or_admin"
"certificate:rotate_ca": "rule:project_member_or_admin"
"""


def open_clusters_file(directory: Path) -> Path:
    """Write the policy file that lets project members run clusters; return its path."""
    path = directory / "policy.yaml"
    path.write_text(OPEN_CLUSTERS)
    return path


def open_clusters(settings: Settings) -> Settings:
    """``settings`` with a policy file that lets project members run clusters."""
    path = open_clusters_file(settings.data_dir.parent)
    return settings.model_copy(update={"policy_file": path})


async def make_member(
    client: httpx.AsyncClient, admin: str, project: str, user: str, password: str = "pw-" + "x" * 8
) -> str:
    """Create ``project`` and ``user`` with the member role; return the user's token."""
    h = {"X-Auth-Token": admin}
    r = await client.post(
        "/identity/v3/projects",
        headers=h,
        json={"project": {"name": project, "domain_id": "default"}},
    )
    assert r.status_code == 201, r.text
    pid = r.json()["project"]["id"]
    r = await client.post(
        "/identity/v3/users",
        headers=h,
        json={
            "user": {
                "name": user,
                "domain_id": "default",
                "password": password,
                "default_project_id": pid,
            }
        },
    )
    assert r.status_code == 201, r.text
    uid = r.json()["user"]["id"]
    roles = (await client.get("/identity/v3/roles?name=member", headers=h)).json()["roles"]
    r = await client.put(
        f"/identity/v3/projects/{pid}/users/{uid}/roles/{roles[0]['id']}", headers=h
    )
    assert r.status_code == 204, r.text
    return await issue_token(client, user, password, project)


class ScriptedAgent:
    """Plays an agent over the internal API so API tests need no engine."""

    def __init__(self, client: httpx.AsyncClient, hostname: str = "test-host") -> None:
        self.client = client
        self.hostname = hostname
        self.token = ""

    async def register(self, **overrides: Any) -> None:
        self.token = await issue_token(self.client, "berth-agent", AGENT_PASSWORD, "service")
        report = {
            "hostname": self.hostname,
            "cpus": 4,
            "mem_total": 8192,
            "disk_total": 100,
            "runtimes": ["runc"],
            "agent_url": "http://127.0.0.1:1",
            **overrides,
        }
        r = await self.client.post("/internal/v1/hosts", json=report, headers=self._h())
        assert r.status_code == 200, r.text

    def _h(self) -> dict[str, str]:
        return {"X-Auth-Token": self.token}

    async def desired(self) -> dict[str, Any]:
        r = await self.client.get(f"/internal/v1/hosts/{self.hostname}/desired", headers=self._h())
        assert r.status_code == 200, r.text
        return {c["uuid"]: c for c in r.json()["containers"]}

    async def observe(self, uuid: str, state: str, **extra: Any) -> None:
        obs = {"uuid": uuid, "state": state, "spec_version": extra.pop("spec_version", 1), **extra}
        r = await self.client.post(
            f"/internal/v1/hosts/{self.hostname}/observations",
            json={"observations": [obs]},
            headers=self._h(),
        )
        assert r.status_code == 200, r.text


@dataclass
class SlowReader:
    """A GET sent straight to an ASGI app by a client that takes its answer's first
    piece and then reads no more until ``release`` is set (a client slow to read)."""

    task: asyncio.Task[None]
    reading: asyncio.Event
    release: asyncio.Event
    messages: list[dict[str, Any]] = field(default_factory=list)

    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages[1:])


def slow_reader(app: Any, path: str, query: str, headers: dict[str, str]) -> SlowReader:
    reading, release = asyncio.Event(), asyncio.Event()
    messages: list[dict[str, Any]] = []
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": query.encode(), "server": ("berth", 80), "client": ("127.0.0.1", 1),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }  # fmt: skip

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)
        if message["type"] == "http.response.body":
            reading.set()
            await release.wait()

    task = asyncio.create_task(app(scope, receive, send))
    return SlowReader(task, reading, release, messages)


class Pause:
    """Wraps an async function: the first call stops (after it ran, with ``after``)
    until released."""

    def __init__(self, fn: Callable[..., Awaitable[Any]], after: bool) -> None:
        self.fn, self.after = fn, after
        self.reached, self.release = asyncio.Event(), asyncio.Event()

    async def __call__(self, *args: Any, **kw: Any) -> Any:
        if not self.after and not self.reached.is_set():
            self.reached.set()
            await self.release.wait()
        result = await self.fn(*args, **kw)
        if self.after and not self.reached.is_set():
            self.reached.set()
            await self.release.wait()
        return result


async def meet(
    pause: Pause, first: Awaitable[httpx.Response], second: Awaitable[httpx.Response]
) -> tuple[httpx.Response, httpx.Response]:
    """``first`` until it reaches ``pause``, then ``second`` runs into it; both answers."""
    one = asyncio.ensure_future(first)
    await asyncio.wait_for(pause.reached.wait(), 10)
    other = asyncio.ensure_future(second)
    await asyncio.sleep(0.3)
    pause.release.set()
    return await one, await other
