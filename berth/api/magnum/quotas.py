"""Quotas (``/v1/quotas``, admin CRUD of the ``Cluster`` quota) and ``/v1/mservices``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from berth import errors
from berth.api.deps import Caller, State
from berth.api.magnum.templates import read_json
from berth.api.magnum.views import iso, page
from berth.api.openapi import body, props
from berth.services.clusters import quotas as svc

__all__ = ["router"]

router = APIRouter()

MAGNUM_CONDUCTOR_BINARY = "magnum-conductor"


def _flag(text: str | None) -> bool:
    if text is None:
        return False
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on", "t", "y"):
        return True
    if value in ("false", "0", "no", "off", "f", "n", ""):
        return False
    raise errors.Invalid(f"Invalid value for all_tenants: {text}.")


@router.get("/v1/quotas")
async def list_quotas(request: Request, state: State, ctx: Caller) -> dict[str, Any]:
    """The caller project's quotas; every project's with ``all_tenants`` (admins)."""
    rows = await svc.list_quotas(state.env, ctx, _flag(request.query_params.get("all_tenants")))
    return page(request, [svc.view(r) for r in rows], "quotas", "quotas", marker_key="id")


@router.get("/v1/quotas/{project_id}/{resource}")
async def show_quota(state: State, ctx: Caller, project_id: str, resource: str) -> dict[str, Any]:
    """A project's quota, or the default limit when none was set."""
    return await svc.get(state.env, ctx, project_id, resource)


@router.post(
    "/v1/quotas", openapi_extra=body(props(project_id="str", resource="str", hard_limit="int"))
)
async def create_quota(request: Request, state: State, ctx: Caller) -> JSONResponse:
    """201 with the new quota."""
    row = await svc.create(state.env, ctx, await read_json(request))
    return JSONResponse(svc.view(row), status_code=201)


@router.patch(
    "/v1/quotas/{project_id}/{resource}",
    openapi_extra=body(props(required=("hard_limit",), hard_limit="int")),
)
async def update_quota(
    request: Request, state: State, ctx: Caller, project_id: str, resource: str
) -> JSONResponse:
    """202 with the changed quota (the body is a plain object with ``hard_limit``)."""
    row = await svc.update(state.env, ctx, project_id, resource, await read_json(request))
    return JSONResponse(svc.view(row), status_code=202)


@router.delete("/v1/quotas/{project_id}/{resource}", status_code=204)
async def delete_quota(state: State, ctx: Caller, project_id: str, resource: str) -> Response:
    """204 once the quota is gone (the default applies again)."""
    await svc.delete(state.env, ctx, project_id, resource)
    return Response(status_code=204)


@router.get("/v1/mservices")
async def list_mservices(state: State, ctx: Caller) -> dict[str, Any]:
    """The cluster workers (Magnum's conductors) with their heartbeat state; admins only."""
    rows = await svc.list_conductors(state.env, ctx)
    return {
        "mservices": [
            {
                "id": r.id,
                "host": r.host,
                # Magnum's name for the process that builds clusters: clients and
                # tempest look for it; Berth's own (berth-worker) stays in the table.
                "binary": MAGNUM_CONDUCTOR_BINARY if r.binary == svc.CONDUCTOR_BINARY else r.binary,
                "state": svc.conductor_state(state.env, r),
                "disabled": r.disabled,
                "disabled_reason": r.disabled_reason,
                "report_count": r.report_count,
                "created_at": iso(r.created_at),
                "updated_at": iso(r.updated_at),
            }
            for r in rows
        ]
    }
