"""Bounds on what one TCP connection may hold: the servers' HTTP protocol, guarded.

uvicorn bounds an idle keep-alive connection (``timeout_keep_alive``) and
nothing else: a connection that sends half a request head and then waits, or a
request body one byte a minute, is kept for ever. A client that opens a thousand
of them ("slowloris") takes every file descriptor of the process (measured:
1,100 such connections and berth-api, at the usual soft limit of 1,024, resets
every new connection, its own database connections included). So every server
Berth runs (berth-api, its workers, berth-agent) speaks uvicorn's httptools
protocol with four bounds (settings in ``berth.config``):

- ``request_head_seconds``: a request's head (request line and headers) must
  be complete this long after its first byte, or after the connection opened;
  otherwise ``408`` and the connection is closed.
- ``request_idle_seconds``: while a request's body is being received, the
  longest silence (reading paused by flow control does not count); and while
  its answer is being sent, the longest the client may read none of it (the
  transport's buffer full, writing paused). Without the second, a client that
  never read its answer kept it in the process for ever: a ``get_archive`` of
  up to ~133 MB of JSON, per connection.
- ``max_connections_per_client``: connections open at once from one address;
  more are answered ``503`` with ``Retry-After`` and closed (0: no limit). The
  ``trusted_proxies`` are exempt: every client behind one has its address.
- ``max_connections``: connections open at once in the process; more are
  answered the same way, so the process keeps descriptors for its database, its
  engine and its files.

The process's soft limit on open files is raised to its hard limit at start
(``raise_open_files``), and ``max_connections`` is kept below it.

Why a subclass of uvicorn's protocol rather than a proxy in front: the bounds
need the parser's view (where a head starts and ends, whether a body is
expected), which the protocol has; a second hop would cost every request a copy.
The subclass touches only the callbacks uvicorn documents for its parser
(``on_message_begin``, ``on_headers_complete``, ``on_message_complete``) and the
asyncio ``Protocol`` methods.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import resource
from collections import Counter
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from berth.config import Settings
from berth.events.notify import CLIENT_GONE_SCOPE_KEY, end_long_polls

__all__ = ["GuardedHttp", "Limits", "configure", "raise_open_files"]

log = logging.getLogger("berth")

_RESERVED_FILES = 256  # descriptors kept for the database, the engine, logs and files
_SHUTDOWN_GRACE = 2.0  # seconds a connection accepted just before a shutdown has to ask


@dataclass(frozen=True, slots=True)
class Limits:
    head_seconds: float = 10.0
    idle_seconds: float = 60.0
    per_client: int = 256
    total: int = 4096
    proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    def capped(self, peer: str) -> bool:
        """Whether connections from ``peer`` count against ``per_client``."""
        if not self.per_client or not peer:
            return False
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return True
        return not any(address in network for network in self.proxies)


_limits = Limits()
_open: Counter[str] = Counter()  # client address -> connections open now
_total = 0


def configure(settings: Settings) -> Limits:
    """Take the bounds from ``settings`` (each serving process calls this before it serves)."""
    global _limits
    files = raise_open_files()
    total = settings.max_connections
    if files > _RESERVED_FILES:
        total = min(total, files - _RESERVED_FILES)
    _limits = Limits(
        head_seconds=settings.request_head_seconds,
        idle_seconds=settings.request_idle_seconds,
        per_client=settings.max_connections_per_client,
        total=total,
        proxies=tuple(ipaddress.ip_network(p, strict=False) for p in settings.trusted_proxies),
    )
    return _limits


def raise_open_files() -> int:
    """Raise the soft limit on open files to the hard one; the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:  # a container may forbid it
            log.warning("could not raise the open-files limit to %d: %s", hard, exc)
    return int(soft) if soft != resource.RLIM_INFINITY else 1 << 20


def _answer(status: int, reason: str, message: str, *, retry: bool) -> bytes:
    """A whole HTTP/1.1 answer that closes the connection (Zun's error shape)."""
    body = json.dumps(
        {"errors": [{"status": status, "code": "", "title": reason, "detail": message}]}
    ).encode()
    head = [
        f"HTTP/1.1 {status} {reason}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    if retry:
        head.append("Retry-After: 1")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class GuardedHttp(HttpToolsProtocol):
    """uvicorn's httptools protocol with the bounds above."""

    _peer = ""
    _counted = False
    _timer: asyncio.TimerHandle | None = None
    _in_body = False
    _stopping = False
    _gone: asyncio.Future[None] | None = None  # the request in flight's ``CLIENT_GONE``
    _unread: asyncio.TimerHandle | None = None  # armed while writing is paused

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        global _total
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        self._peer = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        limits = _limits
        if _total >= limits.total:
            self._refuse("the server holds as many connections as it may: try again")
            return
        if limits.capped(self._peer) and _open[self._peer] >= limits.per_client:
            self._refuse(
                f"{limits.per_client} connections from your address are open at once: "
                "close some (or reuse them) and try again"
            )
            return
        _total += 1
        _open[self._peer] += 1
        self._counted = True
        self._arm(limits.head_seconds, self._head_overdue)

    def connection_lost(self, exc: Exception | None) -> None:
        global _total
        self._disarm()
        self._reading_again()
        if self._counted:
            self._counted = False
            _total -= 1
            _open[self._peer] -= 1
            if _open[self._peer] <= 0:
                del _open[self._peer]
        if self._gone is not None and not self._gone.done():
            self._gone.set_result(None)  # a long poll of a client that went away ends
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        """The transport's buffer is full: the client reads too little of its answer."""
        super().pause_writing()
        if self._unread is None and _limits.idle_seconds > 0:
            self._unread = self.loop.call_later(_limits.idle_seconds, self._answer_unread)

    def resume_writing(self) -> None:
        self._reading_again()
        super().resume_writing()

    def _reading_again(self) -> None:
        if self._unread is not None:
            self._unread.cancel()
            self._unread = None

    def _answer_unread(self) -> None:
        self._unread = None
        log.info(
            "closing a connection from %s: it read none of its answer for %g s",
            self._peer,
            _limits.idle_seconds,
        )
        self.transport.abort()  # close() would wait for the buffer to drain

    def data_received(self, data: bytes) -> None:
        if self._in_body:
            self._arm(_limits.idle_seconds, self._body_silent)
        super().data_received(data)

    # -- the parser's callbacks
    def on_message_begin(self) -> None:
        self._arm(_limits.head_seconds, self._head_overdue)
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._disarm()
        self._in_body = True
        self._arm(_limits.idle_seconds, self._body_silent)
        super().on_headers_complete()
        if self.cycle is not None:  # its app task has not run yet: the scope may still grow
            self._gone = self.loop.create_future()
            self.scope[CLIENT_GONE_SCOPE_KEY] = self._gone  # type: ignore[literal-required]
        if self._stopping and self.cycle is not None:  # the last one on this connection
            self.cycle.keep_alive = False

    def on_message_complete(self) -> None:
        self._in_body = False
        self._disarm()
        super().on_message_complete()

    def shutdown(self) -> None:
        """The server stops (SIGTERM, or a worker replaced on SIGHUP): a connection it accepted
        whose request has not been read yet gets ``_SHUTDOWN_GRACE`` for it (served, then
        closed) instead of being closed unanswered, which its client would see as a reset.

        Agents' long polls are answered now (``end_long_polls``): the graceful shutdown
        waits for every request in flight, and a poll would hold it for its timeout."""
        end_long_polls()
        if self.cycle is None and not self.transport.is_closing():
            self._stopping = True
            self._arm(_SHUTDOWN_GRACE, self._close_if_idle)
            return
        super().shutdown()

    def _close_if_idle(self) -> None:
        self._timer = None
        if self.cycle is None or self.cycle.response_complete:
            self.transport.close()
        else:
            self.cycle.keep_alive = False

    def handle_websocket_upgrade(self) -> None:
        self._in_body = False
        self._disarm()
        super().handle_websocket_upgrade()

    # -- the bounds
    def _arm(self, seconds: float, then: Any) -> None:
        self._disarm()
        if seconds > 0 and not self.transport.is_closing():
            self._timer = self.loop.call_later(seconds, then)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_overdue(self) -> None:
        self._timer = None
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being served: its head was complete
        self._close(
            408,
            "Request Timeout",
            f"the request's head (request line and headers) did not arrive within "
            f"{_limits.head_seconds:g} s",
        )

    def _body_silent(self) -> None:
        self._timer = None
        if not self._in_body:
            return
        if self.flow.read_paused:  # the application has not read what came yet
            self._arm(_limits.idle_seconds, self._body_silent)
            return
        log.info("closing a connection from %s: its request body stalled", self._peer)
        if self.cycle is not None:
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        self.transport.close()

    def _refuse(self, message: str) -> None:
        self._close(503, "Service Unavailable", message, retry=True)

    def _close(self, status: int, reason: str, message: str, *, retry: bool = False) -> None:
        if not self.transport.is_closing():
            self.transport.write(_answer(status, reason, message, retry=retry))
            self.transport.close()
