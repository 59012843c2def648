"""The agents' API called in memory: the all-in-one agent's channel to its own process.

A standalone ``berth-agent`` reaches the control plane over HTTP
(``berth.agent.client.ControlClient`` → ``/internal/v1``). The embedded agent of
an all-in-one ``berth-api`` used to do the same through ``httpx.ASGITransport``:
every long poll and every report went through the HTTP client, the whole
middleware stack and a JSON round trip, inside the very process that serves the
users. Profiled on 20 concurrent creates that was ~9 % of the process's CPU on a
2-core machine whose engine is CPU-bound, so this module calls the same service
functions directly.

Nothing about the contract changes: the agent authenticates with the same
service credential (a real token, validated on every call, so a changed
password or a revoked role stops it as it would stop a remote agent), the same
policy rule (``berth:internal``) is enforced by the services, and errors reach
the agent as ``ControlPlaneError`` with the HTTP status the route would have
answered, so the agent's reactions (404: register again) are the same. With an
external Keystone the embedded agent is Berth's service user there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from berth import errors
from berth.agent.client import ControlPlaneError, Since, TokenSlot
from berth.api.errors import status_of
from berth.api.state import AppState
from berth.domain.context import RequestContext
from berth.domain.hostsync import DesiredHost, HostReport, InjectedFile, Observation
from berth.identity.models import AuthRequest, PasswordCredentials, ScopeRequest
from berth.services.containers import files as injected_files
from berth.services.hosts import heartbeats, hosts
from berth.services.identity import auth
from berth.services.images import glance
from berth.services.images import refs as image_refs

__all__ = ["LocalControl"]

log = logging.getLogger(__name__)
T = TypeVar("T")


class LocalControl:
    """``ControlPlane`` for an agent living in the API's own process."""

    def __init__(
        self,
        state: AppState,
        password: str,
        *,
        username: str = "berth-agent",
        project: str = "service",
        domain: str = "Default",
    ) -> None:
        self._state = state
        self._request = AuthRequest(
            methods=("password",),
            password=PasswordCredentials(password, user_name=username, domain_name=domain),
            scope=ScopeRequest(kind="project", name=project, domain_name=domain),
        )
        self._tokens = TokenSlot()

    async def register(self, report: HostReport) -> None:
        await self._call("register", lambda ctx: hosts.register(self._state.env, ctx, report))

    async def heartbeat(self, hostname: str) -> None:
        await self._call(
            "heartbeat", lambda ctx: heartbeats.heartbeat(self._state.env, ctx, hostname)
        )

    async def desired(
        self, hostname: str, generation: int, wait: float, since: Since = None
    ) -> DesiredHost:
        async def fetch(ctx: RequestContext) -> DesiredHost:
            env = self._state.env
            found = await (
                hosts.desired_for(env, ctx, hostname, generation, wait)
                if since is None
                else hosts.desired_changes(env, ctx, hostname, since or None, generation, wait)
            )
            return await image_refs.for_agent(env, found)

        return await self._call("desired state", fetch)

    async def report(self, hostname: str, observations: list[Observation]) -> None:
        await self._call(
            "observations",
            lambda ctx: hosts.record_observations(self._state.env, ctx, hostname, observations),
        )

    async def files(self, hostname: str, uuid: str) -> list[InjectedFile]:
        return await self._call(
            "injected files",
            lambda ctx: injected_files.for_agent(self._state.env, ctx, hostname, uuid),
        )

    async def glance_data(self, hostname: str, uuid: str) -> AsyncIterator[bytes]:
        try:
            ctx = await self._caller()
            async for chunk in glance.stream_for_agent(self._state.env, ctx, hostname, uuid):
                yield chunk
        except errors.BerthError as exc:
            raise ControlPlaneError(f"Glance image: {exc.message}", status_of(exc)) from exc

    async def _call(self, what: str, call: Callable[[RequestContext], Awaitable[T]]) -> T:
        try:
            ctx = await self._caller()
            return await call(ctx)
        except asyncio.CancelledError:
            raise
        except ControlPlaneError:
            raise
        except errors.BerthError as exc:
            raise ControlPlaneError(f"{what}: {exc.message}", status_of(exc)) from exc
        except Exception as exc:  # what the route would have answered with a 500
            log.exception("the control plane failed on the embedded agent's %s", what)
            self._state.saw_server_error.append(f"embedded agent {what}: {exc!r}")
            raise ControlPlaneError(f"{what} failed: {exc!r}", 500) from exc

    async def _caller(self) -> RequestContext:
        """The agent's context from its token; authenticates again once when it is refused."""
        token = await self._tokens.get(self._authenticate)
        try:
            return await self._state.caller_of(token)
        except errors.Unauthorized:
            token = await self._tokens.get(self._authenticate, stale=token)
            return await self._state.caller_of(token)

    async def _authenticate(self) -> str:
        if self._state.keystone is not None:
            # With an external Keystone the embedded agent is Berth's service user.
            return await self._state.keystone.service_token()
        try:
            issued = await auth.authenticate(
                self._state.db, self._state.settings, self._request, with_catalog=False
            )
        except errors.Unauthorized as exc:
            raise ControlPlaneError(
                f"authentication as the agent service user was refused: {exc.message}", 401
            ) from exc
        return issued.token
