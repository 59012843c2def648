"""File copy routes (``openstack appcontainer cp``): ``get_archive`` and ``put_archive``.

From microversion 1.25 the tar travels base64-encoded in ``data``; below it,
as a plain string (UTF-8, so only text files survive the trip, as in Zun).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from berth import errors
from berth.api.deps import Caller, State
from berth.api.openapi import body, props
from berth.api.zun.microversions import APIVersion, version_of
from berth.api.zun.params import action_params
from berth.api.zun.views import HeldResponse, json_bytes
from berth.services.containers import archives

__all__ = ["router"]

router = APIRouter()

_BASE64_SINCE = APIVersion(1, 25)


@router.get("/v1/containers/{ident}/get_archive", response_model=dict[str, Any])
async def get_archive(ident: str, request: Request, caller: Caller, state: State) -> Response:
    """``{"data": <tar>, "stat": {...}}`` of ``path`` in the container."""
    path = request.query_params.get("path")

    async def answer(held: contextlib.AsyncExitStack) -> bytes:
        # The copy is counted until its answer has been handed to the client.
        held.enter_context(archives.copy_slot(state.env, caller))
        if version_of(request) >= _BASE64_SINCE:
            # base64 needs no JSON escape: spliced in, not scanned again.
            encoded, stat = await archives.get_archive_base64(state.env, caller, ident, path)
            return b"".join((b'{"data":"', encoded, b'","stat":', json_bytes(stat), b"}"))
        data, stat = await archives.get_archive(state.env, caller, ident, path)
        return json_bytes({"data": data.decode("utf-8", errors="replace"), "stat": stat})

    return await HeldResponse.made(answer)


@router.post(
    "/v1/containers/{ident}/put_archive",
    openapi_extra=body(props(path="str", data="str"), required=False),
)
async def put_archive(ident: str, request: Request, caller: Caller, state: State) -> JSONResponse:
    """Extract the tar in ``data`` into the directory ``path`` (200 ``null``)."""
    limit = state.settings.archive_max_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit * 4 // 3 + 65536:
        raise errors.Invalid(
            f"The archive is larger than {limit} bytes (archive_max_bytes): copy less at once."
        )
    with archives.copy_slot(state.env, caller):
        return await _put(ident, request, caller, state)


async def _put(ident: str, request: Request, caller: Caller, state: State) -> JSONResponse:
    params = await action_params(request)
    raw = params.get("data")
    if not isinstance(raw, str) or not raw:
        raise errors.Invalid("Invalid input for field 'data': the tar archive is required.")
    encoded = None
    if version_of(request) >= _BASE64_SINCE:
        try:
            data = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise errors.Base64Exception(
                "Invalid input for field 'data': it is not valid base64."
            ) from None
        encoded = raw  # valid: the agent gets it as it came
    else:
        data = raw.encode("utf-8", errors="surrogateescape")
    await archives.put_archive(state.env, caller, ident, params.get("path"), data, encoded)
    return JSONResponse(None)
