"""The only place that knows HTTP status codes and the error bodies of each API.

Zun:      {"errors": [{"request_id", "code": "container.<kebab>", "status", "title",
                       "detail", "links"}]}
Magnum:   {"errors": [{"request_id", "code": "client"|"server", "status", "title",
                       "detail", "links"}]}  (401s keep keystonemiddleware's body)
Keystone: {"error": {"code": <status>, "title": <reason>, "message": <text>}}
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from berth import errors as e

__all__ = ["error_response", "install_error_handlers", "status_of"]

log = logging.getLogger(__name__)

_STATUS: list[tuple[type[e.BerthError], int]] = [
    (e.Invalid, 400),
    (e.Unauthorized, 401),
    (e.Forbidden, 403),
    (e.NotFound, 404),
    (e.NotAcceptable, 406),
    (e.Conflict, 409),
    (e.UnsupportedMediaType, 415),
    (e.TooManyAttempts, 429),
    (e.HostUnavailable, 503),
    (e.Overloaded, 503),
    (e.DatabaseUnavailable, 503),
    (e.IdentityUnavailable, 503),
]


def status_of(exc: e.BerthError) -> int:
    """The HTTP status of a domain error."""
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def _flavour(path: str) -> str:
    if path.startswith("/identity"):
        return "keystone"
    if path.startswith("/container-infra"):
        return "magnum"
    return "zun"


def error_response(
    request: Request,
    status: int,
    message: str,
    code: str = "",
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """Render an error in the format of the API the request was addressed to."""
    flavour = _flavour(request.url.path)
    title = HTTPStatus(status).phrase if status >= 500 or not message else message
    body: dict[str, Any]
    if flavour == "keystone" or (status == 401 and flavour in ("zun", "magnum")):
        body = {"error": {"code": status, "title": HTTPStatus(status).phrase, "message": message}}
    else:
        if flavour == "magnum":  # Magnum's parsable-error body: code is client or server
            wire_code = "client" if status < 500 else "server"
        else:
            wire_code = f"container.{code}"
        body = {
            "errors": [
                {
                    "request_id": getattr(request.state, "request_id", ""),
                    "code": wire_code,
                    "status": status,
                    "title": title,
                    "detail": message,
                    "links": [],
                }
            ]
        }
    return JSONResponse(body, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query"))
        msg = err.get("msg", "invalid")
        parts.append(f"Invalid input for field '{loc}': {msg}" if loc else f"Invalid input: {msg}")
    return "; ".join(parts) or "Invalid input"


def _auth_uri(request: Request) -> str:
    """Where a client gets a token: Berth's /identity/v3, or the external Keystone."""
    state = getattr(request.app.state, "berth", None)
    settings = getattr(state, "settings", None)
    if settings is not None and settings.identity_backend == "keystone":
        return str(settings.keystone_v3_url)
    return "/identity/v3"


def install_error_handlers(app: FastAPI) -> None:
    """Map domain errors, validation errors and stray HTTP errors to API error bodies."""

    @app.exception_handler(e.BerthError)
    async def _domain(request: Request, exc: e.BerthError) -> JSONResponse:
        status = status_of(exc)
        headers = (
            {"WWW-Authenticate": f'Keystone uri="{_auth_uri(request)}"'} if status == 401 else None
        )
        if isinstance(exc, e.TooManyAttempts):
            headers = {"Retry-After": str(exc.retry_after)}
        elif isinstance(exc, e.Overloaded | e.DatabaseUnavailable):
            headers = {"Retry-After": "1"}
        return error_response(request, status, exc.message, e.error_code(exc), headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(request, 400, _validation_message(exc), "validation-error")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        return error_response(request, exc.status_code, detail, "", getattr(exc, "headers", None))

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, exc: ClientDisconnect) -> JSONResponse:
        # The caller hung up mid-request (e.g. an agent killed while reporting):
        # nothing to answer and nothing broken on our side.
        log.info("client left during %s %s", request.method, request.url.path)
        return error_response(request, 400, "The client disconnected before the request ended.")

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        state = getattr(request.app.state, "berth", None)
        if state is not None:
            state.saw_server_error.append(f"{request.method} {request.url.path}: {exc!r}")
        rid = getattr(request.state, "request_id", "")
        return error_response(
            request, 500, f"An unexpected error happened; quote request id {rid} to the operator."
        )
