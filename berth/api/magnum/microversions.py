"""Magnum microversions: ``OpenStack-API-Version: container-infra X.Y``, 1.1 to 1.14.

Under ``/container-infra`` a first path segment that is not ``v1`` gets ``v1``
prepended (bookmark links), trailing slashes and ``.json`` are ignored, and
every ``/v1`` request negotiates the version (or ``latest``; no header means
1.1) and answers with the four version headers. The machinery is shared with
Zun's API (``berth.api.microversions``).
"""

from __future__ import annotations

from typing import Final

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
]

PREFIX: Final = "/container-infra"
SERVICE: Final = "container-infrastructure-management"
MIN_VERSION: Final = APIVersion(1, 1)
# Released Magnum (2025.2/2026.1) stops at 1.12; master adds 1.13 (``cluster_id`` replaces
# ``stack_id`` in cluster bodies) and 1.14 (nodegroup labels/taints). We serve both, as
# the spec's checklist asks; the stock client normalises stack_id/cluster_id itself.
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
