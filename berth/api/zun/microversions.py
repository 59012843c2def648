"""Zun microversions as data: parsing, negotiation, and the headers on every /v1 response.

``ZunPathMiddleware`` also applies Zun's routing quirks: a path under the
container API that does not start with ``v1`` is served as if it did (the
bookmark links), ``/v1/...`` at the root is the container API (the ``next``
links the stock client follows), and trailing slashes are ignored.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import total_ordering

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["MAX_VERSION", "MIN_VERSION", "APIVersion", "ZunPathMiddleware", "parse_header"]

PREFIX = "/container"
_VALUE = re.compile(r"^([1-9]\d*)\.(0|[1-9]\d*)$")


@total_ordering
@dataclass(frozen=True, slots=True)
class APIVersion:
    major: int
    minor: int

    @classmethod
    def parse(cls, text: str) -> APIVersion:
        m = _VALUE.match(text)
        if not m:
            raise ValueError(text)
        return cls(int(m.group(1)), int(m.group(2)))

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, APIVersion):
            return NotImplemented
        return (self.major, self.minor) < (other.major, other.minor)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"


MIN_VERSION = APIVersion(1, 1)
MAX_VERSION = APIVersion(1, 40)


class VersionError(Exception):
    def __init__(self, message: str, unsupported: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.unsupported = unsupported


def parse_header(value: str | None) -> APIVersion:
    """The version asked for by ``OpenStack-API-Version``; 1.1 when absent."""
    if value is None:
        return MIN_VERSION
    parts = value.split()
    if len(parts) != 2 or parts[0].lower() != "container":
        raise VersionError("Invalid service type/value for OpenStack-API-Version header")
    if parts[1].lower() == "latest":
        return MAX_VERSION
    try:
        version = APIVersion.parse(parts[1])
    except ValueError:
        raise VersionError("Invalid service type/value for OpenStack-API-Version header") from None
    if version.major != 1 or not MIN_VERSION <= version <= MAX_VERSION:
        raise VersionError(
            f"Version {version} was requested but the minor version is not supported by this "
            f"service. The supported version range is: [{MIN_VERSION}, {MAX_VERSION}].",
            unsupported=True,
        )
    return version


def _rewrite(path: str) -> str | None:
    """The canonical container-API path for ``path``, or None if it is not ours."""
    if path == "/v1" or path.startswith("/v1/"):
        path = PREFIX + path
    elif not (path == PREFIX or path.startswith(PREFIX + "/")):
        return None
    rest = path[len(PREFIX) :].strip("/")
    if rest.endswith(".json"):
        rest = rest[: -len(".json")]
    if rest and rest != "v1" and not rest.startswith("v1/"):
        rest = "v1/" + rest
    return PREFIX + ("/" + rest if rest else "")


class ZunPathMiddleware:
    """Normalises container-API paths and negotiates the microversion for ``/container/v1``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = _rewrite(scope["path"])
        if path is None:
            await self.app(scope, receive, send)
            return
        scope = dict(scope, path=path, raw_path=path.encode())
        if path == PREFIX:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        raw = headers.get(b"openstack-api-version")
        try:
            version = parse_header(raw.decode("latin-1") if raw is not None else None)
        except VersionError as exc:
            await _send_406(scope, send, exc)
            return
        scope.setdefault("state", {})["zun_version"] = version
        extra = [
            (b"openstack-api-minimum-version", f"container {MIN_VERSION}".encode()),
            (b"openstack-api-maximum-version", f"container {MAX_VERSION}".encode()),
            (b"openstack-api-version", f"container {version}".encode()),
            (b"vary", b"OpenStack-API-Version"),
        ]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _send_406(scope: Scope, send: Send, exc: VersionError) -> None:
    error: dict[str, object] = {
        "request_id": scope.get("state", {}).get("request_id", ""),
        "code": "container.microversion-unsupported" if exc.unsupported else "container.",
        "status": 406,
        "title": "Requested microversion is unsupported" if exc.unsupported else "Not Acceptable",
        "detail": exc.message,
        "links": [],
    }
    if exc.unsupported:
        error["max_version"] = str(MAX_VERSION)
        error["min_version"] = str(MIN_VERSION)
    body = json.dumps({"errors": [error]}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 406,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"openstack-api-minimum-version", f"container {MIN_VERSION}".encode()),
                (b"openstack-api-maximum-version", f"container {MAX_VERSION}".encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
