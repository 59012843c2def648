"""Finding one row by UUID or by name, as every Zun and Magnum resource is named.

A UUID-shaped identifier is looked up by UUID only (any case, dashes optional
as Zun accepts); anything else by name. Several visible rows with that name is
a Conflict that tells the caller to use the UUID, as Zun answers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession

from berth import errors

__all__ = ["UUID_SHAPE", "one_by_ident"]

UUID_SHAPE = re.compile(
    r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
)
R = TypeVar("R")


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
) -> R:
    """The one row of ``stmt`` (already scoped) that ``ident`` names.

    ``missing`` is raised with "<Noun> <ident> could not be found."; ``noun`` is
    the resource's name in messages ("container", "security group").
    """
    column = model.uuid if UUID_SHAPE.match(ident) else model.name  # type: ignore[attr-defined]
    stmt = stmt.where(column == (ident.lower() if UUID_SHAPE.match(ident) else ident))
    if for_update:
        stmt = stmt.with_for_update()
    rows: Sequence[R] = (await session.execute(stmt.limit(2))).scalars().all()
    if not rows:
        raise missing(f"{noun[0].upper()}{noun[1:]} {ident} could not be found.")
    if len(rows) > 1:
        raise errors.Conflict(
            f"Multiple {plural or noun + 's'} exist with same name {ident}. "
            f"Please use the {noun} uuid."
        )
    return rows[0]
