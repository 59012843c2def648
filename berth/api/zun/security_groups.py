"""Security group routes (a Berth resource, Neutron's shape) and the container SG actions.

``/v1/security_groups`` lists, creates, shows and deletes a project's groups;
``/v1/security_groups/{id}/rules`` adds and removes ingress rules. The
container actions ``add_security_group`` / ``remove_security_group`` are
Zun's (the name in the query string); Zun dropped them at 1.15 in favour of
Neutron, Berth keeps them at every version since it is the network service.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from berth import errors
from berth.api.deps import Caller, State
from berth.api.openapi import body, model_schema, props, wrapped
from berth.api.zun.params import action_params, json_body, parse_bool, reject_unknown
from berth.api.zun.schemas import NAME_RE, parse_model
from berth.api.zun.views import endpoint_url, links
from berth.services.networks import security_groups as svc
from berth.services.networks.security_groups import RuleFields
from berth.store.tables import SecurityGroupRow

__all__ = ["group_view", "router"]

router = APIRouter()


class _GroupBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=2, max_length=255)
    description: str | None = Field(default=None, max_length=255)


class _RuleBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    direction: str | None = None
    ethertype: str | None = None
    protocol: str | None = Field(default=None, max_length=16)
    port_range_min: StrictInt | None = None
    port_range_max: StrictInt | None = None
    remote_ip_prefix: str | None = Field(default=None, max_length=64)
    remote_group_id: str | None = Field(default=None, max_length=255)


def group_view(row: SecurityGroupRow, base: str) -> dict[str, Any]:
    """A security group with its rules (Neutron's field names)."""
    return {
        "id": row.uuid,
        "uuid": row.uuid,
        "links": links(base, "security_groups", row.uuid),
        "name": row.name,
        "description": row.description,
        "project_id": row.project_id,
        "user_id": row.user_id,
        "is_default": row.is_default,
        "container_uuid": row.container_uuid,
        "security_group_rules": [{**r, "security_group_id": row.uuid} for r in row.rules],
    }


def _wrapped(body: dict[str, Any], key: str) -> dict[str, Any]:
    inner = body.get(key)
    if set(body) - {key} or not isinstance(inner, dict):
        raise errors.Invalid(f'Invalid input: the body must be {{"{key}": {{...}}}}.')
    return inner


@router.get("/v1/security_groups")
async def list_groups(request: Request, caller: Caller, state: State) -> dict[str, Any]:
    q = dict(request.query_params)
    reject_unknown(q, {"all_projects"})
    all_projects = parse_bool(q.get("all_projects"), "all_projects", extended=True)
    rows = await svc.list_groups(state.env, caller, all_projects)
    base = endpoint_url(request)
    return {"security_groups": [group_view(r, base) for r in rows]}


@router.post(
    "/v1/security_groups", status_code=201,
    openapi_extra=body(wrapped("security_group", model_schema(_GroupBody))),
)
async def create_group(request: Request, caller: Caller, state: State) -> JSONResponse:
    body = parse_model(
        _GroupBody, _wrapped(await json_body(request, required=True), "security_group")
    )
    if not NAME_RE.match(body.name):
        raise errors.Invalid(
            "Invalid input for field 'name': letters, digits, '_', '.' or '-', starting with "
            "a letter or digit."
        )
    row = await svc.create(state.env, caller, body.name, body.description)
    return JSONResponse({"security_group": group_view(row, endpoint_url(request))}, status_code=201)


@router.get("/v1/security_groups/{ident}")
async def show_group(ident: str, request: Request, caller: Caller, state: State) -> dict[str, Any]:
    row = await svc.get(state.env, caller, ident)
    return {"security_group": group_view(row, endpoint_url(request))}


@router.delete("/v1/security_groups/{ident}", status_code=204)
async def delete_group(ident: str, caller: Caller, state: State) -> Response:
    await svc.delete(state.env, caller, ident)
    return Response(status_code=204)


@router.post(
    "/v1/security_groups/{ident}/rules", status_code=201,
    openapi_extra=body(wrapped("security_group_rule", model_schema(_RuleBody))),
)
async def add_rule(ident: str, request: Request, caller: Caller, state: State) -> JSONResponse:
    raw = _wrapped(await json_body(request, required=True), "security_group_rule")
    body = parse_model(_RuleBody, raw)
    if body.direction not in (None, "ingress"):
        raise errors.Invalid("Only ingress rules exist: egress is always allowed.")
    if body.ethertype not in (None, "IPv4"):
        raise errors.Invalid("Only IPv4 rules are supported.")
    fields = RuleFields(
        protocol=body.protocol,
        port_range_min=body.port_range_min,
        port_range_max=body.port_range_max,
        remote_ip_prefix=body.remote_ip_prefix,
        remote_group_id=body.remote_group_id,
    )
    row, rule = await svc.add_rule(state.env, caller, ident, fields)
    return JSONResponse(
        {"security_group_rule": {**rule, "security_group_id": row.uuid}}, status_code=201
    )


@router.delete("/v1/security_groups/{ident}/rules/{rule_id}", status_code=204)
async def delete_rule(ident: str, rule_id: str, caller: Caller, state: State) -> Response:
    await svc.delete_rule(state.env, caller, ident, rule_id)
    return Response(status_code=204)


@router.post(
    "/v1/containers/{ident}/add_security_group",
    openapi_extra=body(props(name="str"), required=False),
)
async def add_security_group(
    ident: str, request: Request, caller: Caller, state: State
) -> JSONResponse:
    p = await action_params(request)
    reject_unknown(p, {"name"})
    await svc.add_to_container(state.env, caller, ident, str(p.get("name") or ""))
    return JSONResponse(None, status_code=202)


@router.post(
    "/v1/containers/{ident}/remove_security_group",
    openapi_extra=body(props(name="str"), required=False),
)
async def remove_security_group(
    ident: str, request: Request, caller: Caller, state: State
) -> JSONResponse:
    p = await action_params(request)
    reject_unknown(p, {"name"})
    await svc.remove_from_container(state.env, caller, ident, str(p.get("name") or ""))
    return JSONResponse(None, status_code=202)
