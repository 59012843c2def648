"""Pure-ASGI middleware: a request id on every request and response; bounded request bodies."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from berth.api.errors import error_response

__all__ = [
    "BodyLimitMiddleware",
    "BodyLimits",
    "JsonDepthScanner",
    "NulRefusingMiddleware",
    "RequestIdMiddleware",
]


class RequestIdMiddleware:
    """Gives each request ``req-<uuid>``, stored in ``scope['state']`` and echoed in
    ``x-openstack-request-id`` (keystone-style services also read ``x-openstack-request-id``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = f"req-{uuid.uuid4()}"
        scope.setdefault("state", {})["request_id"] = rid
        raw = rid.encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-openstack-request-id", raw))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)


class NulRefusingMiddleware:
    """Refuses a NUL character in a request's path or query string (400), in the format
    of the API the request was addressed to.

    No identifier, name, marker or filter of any API holds one, and PostgreSQL
    cannot take one in a text parameter at all: a ``GET /containers/a%00b`` or
    ``?name=a%00b`` reached the query and failed there, a 500 on every lookup and
    list (SQLite answered 404 / an empty list). Refused here once, for every route.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and ("\x00" in scope["path"] or b"%00" in scope["query_string"]):
            response = error_response(
                Request(scope),
                400,
                "The request's path or query string contains a NUL character (%00), "
                "which no identifier, name or filter can hold: remove it.",
                "invalid",
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class JsonDepthScanner:
    """Tracks the bracket nesting of a JSON text fed in chunks, without parsing or recursion.

    Brackets inside strings do not count (escapes are followed across chunk
    boundaries). Anything that is not JSON is scanned the same way: only a
    text with more than ``limit`` unquoted open brackets in a row is refused.
    """

    __slots__ = ("_depth", "_escaped", "_in_string", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._depth = 0
        self._in_string = False
        self._escaped = False

    def feed(self, chunk: bytes) -> bool:
        """Scan ``chunk``; False as soon as the nesting went deeper than the limit."""
        depth, in_string, escaped = self._depth, self._in_string, self._escaped
        for byte in chunk:
            if in_string:
                if escaped:
                    escaped = False
                elif byte == 0x5C:  # backslash
                    escaped = True
                elif byte == 0x22:  # closing quote
                    in_string = False
            elif byte == 0x22:
                in_string = True
            elif byte in (0x5B, 0x7B):  # [ {
                depth += 1
                if depth > self.limit:
                    return False
            elif byte in (0x5D, 0x7D) and depth > 0:  # ] }
                depth -= 1
        self._depth, self._in_string, self._escaped = depth, in_string, escaped
        return True


@dataclass(frozen=True, slots=True)
class BodyLimits:
    """The bounds of request bodies: a default, and the routes with their own size."""

    max_bytes: int
    max_depth: int
    # (method, path pattern, byte limit, whether the body is JSON): routes whose
    # legitimate bodies are bigger than the default; first match wins.
    routes: tuple[tuple[str, re.Pattern[str], int, bool], ...] = ()

    def for_request(self, method: str, path: str) -> tuple[int, bool]:
        """The byte limit of a request and whether its body is scanned as JSON."""
        for route_method, pattern, limit, is_json in self.routes:
            if method == route_method and pattern.fullmatch(path):
                return limit, is_json
        return self.max_bytes, True


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class BodyLimitMiddleware:
    """Refuses bodies over their size (413) and JSON nested too deep (400), before parsing.

    A JSON body is read here, scanned chunk by chunk and handed on only once
    it passed: nothing past the limit is ever held, and no parser (the
    standard library's is recursive) sees a hostile nesting. A body that is
    not JSON (a ``docker save`` upload) streams through, counted: it is
    refused as soon as it crosses its own limit.
    """

    def __init__(self, app: ASGIApp, limits: BodyLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit, is_json = self.limits.for_request(scope["method"], scope["path"])
        too_large = (
            f"The request body is larger than {limit} bytes: send less at once "
            "(the operator sets the limit in the API's settings)."
        )
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await _refuse(scope, receive, send, 413, too_large)
            return
        if not is_json:
            await self._stream(scope, receive, send, limit, too_large)
            return
        scanner = JsonDepthScanner(self.limits.max_depth)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left: let the app see it
                replay = [message]
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _refuse(scope, receive, send, 413, too_large)
                return
            if not scanner.feed(chunk):
                await _refuse(
                    scope,
                    receive,
                    send,
                    400,
                    f"The JSON body nests deeper than {self.limits.max_depth} levels: "
                    "flatten the document.",
                )
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]
                break

        async def replay_then_receive() -> Message:
            return replay.pop(0) if replay else await receive()

        await self.app(scope, replay_then_receive, send)

    async def _stream(
        self, scope: Scope, receive: Receive, send: Send, limit: int, too_large: str
    ) -> None:
        size = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal size
            message = await receive()
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > limit:
                    raise _Refused(413, too_large)
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except _Refused as refused:
            if started:
                raise
            await _refuse(scope, receive, send, refused.status, refused.message)


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, message: str) -> None:
    # Connection: close, so a client still sending the rest of a huge body is not
    # kept reading into a connection that will not serve it.
    response = error_response(
        Request(scope), status, message, "request-too-large" if status == 413 else "invalid-json"
    )
    response.headers["connection"] = "close"
    await response(scope, receive, send)
