"""Registry routes (``openstack appcontainer registry …``): the ``{"registry": {...}}`` wrapper.

Passwords are write-only: every view shows ``"***"``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from berth import errors
from berth.api.deps import Caller, State
from berth.api.openapi import body, model_schema, wrapped
from berth.api.zun.params import (
    json_body,
    list_query,
)
from berth.api.zun.schemas import NAME_RE, parse_model
from berth.api.zun.views import endpoint_url, links
from berth.services.images import registries as svc
from berth.services.images.registries import RegistryFields
from berth.store.tables import RegistryRow

__all__ = ["registry_view", "router"]

router = APIRouter()

_FILTERS = ("name", "domain", "username", "project_id", "user_id")


class _RegistryBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    domain: str | None = Field(default=None, min_length=1, max_length=255)
    username: str | None = Field(default=None, max_length=255)
    password: str | None = Field(default=None, max_length=255)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and (not 2 <= len(value) <= 255 or not NAME_RE.match(value)):
            raise ValueError(
                "must be 2-255 characters of letters, digits, '_', '.' or '-', "
                "starting with a letter or digit"
            )
        return value


def registry_view(row: RegistryRow, base: str) -> dict[str, Any]:
    """A registry as Zun shows it: the password always masked."""
    return {
        "uuid": row.uuid,
        "links": links(base, "registries", row.uuid),
        "user_id": row.user_id,
        "project_id": row.project_id,
        "name": row.name,
        "domain": row.domain,
        "username": row.username,
        "password": "***",
    }


async def _fields(request: Request, *, required: bool) -> RegistryFields:
    body = await json_body(request, required=required)
    inner = body.get("registry")
    if set(body) - {"registry"} or not isinstance(inner, dict):
        raise errors.Invalid(
            'Invalid input: the body must be {"registry": {"domain": ..., "name": ..., '
            '"username": ..., "password": ...}}.'
        )
    parsed = parse_model(_RegistryBody, inner)
    return RegistryFields(parsed.name, parsed.domain, parsed.username, parsed.password)


@router.post(
    "/v1/registries", status_code=201,
    openapi_extra=body(wrapped("registry", model_schema(_RegistryBody))),
)
async def create_registry(request: Request, caller: Caller, state: State) -> JSONResponse:
    fields = await _fields(request, required=True)
    if not fields.domain:
        raise errors.Invalid("Invalid input for field 'domain': 'domain' is a required property.")
    row = await svc.create(state.env, caller, fields)
    base = endpoint_url(request)
    return JSONResponse(
        {"registry": registry_view(row, base)},
        status_code=201,
        headers={"Location": f"{base}/v1/registries/{row.uuid}"},
    )


@router.get("/v1/registries")
async def list_registries(request: Request, caller: Caller, state: State) -> dict[str, Any]:
    q = list_query(request, _FILTERS)
    rows, page = await svc.list_registries(
        state.env, caller, all_projects=q.all_projects, filters=q.filters, paging=q.paging
    )
    base = endpoint_url(request)
    nxt = q.next_link(base, "registries", [r.uuid for r in rows], page)
    return {"registries": [registry_view(r, base) for r in rows], "next": nxt}


@router.get("/v1/registries/{ident}")
async def show_registry(
    ident: str, request: Request, caller: Caller, state: State
) -> dict[str, Any]:
    row = await svc.get(state.env, caller, ident)
    return {"registry": registry_view(row, endpoint_url(request))}


@router.patch(
    "/v1/registries/{ident}", openapi_extra=body(wrapped("registry", model_schema(_RegistryBody)))
)
async def update_registry(
    ident: str, request: Request, caller: Caller, state: State
) -> dict[str, Any]:
    fields = await _fields(request, required=False)
    if all(v is None for v in vars(fields).values()):
        raise errors.Invalid("Nothing to update: give name, domain, username or password.")
    row = await svc.update(state.env, caller, ident, fields)
    return {"registry": registry_view(row, endpoint_url(request))}


@router.delete("/v1/registries/{ident}", status_code=204)
async def delete_registry(ident: str, caller: Caller, state: State) -> Response:
    await svc.delete(state.env, caller, ident)
    return Response(status_code=204)
