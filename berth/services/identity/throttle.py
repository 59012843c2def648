"""Backoff on failed passwords, per user and per source address (the API and the dashboard).

Two counters guard every password check:

- **per user** (the user id when the name resolves, else the name as given, so
  guessing at a user who does not exist is throttled alike and a 429 reveals
  nothing). This is the rule that stops guessing one user's password from many
  addresses: an attacker spraying one user from a botnet is held to the same
  few guesses per backoff period as from one address. The price is that the
  real user is refused too while the lock lasts; the lock is short at first and
  capped (``login_backoff_max_seconds``), so it is a bounded nuisance, not a
  permanent lock-out. Keying per (user, source) instead would let the real user
  in but give an attacker with N addresses N times the guesses. One exception
  keeps the real user (and agents' service accounts) working: an address the
  user logged in from within the last week is judged by its own count for that
  user, not the user's, so an attacker elsewhere cannot lock them out of the
  places they work from (a failure there still counts for the user, too).
- **per source** (the client address), with a higher threshold: stops one
  address spraying a common password over many users, which the per-user rule
  never sees. Its threshold sits well above the per-user one so that a NAT or
  an office behind one address is not locked out by one user's typos.

After ``allowed`` failures within ``window`` seconds of the last one, a key is
locked for ``backoff * 2**(failures - allowed)`` seconds (capped); while locked,
attempts get ``TooManyAttempts`` (429 with ``Retry-After``) *before* the
password is looked at, so a right guess during a lock-out confirms nothing.
Attempts refused that way do not count. A success resets the user's counter,
never the source's (else an attacker with one valid account could reset it
between guesses). Correct passwords never count.

Concurrent attempts on one key are held to the failures still allowed: a
burst of 600 parallel guesses waits in line instead of all being checked
before the first failure is recorded.

The counters live in this process (one ``LoginThrottle`` per database handle).
Several API processes over one database each keep their own, so N processes
allow up to N times the guesses (docs/operators.md says so).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import time
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from berth import errors
from berth.config import Settings
from berth.store.db import Database

__all__ = ["LoginThrottle", "ThrottleLimits", "login_throttle", "source_address"]

log = logging.getLogger(__name__)

# Keys remembered per kind; beyond it the least recently failed unlocked ones go.
_MAX_KEYS = 50_000
# How long a successful login makes its address "known" for the user.
_KNOWN_FOR = 7 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class ThrottleLimits:
    """When one key (a user or a source) gets locked, and for how long."""

    allowed: int  # failures before the first lock
    window: float  # seconds after the last failure that the count is forgotten
    backoff: float  # the first lock, doubled per further failure
    backoff_max: float


@dataclass(slots=True)
class _Key:
    failures: int = 0
    last: float = 0.0  # clock of the last failure
    locked_until: float = 0.0
    in_flight: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class _Counter:
    """Failures and locks of one kind of key (users or sources)."""

    def __init__(self, kind: str, limits: ThrottleLimits, clock: Callable[[], float]) -> None:
        self.kind, self.limits, self._clock = kind, limits, clock
        self._keys: OrderedDict[str, _Key] = OrderedDict()

    def _get(self, key: str) -> _Key:
        entry = self._keys.get(key)
        now = self._clock()
        if entry is not None and entry.failures and now - entry.last > self.limits.window:
            entry.failures, entry.locked_until = 0, 0.0  # forgotten after a quiet window
        if entry is None:
            entry = self._keys[key] = _Key()
            self._evict()
        return entry

    def _evict(self) -> None:
        while len(self._keys) > _MAX_KEYS:
            oldest = next(iter(self._keys))
            if self._keys[oldest].in_flight:
                self._keys.move_to_end(oldest)
                return
            del self._keys[oldest]

    def retry_after(self, key: str) -> float:
        """Seconds ``key`` stays locked (0: not locked)."""
        return max(0.0, self._get(key).locked_until - self._clock())

    def failures(self, key: str) -> int:
        """Failures of ``key`` counted now."""
        return self._get(key).failures

    def budget(self, key: str) -> int:
        """How many attempts on ``key`` may be checked at once now."""
        return max(1, self.limits.allowed - self._get(key).failures)

    def fail(self, key: str) -> tuple[int, float]:
        """Count a failure; (failures, seconds now locked)."""
        entry = self._get(key)
        now = self._clock()
        entry.failures += 1
        entry.last = now
        self._keys.move_to_end(key)
        over = entry.failures - self.limits.allowed
        if over < 0:
            return entry.failures, 0.0
        delay = min(self.limits.backoff * 2 ** min(over, 62), self.limits.backoff_max)
        entry.locked_until = now + delay
        return entry.failures, delay

    def reset(self, key: str) -> None:
        """Forget the failures of ``key``."""
        entry = self._keys.get(key)
        if entry is not None:
            entry.failures, entry.locked_until = 0, 0.0

    def enter(self, key: str) -> _Key:
        entry = self._get(key)
        entry.in_flight += 1
        return entry

    def leave(self, entry: _Key) -> None:
        entry.in_flight -= 1
        entry.changed.set()
        entry.changed = asyncio.Event()


class LoginThrottle:
    """Refuses password checks for users and sources that failed too often lately."""

    def __init__(
        self,
        user_limits: ThrottleLimits,
        source_limits: ThrottleLimits,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        self._users = _Counter("user", user_limits, self._now)
        self._pairs = _Counter("user from a known address", user_limits, self._now)
        self._sources = _Counter("source", source_limits, self._now)
        self._known: OrderedDict[tuple[str, str], float] = OrderedDict()

    def _now(self) -> float:
        return self.clock()

    @asynccontextmanager
    async def attempt(self, user: str, source: str) -> AsyncIterator[Callable[[bool], None]]:
        """Guard one password check of ``user`` from ``source``.

        Raises ``TooManyAttempts`` while either is locked, without the check
        running. The body calls the yielded ``done(ok)`` with the check's
        outcome; leaving the body without calling it counts as nothing.
        """
        guards = self._guards(user, source)
        entries = await self._admit(guards, user, source)
        outcome: list[bool] = []
        try:
            yield outcome.append
        finally:
            for (counter, _), entry in zip(guards, entries, strict=True):
                counter.leave(entry)
            if outcome:
                self._record(guards, user, source, outcome[-1])

    def _guards(self, user: str, source: str) -> list[tuple[_Counter, str]]:
        # An address this user logged in from lately is judged on its own
        # failures, not the user's: an attacker elsewhere cannot lock the real
        # user (or an agent's service account) out of the place it works from.
        seen = self._known.get((user, source))
        if seen is not None and self._now() - seen < _KNOWN_FOR:
            return [(self._pairs, f"{user}@{source}"), (self._sources, source)]
        return [(self._users, user), (self._sources, source)]

    async def _admit(
        self, guards: list[tuple[_Counter, str]], user: str, source: str
    ) -> list[_Key]:
        while True:
            self._refuse_if_locked(guards, user, source)
            entries = [counter.enter(key) for counter, key in guards]
            full = [
                (counter, entry)
                for (counter, key), entry in zip(guards, entries, strict=True)
                if entry.in_flight > counter.budget(key)
            ]
            if not full:
                return entries
            # More checks in flight than failures still allowed: wait for one to end.
            for (counter, _), entry in zip(guards, entries, strict=True):
                counter.leave(entry)
            await _first([entry.changed for _, entry in full])

    def _refuse_if_locked(self, guards: list[tuple[_Counter, str]], user: str, source: str) -> None:
        for counter, key in guards:
            left = counter.retry_after(key)
            if left > 0:
                log.warning(
                    "login refused while the %s is throttled: user=%r source=%s "
                    "failures=%d retry_after=%.0fs",
                    counter.kind,
                    user,
                    source,
                    counter.failures(key),
                    left,
                )
                whom = "from your address" if counter is self._sources else "for this user"
                raise errors.TooManyAttempts(
                    f"Too many failed logins {whom}: try again in {math.ceil(left)} seconds.",
                    retry_after=math.ceil(left),
                )

    def _record(self, guards: list[tuple[_Counter, str]], user: str, source: str, ok: bool) -> None:
        if ok:
            self._users.reset(user)
            self._pairs.reset(f"{user}@{source}")
            self._known[(user, source)] = self._now()
            self._known.move_to_end((user, source))
            while len(self._known) > _MAX_KEYS:
                self._known.popitem(last=False)
            return
        # A failure from a known address still counts for the user too.
        counted = guards if guards[0][0] is self._users else [*guards, (self._users, user)]
        for counter, key in counted:
            count, delay = counter.fail(key)
            if delay > 0:
                log.warning(
                    "login throttled by %s: user=%r source=%s failures=%d delay=%.0fs",
                    counter.kind,
                    user,
                    source,
                    count,
                    delay,
                )


async def _first(events: list[asyncio.Event]) -> None:
    tasks = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()


def _limits(settings: Settings) -> tuple[ThrottleLimits, ThrottleLimits]:
    backoff, cap = settings.login_backoff_seconds, settings.login_backoff_max_seconds
    window = settings.login_failure_window_seconds
    return (
        ThrottleLimits(settings.login_failures_per_user, window, backoff, cap),
        ThrottleLimits(settings.login_failures_per_source, window, backoff, cap),
    )


_THROTTLES: weakref.WeakKeyDictionary[Database, LoginThrottle] = weakref.WeakKeyDictionary()


def login_throttle(db: Database, settings: Settings) -> LoginThrottle:
    """The login throttle of ``db`` (one per database handle, made on first use)."""
    throttle = _THROTTLES.get(db)
    if throttle is None:
        throttle = _THROTTLES[db] = LoginThrottle(*_limits(settings))
    return throttle


def source_address(peer: str | None, forwarded_for: str | None, trusted: Sequence[str]) -> str:
    """The client's address: the peer, or what trusted proxies say in ``X-Forwarded-For``.

    The header is read right to left, skipping hops that are trusted proxies;
    the first untrusted hop is the client. With no trusted proxies (the default)
    the header is ignored: any client can write it.
    """
    address = peer or "unknown"
    if not trusted or not forwarded_for or not _trusted(address, trusted):
        return address
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        address = hop
        if not _trusted(hop, trusted):
            break
    return address


def _trusted(address: str, trusted: Sequence[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(net, strict=False) for net in trusted)
