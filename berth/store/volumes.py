"""Volume queries. Lookups and lists go through a Scope: other projects' volumes are invisible."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import Select, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from berth import errors
from berth.store.lookup import UUID_SHAPE, one_by_ident
from berth.store.paging import PageQuery, scoped_page
from berth.store.scope import Scope
from berth.store.tables import ContainerRow, VolumeRow

__all__ = [
    "SORT_KEYS",
    "bind_host",
    "delete_by_uuid",
    "delete_owned",
    "exists",
    "get",
    "list_page",
    "mounted_by",
    "set_deleting",
]

SORT_KEYS = frozenset({"id", "uuid", "name", "size", "host", "project_id", "user_id", "created_at"})


def _scoped(stmt: Select[tuple[VolumeRow]], scope: Scope) -> Select[tuple[VolumeRow]]:
    if scope.all_projects:
        return stmt
    return stmt.where(VolumeRow.project_id == scope.project_id)


def _named(scope: Scope, ident: str) -> Select[tuple[VolumeRow]]:
    # As one_by_ident matches: a UUID-shaped identifier by UUID only, else by name.
    stmt = _scoped(select(VolumeRow), scope)
    if UUID_SHAPE.match(ident):
        return stmt.where(VolumeRow.uuid == ident.lower())
    return stmt.where(VolumeRow.name == ident)


async def get(
    session: AsyncSession,
    scope: Scope,
    ident: str,
    *,
    for_update: bool = False,
    for_share: bool = False,
) -> VolumeRow:
    """The volume ``ident`` (UUID or name) visible in ``scope``; VolumeNotFound otherwise.

    Several visible volumes with that name is a Conflict, as in Zun. ``for_share``:
    kept from deletion until the transaction ends (a container mounts it).
    """
    return await one_by_ident(
        session,
        _scoped(select(VolumeRow), scope),
        VolumeRow,
        ident,
        missing=errors.VolumeNotFound,
        noun="volume",
        for_update=for_update,
        for_share=for_share,
    )


async def exists(session: AsyncSession, scope: Scope, ident: str) -> bool:
    """Whether a volume ``ident`` (UUID or name) is visible in ``scope``."""
    return bool((await session.execute(_named(scope, ident).limit(2))).scalars().all())


async def list_page(session: AsyncSession, scope: Scope, query: PageQuery) -> Sequence[VolumeRow]:
    """One page of the volumes ``scope`` sees."""
    return await scoped_page(session, VolumeRow, scope, query)


async def mounted_by(session: AsyncSession, volume: VolumeRow) -> list[str]:
    """UUIDs of the containers (capsule members included) that mount ``volume``."""
    stmt = select(ContainerRow.uuid, ContainerRow.mounts).where(
        ContainerRow.project_id == volume.project_id
    )
    return [
        uuid
        for uuid, mounts in (await session.execute(stmt)).all()
        if any(m.get("volume_uuid") == volume.uuid for m in mounts or [])
    ]


async def delete_by_uuid(session: AsyncSession, uuid: str) -> None:
    """Delete the volume ``uuid`` of any project (nothing if it is already gone)."""
    stmt = _named(Scope(None, all_projects=True), uuid).limit(2)
    for volume in (await session.execute(stmt)).scalars().all():
        await session.delete(volume)


async def set_deleting(session: AsyncSession, uuid: str, deleting: bool) -> None:
    """Mark the volume ``uuid`` as being deleted (its data going), or not any more."""
    await session.execute(update(VolumeRow).where(VolumeRow.uuid == uuid).values(deleting=deleting))


async def delete_owned(session: AsyncSession, owner_uuid: str) -> None:
    """Delete the volumes that belonged to the container or capsule ``owner_uuid``."""
    stmt = select(VolumeRow).where(VolumeRow.owner_uuid == owner_uuid)
    for volume in (await session.execute(stmt)).scalars().all():
        await session.delete(volume)


async def bind_host(
    session: AsyncSession, uuids: Sequence[str], host: str, now: dt.datetime
) -> None:
    """Record ``host`` on the volumes among ``uuids`` that had none."""
    stmt = select(VolumeRow).where(VolumeRow.uuid.in_(uuids), VolumeRow.host.is_(None))
    for volume in (await session.execute(stmt)).scalars().all():
        volume.host = host
        volume.updated_at = now
