"""Finding one row by UUID or by name, as every Zun and Magnum resource is named.

A UUID-shaped identifier is looked up by UUID only (any case, dashes optional
as Zun accepts); anything else by name. Several visible rows with that name is
a Conflict that tells the caller to use the UUID, as Zun answers.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import Select, bindparam
from sqlalchemy.ext.asyncio import AsyncSession

from berth import errors
from berth.store import shapes

__all__ = ["UUID_SHAPE", "one_by_ident"]

UUID_SHAPE = re.compile(
    r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
)
R = TypeVar("R")
_IDENT = "lookup_ident"


async def one_by_ident(
    session: AsyncSession,
    stmt: Select[Any],
    model: type[R],
    ident: str,
    *,
    missing: type[errors.NotFound],
    noun: str,
    plural: str | None = None,
    for_update: bool = False,
    for_share: bool = False,
    params: Mapping[str, Any] | None = None,
    shape: Hashable | None = None,
) -> R:
    """The one row of ``stmt`` (already scoped) that ``ident`` names.

    ``missing`` is raised with "<Noun> <ident> could not be found."; ``noun`` is
    the resource's name in messages ("container", "security group"). ``for_share``
    locks the row against changes and deletion until the transaction ends (``FOR
    SHARE`` on PostgreSQL; SQLite's one writer needs none). ``params``
    are the values of ``stmt``'s bind parameters; with a ``shape`` (``stmt`` is the
    one berth.store.shapes keeps for it) the lookup's statement is kept as well.
    """
    by_uuid = bool(UUID_SHAPE.match(ident))
    column = model.uuid if by_uuid else model.name  # type: ignore[attr-defined]

    def lookup() -> Select[Any]:
        found = stmt.where(column == bindparam(_IDENT))
        if for_update or for_share:
            found = found.with_for_update(read=not for_update)
        return found.limit(2)

    key = None if shape is None else (shape, "by", column.key, for_update, for_share)
    find = lookup() if key is None else shapes.cached(key, lookup)
    values = {**(params or {}), _IDENT: ident.lower() if by_uuid else ident}
    rows: Sequence[R] = (await session.execute(find, values)).scalars().all()
    if not rows:
        raise missing(f"{noun[0].upper()}{noun[1:]} {ident} could not be found.")
    if len(rows) > 1:
        raise errors.Conflict(
            f"Multiple {plural or noun + 's'} exist with same name {ident}. "
            f"Please use the {noun} uuid."
        )
    return rows[0]
