"""Network routes: project networks (``/v1/networks``) and a container's network actions.

Zun's ``POST /v1/networks`` wraps a Neutron network (admin only); Berth's
networks are the project's own, so members create, list, show and delete
them. The container actions are Zun's: ``network_attach``, ``network_detach``
(parameters in the query string, as the stock client sends them) and
``network_list``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from berth import errors
from berth.api.deps import Caller, State
from berth.api.openapi import body, props
from berth.api.zun.microversions import APIVersion, require, version_of
from berth.api.zun.params import action_params, json_body, parse_bool, reject_unknown
from berth.api.zun.schemas import NAME_RE
from berth.api.zun.views import endpoint_url, links
from berth.services.containers import containers
from berth.services.networks import networks as svc
from berth.store.tables import NetworkRow

__all__ = ["network_view", "router"]

router = APIRouter()

_NETWORK_LIST_SINCE = APIVersion(1, 13)
_NEW_SHAPE_SINCE = APIVersion(1, 18)


def network_view(row: NetworkRow, base: str) -> dict[str, Any]:
    """A network in Zun's shape (``network_id``/``neutron_net_id`` are its uuid here)."""
    return {
        "uuid": row.uuid,
        "links": links(base, "networks", row.uuid),
        "name": row.name,
        "project_id": row.project_id,
        "user_id": row.user_id,
        "network_id": row.uuid,
        "neutron_net_id": row.uuid,
        "is_default": row.is_default,
        "created_at": str(row.created_at.replace(tzinfo=None)) if row.created_at else None,
    }


@router.post("/v1/networks", openapi_extra=body(props(name="str", neutron_net_id="str")))
async def create_network(request: Request, caller: Caller, state: State) -> dict[str, Any]:
    body = await json_body(request, required=True)
    reject_unknown(body, {"name", "neutron_net_id"})
    if body.get("neutron_net_id"):
        raise errors.Invalid("Berth has no Neutron: create a project network with a name only.")
    name = body.get("name")
    if not isinstance(name, str) or not 2 <= len(name) <= 255 or not NAME_RE.match(name):
        raise errors.Invalid(
            "Invalid input for field 'name': 2-255 characters of letters, digits, '_', '.' "
            "or '-', starting with a letter or digit."
        )
    row = await svc.create(state.env, caller, name)
    return network_view(row, endpoint_url(request))


@router.get("/v1/networks")
async def list_networks(request: Request, caller: Caller, state: State) -> dict[str, Any]:
    q = dict(request.query_params)
    reject_unknown(q, {"all_projects"})
    all_projects = parse_bool(q.get("all_projects"), "all_projects", extended=True)
    rows = await svc.list_networks(state.env, caller, all_projects)
    base = endpoint_url(request)
    return {"networks": [network_view(r, base) for r in rows]}


@router.get("/v1/networks/{ident}")
async def show_network(
    ident: str, request: Request, caller: Caller, state: State
) -> dict[str, Any]:
    row = await svc.get(state.env, caller, ident)
    return network_view(row, endpoint_url(request))


@router.delete("/v1/networks/{ident}", status_code=204)
async def delete_network(ident: str, request: Request, caller: Caller, state: State) -> Response:
    require(request, APIVersion(1, 27), "network delete")
    await svc.delete(state.env, caller, ident)
    return Response(status_code=204)


@router.post(
    "/v1/containers/{ident}/network_attach",
    openapi_extra=body(props(network="str", port="str", fixed_ip="str"), required=False),
)
async def network_attach(
    ident: str, request: Request, caller: Caller, state: State
) -> JSONResponse:
    require(request, APIVersion(1, 8), "network_attach")
    p = await action_params(request)
    reject_unknown(p, {"network", "port", "fixed_ip"})
    if p.get("network") and p.get("port"):
        raise errors.Invalid("Give network or port, not both.")
    if p.get("fixed_ip"):
        raise errors.Invalid("Fixed IPs are not supported: each host assigns the addresses.")
    await svc.attach(state.env, caller, ident, p.get("network"), p.get("port"))
    return JSONResponse(None, status_code=200)


@router.post(
    "/v1/containers/{ident}/network_detach",
    openapi_extra=body(props(network="str", port="str"), required=False),
)
async def network_detach(
    ident: str, request: Request, caller: Caller, state: State
) -> JSONResponse:
    require(request, APIVersion(1, 6), "network_detach")
    p = await action_params(request)
    reject_unknown(p, {"network", "port"})
    if bool(p.get("network")) == bool(p.get("port")):
        raise errors.Invalid("Give exactly one of network or port.")
    await svc.detach(state.env, caller, ident, p.get("network"), p.get("port"))
    return JSONResponse(None, status_code=202)


@router.get("/v1/containers/{ident}/network_list")
async def network_list(ident: str, request: Request, caller: Caller, state: State) -> Any:
    require(request, _NETWORK_LIST_SINCE, "network_list")
    row = await containers.get(state.env, caller, ident)
    flat = version_of(request) < _NEW_SHAPE_SINCE
    return {"networks": svc.network_list(row, flat)}
