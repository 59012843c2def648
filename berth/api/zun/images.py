"""Image routes: the Zun image API, container commit, and Berth's upload into the image store."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import IO, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from berth import errors
from berth.api.deps import Caller, State
from berth.api.openapi import body, model_schema, props
from berth.api.zun.params import (
    action_params,
    json_body,
    next_link,
    parse_bool,
    parse_int,
    sort_params,
)
from berth.api.zun.schemas import parse_model
from berth.api.zun.views import endpoint_url, links
from berth.domain.paging import Paging
from berth.services.images import images as svc
from berth.services.images import search as image_search
from berth.services.images import store as image_store
from berth.store.tables import ImageRow

__all__ = ["image_view", "router"]

_WRITE_BYTES = 1024 * 1024  # an upload's body is written to its file in pieces this big

router = APIRouter()


class _PullBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    repo: str = Field(min_length=2, max_length=255)
    host: str = Field(min_length=1, max_length=255)
    image_id: str | None = None
    tag: str | None = Field(default=None, max_length=128)
    size: str | None = Field(default=None, pattern=r"^[0-9]+[bBkKmMgG]?$")
    image_pull_policy: str | None = None


def image_view(row: ImageRow, base: str) -> dict[str, Any]:
    """An image as Zun shows it, plus Berth's status, reason and visibility."""
    return {
        "uuid": row.uuid,
        "links": links(base, "images", row.uuid),
        "image_id": row.image_id,
        "repo": row.repo,
        "tag": row.tag,
        "size": row.size,
        "project_id": row.project_id,
        "host": row.host,
        "status": row.status,
        "status_reason": row.status_reason,
        "visibility": row.visibility,
    }


@router.get("/v1/images")
async def list_images(request: Request, caller: Caller, state: State) -> dict[str, Any]:
    q = request.query_params
    sort_key, sort_dir = sort_params(q)
    paging = Paging(
        parse_int(q.get("limit"), "limit", minimum=1), q.get("marker"), sort_key, sort_dir
    )
    rows, page = await svc.list_images(state.env, caller, paging=paging)
    base = endpoint_url(request)
    nxt = next_link(base, "images", [r.uuid for r in rows], page, sort_key, sort_dir)
    return {"images": [image_view(r, base) for r in rows], "next": nxt}


@router.post("/v1/images", openapi_extra=body(model_schema(_PullBody)))
async def pull_image(request: Request, caller: Caller, state: State) -> JSONResponse:
    body = parse_model(_PullBody, await json_body(request, required=True))
    row = await svc.pull(state.env, caller, body.repo, body.host, body.tag)
    base = endpoint_url(request)
    return JSONResponse(
        image_view(row, base),
        status_code=202,
        headers={"Location": f"{base}/v1/images/{row.uuid}"},
    )


@router.post("/v1/images/upload")
async def upload_image(request: Request, caller: Caller, state: State) -> JSONResponse:
    """Berth: a ``docker save`` archive as the body; ``name``/``public`` in the query."""
    q = request.query_params
    public = parse_bool(q.get("public"), "public", extended=True)
    name = q.get("name") or None
    image_store.authorize_upload(state.env, caller, public)
    # Before the body is read (an upload that replaces its named image adds none).
    named = image_store.store_name(name) if name else None
    replacing = (*named, public) if named else None
    await image_store.room_for_an_image(state.env, caller.project_id or "", replacing=replacing)
    await image_store.room_for_bytes(state.env, caller.project_id or "")
    tmp_dir = state.settings.data_dir / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    with (
        image_store.upload_slot(state.env, caller),
        tempfile.NamedTemporaryFile(dir=tmp_dir, prefix="upload-", suffix=".tar") as tmp,
    ):
        received = await _receive(request, tmp)
        if received == 0:
            raise errors.Invalid("The body is empty: send a 'docker save' archive.")
        await image_store.room_for_bytes(state.env, caller.project_id or "", received)
        rows = await image_store.upload(state.env, caller, Path(tmp.name), name=name, public=public)
    base = endpoint_url(request)
    return JSONResponse({"images": [image_view(r, base) for r in rows]}, status_code=201)


async def _receive(request: Request, tmp: IO[bytes]) -> int:
    """Write the body to ``tmp`` a MiB at a time in a thread: a write of gigabytes
    meets the kernel's dirty-page throttling, which would stall the event loop."""
    size, pending = 0, bytearray()
    async for chunk in request.stream():
        pending += chunk
        size += len(chunk)
        if len(pending) >= _WRITE_BYTES:
            await asyncio.to_thread(tmp.write, bytes(pending))
            pending.clear()
    await asyncio.to_thread(tmp.write, bytes(pending))
    await asyncio.to_thread(tmp.flush)
    return size


@router.get("/v1/images/{ident}")
async def show_image(ident: str, request: Request, caller: Caller, state: State) -> dict[str, Any]:
    return image_view(await svc.get(state.env, caller, ident), endpoint_url(request))


@router.delete("/v1/images/{ident}")
async def delete_image(ident: str, caller: Caller, state: State) -> JSONResponse:
    await svc.delete(state.env, caller, ident)
    return JSONResponse(None)


@router.get("/v1/images/{image:path}/search")
async def search_image(image: str, request: Request, caller: Caller, state: State) -> JSONResponse:
    q = request.query_params
    exact = parse_bool(q.get("exact_match"), "exact_match", extended=True)
    hits = await image_search.search(state.env, caller, image, q.get("image_driver"), exact)
    return JSONResponse(hits)


@router.post(
    "/v1/containers/{ident}/commit",
    openapi_extra=body(props(repository="str", tag="str"), required=False),
)
async def commit(ident: str, request: Request, caller: Caller, state: State) -> JSONResponse:
    p = await action_params(request)
    repository = p.get("repository")
    if not isinstance(repository, str) or not repository.strip():
        raise errors.Invalid("Invalid input for field 'repository': a repository is required.")
    tag = p.get("tag")
    tag = str(tag) if tag not in (None, "", "None") else None
    row = await svc.commit(state.env, caller, ident, repository.strip(), tag)
    return JSONResponse({"uuid": row.uuid}, status_code=202)
