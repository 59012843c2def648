"""Version discovery and ``/v3/auth/*``: issue, validate, revoke tokens; catalog; own projects."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from berth.api.deps import Caller, State
from berth.api.identity import params, schemas, views
from berth.api.openapi import body, model_schema, wrapped
from berth.services import identity

__all__ = ["router"]

router = APIRouter()


@router.get("", include_in_schema=False)
@router.get("/")
async def versions(request: Request, state: State) -> JSONResponse:
    """Keystone's version list (300 Multiple Choices, as Keystone answers at its root)."""
    doc = views.version_doc(views.v3_url(request, state.settings))
    return JSONResponse({"versions": {"values": [doc]}}, status_code=300)


@router.get("/v3", include_in_schema=False)
@router.get("/v3/")
async def version_v3(request: Request, state: State) -> JSONResponse:
    """The v3 version document."""
    return JSONResponse({"version": views.version_doc(views.v3_url(request, state.settings))})


@router.post(
    "/v3/auth/tokens", status_code=201,
    openapi_extra=body(wrapped("auth", model_schema(schemas.AuthBody))),
)
async def issue_token(request: Request, state: State) -> JSONResponse:
    """Authenticate (password or token method) and issue a token in ``X-Subject-Token``."""
    body = await schemas.read_body(request)
    auth = schemas.parse(schemas.AuthBody, body, "auth").to_request()
    source = identity.source_address(
        request.client.host if request.client else None,
        request.headers.get("x-forwarded-for"),
        state.settings.trusted_proxies,
    )
    issued = await identity.authenticate(
        state.db,
        state.settings,
        auth,
        with_catalog=not params.flag(request, "nocatalog"),
        source=source,
    )
    return JSONResponse(
        views.token_view(issued.info), status_code=201, headers={"X-Subject-Token": issued.token}
    )


@router.get("/v3/auth/tokens")
async def validate_token(request: Request, state: State, caller: Caller) -> JSONResponse:
    """What the token in ``X-Subject-Token`` grants; 404 when it is not valid."""
    token = params.subject_token(request)
    info = await identity.token_info(
        state.db, state.settings, caller, token, with_catalog=not params.flag(request, "nocatalog")
    )
    return JSONResponse(views.token_view(info), headers={"X-Subject-Token": token})


@router.head("/v3/auth/tokens")
async def check_token(request: Request, state: State, caller: Caller) -> Response:
    """200 when the token in ``X-Subject-Token`` is valid, 404 otherwise."""
    token = params.subject_token(request)
    await identity.token_info(state.db, state.settings, caller, token, with_catalog=False)
    return Response(status_code=200, headers={"X-Subject-Token": token})


@router.delete("/v3/auth/tokens", status_code=204)
async def revoke_token(request: Request, state: State, caller: Caller) -> Response:
    """Revoke the token in ``X-Subject-Token``."""
    await identity.revoke_token(state.db, caller, params.subject_token(request))
    return Response(status_code=204)


@router.get("/v3/auth/catalog")
async def auth_catalog(request: Request, state: State, caller: Caller) -> JSONResponse:
    """The service catalog of the caller's scoped token."""
    entries = await identity.token_catalog(state.db, state.settings, caller)
    url = params.self_url(request, state.settings, "auth/catalog")
    return JSONResponse(views.collection("catalog", entries, url))


@router.get("/v3/auth/projects")
async def auth_projects(request: Request, state: State, caller: Caller) -> JSONResponse:
    """The enabled projects the caller can scope a token to."""
    found = await identity.list_auth_projects(state.db, caller)
    v3 = views.v3_url(request, state.settings)
    url = params.self_url(request, state.settings, "auth/projects")
    return JSONResponse(
        views.collection("projects", (views.project_view(p, v3) for p in found), url)
    )


@router.get("/v3/auth/domains")
async def auth_domains(request: Request, state: State, caller: Caller) -> JSONResponse:
    """The domains the caller can scope a token to."""
    found = await identity.list_auth_domains(state.db, caller)
    v3 = views.v3_url(request, state.settings)
    url = params.self_url(request, state.settings, "auth/domains")
    return JSONResponse(views.collection("domains", (views.domain_view(d, v3) for d in found), url))
