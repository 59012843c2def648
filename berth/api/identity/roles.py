"""``/v3/roles``, grants on projects and domains, and ``/v3/role_assignments``."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from berth.api.deps import Caller, State
from berth.api.identity import params, schemas, views
from berth.api.openapi import body, model_schema, wrapped
from berth.identity.models import AssignmentFilter
from berth.services import identity

__all__ = ["router"]

router = APIRouter()

_PROJECT_GRANT = "/v3/projects/{project_id}/users/{user_id}/roles"
_DOMAIN_GRANT = "/v3/domains/{domain_id}/users/{user_id}/roles"


@router.get("/v3/roles")
async def list_roles(request: Request, state: State, caller: Caller) -> JSONResponse:
    """Roles, filtered by ``name`` (and ``domain_id``)."""
    q = request.query_params
    found = await identity.list_roles(
        state.db, caller, name=q.get("name"), domain_id=q.get("domain_id")
    )
    v3 = views.v3_url(request, state.settings)
    url = params.self_url(request, state.settings, "roles")
    return JSONResponse(views.collection("roles", (views.role_view(r, v3) for r in found), url))


@router.post(
    "/v3/roles", status_code=201,
    openapi_extra=body(wrapped("role", model_schema(schemas.RoleCreate))),
)
async def create_role(request: Request, state: State, caller: Caller) -> JSONResponse:
    """Create a role; 409 when the name is taken."""
    body = await schemas.read_body(request)
    spec = schemas.parse(schemas.RoleCreate, body, "role").to_spec()
    role = await identity.create_role(state.db, caller, spec)
    v3 = views.v3_url(request, state.settings)
    return JSONResponse({"role": views.role_view(role, v3)}, status_code=201)


@router.get("/v3/roles/{role_id}")
async def show_role(role_id: str, request: Request, state: State, caller: Caller) -> JSONResponse:
    """One role."""
    role = await identity.get_role(state.db, caller, role_id)
    return JSONResponse({"role": views.role_view(role, views.v3_url(request, state.settings))})


@router.delete("/v3/roles/{role_id}", status_code=204)
async def delete_role(role_id: str, state: State, caller: Caller) -> Response:
    """Delete a role and its assignments (not the built-in ones)."""
    await identity.delete_role(state.db, caller, role_id)
    return Response(status_code=204)


def _target(request: Request) -> dict[str, str | None]:
    """Where a grant path points: ``project_id`` or ``domain_id`` (the other is ``None``)."""
    path = request.path_params
    return {"project_id": path.get("project_id"), "domain_id": path.get("domain_id")}


@router.get(_PROJECT_GRANT)
@router.get(_DOMAIN_GRANT)
async def list_grants(user_id: str, request: Request, state: State, caller: Caller) -> JSONResponse:
    """The roles a user holds directly on a project or a domain."""
    found = await identity.list_grants(state.db, caller, user_id=user_id, **_target(request))
    v3 = views.v3_url(request, state.settings)
    url = f"{v3}{request.url.path.split('/v3', 1)[1]}"
    return JSONResponse(views.collection("roles", (views.role_view(r, v3) for r in found), url))


@router.put(_PROJECT_GRANT + "/{role_id}", status_code=204)
@router.put(_DOMAIN_GRANT + "/{role_id}", status_code=204)
async def grant(
    user_id: str, role_id: str, request: Request, state: State, caller: Caller
) -> Response:
    """Give the user the role there (idempotent)."""
    target = _target(request)
    await identity.grant_role(state.db, caller, user_id=user_id, role_id=role_id, **target)
    return Response(status_code=204)


@router.head(_PROJECT_GRANT + "/{role_id}", status_code=204)
@router.head(_DOMAIN_GRANT + "/{role_id}", status_code=204)
async def check_grant(
    user_id: str, role_id: str, request: Request, state: State, caller: Caller
) -> Response:
    """204 when the user holds the role there directly, 404 otherwise."""
    target = _target(request)
    await identity.check_grant(state.db, caller, user_id=user_id, role_id=role_id, **target)
    return Response(status_code=204)


@router.delete(_PROJECT_GRANT + "/{role_id}", status_code=204)
@router.delete(_DOMAIN_GRANT + "/{role_id}", status_code=204)
async def revoke(
    user_id: str, role_id: str, request: Request, state: State, caller: Caller
) -> Response:
    """Take the role away from the user there."""
    target = _target(request)
    await identity.revoke_grant(state.db, caller, user_id=user_id, role_id=role_id, **target)
    return Response(status_code=204)


@router.get("/v3/role_assignments")
async def list_assignments(request: Request, state: State, caller: Caller) -> JSONResponse:
    """Role assignments, filtered as openstackclient asks (``user.id``, ``scope.project.id``...)."""
    q = request.query_params
    flt = AssignmentFilter(
        user_id=q.get("user.id"),
        project_id=q.get("scope.project.id"),
        domain_id=q.get("scope.domain.id"),
        role_id=q.get("role.id"),
        effective=params.flag(request, "effective"),
    )
    found = await identity.list_assignments(state.db, caller, flt)
    v3 = views.v3_url(request, state.settings)
    names = params.flag(request, "include_names")
    body = (views.assignment_view(a, v3, names) for a in found)
    url = params.self_url(request, state.settings, "role_assignments")
    return JSONResponse(views.collection("role_assignments", body, url))
