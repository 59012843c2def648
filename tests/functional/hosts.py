"""A test cloud of several hosts: one berth-api, one berth-agent per extra Docker engine.

``cloud(...)`` starts the engines (``tests/functional/engines.py``), one
berth-api (``BERTH_ALL_IN_ONE=false``, SQLite) and, for each ``HostSpec``,
one berth-agent on its own engine (``BERTH_DOCKER_URL``, ``BERTH_AGENT_HOST``,
labels, zone, CPU pinning), all through ``tests/live.py``. ``Cloud`` drives
it as the admin over HTTP and looks into each engine. Everything is stopped
and removed on exit.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.functional.docker_engine import TEST_IMAGE
from tests.functional.engines import Dockerd, docker_hosts, wait_until
from tests.functional.underlay import GATEWAY, NetHost, underlay
from tests.helpers import ZUN
from tests.live import LiveAgent, LiveApi, berth_agent, live_api, live_token

__all__ = [
    "ADMIN_PASSWORD",
    "Cloud",
    "Dockerd",
    "HostSpec",
    "cloud",
    "docker_hosts",
    "wait_until",
]

ADMIN_PASSWORD = "mh-admin-pw"
AGENT_PASSWORD = "mh-agent-pw"


@dataclass(frozen=True)
class HostSpec:
    """One host of a test cloud: what its agent registers."""

    name: str
    zone: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    cpu_pinning: bool = False


@dataclass
class Cloud:
    """A live berth-api, one agent and engine per host; driven as the admin over HTTP."""

    api: LiveApi
    agents: dict[str, LiveAgent]
    engines: dict[str, Dockerd]
    base_env: dict[str, str]  # the API's environment as first started
    token: str = ""
    api_env: dict[str, str] = field(default_factory=dict)

    # -- the control plane

    def login(
        self, user: str = "admin", password: str = ADMIN_PASSWORD, project: str = "admin"
    ) -> str:
        token = live_token(self.api.base_url, user, password, project)
        if user == "admin":
            self.token = token
        return token

    def call(self, method: str, path: str, token: str | None = None, **kw: Any) -> httpx.Response:
        """A Container API call (``/container/v1`` + path); a 5xx fails the test."""
        headers = {**ZUN, "X-Auth-Token": token or self.token}
        r = httpx.request(
            method, f"{self.api.base_url}/container/v1{path}", headers=headers, timeout=30, **kw
        )
        assert r.status_code < 500, f"{method} {path} answered {r.status_code}: {r.text}"
        return r

    def identity(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {"X-Auth-Token": self.token}
        return httpx.request(
            method, f"{self.api.base_url}/identity/v3{path}", headers=headers, timeout=30, **kw
        )

    def make_member(self, project: str, user: str, password: str = "pw-" + "y" * 8) -> str:
        """Create ``project`` and ``user`` with the member role; return the user's token."""
        r = self.identity(
            "POST", "/projects", json={"project": {"name": project, "domain_id": "default"}}
        )
        assert r.status_code == 201, r.text
        pid = r.json()["project"]["id"]
        body = {"name": user, "domain_id": "default", "password": password}
        r = self.identity("POST", "/users", json={"user": {**body, "default_project_id": pid}})
        assert r.status_code == 201, r.text
        uid = r.json()["user"]["id"]
        role = self.identity("GET", "/roles?name=member").json()["roles"][0]["id"]
        r = self.identity("PUT", f"/projects/{pid}/users/{uid}/roles/{role}")
        assert r.status_code == 204, r.text
        return self.login(user, password, project)

    def configure(self, **settings: str) -> None:
        """Run the API with these ``BERTH_*`` settings on top of the base ones (restart if new).

        Only between tests that left nothing behind: a restart longer than
        ``service_down_time`` would mark the hosts' containers ``Unknown``.
        """
        if settings == self.api_env:
            return
        self.api.env = {**self.base_env, **settings}
        self.api.restart()
        self.api_env = dict(settings)
        self.login()
        self.wait_up(*self.agents)

    # -- containers

    def create(self, token: str | None = None, **body: Any) -> dict[str, Any]:
        """POST a container (run) with small defaults; returns the 202 body."""
        spec = {"image": TEST_IMAGE, "command": ["sleep", "3600"], "memory": 32, "cpu": 0.1}
        r = self.call("POST", "/containers", token, params={"run": "true"}, json={**spec, **body})
        assert r.status_code == 202, r.text
        return dict(r.json())

    def show(self, uuid: str) -> dict[str, Any]:
        r = self.call("GET", f"/containers/{uuid}")
        assert r.status_code == 200, r.text
        return dict(r.json())

    def containers(self) -> dict[str, dict[str, Any]]:
        r = self.call("GET", "/containers", params={"all_projects": "true", "limit": 1000})
        assert r.status_code == 200, r.text
        return {c["uuid"]: c for c in r.json()["containers"]}

    def wait_status(self, uuids: list[str], status: str, timeout: float = 45.0) -> None:
        """Wait until every one of ``uuids`` shows ``status``."""

        def reached() -> bool:
            shown = self.containers()
            return all(shown.get(u, {}).get("status") == status for u in uuids)

        try:
            wait_until(reached, timeout, f"{len(uuids)} containers to be {status}")
        except AssertionError:
            shown = self.containers()
            states = {u: (shown.get(u, {}).get("status"), shown.get(u, {}).get("status_reason"))
                      for u in uuids}  # fmt: skip
            raise AssertionError(f"not all {status}: {states}\n{self.log_tails()}") from None

    def log_tails(self, lines: int = 40) -> str:
        """The end of every process's log, for a failure message (the fixture's own
        log dump only happens when the module's cloud itself fails)."""
        procs = [self.api, *self.agents.values()]
        return "\n".join(
            f"--- {p.name}:\n" + "\n".join(p.log_text().splitlines()[-lines:]) for p in procs
        )

    def runs_on(self, uuid: str) -> list[str]:
        """The hosts whose (running) engine holds a runtime container of ``uuid``."""
        return [
            n
            for n, e in self.engines.items()
            if e.proc.poll() is None and uuid in e.berth_containers()
        ]

    def delete_all(self) -> None:
        """Delete every container through the API; then no claims and no runtime containers."""
        for uid in self.containers():
            r = self.call(
                "DELETE",
                f"/containers/{uid}",
                params={"force": "true", "stop": "true", "all_projects": "true"},
            )
            if r.status_code == 409:  # stop=true refuses Creating; force alone takes it
                r = self.call(
                    "DELETE", f"/containers/{uid}", params={"force": "true", "all_projects": "true"}
                )
            assert r.status_code in (204, 404), f"{r.text}\n{self.log_tails()}"
        wait_until(lambda: not self.containers(), 45, "every container deleted")
        wait_until(
            lambda: not any(e.berth_containers() for e in self.engines.values()),
            20,
            "no runtime container left on any engine",
        )
        for host in self.call("GET", "/hosts").json()["hosts"]:
            used = (host["total_containers"], host["mem_used"], round(host["cpu_used"], 3))
            assert used == (0, 0, 0.0), f"claims outlived their containers: {host}"

    # -- hosts

    def services(self) -> dict[str, dict[str, Any]]:
        return {s["host"]: s for s in self.call("GET", "/services").json()["services"]}

    def wait_up(self, *hosts: str, timeout: float = 30.0) -> None:
        def up() -> bool:
            shown = self.services()
            return all(shown.get(h, {}).get("state") == "up" for h in hosts)

        wait_until(up, timeout, f"hosts {', '.join(hosts)} to be up")

    def set_service(self, host: str, action: str) -> None:
        r = self.call("PUT", f"/services/{action}", json={"host": host, "binary": "berth-agent"})
        assert r.status_code == 200, r.text

    def force_down(self, host: str, down: bool = True) -> None:
        body = {"host": host, "binary": "berth-agent", "forced_down": down}
        r = self.call("PUT", "/services/force_down", json=body)
        assert r.status_code == 200, r.text


def _agent_env(spec: HostSpec, engine: Dockerd) -> dict[str, str]:
    return {
        "BERTH_DOCKER_URL": engine.url,
        "BERTH_AGENT_LABELS": json.dumps(spec.labels),
        "BERTH_AGENT_CPU_PINNING": "true" if spec.cpu_pinning else "false",
        "BERTH_RECONCILE_INTERVAL": "1",
        "BERTH_HEARTBEAT_INTERVAL": "0.5",
        "BERTH_AGENT_FACTS_INTERVAL": "2",
        **({"BERTH_AGENT_AVAILABILITY_ZONE": spec.zone} if spec.zone else {}),
    }


def _placed(nets: dict[str, NetHost] | None, name: str) -> dict[str, Any]:
    """Where a host's agent runs and listens: its own network host, or this machine."""
    if nets is None:
        return {}
    return {"address": nets[name].address, "prefix": nets[name].prefix}


@contextlib.contextmanager
def cloud(
    workdir: Path,
    specs: list[HostSpec],
    main_engine: Any,
    api_settings: dict[str, str],
    *,
    separate: bool = False,
    agent_settings: dict[str, str] | None = None,
    images: tuple[str, ...] = (),
) -> Iterator[Cloud]:
    """A berth-api with ``api_settings`` and one agent on its own engine per spec.

    With ``separate``, each host (engine and agent) is a network host of its own
    (``tests/functional/underlay.py``) and the API listens on the underlay.
    ``agent_settings``: ``BERTH_*`` settings every agent gets on top of its own;
    ``images``: images of the main engine every host's engine gets besides the test image.
    """
    base_env = {
        "BERTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "BERTH_AGENT_PASSWORD": AGENT_PASSWORD,
        "BERTH_ALL_IN_ONE": "false",
        **({"BERTH_BIND_HOST": GATEWAY} if separate else {}),
        **api_settings,
    }
    with contextlib.ExitStack() as stack:
        nets: dict[str, NetHost] | None = None
        if separate:
            plugged = stack.enter_context(underlay(len(specs)))
            nets = {s.name: h for s, h in zip(specs, plugged, strict=True)}
        names = [s.name for s in specs]
        engines = stack.enter_context(docker_hosts(names, main_engine, nets, images))
        api = stack.enter_context(live_api(base_env, workdir=workdir / "api"))
        agents = {
            s.name: stack.enter_context(
                berth_agent(
                    api.base_url,
                    host=s.name,
                    password=AGENT_PASSWORD,
                    workdir=workdir / s.name,
                    settings_env={**_agent_env(s, engines[s.name]), **(agent_settings or {})},
                    wait=False,
                    **_placed(nets, s.name),
                )
            )
            for s in specs
        }
        for agent in agents.values():
            agent.wait_ready()
        c = Cloud(api, agents, engines, dict(api.env))  # with its port, data and database
        c.login()
        c.wait_up(*agents)
        yield c
