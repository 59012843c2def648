"""The websocket of interactive sessions: ``/container/v1/ws?token=…&uuid=…[&exec_id=…]``.

This is Zun's ``zun-wsproxy``, served by the API itself. The handshake is what
the stock client (websocket-client) insists on: it offers the subprotocols
``binary, base64`` and aborts unless the answer names one, so ``binary`` is
chosen (``base64`` only when it is all a client offers: frames are then base64
text). An ``Origin`` header, when sent, must name the host the client
connected to (the ``Host`` header), the public URL's host or one of
``stream_allowed_origins``. The token (see ``services.streams``) is spent
before the handshake completes; a refusal is an HTTP error status, never an
accepted socket. Then bytes flow both ways between the client and the
agent's session, until either ends or the session idles out.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
from urllib.parse import urlsplit

from fastapi import APIRouter, WebSocket
from starlette.responses import JSONResponse

from berth import errors
from berth.api.errors import status_of
from berth.api.state import AppState
from berth.config import Settings
from berth.pipes import LineEscape, Utf8Aligned, splice
from berth.services.containers import streams
from berth.services.hosts.agent_streams import AgentSession

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter()


def _check_origin(ws: WebSocket, settings: Settings) -> None:
    origin = ws.headers.get("origin")
    if origin is None:
        return  # not a browser: nothing to protect against
    allowed = {
        urlsplit(f"//{ws.headers.get('host', '')}").hostname,
        urlsplit(settings.effective_public_url).hostname,
        *settings.stream_allowed_origins,
    }
    if urlsplit(origin).hostname not in allowed - {None}:
        raise errors.Forbidden(f"Origin {origin} may not open sessions on this host.")


class _Client:
    """The user's websocket as a ByteStream (base64 text frames under that subprotocol).

    Reading ends at the client's escape ``~.`` (see ``LineEscape``).
    """

    def __init__(self, ws: WebSocket, text: bool) -> None:
        self._ws = ws
        self._text = text
        self._escape = LineEscape()
        self.escaped = False

    async def read(self) -> bytes:
        while not self.escaped:
            message = await self._ws.receive()
            if message["type"] == "websocket.disconnect":
                return b""
            data = message.get("bytes")
            if data is None:
                text = str(message.get("text") or "")
                try:
                    data = base64.b64decode(text) if self._text else text.encode()
                except (binascii.Error, ValueError):
                    continue  # not base64: nothing a process could use
            data, self.escaped = self._escape.feed(bytes(data))
            if data:
                return data
        return b""

    async def write(self, data: bytes) -> None:
        if self._text:
            await self._ws.send_text(base64.b64encode(data).decode())
        else:
            await self._ws.send_bytes(data)


async def _refuse(ws: WebSocket, exc: errors.BerthError) -> None:
    status = status_of(exc)
    log.info("websocket session refused (%s): %s", status, exc.message)
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        body = {"error": {"code": status, "title": errors.error_code(exc), "message": exc.message}}
        await ws.send_denial_response(JSONResponse(body, status_code=status))
    else:
        await ws.close(code=1008)


@router.websocket("/v1/ws")
async def session(ws: WebSocket) -> None:
    """Join the caller to the exec or attach session its token was issued for."""
    state: AppState = ws.app.state.berth
    query = ws.query_params
    with contextlib.ExitStack() as held:
        try:
            _check_origin(ws, state.settings)
            target = await streams.redeem(
                state.env, query.get("token", ""), query.get("uuid", ""), query.get("exec_id")
            )
            held.enter_context(streams.stream_slot(state.env.settings, target.project_id))
            agent = await streams.connect(state.env, target)
        except errors.BerthError as exc:
            await _refuse(ws, exc)
            return
        await _join(ws, state, target, agent)


async def _join(
    ws: WebSocket, state: AppState, target: streams.SessionTarget, agent: AgentSession
) -> None:
    offered = ws.scope.get("subprotocols") or []
    chosen = "binary" if "binary" in offered else "base64" if "base64" in offered else None
    ending = "client left"
    try:
        await ws.accept(subprotocol=chosen)
        why = await splice(
            _Client(ws, text=chosen == "base64"),
            Utf8Aligned(agent),
            idle=state.settings.stream_idle_timeout,
        )
        ending = {"a": "client left", "b": "process ended", "idle": "idle timeout"}[why]
    except Exception as exc:  # the client vanished mid-handshake, say: end quietly
        log.info("%s session on container %s failed: %r", target.kind, target.container_uuid, exc)
    finally:
        await agent.close()
        with contextlib.suppress(Exception):
            await ws.close(code=1001 if ending == "idle timeout" else 1000)
    log.info("%s session on container %s ended (%s)", target.kind, target.container_uuid, ending)
