"""Dependencies declared once as ``Annotated`` aliases."""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import Depends, Request

from berth import errors
from berth.api.state import AppState
from berth.domain.context import RequestContext

__all__ = ["Caller", "State", "get_caller", "get_state", "state_of"]


async def get_state(request: Request) -> AppState:
    """The application's state. ``async`` on purpose: FastAPI runs a plain ``def``
    dependency in its thread pool, a thread hop on every request for one attribute."""
    return state_of(request)


def state_of(request: Request) -> AppState:
    state: AppState = request.app.state.berth
    return state


State = Annotated[AppState, Depends(get_state)]


async def get_caller(request: Request) -> RequestContext:
    """The authenticated caller from ``X-Auth-Token`` (401 when missing or invalid)."""
    token = request.headers.get("x-auth-token")
    if not token:
        raise errors.Unauthorized("The request you have made requires authentication.")
    state = state_of(request)
    ctx = await state.caller_of(token)
    rid: str = getattr(request.state, "request_id", "")
    return dataclasses.replace(ctx, request_id=rid, auth_token=token)


Caller = Annotated[RequestContext, Depends(get_caller)]
