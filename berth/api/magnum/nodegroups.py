"""Nodegroups (microversion 1.9+), read-only: every cluster's ``default-master`` and
``default-worker`` groups, derived from its counts. Creating, patching and deleting
nodegroups is not served yet.
"""

from __future__ import annotations

import contextlib
import uuid as uuid_mod
from typing import Any

from fastapi import APIRouter, Request

from berth import errors
from berth.api.deps import Caller, State
from berth.api.magnum.microversions import MIN_VERSION
from berth.api.magnum.views import app_url, iso
from berth.api.zun.microversions import APIVersion
from berth.services import cluster_templates as templates
from berth.services import clusters as svc
from berth.store.tables import ClusterRow

__all__ = ["router"]

router = APIRouter()
_SUMMARY = ("uuid", "name", "flavor_id", "image_id", "node_count", "status", "role", "links")


def _gate(request: Request) -> None:
    version: APIVersion = getattr(request.state, "magnum_version", MIN_VERSION)
    if version < APIVersion(1, 9):
        raise errors.NotAcceptable(
            f"Version {version} was requested but the requested API nodegroups is not "
            "supported for this version."
        )


def _groups(request: Request, row: ClusterRow, image: str) -> list[dict[str, Any]]:
    base = app_url(request)
    out = []
    for role, count_key, flavor_key in (
        ("master", "master_count", "master_flavor_id"),
        ("worker", "node_count", "flavor_id"),
    ):
        name = f"default-{role}"
        ng_uuid = str(uuid_mod.uuid5(uuid_mod.UUID(row.uuid), name))
        path = f"clusters/{row.uuid}/nodegroups/{ng_uuid}"
        out.append(
            {
                "uuid": ng_uuid,
                "name": name,
                "cluster_id": row.uuid,
                "project_id": row.project_id,
                "role": role,
                "is_default": True,
                "node_count": row.attrs.get(count_key),
                "min_node_count": 1 if role == "master" else 0,
                "max_node_count": None,
                "flavor_id": row.attrs.get(flavor_key),
                "image_id": image,
                "docker_volume_size": row.attrs.get("docker_volume_size"),
                "labels": row.attrs.get("labels") or {},
                "node_addresses": row.attrs.get(
                    "master_addresses" if role == "master" else "node_addresses"
                )
                or [],
                "node_labels": {},
                "node_taints": [],
                "status": row.status,
                "status_reason": row.status_reason,
                "stack_id": row.uuid,
                "version": None,
                "merge_labels": False,
                "links": [
                    {"href": f"{base}/v1/{path}", "rel": "self"},
                    {"href": f"{base}/{path}", "rel": "bookmark"},
                ],
                "created_at": iso(row.created_at),
                "updated_at": iso(row.updated_at),
            }
        )
    return out


async def _cluster_groups(
    request: Request, state: State, ctx: Caller, ident: str, rule: str
) -> list[dict[str, Any]]:
    _gate(request)
    row = await svc.get(state.env, ctx, ident)
    state.env.enforce(ctx, f"nodegroup:{rule}", row.project_id)
    image = ""
    with contextlib.suppress(errors.NotFound):
        template = await templates.get(state.env, ctx, row.cluster_template_id)
        image = templates.attributes(template)["image_id"]
    return _groups(request, row, image)


@router.get("/v1/clusters/{ident}/nodegroups")
async def list_nodegroups(
    request: Request, state: State, ctx: Caller, ident: str
) -> dict[str, Any]:
    """The cluster's nodegroups (``?role=`` filters)."""
    groups = await _cluster_groups(request, state, ctx, ident, "get_all")
    role = request.query_params.get("role")
    return {
        "nodegroups": [{k: g[k] for k in _SUMMARY} for g in groups if role in (None, g["role"])]
    }


@router.get("/v1/clusters/{ident}/nodegroups/{ng}")
async def show_nodegroup(
    request: Request, state: State, ctx: Caller, ident: str, ng: str
) -> dict[str, Any]:
    """One nodegroup by UUID or name."""
    for group in await _cluster_groups(request, state, ctx, ident, "get"):
        if ng in (group["uuid"], group["name"]):
            return group
    raise errors.NotFound(f"Nodegroup {ng} could not be found.")
