"""Wakes agents that long-poll for their desired state when it changes.

In one process the counters live here. With several API processes over
PostgreSQL, ``touch`` publishes through a bridge (LISTEN/NOTIFY, see
``berth.store.listen``) and every process bumps its counters when the
notification arrives, so an agent long-polling any API process wakes at once.

``touch_host`` travels the same way but says that a host itself changed (it
registered, or its service was enabled, disabled, forced down or deleted):
it wakes no agent, it tells each process's host watchers (the scheduler's
snapshot cache) to read that host again.

When the server stops (SIGTERM, a worker replaced on SIGHUP), ``end_long_polls``
answers every long poll of the process at once, as if its timer had fired: the
server's graceful shutdown waits for every request in flight, and an agent's
poll would otherwise hold it for up to its whole timeout (measured: berth-api
with polling agents took over 15 s to stop). Waits that start afterwards (a
request that arrived within the shutdown grace) last at most a second.

Waiters are kept per host: a touch wakes the long polls of that host only.
(One condition for all hosts woke every waiting agent on every touch, each to
take the lock in turn and find its host unchanged: ~2.7 ms of CPU per create
with 1,000 agents polling, and one more loop pass before the woken poll ran.)
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import secrets
import weakref
from collections import defaultdict
from collections.abc import Awaitable, Callable

from berth import errors

__all__ = ["CLIENT_GONE", "CLIENT_GONE_SCOPE_KEY", "Notifier", "end_long_polls"]

log = logging.getLogger(__name__)

# Resolved when the client of the request being served went away (the server's
# connection protocol puts it in the ASGI scope under this key; the agents' poll
# route sets the variable): its long poll ends instead of waiting for nobody, which
# also held a stopping server's graceful shutdown for the poll's whole timeout.
CLIENT_GONE_SCOPE_KEY = "berth.client_gone"
CLIENT_GONE: contextvars.ContextVar[asyncio.Future[None] | None] = contextvars.ContextVar(
    "berth_client_gone", default=None
)
_CLOSING_WAIT = 1.0  # seconds: the longest wait once the process is stopping
_notifiers: weakref.WeakSet[Notifier] = weakref.WeakSet()


def end_long_polls() -> None:
    """Answer every long poll of this process now; later ones wait a second at most."""
    for notifier in list(_notifiers):
        notifier.end_waits()


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
        # The long polls waiting on each host: a change wakes its host's only.
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        self._publish: Callable[[str], Awaitable[None]] | None = None
        self._host_watchers: list[Callable[[str], None]] = []
        self._closing = False
        _notifiers.add(self)

    def end_waits(self) -> None:
        """The process stops: wake every waiter, and cap the waits still to come.

        Once: the server calls this from every open connection's ``shutdown``, and
        waits that start later are capped already (a second pass over a thousand
        waiters per connection was quadratic)."""
        if self._closing:
            return
        self._closing = True
        self._wake_all()

    def resync(self) -> None:
        """Notifications may have been lost (the LISTEN connection was down): count a
        change for every host and wake every long poll, so each agent reads its
        desired state again instead of waiting out its timeout."""
        for host in list(self._generation):
            self._generation[host] += 1
        self._wake_all()

    def _wake_all(self) -> None:
        for waiters in list(self._waiters.values()):
            for waiter in list(waiters):
                _wake(waiter)

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
            try:
                await self._publish(host)
                return
            except errors.BerthError as exc:  # the database too busy to take the NOTIFY
                log.warning("could not tell the other API processes of %s: %s", host, exc)
        # This process's long polls at least (the others' end within their wait).
        await self.received(host)

    def watch_hosts(self, watcher: Callable[[str], None]) -> None:
        """Call ``watcher(hostname)`` whenever ``touch_host`` is called, in any process."""
        self._host_watchers.append(watcher)

    async def touch_host(self, host: str) -> None:
        """Record that ``host`` itself changed (registration, service state)."""
        message = _HOST_FACTS + host
        if self._publish is not None:
            # This process's watchers at once (a placement right after a registration
            # here must see it), the others' when the notification arrives; ours then
            # forget the host once more, which only costs a read of that row.
            self._tell_watchers(host)
            await self._publish(message)
        else:
            await self.received(message)

    def _tell_watchers(self, host: str) -> None:
        for watcher in self._host_watchers:
            watcher(host)

    async def received(self, host: str) -> None:
        """Bump ``host``'s counter in this process and wake its waiters.

        A ``touch_host`` message goes to the host watchers instead.
        """
        if host.startswith(_HOST_FACTS):
            self._tell_watchers(host[len(_HOST_FACTS) :])
            return
        self._generation[host] += 1
        for waiter in self._waiters.get(host, ()):
            _wake(waiter)

    async def wait(self, host: str, seen: int, timeout: float) -> int:
        """Wait until ``host``'s generation differs from ``seen`` or ``timeout`` passes.

        A future and a timer per wait, no task, lock or cancellation: an idle
        agent's long poll ends by its timer, and a thousand of them are waiting
        at any time (a condition shared by all hosts woke every one of them on
        each change).
        """
        if self._generation[host] != seen:
            return self._generation[host]
        if self._closing:
            timeout = min(timeout, _CLOSING_WAIT)
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        waiters = self._waiters.setdefault(host, set())
        waiters.add(waiter)
        timer = loop.call_later(timeout, _wake, waiter)
        gone = CLIENT_GONE.get()

        def client_gone(_: asyncio.Future[None]) -> None:
            _wake(waiter)

        if gone is not None:
            gone.add_done_callback(client_gone)
        try:
            await waiter
        finally:
            timer.cancel()
            if gone is not None:
                gone.remove_done_callback(client_gone)
            waiters.discard(waiter)
            if not waiters:
                self._waiters.pop(host, None)
        return self._generation[host]


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
