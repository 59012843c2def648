"""Streaming connections to the agent of a host: websocket sessions and followed responses.

An agent embedded in this process (``AgentCalls.local``, an ASGI app) is
reached in memory (``asgi_memory``); any other over the network at its
registered URL (``websockets`` for sessions, httpx for streamed responses).
Both present the same objects, so the use cases never know which it was.
See ``berth.agent.streams`` for the session protocol.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlencode

import httpx
import websockets
from websockets.asyncio.client import ClientConnection, connect

from berth import errors
from berth.services.hosts.agents import AgentCalls, error_for
from berth.services.hosts.asgi_memory import MemoryResponse, MemoryWebSocket

__all__ = ["AgentSession", "AgentStream", "open_session", "open_stream"]

_OPEN_TIMEOUT = 15.0


def _memory_app(agents: AgentCalls, hostname: str) -> Any:
    transport = agents.local.get(hostname)
    return transport.app if isinstance(transport, httpx.ASGITransport) else None


def _unreachable(hostname: str, exc: BaseException) -> errors.HostUnavailable:
    return errors.HostUnavailable(
        f"The agent on host {hostname} did not answer ({exc.__class__.__name__}); "
        "check that berth-agent runs there."
    )


class AgentSession:
    """An open session with a process through an agent: a ByteStream plus ``close``."""

    def __init__(self, memory: MemoryWebSocket | None, remote: ClientConnection | None) -> None:
        self._memory = memory
        self._remote = remote

    async def _next(self) -> bytes | str | None:
        if self._memory is not None:
            return await self._memory.receive()
        assert self._remote is not None
        try:
            return await self._remote.recv()
        except websockets.ConnectionClosed:
            return None

    def _close_info(self) -> tuple[int, str]:
        if self._memory is not None:
            return self._memory.close_code or 1006, self._memory.close_reason
        if self._remote is None or self._remote.close_code is None:
            return 1006, ""
        return self._remote.close_code, self._remote.close_reason or ""

    async def wait_ready(self, hostname: str) -> None:
        """Wait for the agent's ``ready``; raise the agent's error if it closed instead."""
        first = await self._next()
        if first == "ready":
            return
        await self.close()
        code, reason = self._close_info()
        if 4000 <= code < 5000:
            raise error_for(code - 4000, reason or "the session could not start", hostname)
        raise errors.HostUnavailable(
            f"The agent on host {hostname} closed the session before it started ({code})."
        )

    async def read(self) -> bytes:
        """The process's next output; ``b""`` once the session ended."""
        data = await self._next()
        if data is None:
            return b""
        return data if isinstance(data, bytes) else data.encode()

    async def write(self, data: bytes) -> None:
        """Send input to the process."""
        if self._memory is not None:
            await self._memory.send(data)
        elif self._remote is not None:
            await self._remote.send(data)

    async def close(self) -> None:
        """End the session (the agent then closes the engine side)."""
        if self._memory is not None:
            await self._memory.close()
        elif self._remote is not None:
            with contextlib.suppress(Exception):
                await self._remote.close()


async def open_session(
    agents: AgentCalls, hostname: str, agent_url: str | None, path: str, *, idle: float
) -> AgentSession:
    """Open the agent websocket at ``path`` and wait until the engine session is up."""
    query = urlencode({"idle": f"{idle:g}"})
    auth = {"Authorization": f"Bearer {agents.api_key}"}
    app = _memory_app(agents, hostname)
    if app is not None:
        memory = MemoryWebSocket(app, path, query, auth)
        session = AgentSession(memory, None)
        if not await memory.connect():
            await memory.close()
            raise errors.HostUnavailable(f"The agent on host {hostname} refused the session.")
    else:
        if agent_url is None:
            raise errors.HostUnavailable(f"Host {hostname} has no agent address registered.")
        url = agent_url.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        try:
            remote = await connect(
                f"{url}{path}?{query}",
                additional_headers=auth,
                max_size=None,
                open_timeout=_OPEN_TIMEOUT,
            )
        except (OSError, TimeoutError, websockets.WebSocketException) as exc:
            raise _unreachable(hostname, exc) from exc
        session = AgentSession(None, remote)
    await session.wait_ready(hostname)
    return session


class AgentStream:
    """A streamed agent response (logs follow): ``chunks`` until the end, then ``aclose``."""

    def __init__(self) -> None:
        self._memory: MemoryResponse | None = None
        self._client: httpx.AsyncClient | None = None
        self._response: httpx.Response | None = None
        self._ended: list[Callable[[], None]] = []

    def when_ended(self, then: Callable[[], None]) -> None:
        """Call ``then`` once, when the body has ended or the stream is closed."""
        self._ended.append(then)

    def _end(self) -> None:
        ended, self._ended = self._ended, []
        for then in ended:
            then()

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives (ends when the agent ends it or the connection drops)."""
        try:
            if self._memory is not None:
                async for chunk in self._memory.body():
                    yield chunk
            elif self._response is not None:
                async for chunk in self._response.aiter_raw():
                    yield chunk
        except httpx.HTTPError:
            return  # the agent went away: the stream simply ends
        finally:
            self._end()

    async def aclose(self) -> None:
        """Stop reading; the agent sees the caller leave and closes the engine stream."""
        self._end()
        if self._memory is not None:
            await self._memory.close()
        if self._response is not None:
            await self._response.aclose()
        if self._client is not None:
            await self._client.aclose()


async def open_stream(
    agents: AgentCalls, hostname: str, agent_url: str | None, path: str, params: dict[str, Any]
) -> AgentStream:
    """Start ``GET path`` on the agent; its error (as a domain error) if it answered one."""
    stream = AgentStream()
    auth = {"Authorization": f"Bearer {agents.api_key}"}
    app = _memory_app(agents, hostname)
    if app is not None:
        stream._memory = MemoryResponse(app, "GET", path, urlencode(params), auth)
        await stream._memory.start()
        status = stream._memory.status
    else:
        if agent_url is None:
            raise errors.HostUnavailable(f"Host {hostname} has no agent address registered.")
        timeout = httpx.Timeout(30.0, read=None)  # a followed log may be silent for hours
        client = httpx.AsyncClient(base_url=agent_url, headers=auth, timeout=timeout)
        stream._client = client
        try:
            request = client.build_request("GET", path, params=params)
            stream._response = await client.send(request, stream=True)
        except httpx.HTTPError as exc:
            await stream.aclose()
            raise _unreachable(hostname, exc) from exc
        status = stream._response.status_code
    if status >= 400:
        body = b"".join([chunk async for chunk in stream.chunks()])
        await stream.aclose()
        raise error_for(status, _message(body, status), hostname)
    return stream


def _message(body: bytes, status: int) -> str:
    try:
        return str(json.loads(body)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return body.decode(errors="replace") or f"status {status}"
