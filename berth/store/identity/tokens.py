"""Token queries: the per-request validation, lookups by digest, revocations, pruning."""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from berth.store.db import UNWATCHED
from berth.store.tables.identity import ProjectRow, TokenRow, UserRow

__all__ = ["TokenOwner", "by_digest", "delete_of_user", "owner_of", "prune", "trim_of_user"]


class TokenOwner(NamedTuple):
    """A token row with what validation needs of its user and project (names, enabled)."""

    token: TokenRow
    user_name: str
    project_name: str | None
    project_domain_id: str | None
    project_enabled: bool | None


async def owner_of(s: AsyncSession, digest: str) -> TokenOwner | None:
    """The token ``digest`` of an enabled user, with its project's fields; None otherwise.

    One statement: this runs for every request the token cache does not answer.
    """
    stmt = (
        select(TokenRow, UserRow.name, ProjectRow.name, ProjectRow.domain_id, ProjectRow.enabled)
        .join(UserRow, UserRow.id == TokenRow.user_id)
        .outerjoin(ProjectRow, ProjectRow.id == TokenRow.project_id)
        .where(TokenRow.digest == digest, UserRow.enabled.is_(True))
    )
    found = (await s.execute(stmt)).one_or_none()
    return None if found is None else TokenOwner(*found)


async def by_digest(s: AsyncSession, digest: str) -> TokenRow | None:
    """The token row of ``digest`` (live or not); None if absent."""
    return await s.get(TokenRow, digest)


async def delete_of_user(s: AsyncSession, user_id: str) -> None:
    """Drop every token of a user (password changed, user disabled or deleted)."""
    await s.execute(delete(TokenRow).where(TokenRow.user_id == user_id))


async def prune(s: AsyncSession, before: dt.datetime) -> int:
    """Delete the tokens that expired before ``before``; how many went."""
    # No cache holds an expired token: this delete invalidates nothing.
    stmt = delete(TokenRow).where(TokenRow.expires_at < before)
    result = await s.execute(stmt.execution_options(**{UNWATCHED: True}))
    return int(getattr(result, "rowcount", 0) or 0)


async def trim_of_user(s: AsyncSession, user_id: str, most: int) -> int:
    """Keep ``user_id``'s newest tokens when it holds more than ``most``; how many went.

    Over the bound, the newest nine tenths of ``most`` stay, so that a loop of
    issues deletes (and empties the token caches) once per tenth, not per token.
    The newest token always stays. Each call reads at most ``most`` + 1 index
    entries of ``ix_tokens_user_issued``: a user with few tokens costs a few.
    """
    newest = (
        select(TokenRow.issued_at)
        .where(TokenRow.user_id == user_id)
        .order_by(TokenRow.issued_at.desc())
        .limit(1)
    )
    if (await s.execute(newest.offset(most))).scalar_one_or_none() is None:
        return 0
    keep = max(1, most - most // 10)
    oldest_kept = (await s.execute(newest.offset(keep - 1))).scalar_one()
    stmt = delete(TokenRow).where(TokenRow.user_id == user_id, TokenRow.issued_at < oldest_kept)
    result = await s.execute(stmt)
    return int(getattr(result, "rowcount", 0) or 0)
