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

The counts live in the database (``login_failures``), so every API process
over it sees the same ones: failures on one process lock the user on all. A
failure is counted with one atomic upsert (``INSERT … ON CONFLICT DO UPDATE …
RETURNING``: the row lock makes concurrent failures on several processes add
up exactly) and the lock it earns is written in the same transaction.

Concurrent attempts on one key are held to the failures still allowed, in
each process: a burst of 600 parallel guesses waits in line instead of all
being checked before the first failure is recorded. (Across P processes a
burst can have up to P checks in flight per free failure; the counts and
locks stay exact.)

Rows are forgotten once their window has passed (a week for known
addresses), and their number is capped (``max_keys`` per kind of row, the
least recently failed unlocked ones go first), so a spray of random user
names cannot grow the table without bound. The clock is wall time (shared by
processes) and injectable, so tests move it instead of sleeping.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import math
import time
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from berth import errors
from berth.config import Settings
from berth.store.db import Database, Session
from berth.store.identity import login_failures as failures

__all__ = ["LoginThrottle", "ThrottleLimits", "login_throttle", "source_address"]

log = logging.getLogger(__name__)

# Rows kept per kind (failure counters, known addresses); beyond it the least
# recently failed unlocked ones go.
_MAX_KEYS = 50_000
# How many rows a process may add before it sweeps expired and surplus ones.
_SWEEP_EVERY = 256
# How long a successful login makes its address "known" for the user.
_KNOWN_FOR = 7 * 24 * 3600.0
# The longest a waiting check sleeps before it looks at the counts again.
_RECHECK = 1.0
# Longer keys are stored as their digest (a name as given may be long).
_MAX_KEY = 320


@dataclass(frozen=True, slots=True)
class ThrottleLimits:
    """When one key (a user or a source) gets locked, and for how long."""

    allowed: int  # failures before the first lock
    window: float  # seconds after the last failure that the count is forgotten
    backoff: float  # the first lock, doubled per further failure
    backoff_max: float


@dataclass(frozen=True, slots=True)
class _Counter:
    """One kind of key (users, sources, users from a known address) and its limits."""

    kind: str  # the rows' kind
    label: str  # how logs name it
    limits: ThrottleLimits


@dataclass(frozen=True, slots=True)
class _State:
    failures: int = 0
    locked_until: float = 0.0


@dataclass(slots=True)
class _Flight:
    """Checks of one key running in this process now."""

    count: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)


Guard = tuple[_Counter, str]


def _stored(key: str) -> str:
    if len(key) <= _MAX_KEY:
        return key
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


class LoginThrottle:
    """Refuses password checks for users and sources that failed too often lately."""

    def __init__(
        self,
        db: Database,
        user_limits: ThrottleLimits,
        source_limits: ThrottleLimits,
        *,
        clock: Callable[[], float] = time.time,
        max_keys: int = _MAX_KEYS,
    ) -> None:
        self.clock = clock
        # Weak: the throttle is cached per database handle and must not keep it alive.
        self._db = weakref.ref(db)
        self._max_keys = max_keys
        self._users = _Counter("user", "user", user_limits)
        self._pairs = _Counter("pair", "user from a known address", user_limits)
        self._sources = _Counter("source", "source", source_limits)
        self._flights: dict[tuple[str, str], _Flight] = {}
        self._added = 0  # rows added since the last sweep

    @property
    def db(self) -> Database:
        """The database the counts live in."""
        db = self._db()
        if db is None:
            raise RuntimeError("the login throttle outlived its database")
        return db

    @asynccontextmanager
    async def attempt(self, user: str, source: str) -> AsyncIterator[Callable[[bool], None]]:
        """Guard one password check of ``user`` from ``source``.

        Raises ``TooManyAttempts`` while either is locked, without the check
        running. The body calls the yielded ``done(ok)`` with the check's
        outcome; leaving the body without calling it counts as nothing.
        """
        user, source = _stored(user), _stored(source)
        guards = await self._guards(user, source)
        flights = await self._admit(guards, user, source)
        outcome: list[bool] = []
        try:
            yield outcome.append
        finally:
            try:
                # Recorded before leaving: a waiting check must see this failure.
                if outcome:
                    await self._record(guards, user, source, outcome[-1])
            finally:
                for (counter, key), flight in zip(guards, flights, strict=True):
                    self._leave(counter, key, flight)

    async def _guards(self, user: str, source: str) -> list[Guard]:
        # An address this user logged in from lately is judged on its own
        # failures, not the user's: an attacker elsewhere cannot lock the real
        # user (or an agent's service account) out of the place it works from.
        pair = _stored(f"{user}@{source}")
        async with self.db.read() as s:
            seen = await failures.known_since(s, pair)
        if seen is not None and self.clock() - seen < _KNOWN_FOR:
            return [(self._pairs, pair), (self._sources, source)]
        return [(self._users, user), (self._sources, source)]

    def _enter(self, counter: _Counter, key: str) -> _Flight:
        flight = self._flights.setdefault((counter.kind, key), _Flight())
        flight.count += 1
        return flight

    def _leave(self, counter: _Counter, key: str, flight: _Flight, *, ran: bool = True) -> None:
        flight.count -= 1
        if flight.count == 0:
            self._flights.pop((counter.kind, key), None)
        elif not ran:
            # A check that backed off changes nothing the others wait for; waking
            # them would have every waiter wake every other one, round and round.
            return
        flight.changed.set()
        flight.changed = asyncio.Event()

    async def _admit(self, guards: list[Guard], user: str, source: str) -> list[_Flight]:
        while True:
            # Enter before reading: a check that ends meanwhile has recorded its
            # failure before leaving, so it is either still counted or seen.
            flights = [self._enter(counter, key) for counter, key in guards]
            try:
                states = await self._states(guards)
                self._refuse_if_locked(guards, states, user, source)
            except BaseException:
                for (counter, key), flight in zip(guards, flights, strict=True):
                    self._leave(counter, key, flight, ran=False)
                raise
            full = [
                flight
                for (counter, _), state, flight in zip(guards, states, flights, strict=True)
                if flight.count > max(1, counter.limits.allowed - state.failures)
            ]
            if not full:
                return flights
            # More checks in flight than failures still allowed: wait for one to end.
            for (counter, key), flight in zip(guards, flights, strict=True):
                self._leave(counter, key, flight, ran=False)
            events = [flight.changed for flight in full if flight.count > 0]
            if events:
                await _first(events)

    async def _states(self, guards: list[Guard]) -> list[_State]:
        async with self.db.read() as s:
            rows = await failures.counters(s, [(c.kind, key) for c, key in guards])
        now, found = self.clock(), []
        for counter, key in guards:
            row = rows.get((counter.kind, key))
            if row is None or now - row.last > counter.limits.window:
                found.append(_State())  # forgotten after a quiet window
            else:
                found.append(_State(row.failures, row.locked_until))
        return found

    def _refuse_if_locked(
        self, guards: list[Guard], states: list[_State], user: str, source: str
    ) -> None:
        now = self.clock()
        for (counter, _), state in zip(guards, states, strict=True):
            left = state.locked_until - now
            if left > 0:
                log.warning(
                    "login refused while the %s is throttled: user=%r source=%s "
                    "failures=%d retry_after=%.0fs",
                    counter.label,
                    user,
                    source,
                    state.failures,
                    left,
                )
                whom = "from your address" if counter is self._sources else "for this user"
                raise errors.TooManyAttempts(
                    f"Too many failed logins {whom}: try again in {math.ceil(left)} seconds.",
                    retry_after=math.ceil(left),
                )

    async def _record(self, guards: list[Guard], user: str, source: str, ok: bool) -> None:
        now = self.clock()
        async with self.db.transaction() as s:
            if ok:
                await self._succeed(s, user, source, now)
            else:
                # A failure from a known address still counts for the user too.
                counted = guards if guards[0][0] is self._users else [*guards, (self._users, user)]
                for counter, key in counted:
                    await self._fail(s, counter, key, user, source, now)
        if self._added >= _SWEEP_EVERY:
            self._added = 0
            await self._sweep(now)

    async def _succeed(self, s: Session, user: str, source: str, now: float) -> None:
        pair = _stored(f"{user}@{source}")
        await failures.reset(s, (("user", user), ("pair", pair)))
        await failures.mark_known(s, pair, now)
        self._added += 1

    async def _fail(
        self, s: Session, counter: _Counter, key: str, user: str, source: str, now: float
    ) -> None:
        limits = counter.limits
        count = await failures.count_failure(s, counter.kind, key, now, limits.window)
        if count == 1:
            self._added += 1
        over = count - limits.allowed
        if over < 0:
            return
        delay = min(limits.backoff * 2 ** min(over, 62), limits.backoff_max)
        await failures.lock(s, counter.kind, key, now + delay)
        log.warning(
            "login throttled by %s: user=%r source=%s failures=%d delay=%.0fs",
            counter.label,
            user,
            source,
            count,
            delay,
        )

    async def _sweep(self, now: float) -> None:
        """Forget expired rows, then the oldest unlocked ones beyond ``max_keys`` per kind."""
        window = max(c.limits.window for c in (self._users, self._pairs, self._sources))
        async with self.db.transaction() as s:
            await failures.sweep(
                s, now, window=window, known_for=_KNOWN_FOR, max_keys=self._max_keys
            )

    async def rows(self) -> int:
        """How many rows the throttle keeps now (every kind)."""
        async with self.db.read() as s:
            return await failures.rows(s)


async def _first(events: list[asyncio.Event]) -> None:
    tasks = [asyncio.create_task(e.wait()) for e in events]
    try:
        # The timeout only bounds a wait whose wake-up went astray: the caller looks again.
        await asyncio.wait(tasks, timeout=_RECHECK, return_when=asyncio.FIRST_COMPLETED)
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
        throttle = _THROTTLES[db] = LoginThrottle(db, *_limits(settings))
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
