"""``/v3/projects``: list, create, show, update, delete."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from berth.api.deps import Caller, State
from berth.api.identity import params, schemas, views
from berth.api.openapi import body, model_schema, wrapped
from berth.services import identity

__all__ = ["router"]

router = APIRouter()


@router.get("/v3/projects")
async def list_projects(request: Request, state: State, caller: Caller) -> JSONResponse:
    """Projects, filtered by ``name``, ``domain_id`` and ``enabled``."""
    q = request.query_params
    found = await identity.list_projects(
        state.db,
        caller,
        name=q.get("name"),
        domain_id=q.get("domain_id"),
        enabled=params.optional_bool(request, "enabled"),
    )
    v3 = views.v3_url(request, state.settings)
    url = params.self_url(request, state.settings, "projects")
    return JSONResponse(
        views.collection("projects", (views.project_view(p, v3) for p in found), url)
    )


@router.post(
    "/v3/projects", status_code=201,
    openapi_extra=body(wrapped("project", model_schema(schemas.ProjectCreate))),
)
async def create_project(request: Request, state: State, caller: Caller) -> JSONResponse:
    """Create a project; 409 when its name is taken in the domain."""
    body = await schemas.read_body(request)
    spec = schemas.parse(schemas.ProjectCreate, body, "project").to_spec()
    project = await identity.create_project(state.db, caller, spec)
    v3 = views.v3_url(request, state.settings)
    return JSONResponse({"project": views.project_view(project, v3)}, status_code=201)


@router.get("/v3/projects/{project_id}")
async def show_project(
    project_id: str, request: Request, state: State, caller: Caller
) -> JSONResponse:
    """One project."""
    project = await identity.get_project(state.db, caller, project_id)
    v3 = views.v3_url(request, state.settings)
    return JSONResponse({"project": views.project_view(project, v3)})


@router.patch(
    "/v3/projects/{project_id}",
    openapi_extra=body(wrapped("project", model_schema(schemas.ProjectPatch))),
)
async def update_project(
    project_id: str, request: Request, state: State, caller: Caller
) -> JSONResponse:
    """Change a project's name, description, enabled flag or extra attributes."""
    body = await schemas.read_body(request)
    changes = schemas.parse(schemas.ProjectPatch, body, "project").to_update()
    project = await identity.update_project(state.db, caller, project_id, changes)
    v3 = views.v3_url(request, state.settings)
    return JSONResponse({"project": views.project_view(project, v3)})


@router.delete("/v3/projects/{project_id}", status_code=204)
async def delete_project(project_id: str, state: State, caller: Caller) -> Response:
    """Delete a project, its role assignments and the tokens scoped to it."""
    await identity.delete_project(state.db, caller, project_id)
    return Response(status_code=204)
