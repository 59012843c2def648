"""The agent's HTTP client to the control plane's internal API.

It authenticates as keystone clients do (password method, project scope,
token in ``X-Subject-Token``) at Berth's ``/identity/v3`` or, with an external
Keystone, at that Keystone (``auth_url``, an absolute URL); it sends the token
as ``X-Auth-Token`` and, when a token expires (401), authenticates again once
and retries. The httpx client is handed in: over the network for a standalone
agent, or ``httpx.ASGITransport`` to a test app. The all-in-one agent skips
HTTP altogether: it calls the control plane in memory
(``berth.api.internal.local.LocalControl``), behind the same ``ControlPlane``
protocol.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol
from urllib.parse import quote

import httpx
from pydantic import TypeAdapter

from berth import errors
from berth.domain.hostsync import DesiredHost, HostReport, InjectedFile, Observation
from berth.identity.auth_request import by_name, password_auth, project_ref

__all__ = ["ControlClient", "ControlPlane", "ControlPlaneError", "Since", "TokenSlot"]

_REPORT = TypeAdapter(HostReport)
_DESIRED = TypeAdapter(DesiredHost)
_OBSERVATIONS = TypeAdapter(list[Observation])
_FILES = TypeAdapter(list[InjectedFile])
# What an agent of the incremental protocol holds: (epoch, revision), or () for
# nothing yet; None asks by ``generation`` (the full-state protocol).
Since = tuple[str, int] | tuple[()] | None
# The long poll may legitimately hold a request for ``wait`` seconds; this much more
# is the allowance for the answer itself.
_POLL_MARGIN = 15.0


class ControlPlaneError(errors.BerthError):
    """The control plane did not answer, or answered with an error (``status``).

    ``unreachable``: there was no answer because the connection could not be
    made or was dropped (the control plane is down or restarting), as opposed
    to an error answer or a request that timed out.
    """

    def __init__(
        self, message: str, status: int | None = None, *, unreachable: bool = False
    ) -> None:
        super().__init__(message)
        self.status = status
        self.unreachable = unreachable


class ControlPlane(Protocol):
    """What an agent asks of the control plane; every call may raise ControlPlaneError."""

    async def register(self, report: HostReport) -> None:
        """Register (or refresh) this host with its capacity and capabilities."""

    async def heartbeat(self, hostname: str) -> None:
        """Tell the control plane this host's agent is alive."""

    async def desired(
        self, hostname: str, generation: int, wait: float, since: Since = None
    ) -> DesiredHost:
        """The host's desired state: at once if ``generation`` is stale, else within ``wait`` s.

        With ``since`` (the incremental protocol), what changed after it, or
        everything when the control plane cannot say (``DesiredHost.base``).
        """

    async def report(self, hostname: str, observations: list[Observation]) -> None:
        """Send a batch of observations."""

    async def files(self, hostname: str, uuid: str) -> list[InjectedFile]:
        """The files (content included) to write into container ``uuid`` when creating it."""

    def glance_data(self, hostname: str, uuid: str) -> AsyncIterator[bytes]:
        """The data of container ``uuid``'s Glance image (a ``docker save`` tar), in chunks."""
        ...


class TokenSlot:
    """The agent's one token, shared by its concurrent calls.

    ``get`` authenticates when there is no token yet, or when the caller's token
    (``stale``) was refused and nobody replaced it meanwhile: concurrent callers
    that saw the same refusal authenticate only once.
    """

    def __init__(self) -> None:
        self._token: str | None = None
        self._lock = asyncio.Lock()

    async def get(
        self, authenticate: Callable[[], Awaitable[str]], stale: str | None = None
    ) -> str:
        async with self._lock:
            if self._token is None or self._token == stale:
                self._token = await authenticate()
            return self._token


def _poll_params(generation: int, wait: float, since: Since) -> dict[str, Any]:
    params: dict[str, Any] = {"generation": generation, "wait": wait}
    if since is not None:
        params["since"] = f"{since[0]}:{since[1]}" if since else ""
    return params


def _unreachable(exc: httpx.HTTPError) -> bool:
    """Whether a failed request means nothing answers (rather than a slow answer)."""
    if isinstance(exc, httpx.ConnectTimeout):
        return True
    return isinstance(exc, httpx.TransportError) and not isinstance(exc, httpx.TimeoutException)


class ControlClient:
    """Typed calls to ``/internal/v1``, authenticated with the agents' service credential."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        password: str,
        *,
        username: str = "berth-agent",
        project: str = "service",
        domain: str = "Default",
        project_domain: str | None = None,
        auth_url: str = "/identity/v3/auth/tokens",
    ) -> None:
        self._http = http
        self._auth_url = auth_url
        self._auth_body = password_auth(
            username,
            password,
            by_name(domain),
            project_ref(None, project, project_domain or domain),
        )
        self._tokens = TokenSlot()

    async def register(self, report: HostReport) -> None:
        """Register (or refresh) this host with its capacity and capabilities."""
        await self._call(
            "POST", "/internal/v1/hosts", json=_REPORT.dump_python(report, mode="json")
        )

    async def heartbeat(self, hostname: str) -> None:
        """Tell the control plane this host's agent is alive."""
        await self._call("POST", f"/internal/v1/hosts/{quote(hostname, safe='')}/heartbeat")

    async def desired(
        self, hostname: str, generation: int, wait: float, since: Since = None
    ) -> DesiredHost:
        """The host's desired state: at once if ``generation`` is stale, else within ``wait`` s.

        With ``since`` (the incremental protocol), what changed after it, or
        everything when the control plane cannot say (``DesiredHost.base``).
        """
        response = await self._call(
            "GET",
            f"/internal/v1/hosts/{quote(hostname, safe='')}/desired",
            params=_poll_params(generation, wait, since),
            read_timeout=wait + _POLL_MARGIN,
        )
        return _DESIRED.validate_python(response.json())

    async def report(self, hostname: str, observations: list[Observation]) -> None:
        """Send a batch of observations."""
        body = {"observations": _OBSERVATIONS.dump_python(observations, mode="json")}
        await self._call(
            "POST", f"/internal/v1/hosts/{quote(hostname, safe='')}/observations", json=body
        )

    async def files(self, hostname: str, uuid: str) -> list[InjectedFile]:
        """The files (content included) to write into container ``uuid`` when creating it."""
        host, container = quote(hostname, safe=""), quote(uuid, safe="")
        response = await self._call(
            "GET", f"/internal/v1/hosts/{host}/containers/{container}/files"
        )
        return _FILES.validate_python(response.json().get("files", []))

    async def glance_data(self, hostname: str, uuid: str) -> AsyncIterator[bytes]:
        """The data of container ``uuid``'s Glance image, streamed through the control plane."""
        host, container = quote(hostname, safe=""), quote(uuid, safe="")
        path = f"/internal/v1/hosts/{host}/containers/{container}/glance-data"
        token = await self._tokens.get(self._authenticate)
        try:
            async with self._http.stream("GET", path, headers={"X-Auth-Token": token}) as r:
                if r.status_code >= 400:
                    text = (await r.aread()).decode(errors="replace")
                    raise ControlPlaneError(
                        f"GET {path} answered {r.status_code}: {text[:300]}", r.status_code
                    )
                async for chunk in r.aiter_bytes(1 << 16):
                    yield chunk
        except httpx.HTTPError as exc:
            raise ControlPlaneError(
                f"GET {path} failed: {exc!r}", unreachable=_unreachable(exc)
            ) from exc

    async def _call(
        self, method: str, path: str, *, read_timeout: float | None = None, **kwargs: Any
    ) -> httpx.Response:
        token = await self._tokens.get(self._authenticate)
        response = await self._send(method, path, token, read_timeout, **kwargs)
        if response.status_code == 401:
            token = await self._tokens.get(self._authenticate, stale=token)
            response = await self._send(method, path, token, read_timeout, **kwargs)
        if response.status_code >= 400:
            raise ControlPlaneError(
                f"{method} {path} answered {response.status_code}: {response.text[:300]}",
                response.status_code,
            )
        return response

    async def _send(
        self, method: str, path: str, token: str, read_timeout: float | None, **kwargs: Any
    ) -> httpx.Response:
        extra: dict[str, Any] = {} if read_timeout is None else {"timeout": read_timeout}
        try:
            return await self._http.request(
                method, path, headers={"X-Auth-Token": token}, **kwargs, **extra
            )
        except httpx.HTTPError as exc:
            raise ControlPlaneError(
                f"{method} {path} failed: {exc!r}", unreachable=_unreachable(exc)
            ) from exc

    async def _authenticate(self) -> str:
        try:
            response = await self._http.post(self._auth_url, json=self._auth_body)
        except httpx.HTTPError as exc:
            raise ControlPlaneError(
                f"authentication failed: {exc!r}", unreachable=_unreachable(exc)
            ) from exc
        token: str | None = response.headers.get("X-Subject-Token")
        if response.status_code not in (200, 201) or not token:
            raise ControlPlaneError(
                f"authentication as the agent service user was refused "
                f"({response.status_code}): {response.text[:300]}",
                response.status_code,
            )
        return token
