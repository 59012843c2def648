"""Zun-style pages of a collection: ``limit``, ``marker`` (a UUID), ``sort_key``, ``sort_dir``.

Rows are ordered by the sort key, then by id (so equal keys page stably), and a
page starts after the marker row's position in that order. The marker is looked
up within what the caller may see: a marker of another project is "not found",
not a way to learn where that row sorts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession

from berth import errors

__all__ = ["page", "page_size"]

R = TypeVar("R")  # a mapped row class with ``id`` and ``uuid`` columns


def page_size(sort_key: str, sort_keys: frozenset[str], limit: int | None, max_limit: int) -> int:
    """The rows a page holds (``limit``, capped at ``max_limit``); 400 for an unknown sort key."""
    if sort_key not in sort_keys:
        raise errors.Invalid(
            f"Invalid sort_key {sort_key}; choose one of {', '.join(sorted(sort_keys))}."
        )
    return min(limit or max_limit, max_limit)


async def page(
    session: AsyncSession,
    stmt: Select[Any],
    model: type[R],
    *,
    visible: Select[Any],
    limit: int,
    marker: str | None,
    sort_key: str,
    sort_dir: str,
) -> Sequence[R]:
    """One page of ``stmt`` (rows of ``model``); ``visible`` is where the marker is looked up."""
    table: Any = model
    column, ident = getattr(table, sort_key), table.id
    if sort_dir == "desc":
        stmt = stmt.order_by(column.desc(), ident.desc())
    else:
        stmt = stmt.order_by(column.asc(), ident.asc())
    if marker:
        mark = (await session.execute(visible.where(table.uuid == marker))).scalar_one_or_none()
        if mark is None:
            raise errors.Invalid(f"Marker {marker} could not be found.")
        mval = getattr(mark, sort_key)
        if sort_dir == "desc":
            stmt = stmt.where((column < mval) | ((column == mval) & (ident < mark.id)))
        else:
            stmt = stmt.where((column > mval) | ((column == mval) & (ident > mark.id)))
    rows: Sequence[R] = (await session.execute(stmt.limit(limit))).scalars().all()
    return rows
