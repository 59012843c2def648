"""``/v3/domains``: Berth has one domain, ``Default``; it can be listed and shown."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from berth.api.deps import Caller, State
from berth.api.identity import params, views
from berth.services import identity

__all__ = ["router"]

router = APIRouter()


@router.get("/v3/domains")
async def list_domains(request: Request, state: State, caller: Caller) -> JSONResponse:
    """Domains, filtered by ``name`` and ``enabled``."""
    found = await identity.list_domains(
        state.db,
        caller,
        name=request.query_params.get("name"),
        enabled=params.optional_bool(request, "enabled"),
    )
    v3 = views.v3_url(request, state.settings)
    url = params.self_url(request, state.settings, "domains")
    return JSONResponse(views.collection("domains", (views.domain_view(d, v3) for d in found), url))


@router.post("/v3/domains")
async def create_domain(state: State, caller: Caller) -> JSONResponse:
    """Always 403: creating domains is not supported."""
    await identity.create_domain(state.db, caller)


@router.get("/v3/domains/{domain_id}")
async def show_domain(
    domain_id: str, request: Request, state: State, caller: Caller
) -> JSONResponse:
    """One domain."""
    domain = await identity.get_domain(state.db, caller, domain_id)
    return JSONResponse(
        {"domain": views.domain_view(domain, views.v3_url(request, state.settings))}
    )
