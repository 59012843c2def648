"""The v3 service catalog, built from the public base URL and the region.

Every service gets the same URL on its public, internal and admin interfaces
(one process serves them all). Ids are derived from the service type and URL,
so a catalog is the same on every API process and across restarts.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CONTAINER",
    "CONTAINER_INFRA",
    "DEFAULT_SERVICES",
    "IDENTITY",
    "INTERFACES",
    "CatalogService",
    "build_catalog",
]

INTERFACES: tuple[str, ...] = ("public", "internal", "admin")
_NAMESPACE = uuid.UUID("6f1d3f44-54c0-4c8e-9a3f-8d0a3b3e5b10")


@dataclass(frozen=True, slots=True)
class CatalogService:
    """One service in the catalog: its type, display name and path under the base URL."""

    type: str
    name: str
    path: str


IDENTITY = CatalogService("identity", "keystone", "identity/v3")
CONTAINER = CatalogService("container", "zun", "container/v1")
CONTAINER_INFRA = CatalogService("container-infra", "magnum", "container-infra/v1")
DEFAULT_SERVICES: tuple[CatalogService, ...] = (IDENTITY, CONTAINER)


def _stable_id(*parts: str) -> str:
    return uuid.uuid5(_NAMESPACE, "|".join(parts)).hex


def _entry(service: CatalogService, base_url: str, region: str) -> dict[str, Any]:
    url = f"{base_url}/{service.path}"
    endpoints = [
        {
            "id": _stable_id(service.type, interface, url),
            "interface": interface,
            "region_id": region,
            "region": region,
            "url": url,
        }
        for interface in INTERFACES
    ]
    return {
        "id": _stable_id(service.type),
        "type": service.type,
        "name": service.name,
        "endpoints": endpoints,
    }


def build_catalog(
    base_url: str, region: str, extra: Sequence[CatalogService] = ()
) -> list[dict[str, Any]]:
    """Return the Keystone v3 catalog (JSON-ready) for identity, container and ``extra``.

    ``base_url`` is scheme://host[:port][/prefix]; a trailing slash is ignored.
    A service in ``extra`` whose type is already listed replaces nothing: the first wins.
    """
    base = base_url.rstrip("/")
    services: list[CatalogService] = []
    for service in (*DEFAULT_SERVICES, *extra):
        if all(s.type != service.type for s in services):
            services.append(service)
    return [_entry(s, base, region) for s in services]
