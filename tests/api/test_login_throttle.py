"""Backoff on failed passwords through the real app: the identity API and the dashboard login.

The throttle's clock is the app's seam for time: tests move it instead of sleeping.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from berth.api.app import create_app
from berth.config import Settings
from berth.identity import passwords
from berth.services.identity import LoginThrottle, login_throttle, source_address
from berth.services.identity.throttle import ThrottleLimits
from berth.store.tables import LoginFailureRow
from tests.conftest import ADMIN_PASSWORD, make_settings
from tests.helpers import make_member

TOKENS = "/identity/v3/auth/tokens"
PW = "pw-" + "x" * 8
ATTACKER = ("203.0.113.7", 40000)


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return make_settings(
        tmp_path,
        db_url,
        login_failures_per_source=12,
        trusted_proxies=["10.9.0.0/16"],
    )


@pytest.fixture
def clock(app: FastAPI) -> Clock:
    fake = Clock()
    state = app.state.berth
    login_throttle(state.db, state.settings).clock = fake
    return fake


def client_from(app: FastAPI, address: tuple[str, int]) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=address)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
async def attacker(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_from(app, ATTACKER) as c:
        yield c


def login_body(user: str, password: str, project: str | None = None) -> dict[str, Any]:
    auth: dict[str, Any] = {
        "identity": {
            "methods": ["password"],
            "password": {
                "user": {"name": user, "domain": {"name": "Default"}, "password": password}
            },
        }
    }
    if project:
        auth["scope"] = {"project": {"name": project, "domain": {"name": "Default"}}}
    return {"auth": auth}


async def login(client: httpx.AsyncClient, user: str, password: str, **kw: str) -> httpx.Response:
    return await client.post(TOKENS, json=login_body(user, password), headers=kw)


def throttled(r: httpx.Response) -> int:
    assert r.status_code == 429, r.text
    err = r.json()["error"]
    assert err["code"] == 429 and err["title"] == "Too Many Requests"
    assert "try again in" in err["message"]
    wait = int(r.headers["retry-after"])
    assert wait > 0
    return wait


async def test_repeated_wrong_passwords_back_off_and_refuse_even_the_right_one(
    client: httpx.AsyncClient, attacker: httpx.AsyncClient, admin_token: str, clock: Clock
) -> None:
    await make_member(client, admin_token, "team-a", "alice", PW)
    await make_member(client, admin_token, "team-b", "bob", PW)
    statuses = [(await login(attacker, "alice", f"guess-{i}")).status_code for i in range(20)]
    assert statuses[:5] == [401] * 5 and set(statuses[5:]) == {429}
    wait = throttled(await login(attacker, "alice", PW))  # right, but not even checked
    assert wait == 2  # the first lock-out: login_backoff_seconds
    assert (await login(attacker, "bob", PW)).status_code == 201  # other users are unaffected
    clock.now += wait
    assert (await login(attacker, "alice", PW)).status_code == 201  # the lock ended
    # ...and the success reset alice's count: five more tries before the next lock.
    statuses = [(await login(attacker, "alice", "nope")).status_code for _ in range(6)]
    assert statuses == [401] * 5 + [429]


async def test_the_lock_doubles_per_failure_up_to_the_cap(
    attacker: httpx.AsyncClient, clock: Clock
) -> None:
    waits = []
    for _ in range(5):
        assert (await login(attacker, "admin", "nope")).status_code == 401
    for _ in range(12):
        waits.append(throttled(await login(attacker, "admin", "nope")))
        clock.now += waits[-1]
        assert (await login(attacker, "admin", "nope")).status_code == 401  # one try per lock
    assert waits[:6] == [2, 4, 8, 16, 32, 64]
    assert max(waits) == 900 and waits[-1] == 900  # login_backoff_max_seconds
    clock.now += 900  # a quiet window: the count is forgotten
    assert (await login(attacker, "admin", ADMIN_PASSWORD)).status_code == 201


async def test_a_user_still_logs_in_from_where_they_logged_in_before(
    client: httpx.AsyncClient, attacker: httpx.AsyncClient, admin_token: str, clock: Clock
) -> None:
    # make_member logged alice in from the test client's address once.
    await make_member(client, admin_token, "team-a", "alice", PW)
    for _ in range(8):
        await login(attacker, "alice", "guess")
    throttled(await login(attacker, "alice", PW))
    async with client_from(app=client_app(client), address=("198.51.100.4", 1)) as elsewhere:
        throttled(await login(elsewhere, "alice", PW))  # the per-user rule holds for new places
    assert (await login(client, "alice", PW)).status_code == 201
    # From there, wrong passwords still back off on their own count.
    statuses = [(await login(client, "alice", "typo")).status_code for _ in range(6)]
    assert statuses == [401] * 5 + [429]


def client_app(client: httpx.AsyncClient) -> FastAPI:
    transport = client._transport  # the ASGI transport the fixture built
    assert isinstance(transport, httpx.ASGITransport)
    app = transport.app
    assert isinstance(app, FastAPI)
    return app


async def test_one_address_spraying_many_users_backs_off(
    client: httpx.AsyncClient, attacker: httpx.AsyncClient, admin_token: str, clock: Clock
) -> None:
    statuses = [(await login(attacker, f"user-{i}", "Winter2024!")).status_code for i in range(15)]
    assert statuses[:12] == [401] * 12 and set(statuses[12:]) == {429}
    r = await login(attacker, "admin", ADMIN_PASSWORD)
    assert "from your address" in r.json()["error"]["message"]
    throttled(r)
    assert (await login(client, "admin", ADMIN_PASSWORD)).status_code == 201  # other addresses


async def test_parallel_guesses_are_checked_no_faster_than_one_by_one(
    attacker: httpx.AsyncClient, clock: Clock
) -> None:
    found = await asyncio.gather(*(login(attacker, "admin", f"g{i}") for i in range(40)))
    statuses = sorted(r.status_code for r in found)
    assert statuses == [401] * 5 + [429] * 35


async def test_parallel_right_passwords_are_never_refused(
    client: httpx.AsyncClient, clock: Clock
) -> None:
    found = await asyncio.gather(*(login(client, "admin", ADMIN_PASSWORD) for _ in range(20)))
    assert {r.status_code for r in found} == {201}


async def test_a_flood_of_right_passwords_is_bounded_and_never_starves_the_process(
    app: FastAPI,
    client: httpx.AsyncClient,
    attacker: httpx.AsyncClient,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Password checks (scrypt, ~50 ms of a core each) run on threads of their own: a
    flood of them held every thread of the process's shared pool, and every other
    thread hop (a session's input, a wait for SQLite's lock) queued behind it. One
    address has at most ``max_password_checks_per_client`` checks waiting or running;
    one more is a 429 to retry in a second; another address is not refused."""
    app.state.berth.settings.max_password_checks_per_client = 8
    gate = threading.Event()
    check = passwords.verify_password

    def held(password: str, encoded: str) -> bool:
        gate.wait(20)
        return check(password, encoded)

    monkeypatch.setattr(passwords, "verify_password", held)
    flood = [asyncio.create_task(login(attacker, "admin", ADMIN_PASSWORD)) for _ in range(40)]
    try:
        refused = []
        for answer in asyncio.as_completed(flood, timeout=10):  # the refusals, at once
            refused.append(await answer)
            if len(refused) == 32:
                break
        # Checks are held on their threads: the process's own pool still serves.
        assert await asyncio.wait_for(asyncio.to_thread(lambda: "free"), 5) == "free"
        for r in refused:
            assert r.status_code == 429 and r.headers["retry-after"] == "1", r.text
            assert "max_password_checks_per_client" in r.json()["error"]["message"]
        other = asyncio.create_task(login(client, "admin", ADMIN_PASSWORD))
        await asyncio.sleep(0.1)
        assert not other.done()  # waiting for a thread, not refused
    finally:
        gate.set()
    assert (await other).status_code == 201
    assert sorted(r.status_code for r in await asyncio.gather(*flood)) == [201] * 8 + [429] * 32
    assert (await login(attacker, "admin", ADMIN_PASSWORD)).status_code == 201  # counted down


async def test_forwarded_for_counts_only_from_a_trusted_proxy(
    app: FastAPI, attacker: httpx.AsyncClient, clock: Clock
) -> None:
    # Untrusted peers cannot dodge the per-address rule by writing the header.
    for i in range(12):
        await login(attacker, f"u{i}", "x", **{"X-Forwarded-For": f"192.0.2.{i}"})
    throttled(await login(attacker, "admin", ADMIN_PASSWORD, **{"X-Forwarded-For": "192.0.2.99"}))
    # Behind a trusted proxy, each client behind it has its own count.
    async with client_from(app, ("10.9.0.5", 1)) as proxy:
        for i in range(12):
            await login(proxy, f"u{i}", "x", **{"X-Forwarded-For": "192.0.2.1"})
        r = await login(proxy, "admin", ADMIN_PASSWORD, **{"X-Forwarded-For": "192.0.2.1"})
        throttled(r)
        r = await login(proxy, "admin", ADMIN_PASSWORD, **{"X-Forwarded-For": "192.0.2.2"})
        assert r.status_code == 201


@pytest.mark.parametrize(
    ("peer", "header", "trusted", "expected"),
    [
        ("203.0.113.7", "1.2.3.4", [], "203.0.113.7"),
        ("203.0.113.7", "1.2.3.4", ["10.0.0.0/8"], "203.0.113.7"),
        ("10.0.0.2", "1.2.3.4", ["10.0.0.0/8"], "1.2.3.4"),
        ("10.0.0.2", "6.6.6.6, 1.2.3.4, 10.0.0.3", ["10.0.0.0/8"], "1.2.3.4"),
        ("10.0.0.2", None, ["10.0.0.0/8"], "10.0.0.2"),
        (None, None, [], "unknown"),
    ],
)
def test_the_source_address_trusts_only_configured_proxies(
    peer: str | None, header: str | None, trusted: list[str], expected: str
) -> None:
    assert source_address(peer, header, trusted) == expected


# -- the dashboard login -----------------------------------------------------


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


async def dashboard_login(client: httpx.AsyncClient, user: str, password: str) -> httpx.Response:
    page = await client.get("/login")
    form = {
        "csrf": _csrf(page.text),
        "username": user,
        "password": password,
        "project": "",
        "domain": "Default",
        "next": "/containers",
    }
    return await client.post("/login", data=form)


async def test_the_dashboard_login_backs_off_the_same_way(
    client: httpx.AsyncClient, attacker: httpx.AsyncClient, admin_token: str, clock: Clock
) -> None:
    await make_member(client, admin_token, "team-a", "alice", PW)
    await make_member(client, admin_token, "team-b", "bob", PW)
    statuses = [(await dashboard_login(attacker, "alice", "guess")).status_code for _ in range(20)]
    assert statuses[:5] == [401] * 5 and set(statuses[5:]) == {429}
    r = await dashboard_login(attacker, "alice", PW)
    assert r.status_code == 429 and int(r.headers["retry-after"]) == 2
    assert "Too many failed logins for this user: try again in 2 seconds." in r.text
    async with client_from(client_app(client), ATTACKER) as same_address:
        assert (await dashboard_login(same_address, "bob", PW)).status_code == 303
    # The API and the dashboard share one count: the lock holds on the API too.
    throttled(await login(attacker, "alice", PW))
    clock.now += 2
    r = await dashboard_login(attacker, "alice", PW)
    assert r.status_code == 303 and r.headers["location"] == "/containers"


# -- several API processes over one database -----------------------------------


@pytest.fixture
async def second(settings: Settings, app: FastAPI, clock: Clock) -> AsyncIterator[FastAPI]:
    """Another app (its own engine and pool) over the same database, on the same clock."""
    other = create_app(settings, run_workers=False)
    async with other.router.lifespan_context(other):
        state = other.state.berth
        login_throttle(state.db, state.settings).clock = clock
        yield other
    assert not other.state.berth.saw_server_error


async def test_failures_on_one_api_process_lock_the_user_on_another(
    app: FastAPI, second: FastAPI, clock: Clock
) -> None:
    async with client_from(app, ATTACKER) as one, client_from(second, ("198.51.100.9", 1)) as two:
        both = (one, two)
        statuses = [(await login(both[i % 2], "admin", f"g{i}")).status_code for i in range(6)]
        assert statuses == [401] * 5 + [429]  # five in all, not five per process
        assert throttled(await login(two, "admin", ADMIN_PASSWORD)) == 2
        assert throttled(await login(one, "admin", ADMIN_PASSWORD)) == 2
        clock.now += 2
        assert (await login(two, "admin", "again")).status_code == 401
        assert throttled(await login(one, "admin", ADMIN_PASSWORD)) == 4  # the lock doubled
        clock.now += 4
        assert (await login(one, "admin", ADMIN_PASSWORD)).status_code == 201


async def test_parallel_guesses_on_two_processes_are_all_counted(
    app: FastAPI, second: FastAPI, clock: Clock
) -> None:
    async with client_from(app, ATTACKER) as one, client_from(second, ATTACKER) as two:
        found = await asyncio.gather(
            *(login((one, two)[i % 2], "admin", f"g{i}") for i in range(40))
        )
        checked = sum(r.status_code == 401 for r in found)
        # Each process lets through only the failures still allowed, so at most
        # twice one process's; every one checked is counted, exactly.
        assert 5 <= checked <= 10 and checked + sum(r.status_code == 429 for r in found) == 40
        async with app.state.berth.db.read() as s:
            counted = await s.scalar(
                select(LoginFailureRow.failures).where(LoginFailureRow.kind == "source")
            )
        assert counted == checked
        throttled(await login(two, "admin", ADMIN_PASSWORD))


async def test_old_rows_are_forgotten_and_a_spray_of_names_stays_bounded(
    app: FastAPI, clock: Clock
) -> None:
    db = app.state.berth.db
    limits = ThrottleLimits(allowed=5, window=900.0, backoff=2.0, backoff_max=900.0)

    async def spray(throttle: LoginThrottle, start: int, n: int) -> None:
        for i in range(start, start + n):  # a new name from a new address each time
            async with throttle.attempt(f"nobody-{i}", f"192.0.2.{i % 250}/{i}") as done:
                done(False)

    roomy = LoginThrottle(db, limits, limits, clock=clock, max_keys=10_000)
    await spray(roomy, 0, 300)
    assert await roomy.rows() == 600  # a user and a source row each, all within the window
    clock.now += 901
    await spray(roomy, 300, 128)  # enough new rows to sweep: the expired ones go
    assert await roomy.rows() <= 256

    capped = LoginThrottle(db, limits, limits, clock=clock, max_keys=20)
    await spray(capped, 1000, 600)
    assert await capped.rows() <= 20 + 256  # the cap, plus what one sweep period adds
