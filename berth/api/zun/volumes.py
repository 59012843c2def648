"""Volume routes (a Berth extension: Zun leaves volumes to Cinder).

``POST /v1/volumes`` ``{"name", "size"}``; ``GET /v1/volumes[/{ident}]`` (the list
pages like Zun's: ``limit``, ``marker``, ``sort_key``, ``sort_dir``, ``all_projects``);
``DELETE /v1/volumes/{ident}`` (409 while mounted). Containers mount them with
``--mount source=<name|uuid>,destination=<path>``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from berth import errors
from berth.api.deps import Caller, State
from berth.api.openapi import body, props
from berth.api.zun.params import json_body, list_query
from berth.api.zun.views import endpoint_url, links, zun_time
from berth.domain.context import RequestContext
from berth.services import volumes as svc
from berth.services.env import Env
from berth.store.tables import VolumeRow

__all__ = ["router", "volume_view"]

router = APIRouter()

_CREATE_KEYS = {"name", "size"}


def volume_view(env: Env, ctx: RequestContext, row: VolumeRow, base: str) -> dict[str, Any]:
    view: dict[str, Any] = {
        "uuid": row.uuid,
        "links": links(base, "volumes", row.uuid),
        "name": row.name,
        "project_id": row.project_id,
        "user_id": row.user_id,
        "size": row.size,
        "driver": row.driver,
        "host": row.host,
        "owner": row.owner_uuid,
        "created_at": zun_time(row.created_at),
        "updated_at": zun_time(row.updated_at),
    }
    if not env.allowed(ctx, "container:get_one:host", row.project_id):
        view.pop("host")
    return view


@router.post("/v1/volumes", status_code=202, openapi_extra=body(props(name="str", size="int")))
async def create_volume(request: Request, caller: Caller, state: State) -> JSONResponse:
    body = await json_body(request, required=True)
    unknown = sorted(set(body) - _CREATE_KEYS)
    if unknown:
        raise errors.Invalid(
            f"Additional properties are not allowed ({', '.join(repr(k) for k in unknown)} "
            "was unexpected)."
        )
    if "size" not in body:
        raise errors.Invalid("Invalid input for field 'size': a size in GiB is required.")
    row = await svc.create(state.env, caller, body.get("name"), body["size"])
    base = endpoint_url(request)
    return JSONResponse(
        volume_view(state.env, caller, row, base),
        status_code=202,
        headers={"Location": f"{base}/v1/volumes/{row.uuid}"},
    )


@router.get("/v1/volumes")
async def list_volumes(request: Request, caller: Caller, state: State) -> dict[str, Any]:
    q = list_query(request)
    rows, size = await svc.list_volumes(state.env, caller, q.all_projects, paging=q.paging)
    base = endpoint_url(request)
    return {
        "volumes": [volume_view(state.env, caller, r, base) for r in rows],
        "next": q.next_link(base, "volumes", [r.uuid for r in rows], size),
    }


@router.get("/v1/volumes/{ident}")
async def show_volume(ident: str, request: Request, caller: Caller, state: State) -> dict[str, Any]:
    row = await svc.get(state.env, caller, ident)
    return volume_view(state.env, caller, row, endpoint_url(request))


@router.delete("/v1/volumes/{ident}", status_code=204)
async def delete_volume(ident: str, caller: Caller, state: State) -> Response:
    await svc.delete(state.env, caller, ident)
    return Response(status_code=204)
