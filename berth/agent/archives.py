"""The agent's file-copy routes: a tar of a path out of a container, a tar into one.

Tars travel base64-encoded in JSON, as in Zun's own API; a caller that accepts
``application/x-tar`` (the control plane does) gets the tar itself and
its stat in the ``X-Berth-Stat`` header: a tar of 100 MB cost ~0.6 s of one
event loop as base64 in JSON (encoding, then rendering the JSON) and another
~0.5 s to parse again, each holding the GIL. Likewise an upload may come as the
tar itself (``Content-Type: application/x-tar``, what the control plane sends)
or, from an older control plane, as ``{"data": <base64>}``. An upload is checked again here
(``domain.archives.check_upload``) before the engine extracts it: the agent
never trusts that its caller did. ``limit`` (bytes) is the control plane's
``archive_max_bytes``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from typing import Any

from fastapi import FastAPI, Request, Response
from pydantic import BaseModel, Field, ValidationError

from berth import errors
from berth.domain.archives import STAT_HEADER, TAR, check_upload
from berth.runtimes.base import RuntimeDriver

__all__ = ["PutArchiveRequest", "add_archive_routes"]

_DEFAULT_LIMIT = 100 * 1024 * 1024


class PutArchiveRequest(BaseModel):
    """A tar, base64-encoded."""

    data: str = Field(min_length=1)


def add_archive_routes(app: FastAPI, runtime: RuntimeDriver, guarded: list[Any]) -> None:
    """Add ``GET``/``PUT /v1/containers/{uuid}/archive?path=`` to the agent ``app``."""

    @app.get("/v1/containers/{uuid}/archive", dependencies=guarded, response_model=None)
    async def get_archive(
        uuid: str, path: str, request: Request, limit: int = _DEFAULT_LIMIT
    ) -> dict[str, Any] | Response:
        data, stat = await runtime.get_archive(uuid, path, limit)
        if TAR in request.headers.get("accept", ""):
            return Response(data, media_type=TAR, headers={STAT_HEADER: json.dumps(stat)})
        return {"data": base64.b64encode(data).decode(), "stat": stat}

    @app.put("/v1/containers/{uuid}/archive", dependencies=guarded)
    async def put_archive(
        uuid: str, path: str, request: Request, limit: int = _DEFAULT_LIMIT
    ) -> dict[str, int]:
        raw = await request.body()
        data = raw if request.headers.get("content-type", "").startswith(TAR) else _decoded(raw)
        size = await asyncio.to_thread(check_upload, data, limit)  # seconds of work: off the loop
        await runtime.put_archive(uuid, path, data)
        return {"size": size}


def _decoded(raw: bytes) -> bytes:
    """The tar of an older control plane's ``{"data": <base64>}`` body."""
    try:
        body = PutArchiveRequest.model_validate_json(raw)
    except ValidationError as exc:
        raise errors.Invalid(f"The archive request is not {{'data': <base64>}}: {exc}.") from None
    try:
        return base64.b64decode(body.data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise errors.Invalid(f"The archive is not valid base64: {exc}.") from None
