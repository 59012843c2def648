"""Tokens: authenticate (password, token), validate on every request, inspect, revoke.

Tokens are checked against the database, with a short-lived in-process cache
of the result (``berth.services.identity.cache``): a revocation, a removed
role or a disabled user or project empties it, so the change takes effect at
once in this process and, through PostgreSQL LISTEN/NOTIFY, in the others.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any, Literal

from berth import errors
from berth.config import Settings
from berth.domain.context import RequestContext
from berth.identity import catalog, tokens
from berth.identity import roles as rules
from berth.identity.models import (
    AuthRequest,
    IssuedToken,
    PasswordCredentials,
    ScopeRequest,
    TokenInfo,
)
from berth.services.identity._common import (
    AUTH_REQUIRED,
    DEFAULT_DOMAIN_ID,
    all_domains,
    effective_role_rows,
    password_turn,
    require_admin_or_self,
    to_project,
    to_user,
    verify_password,
)
from berth.services.identity.cache import token_cache
from berth.services.identity.throttle import login_throttle
from berth.store.base import utcnow
from berth.store.db import Database, Session
from berth.store.identity import domains as domain_repo
from berth.store.identity import projects as project_repo
from berth.store.identity import tokens as token_repo
from berth.store.identity import users as user_repo
from berth.store.identity.common import tolerate_db_errors
from berth.store.identity.roles import role_names
from berth.store.tables.identity import ProjectRow, TokenRow, UserRow

__all__ = [
    "EXTRA_CATALOG_SERVICES",
    "authenticate",
    "prune_tokens",
    "revoke_token",
    "token_catalog",
    "token_info",
    "validate_token",
]

log = logging.getLogger(__name__)

# Services added to every catalog beside identity and container: the
# Magnum-compatible cluster API is mounted at /container-infra.
EXTRA_CATALOG_SERVICES: tuple[catalog.CatalogService, ...] = (catalog.CONTAINER_INFRA,)

# Verified against when the user does not exist, so a wrong user name costs
# as long as a wrong password and timing does not reveal which names exist.
_DUMMY_HASH = "scrypt$16384$8$1$TO9+G4HTC/un07sMt5kHwA$UIO50BkBJcp5B1TCVvqC0hGyfECBzuMV42jqoSABvgU"
_MAX_TOKEN_CHARS = 1024


# -- tokens ------------------------------------------------------------------


async def validate_token(db: Database, token: str) -> RequestContext:
    """The caller a token stands for, with its effective roles; ``Unauthorized`` if not valid now.

    Unknown, expired and revoked tokens fail, and so do tokens of disabled users,
    of disabled projects, and scoped tokens whose user no longer holds any role there.
    """
    if not token or len(token) > _MAX_TOKEN_CHARS:
        raise errors.Unauthorized(AUTH_REQUIRED)
    digest = tokens.token_digest(token)
    cache = token_cache(db)
    cached = cache.get(digest)
    if cached is not None:
        return cached
    epoch = cache.epoch
    async with db.read() as s:
        found = await token_repo.owner_of(s, digest)
        if (
            found is None
            or not _live(found.token)
            or (found.token.project_id and not found.project_enabled)
        ):
            raise errors.Unauthorized(AUTH_REQUIRED)
        row = found.token
        scoped = bool(row.project_id or row.domain_id)
        names = await role_names(s, row.user_id, row.project_id, row.domain_id) if scoped else []
    if scoped and not names:
        raise errors.Unauthorized(AUTH_REQUIRED)
    caller = RequestContext(
        user_id=row.user_id,
        user_name=found.user_name,
        project_id=row.project_id,
        project_name=found.project_name,
        roles=rules.effective_roles(names),
        domain_id=found.project_domain_id or row.domain_id or DEFAULT_DOMAIN_ID,
        audit_id=row.audit_id,
    )
    cache.put(digest, caller, row.expires_at, epoch)
    return caller


def _live(row: TokenRow, now: dt.datetime | None = None) -> bool:
    return not row.revoked and row.expires_at > (now or utcnow())


async def _live_token(s: Session, token: str) -> TokenRow | None:
    if not token or len(token) > _MAX_TOKEN_CHARS:
        return None
    row = await token_repo.by_digest(s, tokens.token_digest(token))
    return row if row is not None and _live(row) else None


async def authenticate(
    db: Database,
    settings: Settings,
    request: AuthRequest,
    *,
    with_catalog: bool = True,
    source: str = "local",
) -> IssuedToken:
    """Check every requested method's credentials and issue a token for the requested scope.

    Wrong credentials, a disabled user, or a scope the user holds no role on
    give ``Unauthorized``. A token obtained with the token method keeps the
    expiry of the token it was obtained with. Password checks are throttled
    per user and per ``source`` (the client's address): ``TooManyAttempts``
    after repeated failures, before the password is looked at.
    """
    now = utcnow()
    expires = now + dt.timedelta(seconds=settings.token_ttl_seconds)
    methods: list[str] = []
    user_id: str | None = None
    for method in request.methods:
        if method == "password" and request.password is not None:
            found = await _password_user(db, settings, request.password, source)
        elif method == "token" and request.token is not None:
            parent = await _token_parent(db, request.token)
            found, expires = parent.user_id, min(expires, parent.expires_at)
            methods.extend(m for m in parent.methods if isinstance(m, str))
        else:
            raise errors.Unauthorized(f"Unsupported authentication method: {method}.")
        if user_id not in (None, found):
            raise errors.Unauthorized(AUTH_REQUIRED)
        user_id, methods = found, [method, *methods]
    if user_id is None:
        raise errors.Unauthorized(AUTH_REQUIRED)
    return await _issue(
        db, settings, user_id, request.scope, _dedupe(methods), now, expires, with_catalog
    )


def _dedupe(items: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


async def _password_user(
    db: Database, settings: Settings, cred: PasswordCredentials, source: str
) -> str:
    """The id of the enabled user these credentials prove; ``Unauthorized`` otherwise.

    Checks of one client wait or run a few at once (``password_turn``).
    """
    bounds = settings.max_password_checks_per_client, settings.max_password_checks
    async with password_turn(bounds, source):
        return await _checked_user(db, settings, cred, source)


async def _checked_user(
    db: Database, settings: Settings, cred: PasswordCredentials, source: str
) -> str:
    async with db.read() as s:
        row = await user_repo.find_for_password(
            s,
            user_id=cred.user_id,
            user_name=cred.user_name,
            domain_id=cred.domain_id,
            domain_name=cred.domain_name,
        )
    encoded = row.password_hash if row is not None and row.password_hash else _DUMMY_HASH
    # Keyed by id when the user exists (so name and id share one count), else by
    # the name as given: guesses at unknown names back off alike, revealing nothing.
    named = f"{cred.domain_id or cred.domain_name}/{cred.user_name}"
    key = row.id if row is not None else cred.user_id or named
    async with login_throttle(db, settings).attempt(key, source) as done:
        matched = await verify_password(cred.password, encoded)
        ok = row is not None and row.enabled and bool(row.password_hash) and matched
        done(ok)
    if row is None or not ok:
        raise errors.Unauthorized(AUTH_REQUIRED)
    return row.id


async def _token_parent(db: Database, token: str) -> TokenRow:
    async with db.read() as s:
        row = await _live_token(s, token)
        user = await s.get(UserRow, row.user_id) if row is not None else None
    if row is None or user is None or not user.enabled:
        raise errors.Unauthorized(AUTH_REQUIRED)
    return row


async def _issue(
    db: Database,
    settings: Settings,
    user_id: str,
    scope: ScopeRequest,
    methods: tuple[str, ...],
    now: dt.datetime,
    expires: dt.datetime,
    with_catalog: bool,
) -> IssuedToken:
    secret = tokens.new_token()
    async with db.transaction() as s:
        user = await s.get(UserRow, user_id)
        if user is None:
            raise errors.Unauthorized(AUTH_REQUIRED)
        project_id, domain_id = await _resolve_scope(s, user, scope)
        row = TokenRow(
            digest=tokens.token_digest(secret),
            audit_id=tokens.new_audit_id(),
            user_id=user_id,
            project_id=project_id,
            domain_id=domain_id,
            methods=list(methods),
            issued_at=now,
            expires_at=expires,
            revoked=False,
        )
        s.add(row)
        info = await _load_info(s, settings, row, with_catalog)
    await _prune_quietly(db, now, (user_id, settings.max_tokens_per_user))
    return IssuedToken(secret, info)


async def prune_tokens(db: Database, now: dt.datetime | None = None) -> int:
    """Delete tokens that expired before ``now``; return how many went.

    Expired tokens can never be used again. Token issuing calls this as it
    goes; a garbage-collection loop may call it too.
    """
    async with db.transaction() as s:
        return await token_repo.prune(s, now or utcnow())


async def _prune_quietly(db: Database, now: dt.datetime, holder: tuple[str, int]) -> None:
    # In its own transaction, after the new token is committed: a lock conflict
    # between two concurrent prunes must never fail an authentication. The
    # holder's tokens beyond its bound (user id, most) go in the same one.
    with tolerate_db_errors(log, "token pruning"):
        async with db.transaction() as s:
            await token_repo.prune(s, now)
            await token_repo.trim_of_user(s, *holder)


async def _resolve_scope(
    s: Session, user: UserRow, scope: ScopeRequest
) -> tuple[str | None, str | None]:
    """(project_id, domain_id) of the requested scope, checked against the user's roles."""
    if scope.kind == "unscoped":
        return None, None
    if scope.kind == "default":
        project = await s.get(ProjectRow, user.default_project_id or "")
        if project is None or not project.enabled:
            return None, None
        has_roles = await role_names(s, user.id, project.id, None)
        return (project.id, None) if has_roles else (None, None)
    if scope.kind == "domain":
        domain = await domain_repo.find(s, scope.id, scope.name)
        if (
            domain is None
            or not domain.enabled
            or not await role_names(s, user.id, None, domain.id)
        ):
            raise errors.Unauthorized(
                f"User {user.id} has no access to domain {scope.id or scope.name}."
            )
        return None, domain.id
    project = await _find_scope_project(s, scope)
    if project is None or not project.enabled or not await role_names(s, user.id, project.id, None):
        raise errors.Unauthorized(
            f"User {user.id} has no access to project {scope.id or scope.name}."
        )
    return project.id, None


async def _find_scope_project(s: Session, scope: ScopeRequest) -> ProjectRow | None:
    if scope.id is not None:
        return await s.get(ProjectRow, scope.id)
    domain = await domain_repo.find(s, scope.domain_id, scope.domain_name)
    if domain is None:
        return None
    return await project_repo.find_by_name(s, domain.id, scope.name)


async def _load_info(
    s: Session, settings: Settings, row: TokenRow, with_catalog: bool
) -> TokenInfo:
    """What the token grants now; ``Unauthorized`` when it no longer grants anything."""
    user = await s.get(UserRow, row.user_id)
    project = await s.get(ProjectRow, row.project_id) if row.project_id else None
    domains = await all_domains(s)
    if (
        user is None
        or not user.enabled
        or (row.project_id and (project is None or not project.enabled))
    ):
        raise errors.Unauthorized(AUTH_REQUIRED)
    names = await role_names(s, row.user_id, row.project_id, row.domain_id)
    scope: Literal["project", "domain", "unscoped"] = (
        "project" if project else "domain" if row.domain_id else "unscoped"
    )
    if scope != "unscoped" and not names:
        raise errors.Unauthorized(AUTH_REQUIRED)
    scope_domain = domains.get(project.domain_id if project else row.domain_id or "")
    return TokenInfo(
        user=to_user(user),
        user_domain=domains[user.domain_id],
        scope=scope,
        project=to_project(project) if project else None,
        domain=scope_domain,
        roles=await effective_role_rows(s, names),
        methods=tuple(str(m) for m in row.methods),
        issued_at=row.issued_at,
        expires_at=row.expires_at,
        audit_ids=(row.audit_id,),
        catalog=_catalog(settings) if with_catalog and scope != "unscoped" else None,
    )


def _catalog(settings: Settings) -> list[dict[str, Any]]:
    return catalog.build_catalog(
        settings.effective_public_url, settings.region, EXTRA_CATALOG_SERVICES
    )


async def token_info(
    db: Database,
    settings: Settings,
    caller: RequestContext,
    subject_token: str,
    *,
    with_catalog: bool = True,
) -> TokenInfo:
    """What ``subject_token`` grants; ``NotFound`` if it is not valid now.

    Admins and services may inspect any token, other users only their own.
    """
    async with db.read() as s:
        row = await _live_token(s, subject_token)
        if row is None:
            raise errors.NotFound("Could not find token.")
        _require_admin_or_self_or_service(caller, row.user_id, "validate_token")
        try:
            return await _load_info(s, settings, row, with_catalog)
        except errors.Unauthorized as exc:
            raise errors.NotFound("Could not find token.") from exc


def _require_admin_or_self_or_service(caller: RequestContext, user_id: str, action: str) -> None:
    if not caller.is_service:
        require_admin_or_self(caller, user_id, action)


async def revoke_token(db: Database, caller: RequestContext, subject_token: str) -> None:
    """Revoke ``subject_token`` at once; ``NotFound`` if it is not valid now."""
    async with db.transaction() as s:
        row = await _live_token(s, subject_token)
        if row is None:
            raise errors.NotFound("Could not find token.")
        _require_admin_or_self_or_service(caller, row.user_id, "revoke_token")
        row.revoked = True


async def token_catalog(
    db: Database, settings: Settings, caller: RequestContext
) -> list[dict[str, Any]]:
    """The catalog for a scoped caller; ``Forbidden`` for an unscoped token."""
    if caller.project_id is None and not caller.roles:
        raise errors.Forbidden("A scoped token is required to see the catalog.")
    return _catalog(settings)
