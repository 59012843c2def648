"""A PostgreSQL connection dropped under the API is replaced before a request meets it.

The pool pings each connection as it leaves (``berth/store/db.py``): a database
restart or a terminated backend must not fail the requests that come after it.
"""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import _pg_exec
from tests.helpers import zun_headers as h

pytestmark = pytest.mark.asyncio


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
    _pg_exec(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        f" WHERE datname = '{engine.url.database}' AND pid <> pg_backend_pid()"
    )
    for _ in range(5):
        r = await client.get("/container/v1/containers", headers=h(admin_token))
        assert r.status_code == 200, r.text
    body = {"image": "busybox", "name": "after-the-drop"}
    r = await client.post("/container/v1/containers", json=body, headers=h(admin_token))
    assert r.status_code == 202, r.text
