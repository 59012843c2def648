"""The container detail page's live streams: the in-browser terminal and the followed logs.

The terminal is the very session ``openstack appcontainer exec --interactive``
opens: ``streams.open_exec`` (policy ``container:execute``, the container
Running) creates an exec with a TTY on the container's agent and issues a
single-use token; the browser (xterm.js, ``static/terminal.js``) then opens the
API's own websocket ``/container/v1/ws`` with it (subprotocol ``binary``), and
forwards its size through ``streams.execute_resize``. Both calls are POSTs with
this session's CSRF token, answered in JSON.

Following the logs is ``streams.follow_logs`` (what ``logs?follow=True``
streams): chunked ``text/plain`` that the page reads with ``fetch`` and appends,
until the container stops or the page stops reading.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from berth import errors
from berth.dashboard.pages import explain, status_of
from berth.dashboard.render import SECURITY_HEADERS, env_of
from berth.dashboard.session import Session, check_csrf, load_session, read_form
from berth.services.containers import streams

__all__ = ["follow_logs", "json_route", "open_terminal", "resize_terminal"]

JsonHandler = Callable[[Request, Session, dict[str, str]], Awaitable[Response]]

_MAX_TERMINAL = 1000  # columns or rows: larger is a broken client, not a screen
_DEFAULT_COMMAND = "sh"
_LOG_TAIL = 200


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(
        {"error": message}, status_code=status, headers={"Cache-Control": "no-store"}
    )


def json_route(handler: JsonHandler) -> Callable[[Request], Awaitable[Response]]:
    """A POST called by the page's script: session and CSRF checked, errors as JSON."""

    async def endpoint(request: Request) -> Response:
        session = await load_session(request)
        if session is None:
            return _error(401, "Your session has ended: reload the page and log in again.")
        try:
            form = await read_form(request)
            check_csrf(request, session, form)
            return await handler(request, session, form)
        except errors.BerthError as exc:
            status = status_of(exc)
            return _error(status, explain(exc, session))

    return endpoint


def _size(form: dict[str, str]) -> tuple[int, int]:
    try:
        cols, rows = int(form.get("cols", "")), int(form.get("rows", ""))
    except ValueError:
        raise errors.Invalid("The terminal size needs whole numbers of columns and rows.") from None
    if not (1 <= cols <= _MAX_TERMINAL and 1 <= rows <= _MAX_TERMINAL):
        raise errors.Invalid(f"The terminal size must be 1 to {_MAX_TERMINAL} columns and rows.")
    return cols, rows


async def open_terminal(request: Request, session: Session, form: dict[str, str]) -> Response:
    """Start a shell (or ``command``) with a TTY; the websocket path to join it, and its exec id.

    The page sends the terminal's size once it has joined (an exec's TTY exists only then),
    as the stock client does."""
    ident = request.path_params["ident"]
    command = form.get("command", "").strip() or _DEFAULT_COMMAND
    env = env_of(request)
    opened = await streams.open_exec(env, session.ctx, ident, command, tty=True)
    exec_id = str(opened["exec_id"])
    url = urlsplit(str(opened["proxy_url"]))
    # The page joins on its own origin: the public URL may name another host than the browser's.
    return JSONResponse(
        {"path": f"{url.path}?{url.query}", "exec_id": exec_id, "command": command},
        headers={"Cache-Control": "no-store"},
    )


async def resize_terminal(request: Request, session: Session, form: dict[str, str]) -> Response:
    """Forward the terminal's new size to the exec's TTY."""
    exec_id = form.get("exec_id", "")
    if not exec_id or len(exec_id) > 80 or any(c not in "0123456789abcdef" for c in exec_id):
        raise errors.Invalid("An exec id is required: reopen the terminal.")
    cols, rows = _size(form)
    await streams.execute_resize(
        env_of(request), session.ctx, request.path_params["ident"], exec_id, cols, rows
    )
    return JSONResponse(None, headers={"Cache-Control": "no-store"})


async def follow_logs(request: Request) -> Response:
    """The container's output as it comes (the last lines first), as chunked text/plain."""
    session = await load_session(request)
    if session is None:
        return Response("Your session has ended: log in again.\n", status_code=401)
    try:
        tail = int(request.query_params.get("tail", _LOG_TAIL))
    except ValueError:
        tail = _LOG_TAIL
    params = {"stdout": True, "stderr": True, "timestamps": False, "tail": str(max(tail, 0))}
    try:
        stream = await streams.follow_logs(
            env_of(request), session.ctx, request.path_params["ident"], params
        )
    except errors.BerthError as exc:
        status = status_of(exc)
        return Response(
            explain(exc, session) + "\n",
            status_code=status,
            media_type="text/plain; charset=utf-8",
            headers=SECURITY_HEADERS,
        )
    return StreamingResponse(
        stream.chunks(),
        media_type="text/plain; charset=utf-8",
        headers={**SECURITY_HEADERS, "X-Accel-Buffering": "no"},
        background=BackgroundTask(stream.aclose),
    )
