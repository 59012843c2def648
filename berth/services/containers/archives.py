"""File copy (``openstack appcontainer cp``): a tar out of a container, a checked tar in."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from typing import Any

from berth import errors
from berth.domain.archives import check_upload
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


async def get_archive(
    env: Env, ctx: RequestContext, ident: str, path: str | None
) -> tuple[bytes, dict[str, Any]]:
    """The tar of ``path`` in the container and the engine's stat of it."""
    encoded, stat = await get_archive_base64(env, ctx, ident, path)
    return base64.b64decode(encoded), stat


async def get_archive_base64(
    env: Env, ctx: RequestContext, ident: str, path: str | None
) -> tuple[str, dict[str, Any]]:
    """``get_archive`` with the tar as its agent sent it, base64: what Zun's API answers
    from 1.25, passed on without decoding and encoding again (up to ~133 MB, each a
    pass that held the event loop ~0.2 s for 100 MB)."""
    row = await container_for(env, ctx, ident, "get_archive")
    limit = env.settings.archive_max_bytes
    result = await call_agent(
        env,
        row,
        "GET",
        "archive",
        params={"path": _path(path), "limit": limit},
        timeout=_COPY_TIMEOUT,
    )
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

    ``encoded``: ``data`` in base64 as the client sent it, passed on to the agent rather
    than encoded again (a pass that holds the event loop ~0.2 s per 100 MB).
    """
    row = await container_for(env, ctx, ident, "put_archive")
    limit = env.settings.archive_max_bytes
    # Off the event loop: decompressing and walking up to the limit takes seconds.
    await asyncio.to_thread(check_upload, data, limit)
    await call_agent(
        env,
        row,
        "PUT",
        "archive",
        params={"path": _path(path), "limit": limit},
        json={"data": encoded if encoded is not None else base64.b64encode(data).decode()},
        timeout=_COPY_TIMEOUT,
    )
