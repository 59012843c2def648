"""The berth-api process as clients meet it: idle keep-alive connections.

The openstack CLI's ``--wait`` polls every 5 s on one keep-alive connection.
uvicorn's default closes an idle connection after 5 s, so a poll could be sent
just as the server closed it and fail with "Connection reset by peer".
"""

from __future__ import annotations

import http.client
import time
from urllib.parse import urlsplit

import pytest

from tests.live import live_server

pytestmark = [pytest.mark.e2e]

_ENV = {"BERTH_ALL_IN_ONE": "false"}  # no agent, no engine: only the HTTP server matters


def _get(conn: http.client.HTTPConnection) -> int:
    conn.request("GET", "/identity/v3")
    response = conn.getresponse()
    response.read()
    return response.status


def test_an_idle_connection_outlives_the_cli_poll_interval() -> None:
    with live_server(_ENV) as base_url:
        conn = http.client.HTTPConnection(urlsplit(base_url).netloc, timeout=10)
        assert _get(conn) == 200
        sock = conn.sock
        time.sleep(5.5)  # longer than openstack --wait's 5 s between polls
        assert _get(conn) == 200
        assert conn.sock is sock, "the server closed the idle connection"
        conn.close()


def test_the_keep_alive_is_a_setting() -> None:
    with live_server({**_ENV, "BERTH_KEEP_ALIVE_SECONDS": "1"}) as base_url:
        conn = http.client.HTTPConnection(urlsplit(base_url).netloc, timeout=10)
        assert _get(conn) == 200
        time.sleep(2.5)
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
            _get(conn)
        conn.close()
