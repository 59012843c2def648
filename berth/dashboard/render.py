"""Server-side rendering: the Jinja2 environment, page responses and the security headers."""

from __future__ import annotations

import datetime as dt
import shlex
from collections.abc import Callable, Sequence
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from berth import errors
from berth.dashboard.session import Flash, Session, clear_flash, read_flash
from berth.services import identity
from berth.services.env import Env

__all__ = [
    "SECURITY_HEADERS",
    "TERMINAL_CSP",
    "Can",
    "can_admin",
    "env_of",
    "fragment",
    "page",
    "permissions",
]

# What templates ask before offering a button or a form: ``can(rule, project_id=None)``.
Can = Callable[..., bool]

# Only our own scripts and styles; no inline code, no framing, no third parties.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
# The page with a terminal: xterm.js sizes its cells with <style> elements it writes itself,
# so styles (never scripts) may be inline there.
TERMINAL_CSP = SECURITY_HEADERS["Content-Security-Policy"].replace(
    "style-src 'self'", "style-src 'self' 'unsafe-inline'"
)

_STATUS_CLASS = {
    "Running": "ok",
    "Created": "idle",
    "Stopped": "idle",
    "Paused": "warn",
    "Creating": "busy",
    "Restarting": "busy",
    "Deleting": "busy",
    "Rebuilding": "busy",
    "Error": "bad",
    "Dead": "bad",
    "Unknown": "warn",
}


def _ago(value: dt.datetime | None) -> str:
    if value is None:
        return "—"
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    seconds = int((dt.datetime.now(dt.UTC) - value).total_seconds())
    if seconds < 60:
        return f"{max(seconds, 0)} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} d ago"


def _when(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "—"


def _num(value: float) -> str:
    return f"{value:g}"


def _build() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("berth.dashboard", "templates"),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["ago"] = _ago
    env.filters["when"] = _when
    env.filters["num"] = _num
    env.filters["shjoin"] = lambda argv: shlex.join(str(a) for a in argv)
    env.filters["status_class"] = lambda s: _STATUS_CLASS.get(str(s), "idle")
    return env


# Compiled templates only: read-only after import, shared by every app in the process.
_JINJA = _build()


def env_of(request: Request) -> Env:
    """The services Env of the app serving ``request``."""
    env: Env = request.app.state.berth.env
    return env


def can_admin(request: Request, session: Session) -> bool:
    """Whether the admin pages (hosts, services, quotas) are for this caller."""
    return env_of(request).allowed(session.ctx, "host:get_all")


def permissions(request: Request, session: Session | None) -> Can:
    """The policy question templates ask: may this session use ``rule`` (on ``project_id``)?

    Templates offer a button or form only when the rule behind it allows the caller,
    so the page shows what the API would accept; the routes still enforce it.
    """
    if session is None:
        return lambda rule, project_id=None: False
    env, ctx = env_of(request), session.ctx

    def can(rule: str, project_id: str | None = None) -> bool:
        return env.allowed(ctx, rule, project_id)

    return can


def _headers(response: Response) -> Response:
    for key, value in SECURITY_HEADERS.items():
        response.headers.setdefault(key, value)
    return response


async def page(
    request: Request,
    template: str,
    session: Session | None,
    *,
    status: int = 200,
    flash: Flash | None = None,
    **values: Any,
) -> Response:
    """A whole page: the layout with navigation, project switcher and the pending flash."""
    pending = flash or read_flash(request)
    projects: Sequence[Any] = []
    if session is not None:
        projects = await _projects(request, session)
    layout = {
        "session": session,
        "csrf": session.csrf if session else "",
        "is_admin": can_admin(request, session) if session else False,
        "may_images": (env_of(request).allowed(session.ctx, "image:get_all") if session else False),
        "projects": projects,
        "can": permissions(request, session),
        "flash": pending,
        "path": request.url.path,
    }
    html = _JINJA.get_template(template).render({**layout, **values})
    response = HTMLResponse(html, status_code=status)
    if flash is None and pending is not None:
        clear_flash(response)
    return _headers(response)


async def _projects(request: Request, session: Session) -> Sequence[Any]:
    """The switcher's projects (``id``, ``name``): the user's, from Berth's identity or the
    cloud's Keystone (which answers for the session's own token)."""
    state = request.app.state.berth
    if state.keystone is None:
        return await identity.list_auth_projects(state.db, session.ctx)
    try:
        mine: Sequence[Any] = await state.keystone.user_projects(session.token)
    except (errors.Unauthorized, errors.IdentityUnavailable):
        return []  # the page still shows; the next request's validation says what is wrong
    return mine


def fragment(
    template: str, *, status: int = 200, headers: dict[str, str] | None = None, **values: Any
) -> Response:
    """A piece of a page that htmx swaps in (no layout)."""
    html = _JINJA.get_template(template).render(**values)
    return _headers(HTMLResponse(html, status_code=status, headers=headers))
