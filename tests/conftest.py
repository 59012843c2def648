"""Fixtures shared by every layer of tests.

``db_url`` runs a test once on SQLite and once on PostgreSQL (an empty database
with the current schema per test: a copied file on SQLite, on PostgreSQL the
worker's own database with every row deleted). ``app``/``client`` build the real ASGI app with
its lifespan; every app records the 5xx it served and the test fails if any.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from berth.api.app import create_app
from berth.cli.serve import tune_gc
from berth.config import Settings
from berth.identity.auth_request import by_name, password_auth, project_ref

# The xdist schedule: the most expensive modules first (tests/scheduling.py).
from tests.scheduling import (  # noqa: F401  hooks, registered by being here
    pytest_addoption,
    pytest_collection_modifyitems,
    pytest_runtest_logreport,
    pytest_sessionfinish,
)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Tune the garbage collector as ``berth-api`` does (``serve.tune_gc``).

    Every API test builds an app (~100k objects, alive through the test, so they
    reach the oldest generation), and the defaults then ran a full collection of
    the whole process every few tests: measured on three API modules, 10.3 s of
    23.7 s of CPU was full collections. Freezing what the imports and the
    collection made, and collecting less often, leaves 2.9 s (+25 MB at most).
    """
    tune_gc()


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
def pg_database() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped after.

    Without a reachable server the test is skipped, except in CI where it fails.
    """
    name = f"berth_test_{uuid.uuid4().hex[:12]}"
    try:
        _pg_exec(f'CREATE DATABASE "{name}"')
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
    """Migrated databases, made once per session (lazily, per kind).

    On SQLite a test's database is a copy of the migrated file. On PostgreSQL the
    session makes one migrated database and empties it before each test
    (``_pg_emptied``): running every migration per test took seconds, and so did
    CREATE DATABASE ... TEMPLATE plus DROP DATABASE (1.5-3.5 s a test on a
    loaded machine, ~460 tests); deleting the rows takes ~0.05 s.
    """
    made: dict[str, str] = {}
    yield made
    if "postgres" in made:
        _pg_exec(f'DROP DATABASE IF EXISTS "{made["postgres"]}" WITH (FORCE)')


def _pg_emptied(name: str) -> str:
    """The URL of database ``name`` as migrations left it: every row deleted, sequences restarted.

    Connections a previous test left open are closed first (as DROP ... WITH
    (FORCE) did), so nothing of that test reads, writes or LISTENs on.
    """
    import psycopg

    _pg_exec(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        f" WHERE datname = '{name}' AND pid <> pg_backend_pid()"
    )
    admin = PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                " AND tablename <> 'alembic_version'"
            )
        ]
        sequences = [
            row[0]
            for row in conn.execute(
                "SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'"
            )
        ]
        # replica: no foreign-key triggers, so the order of the deletes does not matter.
        steps = ["SET LOCAL session_replication_role = replica"]
        steps += [f'DELETE FROM "{table}"' for table in tables]
        steps += [f'ALTER SEQUENCE "{sequence}" RESTART' for sequence in sequences]
        with conn.transaction():
            conn.execute("; ".join(steps))  # type: ignore[arg-type]
    return _pg_url(name)


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
    try:
        name = _template("postgres", _templates, tmp_path_factory)
    except Exception as exc:  # pragma: no cover - depends on the machine
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    yield _pg_emptied(name)


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
    # db_url's database has the current schema already: no Alembic run (~0.2 s a test).
    application = create_app(settings, run_workers=False, migrate=False)
    async with application.router.lifespan_context(application):
        yield application
    errors = application.state.berth.saw_server_error
    assert not errors, f"the API answered 5xx: {errors}"


@pytest.fixture
async def client(app: FastAPI, request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    """The shared API client; the test fails if any answer was a 5xx.

    Bad input must get a 4xx; a test that provokes a genuine server-side failure
    (an unreachable host's 503) says so with ``@pytest.mark.allows_5xx("why")``.
    """
    served: list[str] = []

    async def record(response: httpx.Response) -> None:
        if response.status_code >= 500:
            served.append(
                f"{response.request.method} {response.request.url.path}: {response.status_code}"
            )

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", event_hooks={"response": [record]}
    ) as c:
        yield c
    if request.node.get_closest_marker("allows_5xx") is None:
        assert not served, f"the API answered 5xx (mark allows_5xx if meant): {served}"


async def issue_token(client: httpx.AsyncClient, user: str, password: str, project: str) -> str:
    """Password-authenticate like keystoneauth does and return the token."""
    body = password_auth(user, password, by_name("Default"), project_ref(None, project, "Default"))
    r = await client.post("/identity/v3/auth/tokens", json=body)
    assert r.status_code == 201, r.text
    return r.headers["x-subject-token"]


@pytest.fixture
async def admin_token(client: httpx.AsyncClient) -> str:
    return await issue_token(client, "admin", ADMIN_PASSWORD, "admin")
