"""The API while its PostgreSQL is down, and after it is back: a 503 to retry, then service.

A private PostgreSQL cluster (``initdb`` as the ``postgres`` user, its own port and
socket directory) is stopped and started under a live app. Before, every request
while it was down was a 500 "unexpected error" (the driver's connection refused),
and the LISTEN connection stayed dead after it came back, so the process's own
changes no longer woke its agents' long polls.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from berth.api.app import create_app
from tests.conftest import ADMIN_PASSWORD, issue_token, make_settings
from tests.helpers import zun_headers as h

pytestmark = pytest.mark.postgres

MAGNUM = {"OpenStack-API-Version": "container-infra latest"}


@dataclass
class PrivatePostgres:
    """A PostgreSQL cluster of this test's own, to stop and start at will."""

    bin: Path
    data: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        _as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), *args)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data.parent} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._ctl("-w", "-o", options, "-l", str(self.data.parent / "log"), "start")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("-w", "-m", mode, "stop")


def _as_postgres(*argv: str) -> None:
    subprocess.run(
        ["runuser", "-u", "postgres", "--", *argv], check=True, capture_output=True, cwd="/"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        pytest.skip("no PostgreSQL server binaries (scripts/lib.sh installs them)")
    user = pwd.getpwnam("postgres")
    home = Path(tempfile.mkdtemp(prefix="berth-pg-"))
    home.chmod(0o755)
    os.chown(home, user.pw_uid, user.pw_gid)
    pg = PrivatePostgres(found[-1].parent, home / "data", _free_port())
    try:
        _as_postgres(str(pg.bin / "initdb"), "-D", str(pg.data), "-A", "trust", "-U", "postgres")
        pg.start()
        yield pg
    finally:
        if (pg.data / "postmaster.pid").exists():
            pg.stop("immediate")
        shutil.rmtree(home, ignore_errors=True)


async def test_while_the_database_is_down_requests_are_503s_and_it_recovers(
    private_pg: PrivatePostgres, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(make_settings(tmp_path, private_pg.url), run_workers=True)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            token = await issue_token(c, "admin", ADMIN_PASSWORD, "admin")
            r = await c.get("/container/v1/containers", headers=h(token))
            assert r.status_code == 200, r.text

            private_pg.stop()
            for method, path, body in (
                ("GET", "/container/v1/containers", None),
                ("GET", "/container/v1/containers/web", None),
                ("POST", "/container/v1/containers", {"image": "busybox"}),
            ):
                r = await c.request(method, path, json=body, headers=h(token))
                assert r.status_code == 503, (path, r.text)
                assert r.headers["Retry-After"] == "1"
                (error,) = r.json()["errors"]
                assert error["code"] == "container.database-unavailable", error
                assert "retry in a moment" in error["detail"]
            r = await c.get("/container-infra/v1/clusters", headers=h(token) | MAGNUM)
            assert r.status_code == 503 and r.json()["errors"][0]["status"] == 503, r.text
            # The background jobs say so in one line each, not a traceback a second.
            caplog.clear()
            worker: list[logging.LogRecord] = []
            with caplog.at_level(logging.WARNING, logger="berth.services.worker"):
                for _ in range(50):  # the cluster job runs every 2 s
                    await asyncio.sleep(0.1)
                    worker = [r for r in caplog.records if r.name == "berth.services.worker"]
                    if worker:
                        break
            assert any("cannot reach its database" in r.getMessage() for r in worker), worker
            assert not any(r.exc_info for r in worker), [r.getMessage() for r in worker]

            # The agents' long polls wait on this process's LISTEN connection.
            notifier = app.state.berth.notifier
            seen = notifier.generation("host-a")
            private_pg.start()
            r = await c.get("/container/v1/containers", headers=h(token))
            assert r.status_code == 200, r.text  # the pool's connections made again
            # Back: every long poll is woken once (what was notified is lost)...
            woken = await notifier.wait("host-a", seen, 10)
            assert woken != seen, "no long poll was woken after the database came back"
            seen = woken
            # ...and a change made now arrives through the connection made again.
            waiting = asyncio.create_task(notifier.wait("host-a", seen, 15))
            await asyncio.sleep(0.1)
            await notifier.touch("host-a")
            async with asyncio.timeout(5):
                assert await waiting != seen
            r = await c.post(
                "/container/v1/containers", json={"image": "busybox"}, headers=h(token)
            )
            assert r.status_code == 202, r.text
    assert not app.state.berth.saw_server_error
