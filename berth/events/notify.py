"""Wakes agents that long-poll for their desired state when it changes.

In one process the counters live here. With several API processes over
PostgreSQL, ``touch`` publishes through a bridge (LISTEN/NOTIFY, see
``berth.store.listen``) and every process bumps its counters when the
notification arrives, so an agent long-polling any API process wakes at once.

``touch_host`` travels the same way but says that a host itself changed (it
registered, or its service was enabled, disabled, forced down or deleted):
it wakes no agent, it tells each process's host watchers (the scheduler's
snapshot cache) to read that host again.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import defaultdict
from collections.abc import Awaitable, Callable

__all__ = ["Notifier"]

# Payload prefix of a touch_host message; no host name contains this control character.
_HOST_FACTS = "\x1fhost:"


class Notifier:
    """Per-host change counters with waiters."""

    def __init__(self) -> None:
        # Counters start at a per-process random value: an agent whose last
        # generation came from a previous process (an API restart, another API
        # behind a load balancer) can then never mistake "nothing changed".
        base = secrets.randbelow(2**31) * 1024
        self._generation: dict[str, int] = defaultdict(lambda: base)
        self._cond = asyncio.Condition()
        self._publish: Callable[[str], Awaitable[None]] | None = None
        self._host_watchers: list[Callable[[str], None]] = []

    def bridge(self, publish: Callable[[str], Awaitable[None]] | None) -> None:
        """Send changes through ``publish`` (which must end in ``received``) instead."""
        self._publish = publish

    def generation(self, host: str) -> int:
        return self._generation[host]

    async def touch(self, host: str | None) -> None:
        """Record that something assigned to ``host`` changed and wake its waiters."""
        if host is None:
            return
        if self._publish is not None:
            await self._publish(host)
        else:
            await self.received(host)

    def watch_hosts(self, watcher: Callable[[str], None]) -> None:
        """Call ``watcher(hostname)`` whenever ``touch_host`` is called, in any process."""
        self._host_watchers.append(watcher)

    async def touch_host(self, host: str) -> None:
        """Record that ``host`` itself changed (registration, service state)."""
        message = _HOST_FACTS + host
        if self._publish is not None:
            await self._publish(message)
        else:
            await self.received(message)

    async def received(self, host: str) -> None:
        """Bump ``host``'s counter in this process and wake its waiters.

        A ``touch_host`` message goes to the host watchers instead.
        """
        if host.startswith(_HOST_FACTS):
            for watcher in self._host_watchers:
                watcher(host[len(_HOST_FACTS) :])
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
