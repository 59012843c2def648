"""A PostgreSQL connection dropped under the API is replaced before a request meets it.

The pool pings each connection as it leaves (``berth/store/db.py``): a database
restart or a terminated backend must not fail the requests that come after it.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import _pg_exec
from tests.helpers import zun_headers as h

pytestmark = pytest.mark.asyncio


def _drop_connections(database: str | None) -> None:
    """Terminate every backend of ``database``, as a PostgreSQL restart would."""
    _pg_exec(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        f" WHERE datname = '{database}' AND pid <> pg_backend_pid()"
    )


async def test_requests_after_the_databases_connections_were_dropped_succeed(
    app: FastAPI, client: httpx.AsyncClient, admin_token: str
) -> None:
    engine = app.state.berth.db.engine
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no server to drop a connection")
    # Several pooled connections, each used once.
    for _ in range(3):
        r = await client.get("/container/v1/containers", headers=h(admin_token))
        assert r.status_code == 200, r.text
    assert engine.pool.checkedin() >= 1
    _drop_connections(engine.url.database)
    for _ in range(5):
        r = await client.get("/container/v1/containers", headers=h(admin_token))
        assert r.status_code == 200, r.text
    body = {"image": "busybox", "name": "after-the-drop"}
    r = await client.post("/container/v1/containers", json=body, headers=h(admin_token))
    assert r.status_code == 202, r.text


async def test_long_polls_wake_again_after_the_listen_connection_was_dropped(
    app: FastAPI,
) -> None:
    """Over PostgreSQL a change reaches this process's long polls through its own LISTEN
    connection. Before, a dropped one stayed dead until the API restarted: every agent
    then learnt of its work only when its long poll timed out."""
    state = app.state.berth
    if state.db.is_sqlite:
        pytest.skip("SQLite has no LISTEN connection")
    notifier = state.notifier
    seen = notifier.generation("host-a")
    waiting = asyncio.create_task(notifier.wait("host-a", seen, 20))
    await asyncio.sleep(0.1)
    _drop_connections(state.db.engine.url.database)
    # What was notified while it was down is lost: every long poll is woken once.
    async with asyncio.timeout(10):
        seen = await waiting
    # And a change made now arrives through the connection made again.
    waiting = asyncio.create_task(notifier.wait("host-a", seen, 20))
    await asyncio.sleep(0.1)
    await notifier.touch("host-a")
    async with asyncio.timeout(5):
        assert await waiting != seen
