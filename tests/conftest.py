"""Fixtures shared by every layer of tests.

``db_url`` runs a test once on SQLite and once on PostgreSQL (a fresh database
per test, dropped afterwards). ``app``/``client`` build the real ASGI app with
its lifespan; every app records the 5xx it served and the test fails if any.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from berth.api.app import create_app
from berth.config import Settings

PG_ADMIN_DSN = os.environ.get("BERTH_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
ADMIN_PASSWORD = "admin-secret-pw"
AGENT_PASSWORD = "agent-secret-pw"


def _pg_exec(sql: str) -> None:
    import psycopg  # test-only: a sync driver to create and drop databases

    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _cheap_password_hashing(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hash passwords at scrypt N=2**10 instead of 2**14 in this process.

    Every app a test starts hashes the admin's and the agent's passwords and
    most tests then log in: at the production cost that was ~0.2 s per test.
    A hash records its own cost, so verification follows; tests/unit/
    test_passwords.py checks the production cost, and live servers (separate
    processes) keep it.
    """
    if request.node.path.name != "test_passwords.py":
        from berth.identity import passwords

        monkeypatch.setattr(passwords, "_N", 2**10)


def _pg_url(name: str) -> str:
    host = PG_ADMIN_DSN.split("@", 1)[1].rsplit("/", 1)[0]
    user = PG_ADMIN_DSN.split("//", 1)[1].split("@", 1)[0]
    return f"postgresql+asyncpg://{user}@{host}/{name}"


@contextlib.contextmanager
def pg_database(template: Callable[[], str] | None = None) -> Iterator[str]:
    """The URL of a new PostgreSQL database (a copy of ``template()``'s if given), dropped after.

    Without a reachable server the test is skipped, except in CI where it fails.
    """
    name = f"berth_test_{uuid.uuid4().hex[:12]}"
    try:
        copy = f' TEMPLATE "{template()}"' if template is not None else ""
        _pg_exec(f'CREATE DATABASE "{name}"{copy}')
    except Exception as exc:  # pragma: no cover - depends on the machine
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    try:
        yield _pg_url(name)
    finally:
        _pg_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _migrate(url: str) -> None:
    from berth.store.db import Database

    async def run() -> None:
        db = Database(url)
        try:
            await db.migrate()
        finally:
            await db.close()

    asyncio.run(run())


@pytest.fixture(scope="session")
def _templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Migrated template databases, made once per session (lazily, per kind).

    A test's database is a copy: CREATE DATABASE ... TEMPLATE on PostgreSQL (a
    file copy inside the server), a file copy on SQLite. Running every migration
    for every test took seconds per PostgreSQL test.
    """
    made: dict[str, str] = {}
    yield made
    if "postgres" in made:
        _pg_exec(f'DROP DATABASE IF EXISTS "{made["postgres"]}" WITH (FORCE)')


def _template(kind: str, made: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> str:
    if kind not in made:
        if kind == "sqlite":
            path = tmp_path_factory.mktemp("template") / "berth.db"
            _migrate(f"sqlite+aiosqlite:///{path}")
            made[kind] = str(path)
        else:
            name = f"berth_tpl_{uuid.uuid4().hex[:12]}"
            _pg_exec(f'CREATE DATABASE "{name}"')
            _migrate(_pg_url(name))
            made[kind] = name
    return made[kind]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def blank_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL of a fresh, empty database (no schema: for migration tests)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'berth.db'}"
        return
    with pg_database() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    _templates: dict[str, str],
) -> Iterator[str]:
    """A database URL of a fresh database with the current schema and no rows."""
    if request.param == "sqlite":
        target = tmp_path / "berth.db"
        shutil.copyfile(_template("sqlite", _templates, tmp_path_factory), target)
        yield f"sqlite+aiosqlite:///{target}"
        return
    with pg_database(lambda: _template("postgres", _templates, tmp_path_factory)) as url:
        yield url


def make_settings(tmp_path: Path, db_url: str, **overrides: Any) -> Settings:
    """The API tests' settings (validated, as an operator's would be), ``overrides`` applied."""
    return Settings(
        data_dir=tmp_path / "data",
        database_url=db_url,
        admin_password=ADMIN_PASSWORD,
        agent_password=AGENT_PASSWORD,
        all_in_one=False,
        agent_host="test-host",
        **overrides,
    )


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return make_settings(tmp_path, db_url)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings, run_workers=False)
    async with application.router.lifespan_context(application):
        yield application
    errors = application.state.berth.saw_server_error
    assert not errors, f"the API answered 5xx: {errors}"


@pytest.fixture
async def client(
    app: FastAPI, request: pytest.FixtureRequest
) -> AsyncIterator[httpx.AsyncClient]:
    """The shared API client; the test fails if any answer was a 5xx.

    Bad input must get a 4xx; a test that provokes a genuine server-side failure
    (an unreachable host's 503) says so with ``@pytest.mark.allows_5xx("why")``.
    """
    served: list[str] = []

    async def record(response: httpx.Response) -> None:
        if response.status_code >= 500:
            served.append(f"{response.request.method} {response.request.url.path}: "
                          f"{response.status_code}")

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", event_hooks={"response": [record]}
    ) as c:
        yield c
    if request.node.get_closest_marker("allows_5xx") is None:
        assert not served, f"the API answered 5xx (mark allows_5xx if meant): {served}"


async def issue_token(client: httpx.AsyncClient, user: str, password: str, project: str) -> str:
    """Password-authenticate like keystoneauth does and return the token."""
    body: dict[str, Any] = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": user, "domain": {"name": "Default"}, "password": password}
                },
            },
            "scope": {"project": {"name": project, "domain": {"name": "Default"}}},
        }
    }
    r = await client.post("/identity/v3/auth/tokens", json=body)
    assert r.status_code == 201, r.text
    return r.headers["x-subject-token"]


@pytest.fixture
async def admin_token(client: httpx.AsyncClient) -> str:
    return await issue_token(client, "admin", ADMIN_PASSWORD, "admin")
