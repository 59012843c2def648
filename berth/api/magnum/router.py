"""The cluster API (Magnum v1) under ``/container-infra``: version documents, stats and routers."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from berth import errors
from berth.api.deps import Caller, State
from berth.api.magnum import clusters, nodegroups, quotas, templates
from berth.api.magnum.microversions import MAX_VERSION, MIN_VERSION
from berth.api.magnum.views import app_url
from berth.services.clusters import clusters as cluster_svc

__all__ = ["router"]

router = APIRouter()
router.include_router(templates.router)
router.include_router(clusters.router)
router.include_router(nodegroups.router)
router.include_router(quotas.router)

# The resources this API serves today; the version document lists only these.
_RESOURCES = ("clustertemplates", "clusters", "quotas", "certificates", "mservices", "stats")


@router.get("")
async def root(request: Request) -> dict[str, Any]:
    """``GET /``: the one version this API serves (no authentication)."""
    base = app_url(request)
    return {
        "name": "OpenStack Magnum API",
        "description": "Magnum is an OpenStack project which aims to provide container "
        "cluster management.",
        "versions": [
            {
                "id": "v1",
                "status": "CURRENT",
                "min_version": str(MIN_VERSION),
                "max_version": str(MAX_VERSION),
                "links": [{"href": f"{base}/v1/", "rel": "self"}],
            }
        ],
    }


@router.get("/v1")
async def v1(request: Request) -> dict[str, Any]:
    """``GET /v1``: media types and the resource links (no authentication)."""
    base = app_url(request)
    doc: dict[str, Any] = {
        "id": "v1",
        "media_types": [
            {"base": "application/json", "type": "application/vnd.openstack.magnum.v1+json"}
        ],
        "links": [
            {"href": f"{base}/v1/", "rel": "self"},
            {
                "href": "https://docs.openstack.org/magnum/latest/user/",
                "rel": "describedby",
                "type": "text/html",
            },
        ],
    }
    doc["nodegroups"] = [
        {"href": f"{base}/v1/clusters/{{cluster_id}}/nodegroups", "rel": "self"},
        {"href": f"{base}/clusters/{{cluster_id}}/nodegroups", "rel": "bookmark"},
    ]
    for res in _RESOURCES:
        doc[res] = [
            {"href": f"{base}/v1/{res}/", "rel": "self"},
            {"href": f"{base}/{res}/", "rel": "bookmark"},
        ]
    return doc


@router.get("/v1/stats")
async def stats(request: Request, state: State, ctx: Caller) -> dict[str, int]:
    """Cluster and node counts of a project (admins: of any project, or all)."""
    kind = request.query_params.get("type", "cluster")
    if kind.lower() != "cluster":
        raise errors.Invalid(f"Invalid stats type: {kind}. Only 'cluster' is supported.")
    return await cluster_svc.stats(state.env, ctx, request.query_params.get("project_id"))
