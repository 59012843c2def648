"""OpenStack microversions as data, shared by the Zun and Magnum APIs.

One ``Service`` describes an API's microversion rules (its header service type,
range, path prefix and the small differences of its 406 answers); one
``PathMiddleware`` applies them: it normalises the API's paths (a first segment
that is not ``v1`` gets ``v1`` prepended, for bookmark links; trailing slashes
and ``.json`` are ignored), negotiates ``OpenStack-API-Version`` for every
``/v1`` request (no header means the minimum, ``latest`` the maximum whatever
the service type, as both upstreams' ``Version.parse_headers``), stores the
version in ``scope["state"]`` and adds the version headers to the answer.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import total_ordering

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["APIVersion", "PathMiddleware", "Service", "VersionError"]

_VALUE = re.compile(r"^([1-9]\d*)\.(0|[1-9]\d*)$")
_HELP = "https://docs.openstack.org/api-guide/compute/microversions.html"


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


class VersionError(Exception):
    """The header is malformed (``requested`` None) or names a version not served."""

    def __init__(self, message: str, requested: APIVersion | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.requested = requested

    @property
    def unsupported(self) -> bool:
        """True when the header was well formed but names a version outside the range."""
        return self.requested is not None


@dataclass(frozen=True)
class Service:
    """One API's microversion rules, as its stock client expects them."""

    name: str  # the service type in the headers we send
    aliases: frozenset[str]  # service types accepted in the request header
    minimum: APIVersion
    maximum: APIVersion
    prefix: str  # the API's mount point, e.g. "/container"
    state_key: str  # where handlers find the negotiated version
    bad_type: str  # 406 detail for a header naming another service
    bad_value: str  # 406 detail for a version that is not X.Y
    unsupported_code: str
    invalid_code: str
    invalid_title: str | None  # None: the detail is the title too
    help_links: bool = False  # a help link with an unsupported version's 406
    vary_on_406: bool = False
    root_v1: bool = False  # "/v1/..." at the root is this API (Zun's "next" links)

    def parse(self, value: str | None) -> APIVersion:
        """The version asked for by ``OpenStack-API-Version``; the minimum when absent."""
        if value is None:
            return self.minimum
        parts = value.split()
        # Upstream replaces ``<any> latest`` by the maximum before it checks the
        # service type (Magnum's own test_parse_headers_latest sends "magnum latest").
        if len(parts) == 2 and parts[1].lower() == "latest":
            return self.maximum
        if len(parts) != 2 or parts[0].lower() not in self.aliases:
            raise VersionError(self.bad_type)
        try:
            version = APIVersion.parse(parts[1])
        except ValueError:
            raise VersionError(self.bad_value) from None
        low, high = f"{self.name} {self.minimum}", f"{self.name} {self.maximum}"
        served = f"The supported version range is: [{low}, {high}]."
        if version.major != self.maximum.major:
            raise VersionError(
                f"Mutually exclusive versions requested. Version {version} requested but not "
                f"supported by this service. {served}",
                requested=version,
            )
        if not self.minimum <= version <= self.maximum:
            raise VersionError(
                f"Version {version} was requested but the minor version is not supported by "
                f"this service. {served}",
                requested=version,
            )
        return version

    def canonical_path(self, path: str) -> str | None:
        """The canonical path of this API for ``path``, or None if it is not ours."""
        prefix = self.prefix
        if self.root_v1 and (path == "/v1" or path.startswith("/v1/")):
            path = prefix + path
        elif not (path == prefix or path.startswith(prefix + "/")):
            return None
        rest = path[len(prefix) :].strip("/")
        # A stock client following a ``next`` link drops only scheme and host and
        # appends the path to its catalog endpoint (magnumclient's _list_pagination):
        # ``<prefix>/v1<prefix>/v1/...`` means ``<prefix>/v1/...``.
        doubled = "v1" + prefix + "/"
        if rest.startswith(doubled):
            rest = rest[len(doubled) :].strip("/")
        if rest.endswith(".json"):
            rest = rest[: -len(".json")]
        if rest and rest != "v1" and not rest.startswith("v1/"):
            rest = "v1/" + rest
        return prefix + ("/" + rest if rest else "")

    def range_headers(self) -> list[tuple[bytes, bytes]]:
        return [
            (b"openstack-api-minimum-version", f"{self.name} {self.minimum}".encode()),
            (b"openstack-api-maximum-version", f"{self.name} {self.maximum}".encode()),
        ]

    def error_406(
        self, request_id: str, exc: VersionError
    ) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        """The body and headers of the 406 answer to ``exc``."""
        error: dict[str, object] = {
            "request_id": request_id,
            "code": self.unsupported_code if exc.unsupported else self.invalid_code,
            "status": 406,
            "title": (
                "Requested microversion is unsupported"
                if exc.unsupported
                else self.invalid_title or exc.message
            ),
            "detail": exc.message,
            "links": [],
        }
        if exc.unsupported:
            error["max_version"] = str(self.maximum)
            error["min_version"] = str(self.minimum)
            if self.help_links:
                error["links"] = [{"rel": "help", "href": _HELP}]
        body = json.dumps({"errors": [error]}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *self.range_headers(),
        ]
        if exc.requested is not None:
            # Upstream's ``_route`` sets the version headers before ``_check_version``
            # refuses: the 406 names the version that was asked for.
            asked = f"{self.name} {exc.requested}".encode()
            headers.append((b"openstack-api-version", asked))
        if self.vary_on_406:
            headers.append((b"vary", b"OpenStack-API-Version"))
        return body, headers


class PathMiddleware:
    """Normalises one API's paths and negotiates its microversion (see the module)."""

    service: Service

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        service = self.service
        path = service.canonical_path(scope["path"]) if scope["type"] == "http" else None
        if path is None:
            await self.app(scope, receive, send)
            return
        scope = dict(scope, path=path, raw_path=path.encode())
        if path == service.prefix:
            await self.app(scope, receive, send)
            return
        raw = dict(scope.get("headers") or []).get(b"openstack-api-version")
        try:
            version = service.parse(raw.decode("latin-1") if raw is not None else None)
        except VersionError as exc:
            request_id = scope.get("state", {}).get("request_id", "")
            body, headers = service.error_406(request_id, exc)
            await send({"type": "http.response.start", "status": 406, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        scope.setdefault("state", {})[service.state_key] = version
        extra = [
            *service.range_headers(),
            (b"openstack-api-version", f"{service.name} {version}".encode()),
            (b"vary", b"OpenStack-API-Version"),
        ]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)
