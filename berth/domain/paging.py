"""Zun's paging parameters, as a list request carries them from the API to the store."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Paging"]


@dataclass(frozen=True, slots=True)
class Paging:
    """``limit``, ``marker``, ``sort_key``, ``sort_dir`` as the client sent them.

    Unchecked: ``berth.store.paging.PageQuery.of`` refuses an unknown sort key
    and caps the limit against the collection's own sort keys and maximum.
    """

    limit: int | None = None
    marker: str | None = None
    sort_key: str = "id"
    sort_dir: str = "asc"
