"""``berth-api`` with two worker processes on one port, over PostgreSQL (``api_workers = 2``).

Real processes: the tests reach each worker through a connection it accepted
(which worker holds a connection is read from /proc, as an operator would with
``ss -tp``; the API tells tenants nothing about its processes), and show that
what one worker learns the other acts on: claims against a quota under 40
concurrent creates, a revoked token, failed logins, an exec session one worker
opened and the other serves. The background loops (and, all-in-one, the agent)
run in exactly one worker, and another takes them over when that one dies;
SIGHUP replaces the workers without a refused request, SIGTERM stops them.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import http.client
import json
import os
import re
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect as ws_connect
from websockets.typing import Subprotocol

from berth.store.lease import AdvisoryLease
from tests.conftest import pg_database
from tests.functional.docker_engine import (
    TEST_IMAGE,
    engine_or_skip,
    ensure_test_image,
    remove_owned,
)
from tests.functional.test_quota_live import _stored
from tests.helpers import ZUN
from tests.live import LiveApi, free_port, live_api

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

ADMIN_PASSWORD = "workers-admin-pw"
MEMBER_PASSWORD = "workers-member-pw"
WORKERS = 2
HOLDS = re.compile(r"worker (\d+) holds api-primary")


class Pinned:
    """One keep-alive HTTP connection to the API, and so to the one worker that accepted it."""

    def __init__(self, api: LiveApi) -> None:
        self.api = api
        self.conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=60)

    def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], Any]:
        data = None if body is None else json.dumps(body)
        sent = {"Content-Type": "application/json", **(headers or {})}
        self.conn.request(method, path, body=data, headers=sent)
        resp = self.conn.getresponse()
        raw = resp.read()
        answer = json.loads(raw) if raw.strip() else None
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, answer

    def worker(self) -> int:
        """The pid of the worker process holding the server end of this connection."""
        assert self.conn.sock is not None
        return worker_of(self.api, self.conn.sock)

    def close(self) -> None:
        self.conn.close()


def worker_of(api: LiveApi, sock: socket.socket, timeout: float = 5.0) -> int:
    """The pid of the worker that accepted ``sock``'s connection."""
    mine = sock.getsockname()[1]
    deadline = time.monotonic() + timeout
    while True:
        for inode, local, remote in _tcp_sockets():
            if local == api.port and remote == mine:
                with contextlib.suppress(LookupError):
                    return _owner(inode, workers(api))
        # Not accepted yet (a raw connection that has sent nothing): wait for it.
        assert time.monotonic() < deadline, f"no worker accepted the connection from {mine}"
        time.sleep(0.05)


def _tcp_sockets() -> Iterator[tuple[str, int, int]]:
    """(inode, local port, remote port) of every established TCP socket of this namespace."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "01":  # ESTABLISHED
                    yield fields[9], _port(fields[1]), _port(fields[2])


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1], 16)


def _socket_inodes(pid: int) -> set[str]:
    found = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    found.add(link[8:-1])
    return found


def _owner(inode: str, pids: list[int]) -> int:
    for pid in pids:
        if inode in _socket_inodes(pid):
            return pid
    raise LookupError(f"socket {inode} belongs to no worker of {pids}")


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    return found


def _listening_inode(port: int) -> str:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and _port(fields[1]) == port:
                return fields[9]
    raise AssertionError(f"nothing listens on port {port}")


def workers(api: LiveApi) -> list[int]:
    """The API's worker processes: the children of berth-api that hold its listening socket."""
    assert api.pid is not None
    listening = _listening_inode(api.port)
    return sorted(c for c in _children(api.pid) if listening in _socket_inodes(c))


def one_connection_per_worker(api: LiveApi, within: float = 60.0) -> dict[int, Pinned]:
    """A connection accepted by each worker (opened until every worker has taken one).

    A worker holds the listening socket from its fork on, but accepts only once its
    app has started: on a loaded machine 64 connections in a row once all went to
    the one that was ready, so this keeps trying for ``within`` seconds.
    """
    pinned: dict[int, Pinned] = {}
    tries, deadline = 0, time.monotonic() + within
    while len(pinned) < WORKERS and time.monotonic() < deadline:
        conn, tries = Pinned(api), tries + 1
        assert conn.call("GET", "/container/")[0] == 200
        pid = conn.worker()
        if pid in pinned:
            conn.close()
            time.sleep(0.05)
        else:
            pinned[pid] = conn
    assert len(pinned) == WORKERS, f"{tries} connections all went to {list(pinned)}"
    return pinned


@contextlib.contextmanager
def _two_workers(workdir: Path) -> Iterator[LiveApi]:
    with pg_database() as url:
        env = _env(
            url,
            BERTH_ALL_IN_ONE="false",
            # Only LISTEN/NOTIFY, not the entries' age, can make a revocation reach the others.
            BERTH_TOKEN_CACHE_SECONDS="600",
            BERTH_LOGIN_FAILURES_PER_USER="3",
        )
        with live_api(env, workdir=workdir) as running:
            yield running


@pytest.fixture
def api(tmp_path: Path) -> Iterator[LiveApi]:
    """Two workers of the test's own: for tests that kill, replace or stop them."""
    with _two_workers(tmp_path) as running:
        yield running


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    """Two workers the tests that leave them running share, each with its own project
    and user (a server of two workers took 13-19 s to start on a loaded machine)."""
    with _two_workers(tmp_path_factory.mktemp("shared-workers")) as running:
        yield running


def _env(database_url: str, **settings: str) -> dict[str, str]:
    """Two workers on ``database_url``, running this checkout's berth; ``settings`` added."""
    return {
        "BERTH_DATABASE_URL": database_url,
        "BERTH_API_WORKERS": str(WORKERS),
        "BERTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        **settings,
    }


def _login(conn: Pinned, user: str, password: str, project: str) -> tuple[int, str]:
    ident = {"user": {"name": user, "domain": {"name": "Default"}, "password": password}}
    body = {
        "auth": {
            "identity": {"methods": ["password"], "password": ident},
            "scope": {"project": {"name": project, "domain": {"name": "Default"}}},
        }
    }
    status, headers, _ = conn.call("POST", "/identity/v3/auth/tokens", body)
    return status, headers.get("x-subject-token", "")


def _member(conn: Pinned, admin: str, name: str) -> str:
    """Project ``<name>-p`` with member ``<name>-u``; the project's id."""
    h = {"X-Auth-Token": admin}
    project = {"name": f"{name}-p", "domain_id": "default"}
    status, _, body = conn.call("POST", "/identity/v3/projects", {"project": project}, h)
    assert status == 201, body
    project = body["project"]["id"]
    user = {
        "name": f"{name}-u",
        "domain_id": "default",
        "password": MEMBER_PASSWORD,
        "default_project_id": project,
    }
    status, _, body = conn.call("POST", "/identity/v3/users", {"user": user}, h)
    assert status == 201, body
    uid = body["user"]["id"]
    _, _, roles = conn.call("GET", "/identity/v3/roles?name=member", None, h)
    role = roles["roles"][0]["id"]
    path = f"/identity/v3/projects/{project}/users/{uid}/roles/{role}"
    assert conn.call("PUT", path, None, h)[0] == 204
    return str(project)


def test_two_workers_share_one_port_and_both_serve(shared: LiveApi) -> None:
    api = shared
    pids = workers(api)
    assert len(pids) == WORKERS
    pinned = one_connection_per_worker(api)
    status, token = _login(next(iter(pinned.values())), "admin", ADMIN_PASSWORD, "admin")
    assert status == 201
    h = {"X-Auth-Token": token, **ZUN}
    for conn in pinned.values():
        status, _, body = conn.call("GET", "/container/v1/containers", None, h)
        assert (status, body["containers"]) == (200, [])


def test_a_token_revoked_on_one_worker_is_refused_by_every_worker(shared: LiveApi) -> None:
    pinned = list(one_connection_per_worker(shared).values())
    _, admin = _login(pinned[0], "admin", ADMIN_PASSWORD, "admin")
    _member(pinned[0], admin, "revoked")
    _, token = _login(pinned[0], "revoked-u", MEMBER_PASSWORD, "revoked-p")
    h = {"X-Auth-Token": token, **ZUN}
    for conn in pinned:  # every worker has validated it (and cached it for 600 s)
        assert conn.call("GET", "/container/v1/containers", None, h)[0] == 200
    revoke = {"X-Auth-Token": admin, "X-Subject-Token": token}
    assert pinned[1].call("DELETE", "/identity/v3/auth/tokens", None, revoke)[0] == 204
    deadline = time.monotonic() + 3  # LISTEN/NOTIFY: milliseconds; far below the cache's 600 s
    refused: set[int] = set()
    while len(refused) < len(pinned) and time.monotonic() < deadline:
        for i, conn in enumerate(pinned):
            if conn.call("GET", "/container/v1/containers", None, h)[0] == 401:
                refused.add(i)
        time.sleep(0.05)
    assert refused == set(range(len(pinned)))


def test_failed_logins_on_both_workers_add_up(shared: LiveApi) -> None:
    one, two = one_connection_per_worker(shared).values()
    _, admin = _login(one, "admin", ADMIN_PASSWORD, "admin")
    _member(one, admin, "guessed")
    # Three allowed failures in all (BERTH_LOGIN_FAILURES_PER_USER), not three per worker.
    statuses = [
        _login((one, two)[i % 2], "guessed-u", f"guess-{i}", "guessed-p")[0] for i in range(4)
    ]
    assert statuses == [401, 401, 401, 429]
    assert _login(one, "guessed-u", MEMBER_PASSWORD, "guessed-p")[0] == 429
    assert _login(two, "guessed-u", MEMBER_PASSWORD, "guessed-p")[0] == 429
    # Another user is not held back by them.
    assert _login(two, "admin", ADMIN_PASSWORD, "admin")[0] == 201


def test_forty_concurrent_creates_over_both_workers_fill_a_quota_exactly(shared: LiveApi) -> None:
    api = shared
    quota, creates = 5, 40
    conn = Pinned(api)
    _, admin = _login(conn, "admin", ADMIN_PASSWORD, "admin")
    project = _member(conn, admin, "quota")
    path = f"/container/v1/quotas/{project}"
    body = {"containers": quota}
    assert conn.call("PUT", path, body, {"X-Auth-Token": admin, **ZUN})[0] == 200
    _, token = _login(conn, "quota-u", MEMBER_PASSWORD, "quota-p")
    h = {"X-Auth-Token": token, **ZUN}

    def create(i: int) -> tuple[int, int]:
        own = Pinned(api)  # a connection of its own: the kernel hands it to either worker
        try:
            status, _, _ = own.call(
                "POST", "/container/v1/containers", {"image": "busybox", "name": f"c{i}"}, h
            )
            return status, own.worker()
        finally:
            own.close()

    with cf.ThreadPoolExecutor(max_workers=creates) as pool:
        answers = list(pool.map(create, range(creates)))
    statuses = sorted(status for status, _ in answers)
    assert statuses == [202] * quota + [403] * (creates - quota), statuses
    assert len({pid for _, pid in answers}) == WORKERS  # both workers took creates
    assert _stored(api.env["BERTH_DATABASE_URL"], project) == quota


def test_the_background_loops_run_in_one_worker_and_move_when_it_dies(api: LiveApi) -> None:
    holders = _holders(api, 1)
    assert holders[0] in workers(api)
    os.kill(holders[0], signal.SIGKILL)
    # Another worker takes the lease within its retry period; uvicorn replaces the dead one.
    new = _holders(api, 2)[1]
    assert new != holders[0] and new in workers(api)
    deadline = time.monotonic() + 60
    while len(workers(api)) < WORKERS and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(workers(api)) == WORKERS and holders[0] not in workers(api)


def test_sighup_replaces_every_worker_while_requests_keep_being_answered(api: LiveApi) -> None:
    assert api.pid is not None
    old = set(workers(api))
    answered: list[int] = []
    failed: list[str] = []
    stop = threading.Event()

    def ask() -> None:
        while not stop.is_set():
            conn = Pinned(api)  # a new connection each time: any worker may take it
            try:
                answered.append(conn.call("GET", "/container/")[0])
            except (OSError, http.client.HTTPException) as exc:
                failed.append(repr(exc))
            finally:
                conn.close()

    asker = threading.Thread(target=ask)
    asker.start()
    try:
        os.kill(api.pid, signal.SIGHUP)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            now = set(workers(api))
            if len(now) == WORKERS and not now & old:
                break
            time.sleep(0.2)
        time.sleep(1)
    finally:
        stop.set()
        asker.join()
    assert len(now) == WORKERS and not now & old, (old, now)
    assert answered and set(answered) == {200} and not failed, failed
    deadline = time.monotonic() + 30
    while HOLDS.findall(api.log_text())[-1] not in {str(pid) for pid in now}:
        assert time.monotonic() < deadline, "no new worker took the background loops"
        time.sleep(0.2)


def test_sigterm_stops_every_worker_gracefully(api: LiveApi) -> None:
    pids = workers(api)
    api.stop()
    assert not api.alive
    text = api.log_text()
    for pid in pids:
        assert f"Finished server process [{pid}]" in text
    assert "Stopping parent process" in text


def _holders(api: LiveApi, count: int, timeout: float = 30) -> list[int]:
    """The pids that logged taking the lease, once there are ``count`` of them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [int(pid) for pid in HOLDS.findall(api.log_text())]
        if len(found) >= count:
            assert len(found) == count, found  # never two holders at once
            return found
        time.sleep(0.2)
    raise AssertionError(f"fewer than {count} lease holders in {api.log}:\n{api.log_text()}")


async def test_one_lease_holder_at_a_time_and_the_next_after_it_lets_go() -> None:
    with pg_database() as url:
        first, second = AdvisoryLease(url, "test-lease"), AdvisoryLease(url, "test-lease")
        other = AdvisoryLease(url, "another-lease")
        try:
            assert await first.acquire() and await first.held()
            assert not await second.acquire() and not await second.held()
            assert await other.acquire()  # leases of other names are independent
            await first.release()
            assert not await first.held()
            assert await second.acquire() and await second.held()
        finally:
            for lease in (first, second, other):
                await lease.release()


@pytest.mark.docker
def test_all_in_one_the_agent_runs_once_and_every_worker_reaches_its_engine(
    tmp_path: Path,
) -> None:
    engine = engine_or_skip()
    ensure_test_image(engine)
    host = f"workers-{uuid.uuid4().hex[:8]}"
    try:
        with pg_database() as url:
            env = _env(
                url,
                BERTH_ALL_IN_ONE="true",
                BERTH_AGENT_HOST=host,
                BERTH_AGENT_PORT=str(free_port()),
            )
            with live_api(env, workdir=tmp_path) as api:
                _agent_once_engine_everywhere(api, host)
    finally:
        remove_owned(engine, host)
        engine.close()


def _agent_once_engine_everywhere(api: LiveApi, host: str) -> None:
    pinned = list(one_connection_per_worker(api).values())
    _, admin = _login(pinned[0], "admin", ADMIN_PASSWORD, "admin")
    h = {"X-Auth-Token": admin, **ZUN}
    body = {"image": TEST_IMAGE, "command": ["sh", "-c", "echo started; sleep 3600"]}
    status, _, made = pinned[1].call("POST", "/container/v1/containers?run=true", body, h)
    assert status == 202, made
    uuid_ = made["uuid"]
    deadline = time.monotonic() + 60
    shown: dict[str, Any] = {}
    while time.monotonic() < deadline:
        shown = pinned[0].call("GET", f"/container/v1/containers/{uuid_}", None, h)[2]
        if shown["status"] == "Running":
            break
        time.sleep(0.2)
    assert shown["status"] == "Running" and shown["host"] == host, shown
    for conn in pinned:  # each worker calls the engine itself: no hop to the lease holder
        status, _, logs = conn.call("GET", f"/container/v1/containers/{uuid_}/logs", None, h)
        assert (status, logs) == (200, "started\n")
        path = f"/container/v1/containers/{uuid_}/execute?run=true&command=echo%20hi"
        status, _, out = conn.call("POST", path, None, h)
        assert status == 200 and out["output"].strip() == "hi", out
    for issuer, server in ((0, 1), (1, 0)):  # a session one worker opened, another serves
        _exec_through(api, pinned[issuer], h, uuid_, pinned[server].worker())
    # One reconcile loop for the host: one holder, one agent, one engine container.
    assert len(_holders(api, 1)) == 1
    assert pinned[0].call("DELETE", f"/container/v1/containers/{uuid_}?force=true", None, h)[0] in (
        202,
        204,
    )


def _exec_through(api: LiveApi, issuer: Pinned, h: dict[str, str], uuid_: str, pid: int) -> None:
    """Open an interactive exec through ``issuer``; run it on a connection worker ``pid`` took."""
    path = f"/container/v1/containers/{uuid_}/execute?run=false&interactive=true&command=sh"
    status, _, session = issuer.call("POST", path, None, h)
    assert status == 200, session
    for _ in range(64):
        sock = socket.create_connection(("127.0.0.1", api.port))
        if worker_of(api, sock) == pid:
            break
        sock.close()
    else:
        raise AssertionError(f"64 connections and none taken by worker {pid}")
    with ws_connect(session["proxy_url"], sock=sock, subprotocols=[Subprotocol("binary")]) as ws:
        ws.send(b"echo hi-from-$((6*7))\r")
        seen = b""
        deadline = time.monotonic() + 20
        while b"hi-from-42" not in seen:
            assert time.monotonic() < deadline, seen
            with contextlib.suppress(TimeoutError):
                frame = ws.recv(timeout=1)
                seen += frame if isinstance(frame, bytes) else frame.encode()
        ws.send(b"exit\r")
