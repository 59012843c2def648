"""Zun microversions: ``OpenStack-API-Version: container X.Y``, 1.1 to 1.40.

``ZunPathMiddleware`` also applies Zun's routing quirks: a path under the
container API that does not start with ``v1`` is served as if it did (the
bookmark links), ``/v1/...`` at the root is the container API (the ``next``
links the stock client follows), and trailing slashes are ignored. The
machinery is shared with Magnum's API (``berth.api.microversions``).
"""

from __future__ import annotations

from starlette.requests import Request

from berth import errors
from berth.api.microversions import APIVersion, PathMiddleware, Service, VersionError

__all__ = [
    "MAX_VERSION",
    "MIN_VERSION",
    "ZUN",
    "APIVersion",
    "VersionError",
    "ZunPathMiddleware",
    "parse_header",
    "require",
    "version_of",
]

PREFIX = "/container"
MIN_VERSION = APIVersion(1, 1)
MAX_VERSION = APIVersion(1, 40)
_BAD = "Invalid service type/value for OpenStack-API-Version header"

ZUN = Service(
    name="container",
    aliases=frozenset({"container"}),
    minimum=MIN_VERSION,
    maximum=MAX_VERSION,
    prefix=PREFIX,
    state_key="zun_version",
    bad_type=_BAD,
    bad_value=_BAD,
    unsupported_code="container.microversion-unsupported",
    invalid_code="container.",
    invalid_title="Not Acceptable",
    root_v1=True,
)


def parse_header(value: str | None) -> APIVersion:
    """The version asked for by ``OpenStack-API-Version``; 1.1 when absent."""
    return ZUN.parse(value)


class ZunPathMiddleware(PathMiddleware):
    """Normalises container-API paths and negotiates the microversion for ``/container/v1``."""

    service = ZUN


def version_of(request: Request) -> APIVersion:
    """The microversion ``ZunPathMiddleware`` negotiated for ``request``."""
    version: APIVersion = request.state.zun_version
    return version


def require(request: Request, since: APIVersion, what: str) -> APIVersion:
    """The request's version, or 406 (Zun's ``NotAcceptable``) if it is below ``since``."""
    version = version_of(request)
    if version < since:
        raise errors.NotAcceptable(
            f"Version {version} was requested but the requested API is not supported for this "
            f"version: {what} needs {since} or later."
        )
    return version
