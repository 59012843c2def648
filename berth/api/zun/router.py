"""The container API (Zun v1): version documents plus the resource routers."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from berth.api.zun import (
    admin,
    archives,
    capsules,
    containers,
    images,
    interactive,
    networks,
    rebuild,
    registries,
    security_groups,
    volumes,
    wsproxy,
)
from berth.api.zun.microversions import MAX_VERSION, MIN_VERSION
from berth.api.zun.views import endpoint_url

__all__ = ["router"]

router = APIRouter()
router.include_router(containers.router)
router.include_router(admin.router)
router.include_router(images.router)
router.include_router(registries.router)
router.include_router(interactive.router)  # attach, resize, execute_resize
router.include_router(wsproxy.router)  # the websocket of exec/attach sessions
router.include_router(archives.router)  # get_archive, put_archive
router.include_router(rebuild.router)  # rebuild, resize_container
router.include_router(networks.router)  # networks, network_attach/detach/list
router.include_router(security_groups.router)  # security groups, add/remove_security_group
router.include_router(volumes.router)  # a Berth extension: data volumes
router.include_router(capsules.router)

_RESOURCES = (
    "services",
    "containers",
    "images",
    "networks",
    "hosts",
    "capsules",
    "availability_zones",
    "quotas",
    "quota_classes",
    "registries",
)


def _version(base: str) -> dict[str, Any]:
    return {
        "id": "v1",
        "status": "CURRENT",
        "min_version": str(MIN_VERSION),
        "max_version": str(MAX_VERSION),
        "links": [{"href": f"{base}/v1/", "rel": "self"}],
    }


@router.get("")
async def root(request: Request) -> dict[str, Any]:
    """The version list the stock client reads first (public)."""
    version = _version(endpoint_url(request))
    return {
        "name": "OpenStack Zun API",
        "description": "Berth container service: containers as first-class resources "
        "on a pool of hosts (Zun-compatible).",
        "versions": [version],
        "default_version": version,
    }


@router.get("/v1")
async def v1(request: Request) -> dict[str, Any]:
    """The v1 document with links to every collection (public)."""
    base = endpoint_url(request)
    doc: dict[str, Any] = {
        "id": "v1",
        "media_types": [
            {"base": "application/json", "type": "application/vnd.openstack.zun.v1+json"}
        ],
        "links": [
            {"href": f"{base}/v1/", "rel": "self"},
            {
                "href": "https://docs.openstack.org/developer/zun/dev/api-spec-v1.html",
                "rel": "describedby",
                "type": "text/html",
            },
        ],
    }
    for res in _RESOURCES:
        doc[res] = [
            {"href": f"{base}/v1/{res}/", "rel": "self"},
            {"href": f"{base}/{res}/", "rel": "bookmark"},
        ]
    return doc
