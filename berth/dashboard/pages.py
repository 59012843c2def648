"""How every dashboard route runs: find the session, call the handler, turn errors into pages.

A page handler receives the request and the session. Errors from the services
become an error page (403, 404, ...) whose message says what to do next; a
form handler's errors become a flash message on the page the form came from.
Fragments (what htmx polls) answer ``HX-Redirect`` when the session ended or
the resource is gone, so the browser moves on instead of showing a stale page.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from berth import errors
from berth.dashboard.render import fragment, page
from berth.dashboard.session import Session, check_csrf, load_session, read_form, set_flash

__all__ = [
    "Endpoint",
    "FormHandler",
    "PageHandler",
    "explain",
    "form_route",
    "fragment_route",
    "page_route",
    "redirect",
    "status_of",
]

Endpoint = Callable[[Request], Awaitable[Response]]
PageHandler = Callable[[Request, Session], Awaitable[Response]]
FormHandler = Callable[[Request, Session, dict[str, str]], Awaitable[Response]]

_STATUS: list[tuple[type[errors.BerthError], int]] = [
    (errors.Unauthorized, 401),
    (errors.Invalid, 400),
    (errors.Forbidden, 403),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.UnsupportedMediaType, 415),
    (errors.HostUnavailable, 503),
    # The service's own conditions, not the form's: retry, do not edit.
    (errors.Overloaded, 503),
    (errors.DatabaseUnavailable, 503),
    (errors.IdentityUnavailable, 503),
]


def explain(exc: errors.BerthError, session: Session | None = None) -> str:
    """The error's message, with what to do next when the message does not say it."""
    project = session.ctx.project_name if session else None
    where = f" in project {project}" if project else ""
    if isinstance(exc, errors.Forbidden) and not isinstance(exc, errors.OverQuota):
        return (
            f"{exc.message} Your roles{where} do not allow it: ask an admin for a role that "
            "does, or switch to a project where you may."
        )
    if isinstance(exc, errors.HostUnavailable):
        return (
            f"{exc.message} Try again in a moment; if it persists, ask an operator to check "
            "that host's agent."
        )
    if isinstance(exc, errors.InvalidStateException):
        return f"{exc.message} Wait for the current operation to finish, then try again."
    if isinstance(exc, errors.NotFound):
        return f"{exc.message} It may have been deleted, or belong to another project."
    return exc.message


def status_of(exc: errors.BerthError) -> int:
    """The HTTP status a page or a fragment answers for a service's error."""
    return next((code for cls, code in _STATUS if isinstance(exc, cls)), 400)


def redirect(url: str, flash: tuple[str, str] | None = None) -> Response:
    """303 See Other to ``url`` (the answer to every successful form), with a flash message."""
    response = RedirectResponse(url, status_code=303)
    if flash is not None:
        set_flash(response, *flash)
    return response


def _to_login(request: Request, message: str | None = None) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return redirect(f"/login?next={quote(target, safe='')}", ("info", message) if message else None)


async def _error_page(request: Request, session: Session, exc: errors.BerthError) -> Response:
    status = status_of(exc)
    title = {403: "Not allowed", 404: "Not found", 503: "Host unavailable"}.get(status, "Error")
    return await page(
        request, "error.html", session, status=status, title=title, message=explain(exc, session)
    )


def page_route(handler: PageHandler) -> Endpoint:
    """A GET page that needs a session (otherwise: the login page, then back here)."""

    async def endpoint(request: Request) -> Response:
        session = await load_session(request)
        if session is None:
            return _to_login(request)
        try:
            return await handler(request, session)
        except errors.Unauthorized:
            return _to_login(request, "Your session has ended: log in again.")
        except errors.BerthError as exc:
            return await _error_page(request, session, exc)

    return endpoint


def form_route(handler: FormHandler, back: Callable[[Request], str]) -> Endpoint:
    """A POST form: session and CSRF checked; an error goes back to ``back(request)`` as a flash."""

    async def endpoint(request: Request) -> Response:
        session = await load_session(request)
        if session is None:
            return _to_login(request, "Your session has ended: log in again.")
        try:
            form = await read_form(request)
            check_csrf(request, session, form)
        except errors.BerthError as exc:
            return await _error_page(request, session, exc)
        try:
            return await handler(request, session, form)
        except errors.Unauthorized:
            return _to_login(request, "Your session has ended: log in again.")
        except errors.BerthError as exc:
            return redirect(back(request), ("error", explain(exc, session)))

    return endpoint


def fragment_route(handler: PageHandler, gone: str = "/") -> Endpoint:
    """A piece htmx polls: ``HX-Redirect`` to the login page or to ``gone`` instead of errors."""

    async def endpoint(request: Request) -> Response:
        session = await load_session(request)
        if session is None:
            return Response(status_code=204, headers={"HX-Redirect": "/login"})
        try:
            return await handler(request, session)
        except errors.Unauthorized:
            return Response(status_code=204, headers={"HX-Redirect": "/login"})
        except errors.NotFound as exc:
            response = Response(status_code=204, headers={"HX-Redirect": gone})
            set_flash(response, "info", explain(exc, session))
            return response
        except errors.BerthError as exc:
            return fragment("error_fragment.html", message=explain(exc, session))

    return endpoint
