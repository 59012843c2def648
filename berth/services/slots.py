"""Counted slots: how many long, costly operations of one kind run at once in an API process.

Interactive sessions hold an engine session and a thread on their host; file copies
hold the whole tar several times over in memory. Each kind keeps a ``Slots``; a
request takes a slot before it starts anything, and one over the bound is refused
(``errors.OverQuota``, a 403 as a quota is) with what to do.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator

from berth import errors

__all__ = ["Slots"]


class Slots:
    """At most ``per_project`` operations of one project and ``total`` in all (0: no bound)."""

    def __init__(self) -> None:
        self._open: Counter[str] = Counter()  # project -> operations open in this process

    @contextlib.contextmanager
    def hold(
        self,
        project_id: str,
        bounds: tuple[int, int],
        refusals: tuple[str, str],
    ) -> Iterator[None]:
        """Count one operation of ``project_id`` while the block runs.

        ``bounds`` is (per project, in all); ``refusals`` the OverQuota messages
        when the project, or the process, is full. Raised before the block runs.
        """
        per_project, total = bounds
        if per_project and self._open[project_id] >= per_project:
            raise errors.OverQuota(refusals[0])
        if total and sum(self._open.values()) >= total:
            raise errors.OverQuota(refusals[1])
        self._open[project_id] += 1
        try:
            yield
        finally:
            self._open[project_id] -= 1
            if self._open[project_id] <= 0:
                del self._open[project_id]
