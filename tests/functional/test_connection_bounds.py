"""What one client's connections may hold in a real berth-api (berth/cli/connguard.py).

A half-sent request head, a stalled body, too many connections from one
address or in all: each is answered and closed, and the API keeps serving
everyone else. A slow request that is being worked on (an agent's long poll)
and a body that keeps arriving are not cut.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn

from berth.cli import connguard
from berth.config import Settings
from tests.live import live_api, live_server, live_token

pytestmark = [pytest.mark.e2e]

AGENT_PASSWORD = "bounds-agent-pw"
_ENV = {
    "BERTH_ALL_IN_ONE": "false",  # no agent, no engine: only the HTTP server matters
    "BERTH_AGENT_PASSWORD": AGENT_PASSWORD,
    "BERTH_REQUEST_HEAD_SECONDS": "1",
    "BERTH_REQUEST_IDLE_SECONDS": "1",
    "BERTH_MAX_CONNECTIONS_PER_CLIENT": "8",
}


@pytest.fixture(scope="module")
def api() -> Iterator[tuple[str, int]]:
    with live_server(_ENV) as base_url:
        netloc = urlsplit(base_url)
        assert netloc.hostname is not None and netloc.port is not None
        yield netloc.hostname, netloc.port


def _connect(api: tuple[str, int], first: bytes = b"") -> socket.socket:
    sock = socket.create_connection(api, timeout=10)
    if first:
        sock.sendall(first)
    return sock


def _answer(sock: socket.socket) -> tuple[int, dict[str, str], dict[str, object]]:
    """Status, headers and JSON body of the one answer on ``sock``; then it must be closed."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, json.loads(body)


def _serves(api: tuple[str, int]) -> bool:
    conn = http.client.HTTPConnection(*api, timeout=10)
    try:
        conn.request("GET", "/identity/v3")
        return conn.getresponse().status == 200
    finally:
        conn.close()


def test_a_request_head_that_never_ends_is_answered_408_and_closed(
    api: tuple[str, int],
) -> None:
    socks = [
        _connect(api, b"GET /container/v1/containers HTTP/1.1\r\nHost: x\r\n") for _ in range(6)
    ]
    silent = _connect(api)  # opened, nothing sent
    try:
        assert _serves(api)  # the others are served meanwhile
        for sock in [*socks, silent]:
            status, headers, body = _answer(sock)  # recv returns b"" once closed
            assert status == 408 and headers["connection"] == "close"
            assert "did not arrive within 1 s" in json.dumps(body)
    finally:
        for sock in [*socks, silent]:
            sock.close()
    assert _serves(api)


def test_a_second_request_that_stalls_on_a_kept_alive_connection_is_closed(
    api: tuple[str, int],
) -> None:
    sock = _connect(api, b"GET /identity/v3 HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /identity/v3 HTTP/1.1\r\nHo")  # and then nothing
        started = time.monotonic()
        status, _, _ = _answer(sock)
        assert status == 408 and time.monotonic() - started < 8
    finally:
        sock.close()


def test_a_stalled_body_closes_the_connection_and_a_flowing_one_is_served(
    api: tuple[str, int],
) -> None:
    body = json.dumps({"auth": {"identity": {"methods": ["password"]}}}).encode()
    head = (
        b"POST /identity/v3/auth/tokens HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    stalled = _connect(api, head + body[:10])
    try:
        stalled.settimeout(10)
        assert stalled.recv(65536) == b""  # closed without an answer: the body never came
    finally:
        stalled.close()
    # The same body, a piece every 0.4 s for 2.4 s in all (longer than the 1 s bound,
    # never silent for 1 s): served, and answered as Keystone answers a bad auth.
    flowing = _connect(api, head)
    try:
        for start in range(0, len(body), len(body) // 5 + 1):
            time.sleep(0.4)
            flowing.sendall(body[start : start + len(body) // 5 + 1])
        flowing.settimeout(10)
        assert flowing.recv(65536).split(b"\r\n")[0] in (
            b"HTTP/1.1 400 Bad Request",
            b"HTTP/1.1 401 Unauthorized",
        )
    finally:
        flowing.close()


def test_connections_from_one_address_are_bounded(api: tuple[str, int]) -> None:
    held = [_connect(api, b"GET /identity/v3 HTTP/1.1\r\nHost: x\r\n\r\n") for _ in range(8)]
    try:
        for sock in held:
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")  # kept alive, still open
        status, headers, body = _answer(_connect(api))
        assert status == 503 and headers["retry-after"] == "1"
        assert "8 connections from your address" in json.dumps(body)
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 10
    while not _serves(api):  # the server sees the closes at once, the test needs no sleep
        assert time.monotonic() < deadline


def _register(base: str) -> tuple[dict[str, str], int]:
    """Log in as the agent and register ``bounds-host``: its headers and generation."""
    token = live_token(base, "berth-agent", AGENT_PASSWORD, "service")
    h = {"X-Auth-Token": token}
    report = {
        "hostname": "bounds-host",
        "cpus": 1,
        "mem_total": 1024,
        "disk_total": 10,
        "runtimes": ["runc"],
        "agent_url": "http://127.0.0.1:1",
    }
    r = httpx.post(f"{base}/internal/v1/hosts", json=report, headers=h, timeout=30)
    assert r.status_code == 200, r.text
    first = httpx.get(f"{base}/internal/v1/hosts/bounds-host/desired", headers=h, timeout=30)
    assert first.status_code == 200, first.text
    return h, int(first.json()["generation"])


def test_a_long_poll_longer_than_the_bounds_is_not_cut(api: tuple[str, int]) -> None:
    base = f"http://{api[0]}:{api[1]}"
    h, generation = _register(base)
    started = time.monotonic()
    r = httpx.get(
        f"{base}/internal/v1/hosts/bounds-host/desired",
        params={"generation": generation, "wait": 3},
        headers=h,
        timeout=30,
    )
    assert r.status_code == 200, r.text
    assert time.monotonic() - started >= 2.5  # it waited its 3 s (nothing changed)


@pytest.mark.parametrize("agent", ["polling", "gone"])
def test_sigterm_answers_the_agents_long_polls_and_stops_at_once(
    tmp_path: Path, agent: str
) -> None:
    """A stopping berth-api answers a poll in flight (as if it timed out), and a poll
    whose agent went away (gave up, died, stopped before the API) ends with it: either
    held a stopping server for the poll's whole wait, or until SIGKILL (measured: the
    suite's live-server teardowns, agents stopped first, took 9-15 s)."""
    with live_api(_ENV, workdir=tmp_path / "api") as server:
        h, generation = _register(server.base_url)
        answers: list[httpx.Response] = []

        def poll(timeout: float) -> None:
            # ReadTimeout: the agent gave up on it and closed its connection.
            with contextlib.suppress(httpx.ReadTimeout):
                answers.append(httpx.get(
                    f"{server.base_url}/internal/v1/hosts/bounds-host/desired",
                    params={"generation": generation, "wait": 60}, headers=h, timeout=timeout,
                ))  # fmt: skip

        if agent == "gone":
            poll(timeout=1)
            time.sleep(0.5)  # the server has seen the connection close
        poller = threading.Thread(target=poll, args=(90,))
        if agent == "polling":
            poller.start()
            time.sleep(1)  # the poll is waiting (nothing changes for it)
        started = time.monotonic()
        server.stop(timeout=30)
        stopped = time.monotonic() - started
        if agent == "polling":
            poller.join(30)
            assert [r.status_code for r in answers] == [200]
        assert stopped < 5, f"berth-api took {stopped:.1f} s to stop"
        assert "did not stop" not in server.log_text()


def test_an_answer_its_client_reads_none_of_is_dropped() -> None:
    """uvicorn writes an answer into the transport's buffer and waits for nothing: a
    client that read none of it kept the whole of it in the server for as long as it
    held the connection open (a ``get_archive`` is up to ~133 MB of JSON). After
    ``request_idle_seconds`` with writing paused the connection is dropped, and its
    buffer with it; a client that reads gets the whole answer. Real uvicorn and
    sockets, the guard's protocol."""
    size = 64 * 1024 * 1024

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        head = [(b"content-length", str(size).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": head})
        await send({"type": "http.response.body", "body": b"x" * size})

    connguard.configure(Settings(request_idle_seconds=1))
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, http=connguard.GuardedHttp, lifespan="off",
        log_level="warning",
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(100):
            if server.started:
                break
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]

        reader = socket.create_connection(("127.0.0.1", port), timeout=10)
        reader.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        got = 0
        while got < size and (chunk := reader.recv(1 << 20)):
            got += len(chunk)
        assert got >= size  # read, it is not cut
        reader.close()

        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.settimeout(5)
        stalled.connect(("127.0.0.1", port))
        stalled.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert stalled.recv(64).startswith(b"HTTP/1.1 200")
        for _ in range(100):  # the server drops it, buffer and all
            if not server.server_state.connections:
                break
            time.sleep(0.05)
        assert not server.server_state.connections, "the answer nobody reads is kept"
        got = 0
        with contextlib.suppress(ConnectionResetError):
            while chunk := stalled.recv(1 << 20):  # what the kernel had, then the end
                got += len(chunk)
        assert got < size // 2
        stalled.close()
    finally:
        server.should_exit = True
        thread.join(10)
        connguard.configure(Settings())
