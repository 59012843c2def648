"""The notifier: long polls woken by their own host's changes; host watchers told at once."""

from __future__ import annotations

import asyncio
import contextlib
import time

from berth import errors
from berth.events.notify import Notifier


async def test_touch_host_tells_this_process_before_the_notification_returns() -> None:
    """Over PostgreSQL the NOTIFY comes back later (or, with a slow listener, after the
    next placement): this process's watchers must not wait for it, or a placement right
    after a registration here misses the new host."""
    sent: list[str] = []
    notifier = Notifier()

    async def publish(message: str) -> None:
        sent.append(message)  # delivered later, by the listener

    notifier.bridge(publish)
    seen: list[str] = []
    notifier.watch_hosts(seen.append)
    await notifier.touch_host("new-host")
    assert seen == ["new-host"]
    assert len(sent) == 1
    before = notifier.generation("new-host")
    await notifier.received(sent[0])  # the notification arrives: told again, harmless
    assert seen == ["new-host", "new-host"]
    assert notifier.generation("new-host") == before, "a host message wakes no agent"


async def test_a_touch_wakes_the_long_polls_of_its_host_only() -> None:
    notifier = Notifier()
    mine = [asyncio.create_task(notifier.wait("a", notifier.generation("a"), 5)) for _ in range(2)]
    other = asyncio.create_task(notifier.wait("b", notifier.generation("b"), 5))
    await asyncio.sleep(0)
    before = notifier.generation("a")
    await notifier.touch("a")
    assert await asyncio.wait_for(asyncio.gather(*mine), 1) == [before + 1, before + 1]
    await asyncio.sleep(0.01)
    assert not other.done(), "another host's change woke this host's agent"
    await notifier.touch("b")
    assert await asyncio.wait_for(other, 1) == notifier.generation("b")


async def test_a_wait_answers_at_once_when_behind_and_after_its_timeout_otherwise() -> None:
    notifier = Notifier()
    seen = notifier.generation("a")
    await notifier.touch("a")
    assert await asyncio.wait_for(notifier.wait("a", seen, 5), 1) == seen + 1
    assert await notifier.wait("a", seen + 1, 0.01) == seen + 1  # nothing changed: timed out


async def test_a_poll_that_went_away_leaves_nothing_behind() -> None:
    # A long poll whose client disconnected (cancelled) or that timed out must not
    # keep the next touch from waking the polls that came after it.
    notifier = Notifier()
    seen = notifier.generation("a")
    gone = asyncio.create_task(notifier.wait("a", seen, 5))
    await asyncio.sleep(0)
    gone.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await gone
    await notifier.wait("a", seen, 0.01)
    waiting = asyncio.create_task(notifier.wait("a", seen, 5))
    await asyncio.sleep(0)
    await notifier.touch("a")
    assert await asyncio.wait_for(waiting, 1) == seen + 1


async def test_a_notification_the_database_cannot_take_still_wakes_this_process() -> None:
    """Under overload the NOTIFY finds no free connection (a 503, no longer a 500): the
    change is committed, so this process's long polls are woken all the same."""
    notifier = Notifier()

    async def busy(message: str) -> None:
        raise errors.Overloaded("no database connection came free in time")

    notifier.bridge(busy)
    seen = notifier.generation("a")
    waiting = asyncio.create_task(notifier.wait("a", seen, 5))
    await asyncio.sleep(0)
    await notifier.touch("a")
    assert await asyncio.wait_for(waiting, 1) == seen + 1


async def test_a_stopping_process_answers_its_long_polls_and_caps_the_next() -> None:
    notifier = Notifier()
    seen = notifier.generation("h1")
    waiting = asyncio.create_task(notifier.wait("h1", seen, timeout=60))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    # What the server's connections set off as it stops (end_long_polls: every notifier of
    # the process, so not called here, where other tests' notifiers live on).
    notifier.end_waits()
    assert await asyncio.wait_for(waiting, 1) == seen  # answered: nothing changed
    started = time.monotonic()
    assert await notifier.wait("h1", seen, timeout=60) == seen
    assert time.monotonic() - started < 2  # a poll that arrives late waits a second at most
