"""The identity repositories on both stores: grants, duplicate rows as 409, login counters."""

from __future__ import annotations

import pytest

from berth import errors
from berth.store.db import Database
from berth.store.identity import login_failures
from berth.store.identity import roles as role_repo
from berth.store.identity.common import flush_unique
from berth.store.tables.identity import DomainRow, RoleRow, UserRow

pytestmark = pytest.mark.asyncio


async def test_grants_on_a_domain_are_added_once_listed_and_taken_away(db_url: str) -> None:
    db = Database(db_url)
    try:
        async with db.transaction() as s:
            s.add(DomainRow(id="d", name="D", description="", enabled=True))
            s.add(RoleRow(id="r", name="reader", domain_id=None, description=""))
            await s.flush()
            s.add(UserRow(id="u", name="ann", domain_id="d", extra={}))
            await s.flush()
            for _ in range(2):  # the second grant finds the first
                await role_repo.add_grant(s, "u", "r", None, "d")
                await s.flush()
        async with db.read() as s:
            assert await role_repo.grant_id(s, "u", "r", None, "d") is not None
            assert await role_repo.role_names(s, "u", None, "d") == ["reader"]
            assert [r.id for r in await role_repo.granted_roles(s, "u", None, "d")] == ["r"]
            assert await role_repo.grant_id(s, "u", "r", None, "other") is None
        async with db.transaction() as s:
            assert await role_repo.delete_grants(s, "u", "r", None, "d") == 1
            assert await role_repo.delete_grants(s, "u", "r", None, "d") == 0
        with pytest.raises(errors.Conflict, match="Conflict occurred attempting to store role"):
            async with db.transaction() as s:
                s.add(RoleRow(id="r2", name="reader", domain_id=None, description=""))
                await flush_unique(s, "role - Duplicate entry found with name reader")
    finally:
        await db.close()


async def test_login_failures_count_lock_and_reset(db_url: str) -> None:
    db = Database(db_url)
    try:
        async with db.transaction() as s:
            assert await login_failures.count_failure(s, "user", "ann", 100.0, 60.0) == 1
            assert await login_failures.count_failure(s, "user", "ann", 110.0, 60.0) == 2
            # Quiet for longer than the window: the count starts again.
            assert await login_failures.count_failure(s, "user", "ann", 200.0, 60.0) == 1
            await login_failures.lock(s, "user", "ann", 260.0)
            await login_failures.mark_known(s, "ann@10.0.0.1", 200.0)
        async with db.read() as s:
            rows = await login_failures.counters(s, [("user", "ann"), ("source", "x")])
            assert list(rows) == [("user", "ann")]
            assert rows["user", "ann"].locked_until == 260.0
            assert await login_failures.known_since(s, "ann@10.0.0.1") == 200.0
            assert await login_failures.rows(s) == 2
        async with db.transaction() as s:
            await login_failures.reset(s, [("user", "ann")])
            await login_failures.sweep(s, 10_000.0, window=60.0, known_for=3600.0, max_keys=10)
        async with db.read() as s:
            assert await login_failures.rows(s) == 0
    finally:
        await db.close()
