"""The browser session: a cookie holding the Keystone token, CSRF tokens and flash messages.

The session cookie carries the project-scoped token itself (HttpOnly,
SameSite=Strict, Secure over HTTPS), so every API process can serve any
browser without shared session state, and revoking the token ends the session
at once. Every POST form carries a CSRF token derived from the session token
(an HMAC only the cookie's holder can compute); the login form, before there
is a session, uses a double-submit cookie instead.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from starlette.requests import Request
from starlette.responses import Response

from berth import errors
from berth.domain.context import RequestContext
from berth.domain.text import CONTROL_BUT_LINES

__all__ = [
    "FLASH_COOKIE",
    "LOGIN_COOKIE",
    "SESSION_COOKIE",
    "Flash",
    "Session",
    "check_csrf",
    "check_login_csrf",
    "clear_flash",
    "clear_session",
    "csrf_for",
    "load_session",
    "new_login_nonce",
    "read_flash",
    "read_form",
    "safe_next",
    "set_flash",
    "set_login_nonce",
    "set_session",
]

SESSION_COOKIE = "berth_session"
LOGIN_COOKIE = "berth_login"
FLASH_COOKIE = "berth_flash"
_CSRF_CONTEXT = b"berth-dashboard-csrf-v1"
_MAX_FORM_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Flash:
    """A message shown once on the next page: ``level`` is ok, info or error."""

    level: str
    text: str


@dataclass(frozen=True, slots=True)
class Session:
    """A logged-in browser: its token, who it is, and the CSRF token its forms carry."""

    token: str
    ctx: RequestContext

    @property
    def csrf(self) -> str:
        return csrf_for(self.token)


def csrf_for(token: str) -> str:
    """The CSRF token of a session: unguessable without the (HttpOnly) session token."""
    return hmac.new(token.encode(), _CSRF_CONTEXT, hashlib.sha256).hexdigest()


async def load_session(request: Request) -> Session | None:
    """The session of the request's cookie, or None when absent, expired or revoked."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    try:
        ctx = await request.app.state.berth.caller_of(token)
    except errors.Unauthorized:
        return None
    if ctx.project_id is None:
        return None
    rid: str = getattr(request.state, "request_id", "")
    return Session(
        token=token,
        ctx=dataclasses.replace(ctx, request_id=rid),
    )


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_session(request: Request, response: Response, token: str, max_age: int) -> None:
    """Store the token in the session cookie."""
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )


def clear_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")


def new_login_nonce() -> str:
    """A fresh double-submit value for the login form (see ``set_login_nonce``)."""
    return secrets.token_urlsafe(24)


def set_login_nonce(request: Request, response: Response, nonce: str) -> None:
    """Set the login form's nonce as a cookie too; the POST must carry both, equal."""
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        max_age=3600,
        path="/",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )


def _same_origin(request: Request) -> bool:
    """A cross-site POST is refused even before its CSRF token is looked at."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", request.url.netloc)


def check_csrf(request: Request, session: Session, form: dict[str, str]) -> None:
    """``Forbidden`` unless the form carries this session's CSRF token from our own origin."""
    sent = form.get("csrf", "")
    if not _same_origin(request) or not hmac.compare_digest(sent, session.csrf):
        raise errors.Forbidden(
            "This form has expired or did not come from this dashboard: reload the page and "
            "try again."
        )


def check_login_csrf(request: Request, form: dict[str, str]) -> None:
    """``Forbidden`` unless the login form's nonce matches its cookie."""
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    sent = form.get("csrf", "")
    if not _same_origin(request) or not cookie or not hmac.compare_digest(sent, cookie):
        raise errors.Forbidden(
            "The login form has expired (or cookies are blocked): reload the page and log in again."
        )


async def read_form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body as a dict (the last value of a key wins)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip()
    if ctype != "application/x-www-form-urlencoded":
        raise errors.UnsupportedMediaType("The dashboard accepts HTML form posts only.")
    body = await request.body()
    if len(body) > _MAX_FORM_BYTES:
        raise errors.Invalid("The form is too large.")
    form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    # No field takes a NUL or another control character (a textarea's lines and tabs
    # aside): on PostgreSQL a NUL reached the row and was a 500.
    for key, value in form.items():
        if CONTROL_BUT_LINES.search(key) or CONTROL_BUT_LINES.search(value):
            raise errors.Invalid(
                f"The field {key[:40]!r} holds a NUL or another control character: remove it."
            )
    return form


def set_flash(response: Response, level: str, text: str) -> None:
    """Show ``text`` once on the next page this browser loads."""
    value = quote(json.dumps([level, text[:1500]]), safe="")
    response.set_cookie(FLASH_COOKIE, value, path="/", httponly=True, samesite="strict")


def read_flash(request: Request) -> Flash | None:
    """The pending flash message (``clear_flash`` on the response shows it only once)."""
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        level, text = json.loads(unquote(raw))
        str(text).encode("utf-8")  # a lone surrogate (\ud800) could not be rendered: a 500
    # UnicodeEncodeError is a ValueError; RecursionError: a cookie of nested "[" (a 500).
    except (ValueError, TypeError, RecursionError):
        return None
    if level not in ("ok", "info", "error"):
        level = "info"
    return Flash(str(level), str(text))


def clear_flash(response: Response) -> None:
    response.delete_cookie(FLASH_COOKIE, path="/", httponly=True, samesite="strict")


def safe_next(value: str | None, default: str = "/") -> str:
    """A local path to go to after login; anything else (another site) becomes ``default``."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    return value
