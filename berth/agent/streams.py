"""The agent's streaming routes: exec and attach sessions, TTY resizes, log following.

Session protocol (the API's websocket to the agent; ``Authorization: Bearer
<key>`` as on every route): the agent accepts, opens the engine session, then
sends one text frame ``ready`` — or closes with code 4000 + the HTTP status of
the error and its message as the reason. After ``ready`` every frame is raw
bytes, both ways. A session ends when either side closes or nothing moved for
``idle`` seconds (a query parameter: the API's own limit plus a margin, so
the agent never keeps an engine session the API forgot); the agent then
closes the engine session, which hangs an exec up.

``GET …/logs/follow`` streams ``text/plain`` until the container stops or the
caller leaves (then the engine stream is closed).
"""

from __future__ import annotations

import contextlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, WebSocket
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask

from berth import errors
from berth.pipes import splice
from berth.runtimes.base import RuntimeDriver
from berth.runtimes.streams import Duplex

__all__ = ["ExecCreateRequest", "ResizeRequest", "add_stream_routes", "close_code"]

log = logging.getLogger(__name__)

_IDLE_DEFAULT = 900.0
_IDLE_MAX = 86400.0


class ExecCreateRequest(BaseModel):
    """An interactive exec: ``command`` (argv) with stdin open, on a TTY if ``tty``."""

    command: list[str] = Field(min_length=1)
    tty: bool = True


class ResizeRequest(BaseModel):
    """A TTY size in character cells."""

    height: int = Field(gt=0, le=10000)
    width: int = Field(gt=0, le=10000)


def close_code(exc: errors.BerthError) -> int:
    """The websocket close code carrying ``exc``: 4000 + its HTTP status."""
    for cls, status in (
        (errors.Invalid, 400),
        (errors.NotFound, 404),
        (errors.Conflict, 409),
    ):
        if isinstance(exc, cls):
            return 4000 + status
    return 4503


class _Socket:
    """A Starlette websocket as a ByteStream."""

    def __init__(self, ws: WebSocket) -> None:
        self._ws = ws

    async def read(self) -> bytes:
        message = await self._ws.receive()
        if message["type"] == "websocket.disconnect":
            return b""
        data = message.get("bytes")
        return data if data is not None else str(message.get("text") or "").encode()

    async def write(self, data: bytes) -> None:
        await self._ws.send_bytes(data)


async def _serve(ws: WebSocket, api_key: str, opener: Callable[[], Awaitable[Duplex]]) -> None:
    given = (ws.headers.get("authorization") or "").encode()
    if not hmac.compare_digest(given, f"Bearer {api_key}".encode()):
        await ws.close(code=1008)
        return
    try:
        idle = min(max(float(ws.query_params.get("idle") or _IDLE_DEFAULT), 1.0), _IDLE_MAX)
    except ValueError:
        idle = _IDLE_DEFAULT
    await ws.accept()
    try:
        session = await opener()
    except errors.BerthError as exc:
        await ws.close(code=close_code(exc), reason=exc.message[:120])
        return
    try:
        await ws.send_text("ready")
        ending = await splice(_Socket(ws), session, idle=idle)
        log.info("session on %s ended (%s)", ws.url.path, ending)
    except Exception as exc:  # the API went away before the session started
        log.info("session on %s ended early: %r", ws.url.path, exc)
    finally:
        await session.close()
        with contextlib.suppress(Exception):
            await ws.close()


def add_stream_routes(
    app: FastAPI, runtime: RuntimeDriver, api_key: str, guarded: list[Any]
) -> None:
    """Add the session websockets, resizes and log following to the agent ``app``."""

    @app.post("/v1/containers/{uuid}/exec", dependencies=guarded)
    async def exec_create(uuid: str, body: ExecCreateRequest) -> dict[str, str]:
        return {"exec_id": await runtime.exec_create(uuid, body.command, tty=body.tty)}

    @app.post("/v1/containers/{uuid}/exec/{exec_id}/resize", dependencies=guarded)
    async def exec_resize(uuid: str, exec_id: str, body: ResizeRequest) -> dict[str, int]:
        await runtime.exec_resize(uuid, exec_id, body.height, body.width)
        return {"height": body.height, "width": body.width}

    @app.post("/v1/containers/{uuid}/resize", dependencies=guarded)
    async def resize(uuid: str, body: ResizeRequest) -> dict[str, int]:
        await runtime.resize(uuid, body.height, body.width)
        return {"height": body.height, "width": body.width}

    @app.get("/v1/containers/{uuid}/logs/follow", dependencies=guarded)
    async def follow(
        uuid: str,
        stdout: bool = True,
        stderr: bool = True,
        timestamps: bool = False,
        tail: str | None = None,
        since: str | None = None,
    ) -> StreamingResponse:
        from berth.agent.server import parse_since, parse_tail  # server imports this module

        stream = await runtime.follow_logs(
            uuid,
            stdout=stdout,
            stderr=stderr,
            timestamps=timestamps,
            tail=parse_tail(tail),
            since=parse_since(since),
        )
        return StreamingResponse(
            stream,
            media_type="text/plain; charset=utf-8",
            background=BackgroundTask(stream.aclose),
        )

    @app.websocket("/v1/containers/{uuid}/attach")
    async def attach(ws: WebSocket, uuid: str) -> None:
        await _serve(ws, api_key, lambda: runtime.attach(uuid))

    @app.websocket("/v1/containers/{uuid}/exec/{exec_id}")
    async def exec_session(ws: WebSocket, uuid: str, exec_id: str) -> None:
        await _serve(ws, api_key, lambda: runtime.exec_open(uuid, exec_id))
