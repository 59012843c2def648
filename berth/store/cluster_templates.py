"""Repository of cluster templates: every query goes through a Scope (the tenancy boundary)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Select, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from berth import errors
from berth.store.lookup import UUID_SHAPE
from berth.store.scope import Scope
from berth.store.tables import ClusterTemplateRow, ImageRow

__all__ = ["by_id", "by_uuid", "find", "get", "node_image", "visible"]


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
    if UUID_SHAPE.match(ident):
        stmt = stmt.where(ClusterTemplateRow.uuid == ident.lower())
    else:
        stmt = stmt.where(ClusterTemplateRow.name == ident)
    return list((await session.scalars(stmt)).all())


async def get(session: AsyncSession, scope: Scope, ident: str) -> ClusterTemplateRow:
    """The one template ``ident`` names in scope: ClusterTemplateNotFound, or Conflict (Magnum's
    text) for an ambiguous name."""
    rows = await find(session, scope, ident)
    if not rows:
        raise errors.ClusterTemplateNotFound(f"ClusterTemplate {ident} could not be found.")
    if len(rows) > 1:
        raise errors.Conflict(
            f"Multiple cluster templates exist with same name {ident}. "
            "Please use the cluster template uuid instead."
        )
    return rows[0]


async def by_uuid(session: AsyncSession, uuid: str) -> ClusterTemplateRow | None:
    """The template a cluster was built from, whoever owns it now (None once deleted)."""
    row: ClusterTemplateRow | None = await session.scalar(
        select(ClusterTemplateRow).where(ClusterTemplateRow.uuid == uuid)
    )
    return row


async def by_id(
    session: AsyncSession, template_id: int, *, for_update: bool = False, for_share: bool = False
) -> ClusterTemplateRow | None:
    """The template row by primary key (locked if ``for_update``; kept from deletion
    until the transaction ends if ``for_share``); None if it is gone."""
    lock: bool | dict[str, bool] = for_update or ({"read": True} if for_share else False)
    return await session.get(ClusterTemplateRow, template_id, with_for_update=lock)


async def node_image(session: AsyncSession, project_id: str | None, uuid: str) -> ImageRow | None:
    """The image with that UUID a project may name as a node image: its own or a public one."""
    stmt = select(ImageRow).where(
        ImageRow.uuid == uuid.lower(),
        or_(ImageRow.project_id == project_id, ImageRow.visibility == "public"),
    )
    return (await session.scalars(stmt.limit(1))).first()
