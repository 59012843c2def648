"""File copy (``openstack appcontainer cp``): a tar out of a container, a checked tar in."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from typing import Any

from berth import errors
from berth.domain.archives import STAT_HEADER, TAR, check_upload
from berth.domain.context import RequestContext
from berth.services.env import Env
from berth.services.hosts.calls import call_agent, container_for
from berth.services.slots import Slots

__all__ = ["copy_slot", "get_archive", "get_archive_base64", "put_archive"]

_COPY_TIMEOUT = 300.0  # seconds: up to archive_max_bytes through the agent
_copies = Slots()  # copies running in this process


def copy_slot(env: Env, ctx: RequestContext) -> contextlib.AbstractContextManager[None]:
    """Count one copy of the caller's project while the block runs (hold it around the
    whole request); ``OverQuota`` before the block when the project or process is full."""
    bounds = env.settings.max_copies_per_project, env.settings.max_copies
    return _copies.count(ctx.project_id or "", bounds, "file copies", "max_copies")


def _path(path: str | None) -> str:
    if not path or path == "None":
        raise errors.Invalid("Invalid input for field 'path': a path in the container is required.")
    return path


_PIECE = 3 * 1024 * 1024  # bytes base64-encoded per turn of the event loop (~6 ms)


async def get_archive(
    env: Env, ctx: RequestContext, ident: str, path: str | None
) -> tuple[bytes, dict[str, Any]]:
    """The tar of ``path`` in the container and the engine's stat of it."""
    tar, stat = await _fetch(env, ctx, ident, path)
    return (tar if isinstance(tar, bytes) else base64.b64decode(tar)), stat


async def get_archive_base64(
    env: Env, ctx: RequestContext, ident: str, path: str | None
) -> tuple[bytes, dict[str, Any]]:
    """``get_archive`` with the tar in base64 (ASCII bytes), what Zun's API answers from
    1.25: encoded a few MiB per turn of the event loop, which one pass over 100 MB held
    ~0.2 s (``base64`` holds the GIL: a thread would not help)."""
    tar, stat = await _fetch(env, ctx, ident, path)
    if isinstance(tar, str):  # an older agent: base64 in JSON
        return tar.encode("ascii"), stat
    view, pieces = memoryview(tar), []
    for start in range(0, len(view), _PIECE):
        if start:
            await asyncio.sleep(0)
        pieces.append(base64.b64encode(view[start : start + _PIECE]))
    return b"".join(pieces), stat


async def _fetch(
    env: Env, ctx: RequestContext, ident: str, path: str | None
) -> tuple[bytes | str, dict[str, Any]]:
    """The tar as the agent sent it (bytes; base64 text from an older agent), its stat."""
    row = await container_for(env, ctx, ident, "get_archive")
    limit = env.settings.archive_max_bytes
    answer = await call_agent(
        env,
        row,
        "GET",
        "archive",
        params={"path": _path(path), "limit": limit},
        timeout=_COPY_TIMEOUT,
        accept=TAR,
    )
    if answer.headers.get("content-type", "").startswith(TAR):
        return answer.content, dict(json.loads(answer.headers.get(STAT_HEADER) or "{}"))
    result = answer.json()
    return str(result["data"]), dict(result["stat"])


async def put_archive(
    env: Env,
    ctx: RequestContext,
    ident: str,
    path: str | None,
    data: bytes,
    encoded: str | None = None,
) -> None:
    """Extract the tar ``data`` into the directory ``path``, refusing unsafe archives (400).

    The agent gets the tar itself: as base64 in JSON, 100 MB cost the API's event loop
    a JSON rendering and the agent's a JSON parse and a decoding. An agent older than
    that refuses the body as not JSON (a 400 naming ``body``); it then gets the JSON,
    with ``encoded``, ``data`` in base64 as the client sent it, if there is one.
    """
    row = await container_for(env, ctx, ident, "put_archive")
    limit = env.settings.archive_max_bytes
    params = {"path": _path(path), "limit": limit}
    # Off the event loop: decompressing and walking up to the limit takes seconds.
    await asyncio.to_thread(check_upload, data, limit)
    try:
        await call_agent(
            env, row, "PUT", "archive", params=params, content=(data, TAR), timeout=_COPY_TIMEOUT
        )
    except errors.Invalid as exc:
        if not exc.message.startswith(_OLD_AGENT):
            raise
        body = {"data": encoded if encoded is not None else base64.b64encode(data).decode()}
        await call_agent(
            env, row, "PUT", "archive", params=params, json=body, timeout=_COPY_TIMEOUT
        )


# How an agent that reads only {"data": <base64>} refuses a tar body: its request
# validation names the field's location first (berth.agent.server ``bad_input``).
_OLD_AGENT = "body"
