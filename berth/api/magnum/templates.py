"""Cluster-template routes (``openstack coe cluster template …``): thin handlers."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from berth import errors
from berth.api.bounds import INT32_MAX, check_int_field, check_text, parse_json
from berth.api.deps import Caller, State
from berth.api.magnum.views import TEMPLATE_SORT_KEYS, app_url, page, template_view
from berth.api.openapi import JSON_PATCH, TEMPLATE_BODY, body
from berth.services.clusters import templates as svc

__all__ = ["MAX_CREATE_TIMEOUT", "read_json", "router"]

# Minutes a cluster create may take before it fails (0: no deadline, as Heat): a week.
MAX_CREATE_TIMEOUT = 7 * 24 * 60
# Integer attributes of cluster and template bodies and their bounds (node counts are
# the cluster services' own checks).
INT_BOUNDS: dict[str, tuple[int, int]] = {
    "create_timeout": (0, MAX_CREATE_TIMEOUT),
    "docker_volume_size": (0, INT32_MAX),
    "hard_limit": (0, INT32_MAX),
}

router = APIRouter()


async def read_json(request: Request) -> Any:
    """The JSON document in the body (any content type: the client labels some bodies oddly)."""
    raw = await request.body()
    if not raw.strip():
        raise errors.Invalid("The request body is empty: send a JSON document.")
    try:
        data = parse_json(raw)
    except ValueError as exc:
        raise errors.Invalid(f"Malformed JSON in request body: {exc}.") from None
    check_text(data)  # names, labels, images: no NUL, no lone surrogate
    for name, (low, high) in INT_BOUNDS.items():
        check_int_field(data, name, low, high)
    return data


async def _list(request: Request, state: State, ctx: Caller, rule: str) -> dict[str, Any]:
    rows = await svc.list_templates(state.env, ctx, rule)
    items = [template_view(request, r) for r in rows]
    resource = "clustertemplates" + ("/detail" if rule == "detail" else "")
    return page(request, items, "clustertemplates", resource, sort_keys=TEMPLATE_SORT_KEYS)


@router.get("/v1/clustertemplates")
async def list_templates(request: Request, state: State, ctx: Caller) -> dict[str, Any]:
    """Own templates and public ones (admins: every project's)."""
    return await _list(request, state, ctx, "get_all")


@router.get("/v1/clustertemplates/detail")
async def detail_templates(request: Request, state: State, ctx: Caller) -> dict[str, Any]:
    """The same collection as the list, with full objects (Magnum's ``/detail``)."""
    return await _list(request, state, ctx, "detail")


@router.post("/v1/clustertemplates", openapi_extra=body(TEMPLATE_BODY))
async def create_template(request: Request, state: State, ctx: Caller) -> JSONResponse:
    """201 with the new template and its Location."""
    body = await read_json(request)
    if not isinstance(body, dict):
        raise errors.Invalid("The request body must be a JSON object.")
    row = await svc.create(state.env, ctx, body, drivers=request.app.state.cluster_drivers)
    return JSONResponse(
        template_view(request, row),
        status_code=201,
        headers={"Location": f"{app_url(request)}/v1/clustertemplates/{row.uuid}"},
    )


@router.get("/v1/clustertemplates/{ident}")
async def show_template(request: Request, state: State, ctx: Caller, ident: str) -> dict[str, Any]:
    """One template by UUID or name."""
    return template_view(request, await svc.get(state.env, ctx, ident))


@router.patch("/v1/clustertemplates/{ident}", openapi_extra=body(JSON_PATCH))
async def update_template(
    request: Request, state: State, ctx: Caller, ident: str
) -> dict[str, Any]:
    """Apply a JSON-Patch; 200 with the updated template."""
    row = await svc.update(state.env, ctx, ident, await read_json(request))
    return template_view(request, row)


@router.delete("/v1/clustertemplates/{ident}", status_code=204)
async def delete_template(state: State, ctx: Caller, ident: str) -> Response:
    """204 once the template is gone."""
    await svc.delete(state.env, ctx, ident)
    return Response(status_code=204)
