"""Validating tokens with an external Keystone: the mapping onto personas, the verdict cache,
and what Keystone's failures become. Keystone here is a small in-memory stand-in answering
``/v3/auth/tokens`` as Keystone does; the real one is driven end to end by
tests/compat/test_openstack_keystone.py."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from berth import errors
from berth.config import Settings
from berth.services.identity.keystone import KeystoneTokens, ValidationCache, caller_from_token
from tests.fakes.keystone import KS, FakeKeystone, token_body


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _settings(**extra: Any) -> Settings:
    values: dict[str, Any] = {
        "identity_backend": "keystone",
        "keystone_url": KS,
        "keystone_service_password": FakeKeystone.SERVICE_PASSWORD,
        "keystone_token_cache_seconds": 30.0,
        **extra,
    }
    return Settings(**values)


@pytest.fixture
def keystone() -> FakeKeystone:
    return FakeKeystone()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _tokens(ks: FakeKeystone, clock: Clock, **extra: Any) -> KeystoneTokens:
    http = httpx.AsyncClient(transport=httpx.MockTransport(ks.handler))
    return KeystoneTokens(_settings(**extra), http, clock=clock)


# -- the mapping -------------------------------------------------------------


SERVICE_USERS = frozenset({"default/berth", "default/berth-agent"})


@pytest.mark.parametrize(
    ("roles", "expected"),
    [
        (["reader"], ("reader",)),
        (["member"], ("member", "reader")),
        (["Member"], ("member", "reader")),  # names compare as Keystone's do: case-blind
        # Keystone lists implied roles in the token; Berth's implications add none twice.
        (["reader", "member", "manager", "admin"], ("reader", "member", "manager", "admin")),
        (["admin"], ("admin", "member", "reader")),
        ([], ()),
    ],
)
def test_roles_map_onto_personas(roles: list[str], expected: tuple[str, ...]) -> None:
    assert caller_from_token(token_body(roles), SERVICE_USERS).roles == expected


def test_project_user_and_domain_come_from_the_validation() -> None:
    caller = caller_from_token(token_body(["member"]), SERVICE_USERS)
    assert (caller.user_id, caller.user_name) == ("alice-id", "alice")
    assert (caller.project_id, caller.project_name) == ("p1", "p1-name")
    assert caller.domain_id == "d7" and caller.audit_id == "audit-1"
    unscoped = caller_from_token(token_body([], project=None), SERVICE_USERS)
    assert unscoped.project_id is None and unscoped.domain_id == "default"


@pytest.mark.parametrize(
    ("user", "domain", "is_service"),
    [
        ("berth", ("default", "Default"), True),
        ("berth-agent", ("default", "Default"), True),
        ("nova", ("default", "Default"), False),  # every OpenStack service holds the role
        ("berth", ("other", "Other"), False),  # the same name in another domain
    ],
)
def test_only_berths_own_users_keep_the_service_persona(
    user: str, domain: tuple[str, str], is_service: bool
) -> None:
    body = token_body(["service", "member"], user=user, user_domain=domain)
    caller = caller_from_token(body, SERVICE_USERS)
    assert caller.is_service is is_service
    assert "member" in caller.roles


def test_a_body_without_a_user_is_refused() -> None:
    with pytest.raises(errors.Unauthorized):
        caller_from_token({"token": {"roles": []}}, SERVICE_USERS)


# -- the cache ---------------------------------------------------------------


def test_cache_entries_expire_after_ttl_or_their_lifetime(clock: Clock) -> None:
    cache = ValidationCache(10.0, 100, clock)
    caller = caller_from_token(token_body(["reader"]), SERVICE_USERS)
    cache.put("a", caller, lifetime=3600)
    cache.put("b", caller, lifetime=2)  # the token itself expires sooner than the ttl
    clock.now += 2.5
    assert cache.get("b") is None
    assert cache.get("a") is not None and cache.get("a").caller == caller  # type: ignore[union-attr]
    clock.now += 8
    assert cache.get("a") is None and len(cache) == 0


def test_cache_is_bounded_oldest_out_first(clock: Clock) -> None:
    cache = ValidationCache(60.0, 3, clock)
    for key in "abcd":
        cache.put(key, None, lifetime=60)
    assert len(cache) == 3 and cache.get("a") is None and cache.get("d") is not None


def test_cache_of_zero_seconds_remembers_nothing(clock: Clock) -> None:
    cache = ValidationCache(0.0, 3, clock)
    cache.put("a", None, lifetime=60)
    assert cache.get("a") is None


# -- validation against Keystone -------------------------------------------------


async def test_a_token_is_asked_once_then_served_from_the_cache(
    keystone: FakeKeystone, clock: Clock
) -> None:
    keystone.valid["t1"] = token_body(["member"])
    tokens = _tokens(keystone, clock)
    first = await tokens.caller_of("t1")
    second = await tokens.caller_of("t1")
    assert first == second and first.project_id == "p1"
    assert (keystone.logins, keystone.validations) == (1, 1)
    clock.now += 31  # past keystone_token_cache_seconds: Keystone is asked again
    del keystone.valid["t1"]  # ... and meanwhile the token was revoked
    with pytest.raises(errors.Unauthorized):
        await tokens.caller_of("t1")
    assert keystone.validations == 2


async def test_refused_tokens_are_remembered_too(keystone: FakeKeystone, clock: Clock) -> None:
    tokens = _tokens(keystone, clock)
    for _ in range(3):
        with pytest.raises(errors.Unauthorized):
            await tokens.caller_of("forged")
    assert keystone.validations == 1


async def test_empty_or_huge_tokens_never_reach_keystone(
    keystone: FakeKeystone, clock: Clock
) -> None:
    tokens = _tokens(keystone, clock)
    for token in ("", "x" * 9000):
        with pytest.raises(errors.Unauthorized):
            await tokens.caller_of(token)
    assert keystone.logins == keystone.validations == 0


async def test_a_refused_service_token_is_fetched_again_once(
    keystone: FakeKeystone, clock: Clock
) -> None:
    keystone.valid["t1"] = token_body(["reader"])
    keystone.valid["t2"] = token_body(["reader"], user="bob")
    tokens = _tokens(keystone, clock)
    await tokens.caller_of("t1")
    keystone.service_tokens.clear()  # Keystone's keys rotated: Berth's own token is stale
    assert (await tokens.caller_of("t2")).user_name == "bob"
    assert keystone.logins == 2


@pytest.mark.parametrize("status", [500, 503, 403])
async def test_keystone_failing_is_identity_unavailable(
    keystone: FakeKeystone, clock: Clock, status: int
) -> None:
    keystone.status = status
    tokens = _tokens(keystone, clock)
    with pytest.raises(errors.IdentityUnavailable):
        await tokens.caller_of("t1")


async def test_keystone_down_is_identity_unavailable_and_not_remembered(
    keystone: FakeKeystone, clock: Clock
) -> None:
    keystone.valid["t1"] = token_body(["reader"])
    tokens = _tokens(keystone, clock)
    keystone.down = True
    with pytest.raises(errors.IdentityUnavailable, match="unavailable"):
        await tokens.caller_of("t1")
    keystone.down = False
    assert (await tokens.caller_of("t1")).roles == ("reader",)


async def test_wrong_service_password_is_identity_unavailable(
    keystone: FakeKeystone, clock: Clock
) -> None:
    tokens = _tokens(keystone, clock, keystone_service_password="wrong")
    with pytest.raises(errors.IdentityUnavailable, match="service credentials"):
        await tokens.caller_of("t1")


# -- settings ------------------------------------------------------------------


def test_keystone_mode_needs_a_url_and_the_v3_url_is_derived() -> None:
    with pytest.raises(ValidationError, match="keystone_url"):
        Settings(identity_backend="keystone")
    for given in (KS, f"{KS}/", f"{KS}/v3", f"{KS}/v3/"):
        assert _settings(keystone_url=given).keystone_v3_url == f"{KS}/v3"


def test_keystone_mode_needs_the_service_password() -> None:
    with pytest.raises(ValueError, match="keystone_service_password"):
        KeystoneTokens(_settings(keystone_service_password=None))
