"""Interactive routes: attach, TTY resizes, and the streamed (followed) logs.

``execute`` with ``run=False`` (in ``containers``) and ``attach`` answer with
a websocket URL on this API (see ``wsproxy``); the stock client then resizes
the TTY through ``resize`` / ``execute_resize``. ``logs?follow=True`` is a
Berth extension: the stock client never sends it.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.background import BackgroundTask

from berth import errors
from berth.api.deps import Caller, State
from berth.api.openapi import body, props
from berth.api.zun.params import action_params, parse_int
from berth.services.containers import streams

__all__ = ["follow_logs", "router"]

router = APIRouter()

_EXEC_ID = re.compile(r"^[0-9a-f]{1,80}$")


def _size(params: dict[str, Any]) -> tuple[int, int]:
    # A terminal's size is 16-bit in the engine's API.
    width = parse_int(params.get("w"), "w", minimum=1, maximum=65535)
    height = parse_int(params.get("h"), "h", minimum=1, maximum=65535)
    if width is None or height is None:
        raise errors.Invalid("Invalid input: both w (columns) and h (rows) are required.")
    return width, height


@router.get("/v1/containers/{ident}/attach")
async def attach(ident: str, caller: Caller, state: State) -> JSONResponse:
    """The websocket URL (a JSON string) of a session on the container's main process."""
    return JSONResponse(await streams.attach_url(state.env, caller, ident))


@router.post(
    "/v1/containers/{ident}/resize", openapi_extra=body(props(h="int", w="int"), required=False)
)
async def resize(ident: str, request: Request, caller: Caller, state: State) -> JSONResponse:
    """Resize the container's TTY (200 ``null``)."""
    width, height = _size(await action_params(request))
    await streams.resize(state.env, caller, ident, width, height)
    return JSONResponse(None)


@router.post(
    "/v1/containers/{ident}/execute_resize",
    openapi_extra=body(props(exec_id="str", h="int", w="int"), required=False),
)
async def execute_resize(
    ident: str, request: Request, caller: Caller, state: State
) -> JSONResponse:
    """Resize an exec session's TTY (200 ``null``; 400 for an exec not of this container)."""
    params = await action_params(request)
    exec_id = str(params.get("exec_id") or "")
    if not _EXEC_ID.match(exec_id):
        raise errors.Invalid("Invalid input for field 'exec_id': an exec id is required.")
    width, height = _size(params)
    await streams.execute_resize(state.env, caller, ident, exec_id, width, height)
    return JSONResponse(None)


async def follow_logs(
    state: State, caller: Caller, ident: str, params: dict[str, Any]
) -> StreamingResponse:
    """``logs?follow=True``: chunked ``text/plain`` until the container stops or we leave."""
    stream = await streams.follow_logs(state.env, caller, ident, params)
    return StreamingResponse(
        stream.chunks(),
        media_type="text/plain; charset=utf-8",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        background=BackgroundTask(stream.aclose),
    )
