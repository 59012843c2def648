"""Injected files of containers (``container_files``): kept at create, read by the agent."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from berth.store.tables import ContainerFileRow

__all__ = ["add", "forget", "of_container"]


def add(session: AsyncSession, container_uuid: str, destination: str, content: bytes) -> None:
    """Keep ``content`` to be written at ``destination`` in container ``container_uuid``."""
    session.add(
        ContainerFileRow(container_uuid=container_uuid, destination=destination, content=content)
    )


async def of_container(session: AsyncSession, container_uuid: str) -> Sequence[ContainerFileRow]:
    """The container's files, in the order they were given."""
    stmt = (
        select(ContainerFileRow)
        .where(ContainerFileRow.container_uuid == container_uuid)
        .order_by(ContainerFileRow.id)
    )
    return (await session.execute(stmt)).scalars().all()


async def forget(session: AsyncSession, container_uuid: str) -> None:
    """Drop every file of container ``container_uuid``."""
    await session.execute(
        delete(ContainerFileRow).where(ContainerFileRow.container_uuid == container_uuid)
    )
