"""Queries for project networks and security groups, always through a Scope.

The few queries without one are the control plane's own (a desired state, the
members of a group being changed): they name the project or the rows exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from berth import errors
from berth.store.lookup import one_by_ident
from berth.store.scope import Scope
from berth.store.tables import ContainerRow, HostRow, NetworkRow, SecurityGroupRow

__all__ = [
    "NameTaken",
    "default_group",
    "default_network",
    "drop_container_groups",
    "existing_groups",
    "existing_networks",
    "get_group",
    "get_network",
    "group_members",
    "groups_by_uuid",
    "insert",
    "list_groups",
    "list_networks",
    "lock_groups",
    "member_hosts",
    "network_placement",
    "network_users",
]

R = TypeVar("R", NetworkRow, SecurityGroupRow)


class NameTaken(errors.Conflict):
    """The project already has a network (or group) of that name: a concurrent create won."""


async def insert(session: AsyncSession, row: R) -> R:
    """Add ``row`` and write it now; NameTaken when its project already has one of that name.

    Written at once (not at commit) so the unique index answers inside the
    transaction, where the caller can still tell a lost race from any error.
    """
    session.add(row)
    try:
        await session.flush()
    except IntegrityError as exc:
        noun = "network" if isinstance(row, NetworkRow) else "security group"
        raise NameTaken(f"A {noun} named {row.name} already exists in this project.") from exc
    return row


async def _get(
    session: AsyncSession,
    table: type[R],
    scope: Scope,
    ident: str,
    missing: type[errors.NotFound],
    what: str,
    for_update: bool,
    for_share: bool = False,
) -> R:
    stmt = select(table)
    if not scope.all_projects:
        stmt = stmt.where(table.project_id == scope.project_id)
    return await one_by_ident(
        session,
        stmt,
        table,
        ident,
        missing=missing,
        noun=what.lower(),
        for_update=for_update,
        for_share=for_share,
    )


async def get_network(
    session: AsyncSession,
    scope: Scope,
    ident: str,
    *,
    for_update: bool = False,
    for_share: bool = False,
) -> NetworkRow:
    """The network named by UUID or name; NetworkNotFound if invisible or absent.
    ``for_share``: kept from deletion until the transaction ends (a container joins it)."""
    return await _get(
        session, NetworkRow, scope, ident, errors.NetworkNotFound, "Network", for_update, for_share
    )


async def get_group(
    session: AsyncSession,
    scope: Scope,
    ident: str,
    *,
    for_update: bool = False,
    for_share: bool = False,
) -> SecurityGroupRow:
    """The security group named by UUID or name; SecurityGroupNotFound if invisible or absent.
    ``for_share``: kept from deletion until the transaction ends (a container joins it)."""
    return await _get(
        session,
        SecurityGroupRow,
        scope,
        ident,
        errors.SecurityGroupNotFound,
        "Security group",
        for_update,
        for_share,
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


async def default_network(session: AsyncSession, project_id: str) -> NetworkRow | None:
    """The project's ``default`` network (None until it is made)."""
    stmt = select(NetworkRow).where(
        NetworkRow.project_id == project_id, NetworkRow.is_default.is_(True)
    )
    row: NetworkRow | None = (await session.execute(stmt.limit(1))).scalar_one_or_none()
    return row


async def default_group(session: AsyncSession, project_id: str) -> SecurityGroupRow | None:
    """The project's ``default`` security group (None until it is made)."""
    stmt = select(SecurityGroupRow).where(
        SecurityGroupRow.project_id == project_id, SecurityGroupRow.is_default.is_(True)
    )
    row: SecurityGroupRow | None = (await session.execute(stmt.limit(1))).scalar_one_or_none()
    return row


async def network_users(session: AsyncSession, network: NetworkRow) -> list[ContainerRow]:
    """The containers of the network's project that are on it (being deleted ones too)."""
    stmt = select(ContainerRow).where(ContainerRow.project_id == network.project_id)
    return [
        c
        for c in (await session.execute(stmt)).scalars()
        if any(n.get("network") == network.uuid for n in c.nets or [])
    ]


async def network_placement(session: AsyncSession, network: NetworkRow) -> list[tuple[str, str]]:
    """Where the network's members are placed: (host, its zone or "") per live container.

    A capsule counts once (its sandbox holds the address; its other containers
    share it); deleted containers and containers not placed yet do not count.
    """
    stmt = (
        select(
            ContainerRow.host,
            HostRow.availability_zone,
            ContainerRow.nets,
            ContainerRow.capsule_id,
            ContainerRow.container_type,
        )
        .join(HostRow, HostRow.hostname == ContainerRow.host)
        .where(
            ContainerRow.project_id == network.project_id,
            ContainerRow.desired_state != "deleted",
        )
    )
    return [
        (host, zone or "")
        for host, zone, nets, capsule, kind in (await session.execute(stmt)).all()
        if (capsule is None or kind == "sandbox")
        and any(isinstance(n, dict) and n.get("network") == network.uuid for n in nets or [])
    ]


async def _existing(session: AsyncSession, table: type[R], uuids: set[str]) -> set[str]:
    """Which of these UUIDs of ``table`` still exist, locked against deletion (``FOR
    SHARE``) until the transaction ends; a delete holding one first makes this wait."""
    stmt = select(table.uuid).where(table.uuid.in_(sorted(uuids)))
    return set((await session.execute(stmt.with_for_update(read=True))).scalars().all())


async def existing_networks(session: AsyncSession, uuids: set[str]) -> set[str]:
    """Which of these network UUIDs still exist, locked as ``_existing`` says."""
    return await _existing(session, NetworkRow, uuids)


async def lock_groups(session: AsyncSession, uuids: set[str]) -> dict[str, SecurityGroupRow]:
    """The groups of these UUIDs that exist, locked for update in UUID order (two
    transactions locking two groups each never wait on each other crosswise), their
    rows read again under the lock."""
    stmt = (
        select(SecurityGroupRow)
        .where(SecurityGroupRow.uuid.in_(sorted(uuids)))
        .order_by(SecurityGroupRow.uuid)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {row.uuid: row for row in (await session.execute(stmt)).scalars()}


async def existing_groups(session: AsyncSession, uuids: set[str]) -> set[str]:
    """Which of these security group UUIDs still exist, locked as ``_existing`` says."""
    return await _existing(session, SecurityGroupRow, uuids)


async def group_members(session: AsyncSession, group: SecurityGroupRow) -> list[str]:
    """The UUIDs of the containers of the group's project that are in it."""
    stmt = select(ContainerRow.uuid, ContainerRow.security_groups).where(
        ContainerRow.project_id == group.project_id
    )
    return [uuid for uuid, groups in (await session.execute(stmt)).all() if group.uuid in groups]


async def member_hosts(session: AsyncSession, group: SecurityGroupRow) -> set[str]:
    """The hosts that run containers of the group's project (they may apply its rules)."""
    stmt = select(ContainerRow.host).where(
        ContainerRow.project_id == group.project_id, ContainerRow.host.is_not(None)
    )
    return {h for (h,) in (await session.execute(stmt)).all() if h}


async def drop_container_groups(session: AsyncSession, container_uuid: str) -> None:
    """Remove the exposed-ports group(s) of a container that is gone."""
    stmt = select(SecurityGroupRow).where(SecurityGroupRow.container_uuid == container_uuid)
    for group in (await session.execute(stmt)).scalars().all():
        await session.delete(group)
