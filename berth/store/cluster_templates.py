"""Repository of cluster templates: every query goes through a Scope (the tenancy boundary)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqlalchemy import Select, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from berth.store.scope import Scope
from berth.store.tables import ClusterTemplateRow

__all__ = ["find", "visible"]

_UUID = re.compile(r"^[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$")


def _scoped(scope: Scope, *, include_hidden: bool) -> Select[ClusterTemplateRow]:
    stmt = select(ClusterTemplateRow)
    if not scope.all_projects:
        mine = ClusterTemplateRow.project_id == (scope.project_id or "")
        stmt = stmt.where(or_(mine, ClusterTemplateRow.public.is_(True)))
        if not include_hidden:
            stmt = stmt.where(or_(mine, ClusterTemplateRow.hidden.is_(False)))
    return stmt


async def visible(session: AsyncSession, scope: Scope) -> Sequence[ClusterTemplateRow]:
    """Templates the scope lists: its own and public non-hidden ones (all for all_projects)."""
    stmt = _scoped(scope, include_hidden=False).order_by(ClusterTemplateRow.id)
    return (await session.scalars(stmt)).all()


async def find(session: AsyncSession, scope: Scope, ident: str) -> list[ClusterTemplateRow]:
    """Templates matching a UUID (when ``ident`` looks like one) or else a name, in scope."""
    stmt = _scoped(scope, include_hidden=False)
    if _UUID.match(ident):
        stmt = stmt.where(ClusterTemplateRow.uuid == ident.lower())
    else:
        stmt = stmt.where(ClusterTemplateRow.name == ident)
    return list((await session.scalars(stmt)).all())
