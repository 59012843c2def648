"""Wakes agents that long-poll for their desired state when it changes."""

from __future__ import annotations

import asyncio
from collections import defaultdict

__all__ = ["Notifier"]


class Notifier:
    """Per-host change counters with waiters (in-process; PostgreSQL deployments poll too)."""

    def __init__(self) -> None:
        self._generation: dict[str, int] = defaultdict(int)
        self._cond = asyncio.Condition()

    def generation(self, host: str) -> int:
        return self._generation[host]

    async def touch(self, host: str | None) -> None:
        """Record that something assigned to ``host`` changed and wake its waiters."""
        if host is None:
            return
        async with self._cond:
            self._generation[host] += 1
            self._cond.notify_all()

    async def wait(self, host: str, seen: int, timeout: float) -> int:
        """Wait until ``host``'s generation differs from ``seen`` or ``timeout`` passes."""
        try:
            async with self._cond:
                await asyncio.wait_for(
                    self._cond.wait_for(lambda: self._generation[host] != seen), timeout
                )
        except TimeoutError:
            pass
        return self._generation[host]
