"""Magnum microversions as data, and the path quirks of the cluster API (an ASGI middleware).

Under ``/container-infra`` a first path segment that is not ``v1`` gets ``v1``
prepended (bookmark links), trailing slashes and ``.json`` are ignored, and
every ``/v1`` request negotiates ``OpenStack-API-Version: container-infra X.Y``
(or ``latest``; no header means 1.1) and answers with the four version headers.
"""

from __future__ import annotations

import json
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from berth.api.zun.microversions import APIVersion

__all__ = [
    "MAX_VERSION",
    "MIN_VERSION",
    "PREFIX",
    "SERVICE",
    "MagnumPathMiddleware",
    "VersionError",
    "parse_header",
]

PREFIX: Final = "/container-infra"
SERVICE: Final = "container-infrastructure-management"
_ALIASES: Final = frozenset({SERVICE, "container-infrastructure", "container-infra"})
MIN_VERSION: Final = APIVersion(1, 1)
# Released Magnum (2025.2/2026.1) stops at 1.12; master adds 1.13 (``cluster_id`` replaces
# ``stack_id`` in cluster bodies) and 1.14 (nodegroup labels/taints). We serve both, as
# the spec's checklist asks; the stock client normalises stack_id/cluster_id itself.
MAX_VERSION: Final = APIVersion(1, 14)


class VersionError(Exception):
    """The header is malformed (``unsupported`` False) or names a version we do not serve."""

    def __init__(self, message: str, unsupported: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.unsupported = unsupported


def parse_header(value: str | None) -> APIVersion:
    """The version asked for by ``OpenStack-API-Version``; 1.1 when absent."""
    if value is None:
        return MIN_VERSION
    parts = value.split()
    if len(parts) != 2 or parts[0].lower() not in _ALIASES:
        raise VersionError("Invalid service type for OpenStack-API-Version header")
    if parts[1].lower() == "latest":
        return MAX_VERSION
    try:
        version = APIVersion.parse(parts[1])
    except ValueError:
        raise VersionError("Invalid value for OpenStack-API-Version header") from None
    if version.major != 1 or not MIN_VERSION <= version <= MAX_VERSION:
        raise VersionError(
            f"Version {version} was requested but the minor version is not supported by this "
            f"service. The supported version range is: [{MIN_VERSION}, {MAX_VERSION}].",
            unsupported=True,
        )
    return version


def canonical_path(path: str) -> str | None:
    """The canonical cluster-API path for ``path``, or None if it is not ours."""
    if not (path == PREFIX or path.startswith(PREFIX + "/")):
        return None
    rest = path[len(PREFIX) :].strip("/")
    if rest.endswith(".json"):
        rest = rest[: -len(".json")]
    if rest and rest != "v1" and not rest.startswith("v1/"):
        rest = "v1/" + rest
    return PREFIX + ("/" + rest if rest else "")


def _headers(version: APIVersion | None) -> list[tuple[bytes, bytes]]:
    out = [
        (b"openstack-api-minimum-version", f"{SERVICE} {MIN_VERSION}".encode()),
        (b"openstack-api-maximum-version", f"{SERVICE} {MAX_VERSION}".encode()),
        (b"vary", b"OpenStack-API-Version"),
    ]
    if version is not None:
        out.append((b"openstack-api-version", f"{SERVICE} {version}".encode()))
    return out


class MagnumPathMiddleware:
    """Normalises cluster-API paths and negotiates the microversion for ``/container-infra/v1``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = canonical_path(scope["path"]) if scope["type"] == "http" else None
        if path is None:
            await self.app(scope, receive, send)
            return
        scope = dict(scope, path=path, raw_path=path.encode())
        if path == PREFIX:
            await self.app(scope, receive, send)
            return
        raw = dict(scope.get("headers") or []).get(b"openstack-api-version")
        try:
            version = parse_header(raw.decode("latin-1") if raw is not None else None)
        except VersionError as exc:
            await _send_406(scope, send, exc)
            return
        scope.setdefault("state", {})["magnum_version"] = version
        extra = _headers(version)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _send_406(scope: Scope, send: Send, exc: VersionError) -> None:
    error: dict[str, object] = {
        "request_id": scope.get("state", {}).get("request_id", ""),
        "code": "magnum.microversion-unsupported" if exc.unsupported else "client",
        "status": 406,
        "title": "Requested microversion is unsupported" if exc.unsupported else exc.message,
        "detail": exc.message,
        "links": [],
    }
    if exc.unsupported:
        error["max_version"] = str(MAX_VERSION)
        error["min_version"] = str(MIN_VERSION)
        error["links"] = [
            {
                "rel": "help",
                "href": "https://docs.openstack.org/api-guide/compute/microversions.html",
            }
        ]
    body = json.dumps({"errors": [error]}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *_headers(None),
    ]
    await send({"type": "http.response.start", "status": 406, "headers": headers})
    await send({"type": "http.response.body", "body": body})
