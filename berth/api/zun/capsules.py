"""Capsule routes (``openstack capsule create/list/show/delete``).

The view follows Zun: from 1.32 ``name``/``labels`` and a ``restart_policy``
object; up to 1.31 the legacy ``meta_name``/``meta_labels`` shape.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from berth import errors
from berth.api.deps import Caller, State
from berth.api.openapi import CAPSULE_TEMPLATE, body, wrapped
from berth.api.zun.microversions import APIVersion, version_of
from berth.api.zun.params import (
    json_body,
    list_query,
    parse_bool,
)
from berth.api.zun.views import container_view, endpoint_url, links, listing_in_turns, zun_time
from berth.domain.context import RequestContext
from berth.services.containers import capsules as svc
from berth.services.env import Env
from berth.store.tables import CapsuleRow, ContainerRow

__all__ = ["capsule_view", "router"]

router = APIRouter()


def capsule_view(
    env: Env,
    ctx: RequestContext,
    capsule: CapsuleRow,
    rows: list[ContainerRow],
    base: str,
    version: APIVersion,
) -> dict[str, Any]:
    sandbox = next((r for r in rows if r.container_type == "sandbox"), None)
    status, reason = svc.status_of(capsule, rows)
    policy = capsule.restart_policy or {"Name": "always", "MaximumRetryCount": "0"}
    view: dict[str, Any] = {
        "uuid": capsule.uuid,
        "links": links(base, "capsules", capsule.uuid),
        "user_id": capsule.user_id,
        "project_id": capsule.project_id,
        "name": capsule.name,
        "labels": capsule.labels or {},
        "annotations": capsule.annotations or {},
        "status": status,
        "status_reason": reason,
        "restart_policy": {
            "Name": str(policy.get("Name")),
            "MaximumRetryCount": str(policy.get("MaximumRetryCount", "0")),
        },
        "cpu": float(capsule.cpu),
        "memory": str(capsule.memory),
        "addresses": (sandbox.addresses if sandbox else None) or {},
        "host": sandbox.host if sandbox else None,
        "created_at": zun_time(capsule.created_at),
        "updated_at": zun_time(capsule.updated_at),
        "containers": [
            container_view(env, ctx, r, base, with_links=False)
            for r in rows
            if r.container_type == "app"
        ],
        "init_containers": [
            container_view(env, ctx, r, base, with_links=False)
            for r in rows
            if r.container_type == "init"
        ],
    }
    if not env.allowed(ctx, "capsule:get:host", capsule.project_id):
        view.pop("host")
    if version < APIVersion(1, 32):
        view["meta_name"] = view.pop("name")
        view["meta_labels"] = view.pop("labels")
        view["restart_policy"] = view["restart_policy"]["Name"]
        view.update(
            volumes_info={}, containers_uuids=[], init_containers_uuids=[], capsule_version=""
        )
    return view


@router.post(
    "/v1/capsules", status_code=202, openapi_extra=body(wrapped("template", CAPSULE_TEMPLATE))
)
@router.post("/v1/capsules/", status_code=202, include_in_schema=False)
async def create_capsule(request: Request, caller: Caller, state: State) -> JSONResponse:
    body = await json_body(request, required=True)
    unknown = sorted(set(body) - {"template"})
    if unknown:
        raise errors.Invalid(
            f"Additional properties are not allowed ({', '.join(repr(k) for k in unknown)} "
            "was unexpected)."
        )
    if "template" not in body:
        raise errors.Invalid("Invalid input for field 'template': a capsule template is required.")
    capsule = await svc.create(state.env, caller, body["template"])
    capsule, rows = await svc.get(state.env, caller, capsule.uuid)
    base = endpoint_url(request)
    return JSONResponse(
        capsule_view(state.env, caller, capsule, rows, base, version_of(request)),
        status_code=202,
        headers={"Location": f"{base}/v1/capsules/{capsule.uuid}"},
    )


@router.get("/v1/capsules", response_model=dict[str, Any])
@router.get("/v1/capsules/", include_in_schema=False, response_model=dict[str, Any])
async def list_capsules(request: Request, caller: Caller, state: State) -> Response:
    q = list_query(request)
    found, page = await svc.list_capsules(state.env, caller, q.all_projects, paging=q.paging)
    base, version = endpoint_url(request), version_of(request)
    uuids = [c.uuid for c, _ in found]
    return await listing_in_turns(
        "capsules",
        found,
        lambda pair: capsule_view(state.env, caller, pair[0], pair[1], base, version),
        {"next": q.next_link(base, "capsules", uuids, page)},
    )


@router.get("/v1/capsules/{ident}")
async def show_capsule(
    ident: str, request: Request, caller: Caller, state: State
) -> dict[str, Any]:
    all_projects = parse_bool(
        request.query_params.get("all_projects"), "all_projects", extended=True
    )
    capsule, rows = await svc.get(state.env, caller, ident, all_projects)
    base, version = endpoint_url(request), version_of(request)
    return capsule_view(state.env, caller, capsule, rows, base, version)


@router.delete("/v1/capsules/{ident}", status_code=204)
async def delete_capsule(ident: str, request: Request, caller: Caller, state: State) -> Response:
    all_projects = parse_bool(
        request.query_params.get("all_projects"), "all_projects", extended=True
    )
    await svc.delete(state.env, caller, ident, all_projects)
    return Response(status_code=204)
