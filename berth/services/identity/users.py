"""Users: list, create, show, update (password, enable/disable), delete."""

from __future__ import annotations

from berth import errors
from berth.config import Settings
from berth.domain.context import RequestContext
from berth.identity.models import (
    User,
    UserSpec,
    UserUpdate,
)
from berth.services.identity._common import (
    deny,
    hash_password,
    new_id,
    password_turn,
    require_admin,
    require_admin_or_self,
    same_domain,
    to_user,
    verify_password,
)
from berth.store.db import Database
from berth.store.identity import tokens as token_repo
from berth.store.identity import users as user_repo
from berth.store.identity.common import flush_unique, get_or_404
from berth.store.tables.identity import DomainRow, ProjectRow, UserRow

__all__ = [
    "change_own_password",
    "create_user",
    "delete_user",
    "get_user",
    "list_users",
    "update_user",
]


# -- users -------------------------------------------------------------------


async def list_users(
    db: Database,
    caller: RequestContext,
    *,
    name: str | None = None,
    domain_id: str | None = None,
    enabled: bool | None = None,
) -> list[User]:
    """Every user matching the filters (admin only)."""
    require_admin(caller, "list_users")
    async with db.read() as s:
        rows = await user_repo.list_rows(s, name=name, domain_id=domain_id, enabled=enabled)
        return [to_user(r) for r in rows]


async def get_user(db: Database, caller: RequestContext, user_id: str) -> User:
    """One user: admins see any, a user sees itself."""
    require_admin_or_self(caller, user_id, "get_user")
    async with db.read() as s:
        return to_user(await get_or_404(s, UserRow, user_id, "user"))


async def create_user(db: Database, caller: RequestContext, spec: UserSpec) -> User:
    """Create a user with a hashed password (admin only); ``Conflict`` on a taken name."""
    require_admin(caller, "create_user")
    password_hash = await hash_password(spec.password) if spec.password is not None else None
    async with db.transaction() as s:
        await get_or_404(s, DomainRow, spec.domain_id, "domain")
        if spec.default_project_id is not None:
            await get_or_404(s, ProjectRow, spec.default_project_id, "project")
        row = UserRow(
            id=new_id(),
            name=spec.name,
            domain_id=spec.domain_id,
            password_hash=password_hash,
            email=spec.email,
            description=spec.description,
            enabled=spec.enabled,
            default_project_id=spec.default_project_id,
            extra=dict(spec.extra),
        )
        s.add(row)
        await flush_unique(s, f"user - Duplicate entry found with name {spec.name}")
        return to_user(row)


async def update_user(
    db: Database, caller: RequestContext, user_id: str, changes: UserUpdate
) -> User:
    """Change a user (admin only). A new password or disabling ends the user's tokens."""
    require_admin(caller, "update_user")
    password_hash = await hash_password(changes.password) if changes.password is not None else None
    async with db.transaction() as s:
        row = await get_or_404(s, UserRow, user_id, "user")
        same_domain(row.domain_id, changes.domain_id)
        if changes.default_project_id is not None:
            await get_or_404(s, ProjectRow, changes.default_project_id, "project")
        _apply_user_changes(row, changes, password_hash)
        if password_hash is not None or changes.enabled is False:
            await token_repo.delete_of_user(s, user_id)
        await flush_unique(s, f"user - Duplicate entry found with name {row.name}")
        return to_user(row)


def _apply_user_changes(row: UserRow, changes: UserUpdate, password_hash: str | None) -> None:
    for attr in ("name", "email", "description", "enabled", "default_project_id"):
        value = getattr(changes, attr)
        if value is not None:
            setattr(row, attr, value)
    if password_hash is not None:
        row.password_hash = password_hash
    if changes.extra:
        row.extra = {**row.extra, **changes.extra}


async def change_own_password(
    db: Database,
    settings: Settings,
    caller: RequestContext,
    user_id: str,
    original: str,
    new: str,
) -> None:
    """Let a user replace its own password, proving the original; ends its tokens.

    Two password hashes: counted as the user's checks (``password_turn``).
    """
    if caller.user_id != user_id:  # not even an admin: it proves the original password
        raise deny("change_password")
    bounds = settings.max_password_checks_per_client, settings.max_password_checks
    async with password_turn(bounds, f"user {user_id}"):
        async with db.read() as s:
            row = await get_or_404(s, UserRow, user_id, "user")
        if not row.password_hash or not await verify_password(original, row.password_hash):
            raise errors.Unauthorized("The original password is not correct.")
        new_hash = await hash_password(new)
    async with db.transaction() as s:
        fresh = await get_or_404(s, UserRow, user_id, "user")
        fresh.password_hash = new_hash
        await token_repo.delete_of_user(s, user_id)


async def delete_user(db: Database, caller: RequestContext, user_id: str) -> None:
    """Delete a user with its role assignments and tokens (admin only)."""
    require_admin(caller, "delete_user")
    async with db.transaction() as s:
        row = await get_or_404(s, UserRow, user_id, "user")
        await user_repo.delete_with_grants(s, row)
