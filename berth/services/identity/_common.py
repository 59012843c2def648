"""What the identity use cases share: row conversions, policy checks, store helpers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import TypeVar

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from berth import errors
from berth.domain.context import RequestContext
from berth.identity import passwords
from berth.identity import roles as rules
from berth.identity.models import Domain, Project, Role, User
from berth.store.base import Base
from berth.store.tables.identity import (
    DomainRow,
    ProjectRow,
    RoleAssignmentRow,
    RoleRow,
    TokenRow,
    UserRow,
)

__all__ = [
    "AUTH_REQUIRED",
    "DEFAULT_DOMAIN_ID",
    "DEFAULT_DOMAIN_NAME",
    "all_domains",
    "deny",
    "effective_role_rows",
    "flush_unique",
    "get_or_404",
    "hash_password",
    "new_id",
    "require_admin",
    "require_admin_or_self",
    "revoke_user_tokens",
    "role_names",
    "same_domain",
    "to_domain",
    "to_project",
    "to_role",
    "to_user",
    "verify_password",
]

DEFAULT_DOMAIN_ID = "default"
DEFAULT_DOMAIN_NAME = "Default"
AUTH_REQUIRED = "The request you have made requires authentication."
_ROW = TypeVar("_ROW", bound=Base)


# -- conversions -------------------------------------------------------------


def to_domain(row: DomainRow) -> Domain:
    """The plain value of a domain row."""
    return Domain(row.id, row.name, row.description, row.enabled)


def to_project(row: ProjectRow) -> Project:
    """The plain value of a project row."""
    return Project(row.id, row.name, row.domain_id, row.description, row.enabled, dict(row.extra))


def to_user(row: UserRow) -> User:
    """The plain value of a user row (without its password hash)."""
    return User(
        row.id,
        row.name,
        row.domain_id,
        row.enabled,
        row.email,
        row.description,
        row.default_project_id,
        dict(row.extra),
    )


def to_role(row: RoleRow) -> Role:
    """The plain value of a role row."""
    return Role(row.id, row.name, row.domain_id, row.description)


def new_id() -> str:
    """A new Keystone-style id: 32 hex digits."""
    return uuid.uuid4().hex


# -- policy ------------------------------------------------------------------


def deny(action: str) -> errors.Forbidden:
    """The 403 Keystone answers when a policy rule refuses ``identity:<action>``."""
    return errors.Forbidden(
        f"You are not authorized to perform the requested action: identity:{action}."
    )


def require_admin(caller: RequestContext, action: str) -> None:
    """Return when the caller holds the admin role; ``Forbidden`` otherwise."""
    if not caller.is_admin:
        raise deny(action)


def require_admin_or_self(caller: RequestContext, user_id: str, action: str) -> None:
    """Return when the caller is an admin or the user ``user_id``; ``Forbidden`` otherwise."""
    if not (caller.is_admin or caller.user_id == user_id):
        raise deny(action)


# -- small store helpers -----------------------------------------------------


async def get_or_404(s: AsyncSession, row_type: type[_ROW], key: str, kind: str) -> _ROW:
    """The row with primary key ``key``; ``NotFound`` in Keystone's words if there is none."""
    row = await s.get(row_type, key)
    if row is None:
        raise errors.NotFound(f"Could not find {kind}: {key}.")
    return row


async def flush_unique(s: AsyncSession, message: str) -> None:
    """Flush, turning a unique-constraint violation into a Keystone-style 409."""
    try:
        await s.flush()
    except IntegrityError as exc:
        raise errors.Conflict(f"Conflict occurred attempting to store {message}.") from exc


def same_domain(current: str, wanted: str | None) -> None:
    """Return when ``wanted`` is unset or the current domain: nothing moves between domains."""
    if wanted is not None and wanted != current:
        raise errors.Invalid("Cannot change Domain ID.")


async def all_domains(s: AsyncSession) -> dict[str, Domain]:
    """Every domain by id (there are very few)."""
    rows = (await s.scalars(select(DomainRow))).all()
    return {r.id: to_domain(r) for r in rows}


async def role_names(
    s: AsyncSession, user_id: str, project_id: str | None, domain_id: str | None
) -> list[str]:
    """Names of the roles granted directly to a user on a project or a domain."""
    stmt = (
        select(RoleRow.name)
        .join(RoleAssignmentRow, RoleAssignmentRow.role_id == RoleRow.id)
        .where(RoleAssignmentRow.user_id == user_id)
        .order_by(RoleRow.name)
        .distinct()
    )
    if project_id is not None:
        stmt = stmt.where(RoleAssignmentRow.project_id == project_id)
    else:
        stmt = stmt.where(
            RoleAssignmentRow.domain_id == domain_id, RoleAssignmentRow.project_id.is_(None)
        )
    return list((await s.scalars(stmt)).all())


async def effective_role_rows(s: AsyncSession, names: Sequence[str]) -> tuple[Role, ...]:
    """The role rows of ``names`` and of every role they imply, in implication order."""
    wanted = rules.effective_roles(names)
    if not wanted:
        return ()
    found = {r.name: r for r in (await s.scalars(select(RoleRow).where(RoleRow.name.in_(wanted))))}
    return tuple(to_role(found[n]) for n in wanted if n in found)


async def hash_password(password: str) -> str:
    """The scrypt hash of ``password``, computed off the event loop."""
    return await asyncio.to_thread(passwords.hash_password, password)


async def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches ``encoded``, checked off the event loop."""
    return await asyncio.to_thread(passwords.verify_password, password, encoded)


async def revoke_user_tokens(s: AsyncSession, user_id: str) -> None:
    """Drop every token of a user (password changed, user disabled or deleted)."""
    await s.execute(delete(TokenRow).where(TokenRow.user_id == user_id))
