"""A short-lived, in-process cache of validated tokens.

Every API request carries a token. Checking it against the database costs two
queries, a session and a thread hop each: about half of a cheap GET's time and
~6 ms of every create. keystonemiddleware caches validated tokens for the same
reason; this cache makes the same trade with tighter bounds:

- An entry lives at most ``ttl`` seconds (``Settings.token_cache_seconds``) and
  never beyond the token's own expiry.
- Any committed write in this process to the identity tables (a revocation, a
  user, project or role change, a grant or its removal, a password change)
  empties the cache at once (``Database.watch_writes``). Issuing a new token
  does not: it changes no existing token's meaning.
- Other API processes over PostgreSQL hear of such a write through
  LISTEN/NOTIFY (``IDENTITY_CHANGED``) and empty theirs; ``ttl`` bounds the
  delay if that message were lost.

So a revocation takes effect at once in the process that made it and within
milliseconds (at most ``ttl`` seconds) everywhere else. A cache of ``ttl=0``
is off: every request goes to the database, as before.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from berth.domain.context import RequestContext
from berth.store.db import Database, Writes

__all__ = ["IDENTITY_CHANGED", "TokenCache", "token_cache"]

log = logging.getLogger(__name__)

# The cross-process message (a control character no host name contains).
IDENTITY_CHANGED = "\x1fidentity"

# Writes that change what an existing token stands for. New tokens do not.
_IDENTITY_TABLES = frozenset({"users", "projects", "domains", "roles", "role_assignments"})


def _stale(writes: Writes) -> bool:
    for entry in writes:
        table, _, op = entry.partition(":")
        if table in _IDENTITY_TABLES or (table == "tokens" and op != "insert"):
            return True
    return False


@dataclass(frozen=True, slots=True)
class _Entry:
    caller: RequestContext
    until: float  # monotonic
    epoch: int


class TokenCache:
    """Validated callers by token digest, bounded in size and age."""

    def __init__(
        self,
        ttl: float,
        *,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl, self.max_entries, self._clock = ttl, max_entries, clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self.epoch = 0
        self._publish: Callable[[str], Awaitable[None]] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def get(self, digest: str) -> RequestContext | None:
        """The cached caller of ``digest``, or None (absent, too old, or invalidated)."""
        entry = self._entries.get(digest)
        if entry is None:
            return None
        if entry.epoch != self.epoch or entry.until <= self._clock():
            del self._entries[digest]
            return None
        return entry.caller

    def put(self, digest: str, caller: RequestContext, expires_at: dt.datetime, epoch: int) -> None:
        """Remember ``caller`` unless an invalidation happened since ``epoch`` was read."""
        if self.ttl <= 0 or epoch != self.epoch:
            return
        left = (expires_at - dt.datetime.now(dt.UTC)).total_seconds()
        if left <= 0:
            return
        self._entries[digest] = _Entry(caller, self._clock() + min(self.ttl, left), epoch)
        self._entries.move_to_end(digest)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def invalidate(self) -> None:
        """Forget everything (and refuse what validations already in flight would add)."""
        self.epoch += 1
        self._entries.clear()

    def bridge(self, publish: Callable[[str], Awaitable[None]] | None) -> None:
        """Also tell other processes about identity writes, through ``publish``."""
        self._publish = publish

    def on_writes(self, writes: Writes) -> None:
        """``Database.watch_writes`` callback: invalidate here, then tell the others."""
        if not _stale(writes):
            return
        self.invalidate()
        if self._publish is not None:
            task = asyncio.get_running_loop().create_task(self._tell_others(self._publish))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _tell_others(self, publish: Callable[[str], Awaitable[None]]) -> None:
        try:
            await publish(IDENTITY_CHANGED)
        except Exception:  # the ttl still bounds the other processes' delay
            log.warning("could not publish an identity change", exc_info=True)


_CACHES: weakref.WeakKeyDictionary[Database, TokenCache] = weakref.WeakKeyDictionary()


def token_cache(db: Database, ttl: float | None = None) -> TokenCache:
    """The token cache of ``db`` (one per database handle, made on first use).

    ``ttl`` sets the entry lifetime when given (the app does so at start-up).
    """
    cache = _CACHES.get(db)
    if cache is None:
        cache = TokenCache(10.0 if ttl is None else ttl)
        db.watch_writes(cache.on_writes)
        _CACHES[db] = cache
    elif ttl is not None:
        cache.ttl = ttl
    return cache
