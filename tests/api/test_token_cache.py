"""The validated-token cache never outlives a change to what a token stands for.

Each test first *uses* the token (so its validation is cached), then changes
identity, then expects the very next request to be refused.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from fastapi import FastAPI

from berth.api.app import create_app
from berth.config import Settings
from berth.domain.context import RequestContext
from berth.services.identity.cache import TokenCache, token_cache
from tests.api.test_identity import V3, h, make_project, make_user, role_id
from tests.conftest import ADMIN_PASSWORD, issue_token
from tests.helpers import zun_headers

Change = Callable[[httpx.AsyncClient, str, str, str, str], Awaitable[None]]


async def _revoke(client: httpx.AsyncClient, admin: str, token: str, pid: str, uid: str) -> None:
    r = await client.delete(f"{V3}/auth/tokens", headers=h(admin, token))
    assert r.status_code == 204, r.text


async def _drop_role(client: httpx.AsyncClient, admin: str, token: str, pid: str, uid: str) -> None:
    rid = await role_id(client, admin, "member")
    r = await client.delete(f"{V3}/projects/{pid}/users/{uid}/roles/{rid}", headers=h(admin))
    assert r.status_code == 204, r.text


async def _disable_user(
    client: httpx.AsyncClient, admin: str, token: str, pid: str, uid: str
) -> None:
    body = {"user": {"enabled": False}}
    assert (await client.patch(f"{V3}/users/{uid}", headers=h(admin), json=body)).is_success


async def _disable_project(
    client: httpx.AsyncClient, admin: str, token: str, pid: str, uid: str
) -> None:
    body = {"project": {"enabled": False}}
    assert (await client.patch(f"{V3}/projects/{pid}", headers=h(admin), json=body)).is_success


async def _delete_user(
    client: httpx.AsyncClient, admin: str, token: str, pid: str, uid: str
) -> None:
    assert (await client.delete(f"{V3}/users/{uid}", headers=h(admin))).status_code == 204


async def _new_password(
    client: httpx.AsyncClient, admin: str, token: str, pid: str, uid: str
) -> None:
    body = {"user": {"password": "another-pw-456"}}
    assert (await client.patch(f"{V3}/users/{uid}", headers=h(admin), json=body)).is_success


@pytest.mark.parametrize(
    "change",
    [_revoke, _drop_role, _disable_user, _disable_project, _delete_user, _new_password],
    ids=["revoke", "role-removed", "user-disabled", "project-disabled", "user-deleted", "password"],
)
async def test_a_cached_token_is_refused_right_after_identity_changes(
    client: httpx.AsyncClient, admin_token: str, change: Change
) -> None:
    pid = await make_project(client, admin_token, "cached")
    uid = await make_user(client, admin_token, "cara", grants={pid: "member"})
    token = await issue_token(client, "cara", "user-pw-123", "cached")
    for _ in range(2):  # the second request is served from the cache
        r = await client.get("/container/v1/containers", headers={"X-Auth-Token": token})
        assert r.status_code == 200, r.text
    await change(client, admin_token, token, pid, uid)
    r = await client.get("/container/v1/containers", headers={"X-Auth-Token": token})
    assert r.status_code == 401, r.text


async def test_a_new_role_shows_at_once(client: httpx.AsyncClient, admin_token: str) -> None:
    pid = await make_project(client, admin_token, "promoted")
    uid = await make_user(client, admin_token, "pete", grants={pid: "member"})
    token = await issue_token(client, "pete", "user-pw-123", "promoted")
    hdr = zun_headers(token)
    for _ in range(2):
        r = await client.get("/container/v1/hosts", headers=hdr)
        assert r.status_code == 403, r.text  # hosts are for admins
    rid = await role_id(client, admin_token, "admin")
    r = await client.put(f"{V3}/projects/{pid}/users/{uid}/roles/{rid}", headers=h(admin_token))
    assert r.status_code == 204
    r = await client.get("/container/v1/hosts", headers=hdr)
    assert r.status_code == 200, r.text


# -- across API processes (PostgreSQL LISTEN/NOTIFY) ---------------------------


@pytest.fixture
async def second(settings: Settings, app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    if not settings.effective_database_url.startswith("postgresql"):
        pytest.skip("several API processes need PostgreSQL")
    other = create_app(settings, run_workers=False)
    async with other.router.lifespan_context(other):
        transport = httpx.ASGITransport(app=other)
        async with httpx.AsyncClient(transport=transport, base_url="http://second") as c:
            yield c
    assert not other.state.berth.saw_server_error


@pytest.mark.postgres
async def test_a_revocation_on_one_api_reaches_the_others_cache(
    client: httpx.AsyncClient, second: httpx.AsyncClient, admin_token: str
) -> None:
    token = admin_token
    pid = await make_project(client, token, "spread")
    await make_user(client, token, "sam", grants={pid: "member"})
    sams = await issue_token(client, "sam", "user-pw-123", "spread")
    hdr = {"X-Auth-Token": sams}
    for _ in range(2):
        assert (await second.get("/container/v1/containers", headers=hdr)).status_code == 200
    await _revoke(client, token, sams, pid, "")
    deadline = time.monotonic() + 3
    while (await second.get("/container/v1/containers", headers=hdr)).status_code == 200:
        assert time.monotonic() < deadline, "the other API still accepts a revoked token"
        await asyncio.sleep(0.02)


# -- the cache itself ------------------------------------------------------------

_CALLER = RequestContext(
    user_id="u", user_name="u", project_id="p", project_name="p", roles=("member",)
)


def _later(seconds: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)


def test_entries_live_for_the_ttl_and_never_beyond_the_token() -> None:
    now = [100.0]
    cache = TokenCache(10.0, clock=lambda: now[0])
    cache.put("long", _CALLER, _later(3600), cache.epoch)
    cache.put("short", _CALLER, _later(2), cache.epoch)
    assert cache.get("long") is _CALLER and cache.get("short") is _CALLER
    now[0] += 2.5
    assert cache.get("long") is _CALLER and cache.get("short") is None
    now[0] += 8
    assert cache.get("long") is None
    cache.put("expired", _CALLER, _later(-1), cache.epoch)
    assert cache.get("expired") is None


def test_a_validation_that_raced_an_invalidation_is_not_cached() -> None:
    cache = TokenCache(10.0)
    epoch = cache.epoch  # a validation starts reading the database ...
    cache.invalidate()  # ... a revocation commits meanwhile ...
    cache.put("t", _CALLER, _later(3600), epoch)  # ... its stale answer is dropped
    assert cache.get("t") is None


def test_zero_ttl_turns_the_cache_off_and_size_is_bounded() -> None:
    off = TokenCache(0.0)
    off.put("t", _CALLER, _later(3600), off.epoch)
    assert off.get("t") is None
    small = TokenCache(10.0, max_entries=3)
    for i in range(5):
        small.put(str(i), _CALLER, _later(3600), small.epoch)
    assert [small.get(str(i)) is not None for i in range(5)] == [False, False, True, True, True]


async def test_new_tokens_do_not_empty_the_cache(
    client: httpx.AsyncClient, app: FastAPI, admin_token: str
) -> None:
    cache = token_cache(app.state.berth.db)
    assert (await client.get(f"{V3}/projects", headers=h(admin_token))).status_code == 200
    epoch = cache.epoch
    await issue_token(client, "admin", ADMIN_PASSWORD, "admin")
    assert cache.epoch == epoch


# -- one grant, however many API processes give it at once ---------------------


@pytest.mark.postgres
async def test_concurrent_grants_on_two_apis_make_one_assignment(
    client: httpx.AsyncClient, second: httpx.AsyncClient, admin_token: str
) -> None:
    from tests.api.test_identity import V3, make_project, make_user, role_id

    pid = await make_project(client, admin_token, "granted")
    uid = await make_user(client, admin_token, "gina")
    rid = await role_id(client, admin_token, "reader")
    path = f"{V3}/projects/{pid}/users/{uid}/roles/{rid}"
    hdr = h(admin_token)
    answers = await asyncio.gather(
        *(c.put(path, headers=hdr) for _ in range(6) for c in (client, second))
    )
    assert {r.status_code for r in answers} == {204}, [r.text for r in answers]
    r = await client.get(
        f"{V3}/role_assignments", params={"user.id": uid, "scope.project.id": pid}, headers=hdr
    )
    assert len(r.json()["role_assignments"]) == 1, r.text


async def test_the_migration_drops_duplicate_grants(blank_db_url: str) -> None:
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import select

    from berth.store import db as store_db
    from berth.store.db import Database
    from berth.store.tables.identity import (
        DomainRow,
        ProjectRow,
        RoleAssignmentRow,
        RoleRow,
        UserRow,
    )

    db = Database(blank_db_url)

    def upgrade(conn: object, to: str) -> None:
        cfg = Config()
        cfg.set_main_option("script_location", str(store_db._MIGRATIONS))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, to)

    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(upgrade, "0001")
        async with db.transaction() as s:  # what a race between two APIs left behind
            s.add(DomainRow(id="d", name="D"))
            s.add(ProjectRow(id="p", name="P", domain_id="d"))
            s.add(UserRow(id="u", name="U", domain_id="d"))
            s.add(RoleRow(id="r", name="reader"))
            await s.flush()
            for _ in range(3):
                s.add(RoleAssignmentRow(user_id="u", project_id="p", role_id="r"))
            s.add(RoleAssignmentRow(user_id="u", domain_id="d", role_id="r"))
            s.add(RoleAssignmentRow(user_id="u", domain_id="d", role_id="r"))
        await db.migrate()
        async with db.read() as s:
            left = (await s.scalars(select(RoleAssignmentRow))).all()
        assert sorted((a.project_id or "", a.domain_id or "") for a in left) == [
            ("", "d"),
            ("p", ""),
        ]
    finally:
        await db.close()
