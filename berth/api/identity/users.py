"""``/v3/users``: list, create, show, update, delete, own projects, own password."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from berth.api.deps import Caller, State
from berth.api.identity import params, schemas, views
from berth.api.openapi import body, model_schema, wrapped
from berth.services import identity

__all__ = ["router"]

router = APIRouter()


@router.get("/v3/users")
async def list_users(request: Request, state: State, caller: Caller) -> JSONResponse:
    """Users, filtered by ``name``, ``domain_id`` and ``enabled``."""
    q = request.query_params
    found = await identity.list_users(
        state.db,
        caller,
        name=q.get("name"),
        domain_id=q.get("domain_id"),
        enabled=params.optional_bool(request, "enabled"),
    )
    v3 = views.v3_url(request, state.settings)
    url = params.self_url(request, state.settings, "users")
    return JSONResponse(views.collection("users", (views.user_view(u, v3) for u in found), url))


@router.post(
    "/v3/users", status_code=201,
    openapi_extra=body(wrapped("user", model_schema(schemas.UserCreate))),
)
async def create_user(request: Request, state: State, caller: Caller) -> JSONResponse:
    """Create a user; 409 when its name is taken in the domain."""
    body = await schemas.read_body(request)
    spec = schemas.parse(schemas.UserCreate, body, "user").to_spec()
    user = await identity.create_user(state.db, caller, spec)
    v3 = views.v3_url(request, state.settings)
    return JSONResponse({"user": views.user_view(user, v3)}, status_code=201)


@router.get("/v3/users/{user_id}")
async def show_user(user_id: str, request: Request, state: State, caller: Caller) -> JSONResponse:
    """One user."""
    user = await identity.get_user(state.db, caller, user_id)
    v3 = views.v3_url(request, state.settings)
    return JSONResponse({"user": views.user_view(user, v3)})


@router.patch(
    "/v3/users/{user_id}", openapi_extra=body(wrapped("user", model_schema(schemas.UserPatch)))
)
async def update_user(user_id: str, request: Request, state: State, caller: Caller) -> JSONResponse:
    """Change a user: name, password, email, description, enabled, default project."""
    body = await schemas.read_body(request)
    changes = schemas.parse(schemas.UserPatch, body, "user").to_update()
    user = await identity.update_user(state.db, caller, user_id, changes)
    v3 = views.v3_url(request, state.settings)
    return JSONResponse({"user": views.user_view(user, v3)})


@router.delete("/v3/users/{user_id}", status_code=204)
async def delete_user(user_id: str, state: State, caller: Caller) -> Response:
    """Delete a user, its role assignments and its tokens."""
    await identity.delete_user(state.db, caller, user_id)
    return Response(status_code=204)


@router.get("/v3/users/{user_id}/projects")
async def user_projects(
    user_id: str, request: Request, state: State, caller: Caller
) -> JSONResponse:
    """The projects a user holds a role on."""
    found = await identity.list_user_projects(state.db, caller, user_id)
    v3 = views.v3_url(request, state.settings)
    url = params.self_url(request, state.settings, f"users/{user_id}/projects")
    return JSONResponse(
        views.collection("projects", (views.project_view(p, v3) for p in found), url)
    )


@router.post(
    "/v3/users/{user_id}/password", status_code=204,
    openapi_extra=body(wrapped("user", model_schema(schemas.PasswordChange))),
)
async def change_password(user_id: str, request: Request, state: State, caller: Caller) -> Response:
    """A user replaces its own password (``openstack user password set``)."""
    body = await schemas.read_body(request)
    change = schemas.parse(schemas.PasswordChange, body, "user")
    await identity.change_own_password(
        state.db, state.settings, caller, user_id, change.original_password, change.password
    )
    return Response(status_code=204)
