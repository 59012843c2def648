"""Queries for project networks and security groups, always through a Scope."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from berth import errors
from berth.store.lookup import one_by_ident
from berth.store.scope import Scope
from berth.store.tables import NetworkRow, SecurityGroupRow

__all__ = ["get_group", "get_network", "groups_by_uuid", "list_groups", "list_networks"]

R = TypeVar("R", NetworkRow, SecurityGroupRow)


async def _get(
    session: AsyncSession,
    table: type[R],
    scope: Scope,
    ident: str,
    missing: type[errors.NotFound],
    what: str,
    for_update: bool,
) -> R:
    stmt = select(table)
    if not scope.all_projects:
        stmt = stmt.where(table.project_id == scope.project_id)
    return await one_by_ident(
        session, stmt, table, ident, missing=missing, noun=what.lower(), for_update=for_update
    )


async def get_network(
    session: AsyncSession, scope: Scope, ident: str, *, for_update: bool = False
) -> NetworkRow:
    """The network named by UUID or name; NetworkNotFound if invisible or absent."""
    return await _get(
        session, NetworkRow, scope, ident, errors.NetworkNotFound, "Network", for_update
    )


async def get_group(
    session: AsyncSession, scope: Scope, ident: str, *, for_update: bool = False
) -> SecurityGroupRow:
    """The security group named by UUID or name; SecurityGroupNotFound if invisible or absent."""
    return await _get(
        session,
        SecurityGroupRow,
        scope,
        ident,
        errors.SecurityGroupNotFound,
        "Security group",
        for_update,
    )


async def list_networks(session: AsyncSession, scope: Scope) -> Sequence[NetworkRow]:
    """The visible networks, oldest first."""
    stmt = select(NetworkRow).order_by(NetworkRow.id)
    if not scope.all_projects:
        stmt = stmt.where(NetworkRow.project_id == scope.project_id)
    return (await session.execute(stmt)).scalars().all()


async def list_groups(session: AsyncSession, scope: Scope) -> Sequence[SecurityGroupRow]:
    """The visible security groups, oldest first."""
    stmt = select(SecurityGroupRow).order_by(SecurityGroupRow.id)
    if not scope.all_projects:
        stmt = stmt.where(SecurityGroupRow.project_id == scope.project_id)
    return (await session.execute(stmt)).scalars().all()


async def groups_by_uuid(session: AsyncSession, uuids: set[str]) -> dict[str, SecurityGroupRow]:
    """The groups with these uuids (the control plane's own lookup, for desired states)."""
    if not uuids:
        return {}
    stmt = select(SecurityGroupRow).where(SecurityGroupRow.uuid.in_(sorted(uuids)))
    return {row.uuid: row for row in (await session.execute(stmt)).scalars().all()}
