"""What every identity repository shares: a row by primary key, unique-constraint conflicts."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from berth import errors
from berth.store.base import Base

__all__ = ["conflicts_as_409", "flush_unique", "get_or_404", "tolerate_db_errors"]

_ROW = TypeVar("_ROW", bound=Base)


async def get_or_404(s: AsyncSession, row_type: type[_ROW], key: str, kind: str) -> _ROW:
    """The row with primary key ``key``; ``NotFound`` in Keystone's words if there is none."""
    row = await s.get(row_type, key)
    if row is None:
        raise errors.NotFound(f"Could not find {kind}: {key}.")
    return row


@contextmanager
def conflicts_as_409(message: str) -> Iterator[None]:
    """Turn a unique-constraint violation in the block into a Keystone-style 409.

    Wraps a flush, or a whole ``Database.transaction()`` block when the
    violation may only show at commit (a grant made at the same moment by
    another process).
    """
    try:
        yield
    except IntegrityError as exc:
        raise errors.Conflict(f"Conflict occurred attempting to store {message}.") from exc


async def flush_unique(s: AsyncSession, message: str) -> None:
    """Flush, turning a unique-constraint violation into a Keystone-style 409."""
    with conflicts_as_409(message):
        await s.flush()


@contextmanager
def tolerate_db_errors(log: logging.Logger, what: str) -> Iterator[None]:
    """Log (at info) and swallow a database error of the block: for housekeeping only.

    A lock conflict between two concurrent housekeeping runs (pruning expired
    tokens) must never fail the request that started one.
    """
    try:
        yield
    except DBAPIError as exc:
        log.info("%s skipped: %s", what, exc.orig)
