"""The agent's own HTTP API: the synchronous operations the control plane proxies.

Logs, exec, top, stats and live resource updates need an answer now, from the
host that runs the container (interactive sessions and log following:
``streams``; file copy: ``archives``). Every route but ``/healthz`` wants
``Authorization: Bearer <api_key>``. Errors are ``{"error": {"code", "message"}}``
with the code being the kebab-cased Berth error class.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from berth import errors
from berth.agent.archives import add_archive_routes
from berth.agent.images_api import image_router
from berth.agent.streams import add_stream_routes
from berth.runtimes.base import (
    EXECUTE_MAX_OUTPUT,
    RuntimeDriver,
    TopResult,
    ZunStats,
    parse_instant,
)
from berth.volumes.base import VolumeDriver

__all__ = ["ExecuteRequest", "UpdateRequest", "create_agent_app", "parse_since", "parse_tail"]

_STATUS: list[tuple[type[errors.BerthError], int]] = [
    (errors.Invalid, 400),
    (errors.Unauthorized, 401),
    (errors.Forbidden, 403),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.HostUnavailable, 503),
]


class ExecuteRequest(BaseModel):
    """Run ``command`` (an argv list) in the container, for at most ``timeout`` seconds."""

    command: list[str] = Field(min_length=1)
    timeout: float = Field(default=5.0, gt=0, le=3600)
    max_output: int = Field(default=EXECUTE_MAX_OUTPUT, gt=0, le=1024**3)


class UpdateRequest(BaseModel):
    """New limits: CPU cores and memory MiB (None leaves one as it is)."""

    cpu: float | None = Field(default=None, gt=0)
    memory: int | None = Field(default=None, gt=0)


def parse_tail(tail: str | None) -> int | None:
    """Zun's ``tail``: a line count, anything else meaning all lines (None)."""
    if tail is None or not tail.strip().isdigit():
        return None
    return int(tail)


def parse_since(since: str | None) -> float | None:
    """Zun's ``since``: epoch seconds, or ``YYYY-MM-DD HH:MM:SS[,fff]`` (UTC); None if unset."""
    if since is None or since.strip() in ("", "None"):
        return None
    text = since.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = parse_instant(text.replace(",", "."))
    except ValueError:
        moment = None
    if moment is None:
        raise errors.Invalid(
            f"since={since!r} is neither epoch seconds nor 'YYYY-MM-DD HH:MM:SS,fff'"
        )
    return moment.timestamp()


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def create_agent_app(runtime: RuntimeDriver, api_key: str) -> FastAPI:
    """The agent API over ``runtime``, guarded by ``api_key``."""
    app = FastAPI(title="Berth agent", docs_url=None, redoc_url=None, openapi_url=None)
    expected = f"Bearer {api_key}".encode()

    async def authorized(authorization: Annotated[str | None, Header()] = None) -> None:
        if not hmac.compare_digest((authorization or "").encode(), expected):
            raise errors.Unauthorized("a valid 'Authorization: Bearer <key>' header is required")

    guarded = [Depends(authorized)]

    @app.exception_handler(errors.BerthError)
    async def berth_error(request: Request, exc: errors.BerthError) -> JSONResponse:
        status = next((code for cls, code in _STATUS if isinstance(exc, cls)), 500)
        return _error(status, errors.error_code(exc), exc.message)

    @app.exception_handler(RequestValidationError)
    async def bad_input(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()
        )
        return _error(400, "invalid", detail or "invalid request")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/containers/{uuid}/logs", dependencies=guarded)
    async def logs(
        uuid: str,
        stdout: bool = True,
        stderr: bool = True,
        timestamps: bool = False,
        tail: str | None = None,
        since: str | None = None,
    ) -> dict[str, str]:
        text = await runtime.logs(
            uuid,
            stdout=stdout,
            stderr=stderr,
            timestamps=timestamps,
            tail=parse_tail(tail),
            since=parse_since(since),
        )
        return {"logs": text}

    @app.post("/v1/containers/{uuid}/execute", dependencies=guarded)
    async def execute(uuid: str, body: ExecuteRequest) -> dict[str, Any]:
        output, exit_code = await runtime.execute(uuid, body.command, body.timeout, body.max_output)
        return {"output": output, "exit_code": exit_code}

    @app.get("/v1/containers/{uuid}/top", dependencies=guarded)
    async def top(uuid: str, ps_args: str | None = None) -> TopResult:
        return await runtime.top(uuid, None if ps_args in (None, "", "None") else ps_args)

    @app.get("/v1/containers/{uuid}/stats", dependencies=guarded)
    async def stats(uuid: str) -> ZunStats:
        return await runtime.stats(uuid)

    @app.post("/v1/containers/{uuid}/update", dependencies=guarded)
    async def update(uuid: str, body: UpdateRequest) -> dict[str, Any]:
        await runtime.update(uuid, body.cpu, body.memory)
        return {"cpu": body.cpu, "memory": body.memory}

    @app.delete("/v1/volumes/{uuid}", dependencies=guarded)
    async def remove_volume(uuid: str) -> dict[str, Any]:
        # A runtime without a volume driver (the test fake) has no volume to remove.
        volumes: VolumeDriver | None = getattr(runtime, "volumes", None)
        if volumes is not None:
            await volumes.remove(uuid)  # in use: Conflict (409)
        return {"removed": uuid}

    app.include_router(image_router(runtime), dependencies=guarded)
    add_stream_routes(app, runtime, api_key, guarded)  # exec/attach sessions, logs follow
    add_archive_routes(app, runtime, guarded)  # get_archive / put_archive

    return app
