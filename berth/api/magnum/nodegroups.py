"""Nodegroups (microversion 1.9+): list, show, create, patch, delete; thin handlers."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from berth.api.deps import Caller, State
from berth.api.magnum.microversions import require
from berth.api.magnum.templates import read_json
from berth.api.magnum.views import NODEGROUP_SORT_KEYS, app_url, iso, page
from berth.api.microversions import APIVersion
from berth.api.openapi import JSON_PATCH, body, kinds_schema
from berth.domain.cluster_settings import ClusterSettings, NodeGroupSettings
from berth.domain.clusters import NODEGROUP_FIELDS
from berth.services.clusters import groups as cluster_groups
from berth.services.clusters import nodegroups as svc
from berth.store.tables import NodeGroupRow

__all__ = ["router"]

router = APIRouter()
_SUMMARY = (
    "uuid",
    "name",
    "flavor_id",
    "image_id",
    "node_count",
    "role",
    "is_default",
    "status",
    "stack_id",
    "min_node_count",
    "max_node_count",
    "merge_labels",
)


def _gate(request: Request) -> None:
    require(request, APIVersion(1, 9), "nodegroups")  # every handler of nodegroup.py


def _view(request: Request, found: svc.ClusterGroups, g: NodeGroupRow) -> dict[str, Any]:
    cluster = found.cluster
    path = f"clusters/{cluster.uuid}/nodegroups/{g.uuid}"
    settings = ClusterSettings.from_json(cluster.attrs)
    group_settings = NodeGroupSettings.from_json(g.attrs)
    cluster_labels = dict(settings.labels)
    labels = dict(g.labels or {})
    addresses: list[str] = []
    if g.name == "default-master":
        addresses = list(settings.master_addresses)
    elif g.name == "default-worker":
        addresses = list(settings.node_addresses)
    status = cluster_groups.display_status(g, cluster)
    return {
        "id": g.id,
        "uuid": g.uuid,
        "name": g.name,
        "cluster_id": cluster.uuid,
        "project_id": g.project_id,
        "role": g.role,
        "is_default": g.is_default,
        "node_count": g.node_count,
        "min_node_count": g.min_node_count,
        "max_node_count": g.max_node_count,
        "flavor_id": g.flavor_id,
        "image_id": g.image_id or found.image,
        "docker_volume_size": g.docker_volume_size,
        "labels": labels,
        "labels_overridden": {
            k: v for k, v in cluster_labels.items() if k in labels and labels[k] != v
        },
        "labels_added": {k: v for k, v in labels.items() if k not in cluster_labels},
        "labels_skipped": {k: v for k, v in cluster_labels.items() if k not in labels},
        "node_addresses": addresses,
        "node_labels": dict(group_settings.node_labels),
        "node_taints": list(group_settings.node_taints),
        "status": status,
        "status_reason": cluster.status_reason if status != g.status else g.status_reason,
        "stack_id": cluster.uuid,
        "version": g.version,
        "merge_labels": group_settings.merge_labels,
        "links": [
            {"href": f"{app_url(request)}/v1/{path}", "rel": "self"},
            {"href": f"{app_url(request)}/{path}", "rel": "bookmark"},
        ],
        "created_at": iso(g.created_at),
        "updated_at": iso(g.updated_at),
    }


@router.get("/v1/clusters/{ident}/nodegroups")
async def list_nodegroups(
    request: Request, state: State, ctx: Caller, ident: str
) -> dict[str, Any]:
    """The cluster's nodegroups (``?role=`` filters; Magnum's paging and sorting)."""
    _gate(request)
    found = await svc.list_groups(state.env, ctx, ident)
    role = request.query_params.get("role")
    items = [
        {k: v for k, v in _view(request, found, g).items() if k in _SUMMARY}
        for g in found.rows
        if role in (None, g.role)
    ]
    resource = f"clusters/{found.cluster.uuid}/nodegroups"
    return page(request, items, "nodegroups", resource, sort_keys=NODEGROUP_SORT_KEYS)


@router.get("/v1/clusters/{ident}/nodegroups/{ng}")
async def show_nodegroup(
    request: Request, state: State, ctx: Caller, ident: str, ng: str
) -> dict[str, Any]:
    """One nodegroup by UUID, name or id."""
    _gate(request)
    found = await svc.get(state.env, ctx, ident, ng)
    return _view(request, found, found.rows[0])


@router.post(
    "/v1/clusters/{ident}/nodegroups",
    openapi_extra=body(kinds_schema(NODEGROUP_FIELDS, required=("name",))),
)
async def create_nodegroup(request: Request, state: State, ctx: Caller, ident: str) -> JSONResponse:
    """202 with the new nodegroup; the cluster update creates its nodes."""
    _gate(request)
    found = await svc.create(state.env, ctx, ident, await read_json(request))
    return JSONResponse(_view(request, found, found.rows[0]), status_code=202)


@router.patch("/v1/clusters/{ident}/nodegroups/{ng}", openapi_extra=body(JSON_PATCH))
async def update_nodegroup(
    request: Request, state: State, ctx: Caller, ident: str, ng: str
) -> JSONResponse:
    """JSON-Patch of min/max_node_count, node_labels, node_taints; 202 with the nodegroup."""
    _gate(request)
    found = await svc.update(state.env, ctx, ident, ng, await read_json(request))
    return JSONResponse(_view(request, found, found.rows[0]), status_code=202)


@router.delete("/v1/clusters/{ident}/nodegroups/{ng}", status_code=204)
async def delete_nodegroup(
    request: Request, state: State, ctx: Caller, ident: str, ng: str
) -> Response:
    """204: the cluster update removes the group's nodes, then the group is gone."""
    _gate(request)
    await svc.delete(state.env, ctx, ident, ng)
    return Response(status_code=204)
