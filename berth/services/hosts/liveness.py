"""Which agents this process heard from: kept in memory, written to the database in batches.

A host is up while its agent's service was heard from within
``service_down_time``. Every call an agent makes says it is alive, and an idle
agent's calls are mostly its long polls (one every ``agent_poll_wait``, 30 s),
so a call is as good as a heartbeat. Writing one row per call would cost a
transaction each; instead each API process notes the time of every call here
and writes the hosts heard since its last write in one ``UPDATE`` every
``flush_period`` (``services.hosts.heartbeats.flush_heard``). Several API
processes each write their own; the database keeps the latest time.

What this keeps exact:

- The time written for a host is when one of its calls *began*, never later
  (the earliest of the batch's latest calls): a host whose agent died is
  down ``service_down_time`` after its last call at the latest, as with
  heartbeats. A long poll that is still open does not count: a host that lost
  power holds one open until the poll ends.
- A call is only noted in memory when this process knows the database holds
  the host as up with room to spare (``confirmed`` within half of
  ``service_down_time``): a host's first call to this process, and its first
  after an outage, are written at once (``heartbeats.heard_from``), so a host
  coming back is restored without waiting for a batch.
- A host this process heard from within ``service_down_time`` is not lost,
  whatever the database holds (``heard_within``): under overload its calls
  arrive but their writes wait for a connection, and the lost-hosts job must
  not take the API's own backlog for the host's silence.
- What a process noted but did not write when it dies is at most one
  ``flush_period`` of calls; its agents' long polls break with it, and they
  call another process at once, whose first call from each is written at once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

__all__ = ["Liveness", "flush_period"]


def flush_period(service_down_time: float) -> float:
    """Seconds between two batches of one process: a sixth of the down time, at most 10."""
    return max(0.1, min(10.0, service_down_time / 6))


class Liveness:
    """The calls heard from each host since the last batch, and what the database holds."""

    def __init__(self, service_down_time: float, clock: Callable[[], float] = time.time) -> None:
        self._room = service_down_time / 2
        self._clock = clock
        self._heard: dict[str, float] = {}  # host -> its latest call since the last take()
        self._confirmed: dict[str, float] = {}  # host -> a time the database holds for it
        self._last_call: dict[str, float] = {}  # host -> its latest call, written or not

    def note(self, host: str) -> bool:
        """Note a call from ``host`` now if it can wait for the batch; else False: write it now."""
        now = self._clock()
        self._last_call[host] = now
        if self._confirmed.get(host, -math.inf) < now - self._room:
            return False
        self._heard[host] = now
        return True

    def heard_within(self, host: str, seconds: float) -> bool:
        """Whether ``host`` called this process in the last ``seconds``, whether or not
        the database has it yet (its batch or its own write may be waiting for a
        connection when the process is overloaded)."""
        return self._last_call.get(host, -math.inf) >= self._clock() - seconds

    def confirm(self, host: str, at: float) -> None:
        """The database holds ``host`` as heard from at ``at`` (epoch seconds) or later."""
        if at > self._confirmed.get(host, -math.inf):
            self._confirmed[host] = at

    def forget(self, host: str) -> None:
        """Write ``host``'s next call at once (the database did not take the last batch's)."""
        self._confirmed.pop(host, None)

    def take(self) -> dict[str, float]:
        """The calls noted since the last ``take`` (host -> time of its latest), now forgotten."""
        heard, self._heard = self._heard, {}
        stale = self._clock() - 2 * self._room  # hosts gone quiet here: keep memory bounded
        self._confirmed = {h: at for h, at in self._confirmed.items() if at >= stale}
        self._last_call = {h: at for h, at in self._last_call.items() if at >= stale}
        return heard

    def put_back(self, heard: dict[str, float]) -> None:
        """Return a batch that could not be written to the next one."""
        for host, at in heard.items():
            if at > self._heard.get(host, -math.inf):
                self._heard[host] = at

    def __len__(self) -> int:
        return len(self._heard)
