"""Tokens of an external Keystone: validated the way keystonemiddleware does it.

With ``identity_backend = keystone`` Berth issues no tokens. A request's
``X-Auth-Token`` is checked with ``GET /v3/auth/tokens`` (the token in
``X-Subject-Token``), authenticated as Berth's service user, whose own token
is fetched once, kept until shortly before it expires and fetched again when
Keystone refuses it (401). The answer gives the caller: user, project (or
domain) and roles. Keystone lists a role's implied roles in the token
(admin → manager → member → reader since 2023.1), so they count as held;
Berth's own implications (admin ⊃ member ⊃ reader) are applied on top.

Validations are cached in-process for ``keystone_token_cache_seconds`` (never
past the token's expiry), at most ``keystone_token_cache_size`` of them, the
oldest dropped first; refusals are cached for as long (a refused token never
becomes valid again). So a token revoked in Keystone is refused by Berth
within ``keystone_token_cache_seconds``. Keystone unreachable or failing gives
``IdentityUnavailable`` (503), never a 500 and never a silent pass.

Keystone's ``service`` role is held by every OpenStack service user (Nova's,
Glance's, …). Berth's ``service`` persona opens its agents' internal API, so it
is granted only to Berth's own service users (``keystone_service_username``
and ``keystone_agent_username`` in ``keystone_service_user_domain``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from berth import errors
from berth.config import Settings
from berth.domain.context import RequestContext
from berth.identity import roles as rules
from berth.identity.auth_request import by_name, password_auth, project_ref
from berth.services.identity._common import AUTH_REQUIRED, NO_PROJECT

__all__ = [
    "KeystoneTokens",
    "UserProject",
    "UserToken",
    "ValidationCache",
    "caller_from_token",
    "login_body",
]

log = logging.getLogger(__name__)

# Fernet tokens are ~200 characters; anything this long is not a token.
_MAX_TOKEN_CHARS = 8192
# The projects a page lists at most (the quotas page reads each one's usage).
MAX_LISTED_PROJECTS = 500
# The service token is fetched again this long before Keystone says it expires.
_RENEW_MARGIN = dt.timedelta(seconds=120)


@dataclass(frozen=True, slots=True)
class UserToken:
    """A user's own token from Keystone (a dashboard login): its text, expiry and project."""

    token: str
    expires_at: dt.datetime
    project_id: str | None


@dataclass(frozen=True, slots=True)
class UserProject:
    """A project the user holds a role in, as ``GET /v3/auth/projects`` lists it."""

    id: str
    name: str


@dataclass(frozen=True, slots=True)
class _Entry:
    caller: RequestContext | None  # None: Keystone refused the token
    until: float  # monotonic


class ValidationCache:
    """Keystone's verdicts by token digest, bounded in age and number (oldest out first)."""

    def __init__(
        self, ttl: float, max_entries: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl, self.max_entries, self._clock = ttl, max_entries, clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, digest: str) -> _Entry | None:
        """The remembered verdict on ``digest``, or None (never seen, or too old)."""
        entry = self._entries.get(digest)
        if entry is None:
            return None
        if entry.until <= self._clock():
            del self._entries[digest]
            return None
        return entry

    def put(self, digest: str, caller: RequestContext | None, lifetime: float) -> None:
        """Remember a verdict for ``min(ttl, lifetime)`` seconds."""
        keep = min(self.ttl, lifetime)
        if keep <= 0:
            return
        self._entries[digest] = _Entry(caller, self._clock() + keep)
        self._entries.move_to_end(digest)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


def _parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _named(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def caller_from_token(body: dict[str, Any], service_users: frozenset[str]) -> RequestContext:
    """The caller a Keystone token body (``{"token": {...}}``) stands for.

    Roles are the token's role names, lower-cased, with Berth's implications
    added; ``service`` is kept only for the users in ``service_users``
    (``"<user domain id or name>/<user name>"``, lower-cased).
    """
    token = _named(body.get("token"))
    user = _named(token.get("user"))
    user_domain = _named(user.get("domain"))
    project = _named(token.get("project"))
    domain = _named(token.get("domain"))
    if not user.get("id"):
        raise errors.Unauthorized(AUTH_REQUIRED)
    names = [
        str(r.get("name", "")).lower() for r in token.get("roles") or [] if isinstance(r, dict)
    ]
    who = {
        f"{user_domain.get('id', '')}/{user.get('name', '')}".lower(),
        f"{user_domain.get('name', '')}/{user.get('name', '')}".lower(),
    }
    if rules.SERVICE in names and not who & service_users:
        names = [n for n in names if n != rules.SERVICE]
    audit = token.get("audit_ids") or [""]
    return RequestContext(
        user_id=str(user["id"]),
        user_name=str(user.get("name", "")),
        project_id=str(project["id"]) if project.get("id") else None,
        project_name=str(project["name"]) if project.get("name") else None,
        roles=rules.effective_roles(n for n in names if n),
        domain_id=str(
            _named(project.get("domain")).get("id")
            or domain.get("id")
            or user_domain.get("id")
            or "default"
        ),
        audit_id=str(audit[0]),
    )


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class KeystoneTokens:
    """Validates tokens with an external Keystone as Berth's service user; caches verdicts."""

    def __init__(
        self,
        settings: Settings,
        http: httpx.AsyncClient | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not settings.keystone_service_password:
            raise ValueError(
                "identity_backend = keystone needs keystone_service_password "
                "(Berth's service user in Keystone: see `berth openstack register`)"
            )
        self._url = settings.keystone_v3_url
        self._http = http or httpx.AsyncClient(timeout=settings.keystone_timeout)
        self._owns_http = http is None
        self._login_body = login_body(
            settings.keystone_service_username,
            settings.keystone_service_password,
            settings.keystone_service_project,
            settings.keystone_service_user_domain,
            settings.keystone_service_project_domain,
        )
        domain = settings.keystone_service_user_domain.lower()
        self._service_users = frozenset(
            f"{domain}/{name.lower()}"
            for name in (settings.keystone_service_username, settings.keystone_agent_username)
        )
        self.cache = ValidationCache(
            settings.keystone_token_cache_seconds, settings.keystone_token_cache_size, clock
        )
        self._service: tuple[str, dt.datetime] | None = None
        self._lock = asyncio.Lock()

    async def aclose(self) -> None:
        """Close the HTTP client if this object made it."""
        if self._owns_http:
            await self._http.aclose()

    async def caller_of(self, token: str) -> RequestContext:
        """The caller ``token`` stands for now, as Keystone says (or said within the cache's ttl).

        ``Unauthorized`` for a token Keystone does not accept; ``IdentityUnavailable``
        when Keystone cannot be asked.
        """
        if not token or len(token) > _MAX_TOKEN_CHARS:
            raise errors.Unauthorized(AUTH_REQUIRED)
        digest = _digest(token)
        cached = self.cache.get(digest)
        if cached is not None:
            if cached.caller is None:
                raise errors.Unauthorized(AUTH_REQUIRED)
            return cached.caller
        body = await self._validate(token)
        if body is None:
            self.cache.put(digest, None, self.cache.ttl)
            raise errors.Unauthorized(AUTH_REQUIRED)
        caller = caller_from_token(body, self._service_users)
        expires = _parse_time(_named(body.get("token")).get("expires_at"))
        left = (expires - dt.datetime.now(dt.UTC)).total_seconds() if expires else 0.0
        self.cache.put(digest, caller, left)
        return caller

    async def service_token(self) -> str:
        """Berth's service user's token: cached, fetched again shortly before it expires."""
        async with self._lock:
            now = dt.datetime.now(dt.UTC)
            if self._service is None or self._service[1] - _RENEW_MARGIN <= now:
                self._service = await self._login()
            return self._service[0]

    async def _renew(self, stale: str) -> str:
        async with self._lock:
            if self._service is None or self._service[0] == stale:
                self._service = await self._login()
            return self._service[0]

    async def _validate(self, token: str) -> dict[str, Any] | None:
        """Keystone's token body, or None when it says the token is not valid."""
        service = await self.service_token()
        response = await self._ask(service, token)
        if response.status_code == 401:  # our own token expired or was revoked
            response = await self._ask(await self._renew(service), token)
        if response.status_code == 404:
            return None
        if response.status_code == 200:
            body = response.json()
            if isinstance(body, dict):
                return body
        log.error(
            "Keystone answered %s to a token validation: %s",
            response.status_code,
            response.text[:300],
        )
        raise errors.IdentityUnavailable(
            f"The identity service could not validate the token (Keystone answered "
            f"{response.status_code})."
        )

    async def _ask(self, service: str, token: str) -> httpx.Response:
        return await self._send(
            "GET",
            f"{self._url}/auth/tokens",
            params={"nocatalog": "1"},
            headers={"X-Auth-Token": service, "X-Subject-Token": token},
        )

    async def _login(self) -> tuple[str, dt.datetime]:
        response = await self._send("POST", f"{self._url}/auth/tokens", json=self._login_body)
        token = response.headers.get("X-Subject-Token")
        if response.status_code != 201 or not token:
            log.error(
                "Keystone refused Berth's service user (%s): %s",
                response.status_code,
                response.text[:300],
            )
            raise errors.IdentityUnavailable(
                "The identity service refused Berth's service credentials."
            )
        expires = _parse_time(_named(response.json().get("token")).get("expires_at"))
        return token, expires or dt.datetime.now(dt.UTC) + _RENEW_MARGIN * 2

    # -- a user's own tokens (the dashboard logs in to Keystone as the user)

    async def user_login(
        self, username: str, password: str, project: str, domain: str
    ) -> UserToken:
        """The user's token, scoped to ``project`` (a name in ``domain``), or without one to
        the user's default project, else to the first project the user holds a role in.

        ``Unauthorized`` for credentials (or a project) Keystone refuses, ``Forbidden`` for a
        user with no project at all, ``IdentityUnavailable`` when Keystone cannot be asked.
        """
        scope = project_ref(None, project, domain) if project else None
        body = password_auth(username, password, by_name(domain), scope)
        issued = _issued(await self._send("POST", self._tokens, params=_NOCATALOG, json=body))
        if issued.project_id is not None:
            return issued
        try:  # unscoped: no default project
            projects = await self.user_projects(issued.token)
        finally:
            await self.revoke(issued.token)
        if not projects:
            raise errors.Forbidden(NO_PROJECT)
        # A password login of its own, not a rescope: the token stays valid whatever
        # becomes of the unscoped one.
        body = password_auth(username, password, by_name(domain), {"id": projects[0].id})
        return _issued(await self._send("POST", self._tokens, params=_NOCATALOG, json=body))

    async def user_projects(self, token: str) -> list[UserProject]:
        """The enabled projects the holder of ``token`` holds a role in, by name."""
        response = await self._send(
            "GET", f"{self._url}/auth/projects", headers={"X-Auth-Token": token}
        )
        return _projects(response, "list the user's projects")

    async def all_projects(self, token: str) -> list[UserProject]:
        """Every enabled project Keystone lists to the holder of ``token`` (by name; the
        first ``MAX_LISTED_PROJECTS``): whom Keystone lets list them is its own policy.

        ``Forbidden`` when Keystone refuses (its ``identity:list_projects`` rule).
        """
        response = await self._send(
            "GET",
            f"{self._url}/projects",
            params={"enabled": "true"},
            headers={"X-Auth-Token": token},
        )
        if response.status_code == 403:
            raise errors.Forbidden(
                "Keystone does not let this user list its projects (its identity:list_projects "
                "rule): log in as a cloud admin, or set quotas with `openstack appcontainer "
                "quota update <project id>`."
            )
        return _projects(response, "list the projects")[:MAX_LISTED_PROJECTS]

    async def rescope(self, token: str, project_id: str) -> UserToken:
        """A token of the same user scoped to ``project_id`` (``Unauthorized``: no role there)."""
        body = {
            "auth": {
                "identity": {"methods": ["token"], "token": {"id": token}},
                "scope": {"project": {"id": project_id}},
            }
        }
        return _issued(await self._send("POST", self._tokens, params=_NOCATALOG, json=body))

    async def revoke(self, token: str) -> None:
        """Revoke the user's ``token`` in Keystone (the user's own right); this process
        refuses it from now on whatever Keystone answers."""
        self.cache.put(_digest(token), None, self.cache.ttl)
        with contextlib.suppress(errors.IdentityUnavailable):
            await self._send(
                "DELETE", self._tokens, headers={"X-Auth-Token": token, "X-Subject-Token": token}
            )

    @property
    def _tokens(self) -> str:
        return f"{self._url}/auth/tokens"

    async def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            log.warning("Keystone at %s did not answer: %r", self._url, exc)
            raise errors.IdentityUnavailable(
                "The identity service (Keystone) is unavailable; try again later."
            ) from exc


_NOCATALOG = {"nocatalog": "1"}


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _unavailable(what: str, response: httpx.Response) -> errors.IdentityUnavailable:
    log.error("Keystone answered %s when asked to %s: %s", response.status_code, what,
              response.text[:300])  # fmt: skip
    return errors.IdentityUnavailable(
        f"The identity service could not {what} (Keystone answered {response.status_code})."
    )


def _projects(response: httpx.Response, what: str) -> list[UserProject]:
    """The enabled projects of a Keystone project listing, by name."""
    if response.status_code == 401:
        raise errors.Unauthorized(AUTH_REQUIRED)
    listed = _json(response).get("projects") if response.status_code == 200 else None
    if not isinstance(listed, list):
        raise _unavailable(what, response)
    found = [
        UserProject(str(p["id"]), str(p.get("name") or p["id"]))
        for p in listed
        if isinstance(p, dict) and p.get("id") and p.get("enabled", True)
    ]
    return sorted(found, key=lambda p: (p.name, p.id))


def _issued(response: httpx.Response) -> UserToken:
    """A user's token from Keystone's answer to ``POST /v3/auth/tokens``."""
    if response.status_code in (400, 401):  # 400: input Keystone will not take as typed
        raise errors.Unauthorized("Keystone refused the user name, password or project.")
    token = response.headers.get("X-Subject-Token")
    if response.status_code != 201 or not token:
        raise _unavailable("issue a token", response)
    body = _named(_json(response).get("token"))
    expires = _parse_time(body.get("expires_at")) or dt.datetime.now(dt.UTC) + _RENEW_MARGIN
    project = _named(body.get("project")).get("id")
    return UserToken(token, expires, str(project) if project else None)


def login_body(
    username: str, password: str, project: str, user_domain: str, project_domain: str
) -> dict[str, Any]:
    """Keystone's password authentication body for a project-scoped token (domains by name)."""
    return password_auth(
        username, password, by_name(user_domain), project_ref(None, project, project_domain)
    )
