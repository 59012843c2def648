"""Magnum microversions: ``OpenStack-API-Version: container-infra X.Y``, 1.1 to 1.14.

Under ``/container-infra`` a first path segment that is not ``v1`` gets ``v1``
prepended (bookmark links), trailing slashes and ``.json`` are ignored, and
every ``/v1`` request negotiates the version (or ``latest``; no header means
1.1) and answers with the four version headers. The machinery is shared with
Zun's API (``berth.api.microversions``). A route served from a later version
calls ``require`` first: Magnum's ``base.Controller.api_version`` ranges, which
``tests/api/test_magnum_microversions.py`` walks at their edges.
"""

from __future__ import annotations

from typing import Final

from starlette.requests import Request

from berth import errors
from berth.api.microversions import APIVersion, PathMiddleware, Service, VersionError

__all__ = [
    "MAGNUM",
    "MAX_VERSION",
    "MIN_VERSION",
    "PREFIX",
    "SERVICE",
    "MagnumPathMiddleware",
    "VersionError",
    "canonical_path",
    "parse_header",
    "require",
    "version_of",
]

PREFIX: Final = "/container-infra"
SERVICE: Final = "container-infrastructure-management"
MIN_VERSION: Final = APIVersion(1, 1)
# Magnum 23's CURRENT_MAX_VER (magnum/api/controllers/versions.py): 1.13 puts
# ``cluster_id`` in place of ``stack_id`` in cluster bodies, 1.14 adds nodegroup
# node_labels/node_taints (shown and accepted at every version, as upstream does).
MAX_VERSION: Final = APIVersion(1, 14)

MAGNUM: Final = Service(
    name=SERVICE,
    aliases=frozenset({SERVICE, "container-infrastructure", "container-infra"}),
    minimum=MIN_VERSION,
    maximum=MAX_VERSION,
    prefix=PREFIX,
    state_key="magnum_version",
    bad_type="Invalid service type for OpenStack-API-Version header",
    bad_value="Invalid value for OpenStack-API-Version header",
    unsupported_code="magnum.microversion-unsupported",
    invalid_code="client",
    invalid_title=None,
    help_links=True,
    vary_on_406=True,
)


def parse_header(value: str | None) -> APIVersion:
    """The version asked for by ``OpenStack-API-Version``; 1.1 when absent."""
    return MAGNUM.parse(value)


def canonical_path(path: str) -> str | None:
    """The canonical cluster-API path for ``path``, or None if it is not ours."""
    return MAGNUM.canonical_path(path)


class MagnumPathMiddleware(PathMiddleware):
    """Normalises cluster-API paths and negotiates the microversion for ``/container-infra/v1``."""

    service = MAGNUM


def version_of(request: Request) -> APIVersion:
    """The microversion negotiated for ``request`` (1.1 outside ``/v1``)."""
    version: APIVersion = getattr(request.state, MAGNUM.state_key, MIN_VERSION)
    return version


def require(request: Request, since: APIVersion, api: str) -> APIVersion:
    """The request's version, or 406 (Magnum's ``version_select``) if it is below ``since``."""
    version = version_of(request)
    if version < since:
        raise errors.NotAcceptable(
            f"Version {version} was requested but the requested API {api} is not supported "
            f"for this version: use {since} or later (OpenStack-API-Version: "
            f"{SERVICE} {since})."
        )
    return version
