"""Talking to an ASGI app in memory: a websocket, or an HTTP response read as it streams.

httpx's ASGITransport answers only once the app has finished (a log that
follows a container never does) and has no websockets. The all-in-one API
reaches its embedded agent's app with these instead: the same routes and code
paths as over the network, without a socket. Both apply backpressure both
ways: the app waits while the reader is behind, and a websocket's ``send``
waits while the app is behind on its input (a process that does not read its
stdin must not let a tenant's input pile up in the API process).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.types import ASGIApp, Message

__all__ = ["MemoryResponse", "MemoryWebSocket"]

log = logging.getLogger(__name__)

_DEPTH = 16  # messages in flight before the app waits for the reader
_CLOSE_WAIT = 5.0


def _scope(kind: str, path: str, query: str, headers: dict[str, str]) -> dict[str, Any]:
    all_headers = {"host": "agent", **headers}
    scope: dict[str, Any] = {
        "type": kind,
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "scheme": "ws" if kind == "websocket" else "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": [(k.lower().encode(), v.encode()) for k, v in all_headers.items()],
        "client": ("127.0.0.1", 0),
        "server": ("agent", 80),
        "state": {},
        "extensions": {},
    }
    if kind == "websocket":
        scope["subprotocols"] = []
    return scope


class _Channel:
    """The app's messages to us: a bounded queue plus an "app finished" flag."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Message] = asyncio.Queue(_DEPTH)
        self.finished = asyncio.Event()

    async def get(self) -> Message | None:
        """The next message; None once the app finished and everything was read."""
        while True:
            with contextlib.suppress(asyncio.QueueEmpty):
                return self.queue.get_nowait()
            if self.finished.is_set():
                return None
            getter = asyncio.ensure_future(self.queue.get())
            ender = asyncio.ensure_future(self.finished.wait())
            done, _ = await asyncio.wait({getter, ender}, return_when=asyncio.FIRST_COMPLETED)
            ender.cancel()
            if getter in done:
                return getter.result()
            getter.cancel()


async def _run(app: ASGIApp, scope: dict[str, Any], receive: Any, send: Any, out: _Channel) -> None:
    try:
        await app(scope, receive, send)
    except Exception:
        log.exception("in-memory %s %s failed", scope["type"], scope["path"])
    finally:
        out.finished.set()


class MemoryWebSocket:
    """A websocket client of ``app``, in memory. ``connect`` first; then send/receive."""

    def __init__(
        self,
        app: ASGIApp,
        path: str,
        query: str,
        headers: dict[str, str],
        subprotocols: list[str] | None = None,
    ) -> None:
        self._scope = _scope("websocket", path, query, headers)
        self._scope["subprotocols"] = list(subprotocols or [])
        self.subprotocol: str | None = None
        self._app = app
        self._in: asyncio.Queue[Message] = asyncio.Queue(_DEPTH)
        self._out = _Channel()
        self._task: asyncio.Task[None] | None = None
        self.close_code: int | None = None
        self.close_reason = ""

    async def connect(self) -> bool:
        """Run the handshake: True if the app accepted (else see ``close_code``)."""
        self._in.put_nowait({"type": "websocket.connect"})
        self._task = asyncio.create_task(
            _run(self._app, self._scope, self._in.get, self._out.queue.put, self._out)
        )
        message = await self._out.get()
        if message is not None and message["type"] == "websocket.accept":
            self.subprotocol = message.get("subprotocol")
            return True
        self._closed_by(message)
        return False

    def _closed_by(self, message: Message | None) -> None:
        if self.close_code is None:
            code = message.get("code") if message and message["type"] == "websocket.close" else None
            self.close_code = int(code) if code is not None else 1006
            self.close_reason = str((message or {}).get("reason") or "")

    async def receive(self) -> bytes | str | None:
        """The next frame from the app; None once it closed (``close_code`` says how)."""
        if self.close_code is not None:
            return None
        message = await self._out.get()
        if message is not None and message["type"] == "websocket.send":
            data = message.get("bytes")
            return data if data is not None else str(message.get("text") or "")
        self._closed_by(message)
        return None

    async def send(self, data: bytes) -> None:
        """Send a binary frame to the app (dropped once closed).

        Waits while the app has ``_DEPTH`` frames it has not taken yet; returns
        (the frame dropped) if the app finishes meanwhile.
        """
        if self.close_code is not None:
            return
        message: Message = {"type": "websocket.receive", "bytes": data}
        with contextlib.suppress(asyncio.QueueFull):
            self._in.put_nowait(message)
            return
        put = asyncio.ensure_future(self._in.put(message))
        ended = asyncio.ensure_future(self._out.finished.wait())
        try:
            await asyncio.wait({put, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
            put.cancel()

    async def close(self) -> None:
        """Disconnect and wait (briefly) for the app to finish its cleanup."""
        if self.close_code is None:
            self.close_code = 1000
        while True:  # input the app has not taken is moot now: make room for the goodbye
            try:
                self._in.put_nowait({"type": "websocket.disconnect", "code": 1000})
                break
            except asyncio.QueueFull:
                self._in.get_nowait()
        await _finish(self._task, self._out)


async def _finish(task: asyncio.Task[None] | None, out: _Channel) -> None:
    """Wait for the app to end, draining what it still sends; cancel it after a while."""
    if task is None:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _CLOSE_WAIT
    while not task.done() and loop.time() < deadline:
        with contextlib.suppress(asyncio.QueueEmpty):
            while True:  # an app blocked on a full queue must get to its cleanup
                out.queue.get_nowait()
        await asyncio.wait({task}, timeout=0.05)
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class MemoryResponse:
    """An HTTP request to ``app`` whose response body is read while the app writes it."""

    def __init__(
        self, app: ASGIApp, method: str, path: str, query: str, headers: dict[str, str]
    ) -> None:
        self._scope = _scope("http", path, query, headers)
        self._scope["method"] = method
        self._app = app
        self._out = _Channel()
        self._left = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sent_request = False
        self.status = 0
        self.headers: dict[str, str] = {}

    async def _receive(self) -> Message:
        if not self._sent_request:
            self._sent_request = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self._left.wait()
        return {"type": "http.disconnect"}

    async def start(self) -> None:
        """Send the request and wait for the status line and headers."""
        self._task = asyncio.create_task(
            _run(self._app, self._scope, self._receive, self._out.queue.put, self._out)
        )
        message = await self._out.get()
        if message is None or message["type"] != "http.response.start":
            self.status = 500
            return
        self.status = int(message["status"])
        self.headers = {k.decode().lower(): v.decode() for k, v in message.get("headers", [])}

    async def body(self) -> AsyncIterator[bytes]:
        """The body chunks as the app sends them."""
        while (message := await self._out.get()) is not None:
            if message["type"] != "http.response.body":
                continue
            if message.get("body"):
                yield bytes(message["body"])
            if not message.get("more_body", False):
                return

    async def close(self) -> None:
        """Leave: the app sees the client disconnect and stops."""
        self._left.set()
        await _finish(self._task, self._out)
