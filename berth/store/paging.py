"""Zun-style pages of a collection: ``limit``, ``marker`` (a UUID), ``sort_key``, ``sort_dir``.

Rows are ordered by the sort key, then by id (so equal keys page stably), and a
page starts after the marker row's position in that order. The marker is looked
up within what the caller may see: a marker of another project is "not found",
not a way to learn where that row sorts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Integer, Select, and_, bindparam, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from berth import errors
from berth.domain.paging import Paging
from berth.store import shapes
from berth.store.scope import Scope

__all__ = ["TURN_ROWS", "TURN_ROWS_ELSEWHERE", "PageQuery", "page", "page_size", "scoped_page"]

R = TypeVar("R")  # a mapped row class with ``id`` and ``uuid`` columns


def page_size(sort_key: str, sort_keys: frozenset[str], limit: int | None, max_limit: int) -> int:
    """The rows a page holds (``limit``, capped at ``max_limit``); 400 for an unknown sort key."""
    if sort_key not in sort_keys:
        raise errors.Invalid(
            f"Invalid sort_key {sort_key}; choose one of {', '.join(sorted(sort_keys))}."
        )
    return min(limit or max_limit, max_limit)


@dataclass(frozen=True, slots=True)
class PageQuery:
    """What a list asked for, once ``page_size`` checked the sort key and capped the limit."""

    limit: int
    marker: str | None = None
    sort_key: str = "id"
    sort_dir: str = "asc"

    @classmethod
    def of(cls, sort_keys: frozenset[str], max_limit: int, paging: Paging = Paging()) -> PageQuery:
        """The checked query: 400 for an unknown sort key, the limit capped at ``max_limit``."""
        size = page_size(paging.sort_key, sort_keys, paging.limit, max_limit)
        return cls(size, paging.marker, paging.sort_key, paging.sort_dir)


async def scoped_page(
    session: AsyncSession,
    model: type[R],
    scope: Scope,
    query: PageQuery,
    *,
    where: Iterable[ColumnElement[bool]] = (),
) -> Sequence[R]:
    """One page of ``model``'s rows the scope sees (its project's, or all), filtered by ``where``.

    The one list helper of every project-owned collection: the tenancy filter is
    applied here, so a list can not forget it, and the marker is looked up among
    the same visible rows.
    """
    table: Any = model
    clauses = tuple(where)

    def visible() -> Select[Any]:
        stmt = shapes.scoped(select(table), table, scope.all_projects)
        for clause in clauses:
            stmt = stmt.where(clause)
        return stmt

    # Clauses may hold values, so a filtered list builds its statement each time.
    shape = None if clauses else ("scoped_page", table, scope.all_projects)
    stmt = visible() if shape is None else shapes.cached(shape, visible)
    return await page(
        session,
        stmt,
        model,
        visible=stmt,
        limit=query.limit,
        marker=query.marker,
        sort_key=query.sort_key,
        sort_dir=query.sort_dir,
        params=shapes.scope_params(scope),
        shape=shape,
    )


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
    params: Mapping[str, Any] | None = None,
    shape: Hashable | None = None,
) -> Sequence[R]:
    """One page of ``stmt`` (rows of ``model``); ``visible`` is where the marker is looked up.

    ``params`` are the values of ``stmt``'s and ``visible``'s bind parameters. With a
    ``shape`` (``stmt`` is the one berth.store.shapes keeps for it) the page's own
    statements are kept too, so a first page is not rebuilt per request.
    """
    table: Any = model
    column, ident = getattr(table, sort_key), table.id
    values = dict(params or {})

    def ordered() -> Select[Any]:
        # NULL sorts as the smallest value on every store (SQLite puts NULLs first
        # ascending, PostgreSQL last), and a marker whose key is NULL still has a
        # place to continue from: ``column > NULL`` alone would end the listing there.
        # Only nullable keys get the NULLS clause: PostgreSQL cannot walk a plain
        # index for ``ORDER BY id ASC NULLS FIRST``.
        if sort_dir == "desc":
            order = column.desc().nulls_last() if column.nullable else column.desc()
            return stmt.order_by(order, ident.desc())
        order = column.asc().nulls_first() if column.nullable else column.asc()
        return stmt.order_by(order, ident.asc())

    key = None if shape is None else (shape, "ordered", sort_key, sort_dir)
    listed = ordered() if key is None else shapes.cached(key, ordered)
    if marker:
        found = await session.execute(visible.where(table.uuid == marker), values)
        mark = found.scalar_one_or_none()
        if mark is None:
            raise errors.Invalid(f"Marker {marker} could not be found.")
        listed = listed.where(_after(column, ident, getattr(mark, sort_key), mark.id, sort_dir))
        key = None  # built for this marker

    def after(row: Any) -> ColumnElement[bool]:
        return _after(column, ident, getattr(row, sort_key), row.id, sort_dir)

    return await _in_turns(session, listed, model, limit, after, values, key)


# Rows made per turn of the event loop. One statement for a page of 1,000 rows
# made every row object in one go (~30 ms of CPU on a slow core), and every other
# request of the process (a show, an agent's poll) waited behind it: a page
# larger than this is read a slice of this many rows at a time (the first by
# its own statement, the rest by id), letting the loop run in between. A slice
# is a statement: a function call on SQLite (slices of 50, ~2 ms each), a round
# trip on PostgreSQL, where each cost ~2 ms of the API's CPU, so slices of 250
# there. Measured with
# bench/api_reads.py, a show while another client lists 1,000 back to back: p99
# 95-117 -> 33-39 ms on SQLite (slices of 200 left 70 ms); see docs/benchmarks.md.
TURN_ROWS = {"sqlite": 50}
TURN_ROWS_ELSEWHERE = 250
_SLICE = "page_slice"


def _turn_rows(session: AsyncSession) -> int:
    bind = session.bind
    name = bind.dialect.name if bind is not None else ""
    return TURN_ROWS.get(name, TURN_ROWS_ELSEWHERE)


async def _in_turns(
    session: AsyncSession,
    stmt: Select[Any],
    model: type[R],
    limit: int,
    after: Callable[[Any], ColumnElement[bool]],
    values: Mapping[str, Any],
    key: Hashable | None,
) -> Sequence[R]:
    """The first ``limit`` rows of ``stmt`` in its order, made a slice at a time.

    The first slice is one statement (kept under ``key``, its size a bind
    parameter), so a page that fits in it costs what it always did. The rest are
    the ids ``after`` its last row (as a marker would continue), then their rows by
    id a slice at a time: one changed or deleted meanwhile shows as it is now, or
    not at all (a page is not a snapshot on PostgreSQL's autocommit reads either).
    """
    table: Any = model
    per_turn = _turn_rows(session)

    def first_slice() -> Select[Any]:
        return stmt.limit(bindparam(_SLICE, type_=Integer))

    sliced = first_slice() if key is None else shapes.cached((key, "slice"), first_slice)
    found_first = await session.execute(sliced, {**values, _SLICE: min(limit, per_turn)})
    first: Sequence[R] = found_first.scalars().all()
    if limit <= per_turn or len(first) < per_turn:
        return first
    rest = stmt.where(after(first[-1])).limit(limit - len(first))
    found_ids = await session.execute(rest.with_only_columns(table.id), values)
    ids: Sequence[int] = found_ids.scalars().all()
    found: dict[int, R] = {}
    for start in range(0, len(ids), per_turn):
        await asyncio.sleep(0)
        part = ids[start : start + per_turn]
        for row in (await session.execute(select(table).where(table.id.in_(part)))).scalars():
            found[row.id] = row
    return [*first, *(found[i] for i in ids if i in found)]


def _after(column: Any, ident: Any, value: Any, mark_id: int, sort_dir: str) -> ColumnElement[bool]:
    """Rows that come after (``value``, ``mark_id``) in the page order, NULL smallest."""
    if sort_dir == "desc":
        if value is None:
            return and_(column.is_(None), ident < mark_id)
        return or_(column < value, and_(column == value, ident < mark_id), column.is_(None))
    if value is None:
        return or_(column.is_not(None), and_(column.is_(None), ident > mark_id))
    return or_(column > value, and_(column == value, ident > mark_id))
