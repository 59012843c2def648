"""Counted slots: how many long, costly operations of one kind run at once in an API process.

Interactive sessions hold an engine session and a thread on their host; file copies
hold the whole tar several times over in memory; a log read (not followed) holds the
whole log several times over. Each kind keeps a ``Slots``; a request takes a slot
before it starts anything, and one over the bound is refused (``hold``:
``errors.OverQuota``, a 403 as a quota is) with what to do, or waits its turn for a
while (``wait_hold``: then ``errors.Overloaded``, a 503 to retry).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator

from berth import errors

__all__ = ["Slots"]


class Slots:
    """At most ``per_project`` operations of one project and ``total`` in all (0: no bound)."""

    def __init__(self) -> None:
        self._open: Counter[str] = Counter()  # project -> operations open in this process
        # Waiting ``wait_hold`` callers, woken on every release (futures of the loop
        # that made them: a module's Slots outlives the event loops of tests).
        self._waiters: set[asyncio.Future[None]] = set()

    def _full(self, project_id: str, bounds: tuple[int, int]) -> int:
        """0 if one more operation of ``project_id`` fits; 1 if its project is full, 2 if
        the process is."""
        per_project, total = bounds
        if per_project and self._open[project_id] >= per_project:
            return 1
        if total and sum(self._open.values()) >= total:
            return 2
        return 0

    def _release(self, project_id: str) -> None:
        self._open[project_id] -= 1
        if self._open[project_id] <= 0:
            del self._open[project_id]
        for waiter in self._waiters:
            if not waiter.done():
                with contextlib.suppress(RuntimeError):  # its loop is closed
                    waiter.set_result(None)

    @contextlib.contextmanager
    def hold(
        self,
        project_id: str,
        bounds: tuple[int, int],
        refusals: tuple[str, str],
        error: Callable[[str], errors.BerthError] = errors.OverQuota,
    ) -> Iterator[None]:
        """Count one operation of ``project_id`` while the block runs.

        ``bounds`` is (per project, in all); ``refusals`` the messages of ``error``
        (OverQuota) when the project, or the process, is full. Raised before the
        block runs.
        """
        full = self._full(project_id, bounds)
        if full:
            raise error(refusals[full - 1])
        self._open[project_id] += 1
        try:
            yield
        finally:
            self._release(project_id)

    def count(
        self, project_id: str, bounds: tuple[int, int], what: str, setting: str
    ) -> contextlib.AbstractContextManager[None]:
        """``hold`` with the usual refusals: so many ``what`` at once, naming the
        settings ``<setting>_per_project`` and ``<setting>``."""
        return self.hold(
            project_id,
            bounds,
            (
                f"Project {project_id} runs {bounds[0]} {what} at once "
                f"({setting}_per_project): wait for one to finish and try again.",
                f"This API process runs {bounds[1]} {what} at once ({setting}): "
                "try again in a moment.",
            ),
        )

    @contextlib.asynccontextmanager
    async def wait_hold(
        self,
        project_id: str,
        bounds: tuple[int, int],
        refusals: tuple[str, str],
        wait: float,
    ) -> AsyncIterator[None]:
        """Count one operation of ``project_id`` while the block runs, waiting up to
        ``wait`` seconds for a slot; ``errors.Overloaded`` (``refusals``) after that."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while full := self._full(project_id, bounds):
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise errors.Overloaded(refusals[full - 1])
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.add(waiter)
            try:
                await asyncio.wait({waiter}, timeout=remaining)
            finally:
                self._waiters.discard(waiter)
        self._open[project_id] += 1
        try:
            yield
        finally:
            self._release(project_id)
