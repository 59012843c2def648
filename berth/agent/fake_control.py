"""An in-memory control plane for agent tests: the internal routes and a token.

It follows the internal API's contract (the same JSON, the long poll on the
host generation) and folds observations back in the way the real control plane
does: runtime id and applied spec version recorded, done ops dropped, removed
containers forgotten. Reach it with ``httpx.ASGITransport`` (see ``client``).
Test code only: nothing in Berth wires it.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import FastAPI, Header, HTTPException, Response
from pydantic import TypeAdapter

from berth.domain.hostsync import (
    DesiredContainer,
    DesiredHost,
    HostReport,
    InjectedFile,
    Observation,
)

__all__ = ["FakeControlPlane", "now_iso"]

_OBSERVATIONS = TypeAdapter(list[Observation])


def now_iso() -> str:
    """The current time as the control plane writes ``desired_since``."""
    return datetime.now(UTC).isoformat()


class FakeControlPlane:
    """Desired state and observations in dicts; ``app`` serves them."""

    def __init__(self, password: str = "agent-secret") -> None:
        self.password = password
        self.hosts: dict[str, HostReport] = {}
        self.heartbeats: dict[str, int] = {}
        self.containers: dict[str, DesiredContainer] = {}
        # Injected files with their content, by container (``files`` route).
        self.files: dict[str, list[InjectedFile]] = {}
        self.generation = 1
        self.observations: list[Observation] = []
        self.latest: dict[str, Observation] = {}
        self.reports = 0
        self.auth_count = 0
        # While set and not yet set free, desired-state calls hang (a control plane
        # that holds the poll).
        self.hold_polls: asyncio.Event | None = None
        self._tokens: set[str] = set()
        self._ids = itertools.count(1)
        self._changed = asyncio.Condition()
        self.app = self._build()

    # -- what tests call

    def client(self) -> httpx.AsyncClient:
        """An httpx client that reaches ``app`` in memory."""
        transport = httpx.ASGITransport(app=self.app)
        return httpx.AsyncClient(transport=transport, base_url="http://control.test")

    async def put(self, container: DesiredContainer) -> None:
        """Add or replace a desired container (as a user's request would)."""
        self.containers[container.uuid] = container
        await self._bump()

    async def change(self, uuid: str, **fields: Any) -> None:
        """Change fields of a desired container; a new desired_state refreshes desired_since."""
        if "desired_state" in fields and "desired_since" not in fields:
            fields["desired_since"] = now_iso()
        self.containers[uuid] = replace(self.containers[uuid], **fields)
        await self._bump()

    def expire_tokens(self) -> None:
        """Every issued token stops working (the agent must authenticate again)."""
        self._tokens.clear()

    async def wait_for(self, predicate: Callable[[], bool], within: float = 10.0) -> None:
        """Return once ``predicate()`` holds (checked after every call), or raise TimeoutError."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(predicate)

    def state_of(self, uuid: str) -> str | None:
        """The last observed state of a container, if any."""
        obs = self.latest.get(uuid)
        return obs.state if obs else None

    # -- internals

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _bump(self) -> None:
        async with self._changed:
            self.generation += 1
            self._changed.notify_all()

    def _fold(self, obs: Observation) -> bool:
        """Record one observation; True when it changed the desired state."""
        self.observations.append(obs)
        self.latest[obs.uuid] = obs
        current = self.containers.get(obs.uuid)
        if current is None:
            return False
        if obs.removed:
            # As the real one (services/containers/observations.py): the row goes,
            # and the agent that reported it is not woken for that.
            del self.containers[obs.uuid]
            return False
        updated = replace(
            current,
            runtime_id=obs.runtime_id or current.runtime_id,
            applied_spec_version=max(current.applied_spec_version, obs.spec_version),
            pending_ops=[op for op in current.pending_ops if op.id not in obs.done_ops],
        )
        self.containers[obs.uuid] = updated
        return updated != current

    def _check(self, token: str | None) -> None:
        if token not in self._tokens:
            raise HTTPException(401, "token missing or expired")

    def _build(self) -> FastAPI:
        app = FastAPI()

        @app.post("/identity/v3/auth/tokens", status_code=201)
        async def auth(body: dict[str, Any], response: Response) -> dict[str, Any]:
            password = body["auth"]["identity"]["password"]["user"]["password"]
            if password != self.password:
                raise HTTPException(401, "bad credentials")
            self.auth_count += 1
            token = f"token-{next(self._ids)}"
            self._tokens.add(token)
            response.headers["X-Subject-Token"] = token
            return {"token": {"methods": ["password"]}}

        @app.post("/internal/v1/hosts")
        async def register(body: HostReport, x_auth_token: str | None = Header(None)) -> None:
            self._check(x_auth_token)
            self.hosts[body.hostname] = body
            await self._notify()

        @app.post("/internal/v1/hosts/{hostname}/heartbeat")
        async def heartbeat(hostname: str, x_auth_token: str | None = Header(None)) -> None:
            self._check(x_auth_token)
            if hostname not in self.hosts:
                raise HTTPException(404, "unknown host")
            self.heartbeats[hostname] = self.heartbeats.get(hostname, 0) + 1
            await self._notify()

        @app.get("/internal/v1/hosts/{hostname}/desired")
        async def desired(
            hostname: str,
            generation: int,
            wait: float = 0.0,
            x_auth_token: str | None = Header(None),
        ) -> DesiredHost:
            self._check(x_auth_token)
            if self.hold_polls is not None:
                await self.hold_polls.wait()
            try:
                async with asyncio.timeout(wait), self._changed:
                    await self._changed.wait_for(lambda: self.generation != generation)
            except TimeoutError:
                pass
            return DesiredHost(hostname, self.generation, list(self.containers.values()))

        @app.get("/internal/v1/hosts/{hostname}/containers/{uuid}/files")
        async def files(
            hostname: str, uuid: str, x_auth_token: str | None = Header(None)
        ) -> dict[str, list[InjectedFile]]:
            self._check(x_auth_token)
            if uuid not in self.containers:
                raise HTTPException(404, "unknown container")
            return {"files": self.files.get(uuid, [])}

        @app.post("/internal/v1/hosts/{hostname}/observations")
        async def observations(
            hostname: str, body: dict[str, Any], x_auth_token: str | None = Header(None)
        ) -> None:
            self._check(x_auth_token)
            batch = _OBSERVATIONS.validate_python(body["observations"])
            self.reports += 1
            async with self._changed:
                if any([self._fold(obs) for obs in batch]):
                    self.generation += 1
                self._changed.notify_all()

        return app
