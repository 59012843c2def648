"""Logging in and out, and switching project: the token in the cookie is issued and re-scoped
through ``berth.services.identity``, exactly as keystoneauth would through the API."""

from __future__ import annotations

import datetime as dt

from starlette.requests import Request
from starlette.responses import Response

from berth import errors
from berth.dashboard.pages import form_route, redirect
from berth.dashboard.render import page
from berth.dashboard.session import (
    Flash,
    Session,
    check_login_csrf,
    clear_session,
    load_session,
    new_login_nonce,
    read_form,
    safe_next,
    set_login_nonce,
    set_session,
)
from berth.identity.models import AuthRequest, IssuedToken, PasswordCredentials, ScopeRequest
from berth.services import identity

__all__ = ["HOME", "home", "login_form", "login_submit", "logout", "switch_project"]

HOME = "/containers"
_BAD_LOGIN = (
    "Wrong user name, password or project. Check them and try again; the project must be one "
    "you hold a role in (leave it empty for your default project)."
)


async def home(request: Request) -> Response:
    """``/``: the containers of the logged-in project, or the login page."""
    return redirect(HOME if await load_session(request) else "/login")


async def login_form(request: Request) -> Response:
    """The login page (user, password, project, domain)."""
    if await load_session(request) is not None:
        return redirect(safe_next(request.query_params.get("next"), HOME))
    form = {
        "username": "",
        "project": "",
        "domain": "Default",
        "next": safe_next(request.query_params.get("next"), HOME),
    }
    return await _login_page(request, form, None, 200)


async def _login_page(
    request: Request, form: dict[str, str], error: str | None, status: int
) -> Response:
    nonce = new_login_nonce()
    flash = Flash("error", error) if error else None
    response = await page(
        request, "login.html", None, status=status, flash=flash, form=form, nonce=nonce
    )
    set_login_nonce(request, response, nonce)
    return response


def _max_age(issued: IssuedToken) -> int:
    return _seconds_left(issued.info.expires_at)


def _seconds_left(expires: dt.datetime) -> int:
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=dt.UTC)
    return max(60, int((expires - dt.datetime.now(dt.UTC)).total_seconds()))


async def login_submit(request: Request) -> Response:
    """Check the credentials; the cookie gets a token scoped to the chosen (or default) project."""
    try:
        form = await read_form(request)
        check_login_csrf(request, form)
    except errors.BerthError as exc:
        blank = {"username": "", "project": "", "domain": "Default", "next": HOME}
        return await _login_page(request, blank, exc.message, 403)
    domain = form.get("domain", "").strip() or "Default"
    username = form.get("username", "").strip()
    project = form.get("project", "").strip()
    shown = {
        "username": username,
        "project": project,
        "domain": domain,
        "next": safe_next(form.get("next"), HOME),
    }
    if not username or not form.get("password"):
        return await _login_page(request, shown, "Enter your user name and password.", 400)
    keystone = request.app.state.berth.keystone
    try:
        if keystone is not None:  # the cloud's Keystone issues the user's token
            user = await keystone.user_login(username, form["password"], project, domain)
            token, max_age = user.token, _seconds_left(user.expires_at)
        else:
            issued = await _password_login(request, username, form["password"], project, domain)
            token, max_age = issued.token, _max_age(issued)
    except errors.Unauthorized:
        return await _login_page(request, shown, _BAD_LOGIN, 401)
    except errors.TooManyAttempts as exc:
        throttled = await _login_page(request, shown, exc.message, 429)
        throttled.headers["Retry-After"] = str(exc.retry_after)
        return throttled
    except errors.Forbidden as exc:
        return await _login_page(request, shown, exc.message, 403)
    except errors.IdentityUnavailable as exc:
        return await _login_page(request, shown, exc.message, 503)
    response = redirect(shown["next"])
    set_session(request, response, token, max_age)
    return response


async def _password_login(
    request: Request, username: str, password: str, project: str, domain: str
) -> IssuedToken:
    state = request.app.state.berth
    scope = (
        ScopeRequest(kind="project", name=project, domain_name=domain)
        if project
        else ScopeRequest(kind="default")
    )
    creds = PasswordCredentials(password=password, user_name=username, domain_name=domain)
    req = AuthRequest(methods=("password",), password=creds, scope=scope)
    source = identity.source_address(
        request.client.host if request.client else None,
        request.headers.get("x-forwarded-for"),
        state.settings.trusted_proxies,
    )
    issued = await identity.authenticate(
        state.db, state.settings, req, with_catalog=False, source=source
    )
    if issued.info.scope == "project":
        return issued
    # No usable default project: land in the first project the user holds a role in.
    ctx = await identity.validate_token(state.db, issued.token)
    projects = await identity.list_auth_projects(state.db, ctx)
    try:
        if not projects:
            raise errors.Forbidden(identity.NO_PROJECT)
        return await _rescope(request, issued.token, projects[0].id)
    finally:
        await identity.revoke_token(state.db, ctx, issued.token)


async def _rescope(request: Request, token: str, project_id: str) -> IssuedToken:
    state = request.app.state.berth
    req = AuthRequest(
        methods=("token",), token=token, scope=ScopeRequest(kind="project", id=project_id)
    )
    return await identity.authenticate(state.db, state.settings, req, with_catalog=False)


async def _logout(request: Request, session: Session, form: dict[str, str]) -> Response:
    await _revoke(request, session)
    response = redirect("/login", ("ok", "You are logged out."))
    clear_session(response)
    return response


async def _switch(request: Request, session: Session, form: dict[str, str]) -> Response:
    project_id = form.get("project_id", "")
    if project_id == session.ctx.project_id:
        return redirect(HOME)
    state = request.app.state.berth
    try:
        if state.keystone is not None:
            user = await state.keystone.rescope(session.token, project_id)
            token, max_age = user.token, _seconds_left(user.expires_at)
            name = (await state.caller_of(token)).project_name or project_id
        else:
            issued = await _rescope(request, session.token, project_id)
            token, max_age = issued.token, _max_age(issued)
            name = issued.info.project.name if issued.info.project else project_id
    except errors.Unauthorized:
        return redirect(HOME, ("error", "You hold no role in that project any more: pick another."))
    await _revoke(request, session)
    response = redirect(HOME, ("ok", f"Now working in project {name}."))
    set_session(request, response, token, max_age)
    return response


async def _revoke(request: Request, session: Session) -> None:
    state = request.app.state.berth
    if state.keystone is not None:
        await state.keystone.revoke(session.token)
    else:
        await identity.revoke_token(state.db, session.ctx, session.token)


logout = form_route(_logout, lambda request: HOME)
switch_project = form_route(_switch, lambda request: HOME)
