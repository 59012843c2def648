"""The pure identity core: token secrets and the service catalog."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest

from berth.identity import catalog, tokens


def test_tokens_are_random_and_stored_as_sha256() -> None:
    a, b = tokens.new_token(), tokens.new_token()
    assert a != b and len(a) >= 43
    assert tokens.token_digest(a) == hashlib.sha256(a.encode()).hexdigest()
    assert len(tokens.new_audit_id()) == 22


def test_time_format_is_keystones() -> None:
    moment = dt.datetime(2026, 11, 21, 15, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert tokens.format_time(moment) == "2026-11-21T14:00:00.000000Z"
    with pytest.raises(ValueError):
        tokens.format_time(dt.datetime(2026, 1, 1))


def _urls(entries: list[dict[str, object]]) -> dict[str, set[str]]:
    result: dict[str, set[str]] = {}
    for e in entries:
        endpoints = e["endpoints"]
        assert isinstance(endpoints, list)
        result[str(e["type"])] = {str(ep["url"]) for ep in endpoints}
    return result


def test_catalog_has_identity_and_container_on_three_interfaces() -> None:
    entries = catalog.build_catalog("https://cloud.example/", "RegionTwo")
    assert _urls(entries) == {
        "identity": {"https://cloud.example/identity/v3"},
        "container": {"https://cloud.example/container/v1"},
    }
    for entry in entries:
        endpoints = entry["endpoints"]
        assert sorted(ep["interface"] for ep in endpoints) == ["admin", "internal", "public"]
        assert all(ep["region_id"] == ep["region"] == "RegionTwo" for ep in endpoints)
        assert entry["id"] and entry["name"]


def test_catalog_takes_extra_services_and_is_stable() -> None:
    entries = catalog.build_catalog("http://h:1", "R", [catalog.CONTAINER_INFRA, catalog.IDENTITY])
    assert [e["type"] for e in entries] == ["identity", "container", "container-infra"]
    assert _urls(entries)["container-infra"] == {"http://h:1/container-infra/v1"}
    assert entries == catalog.build_catalog("http://h:1", "R", [catalog.CONTAINER_INFRA])


def test_password_auth_bodies_are_keystones_shapes() -> None:
    """The one builder of /v3/auth/tokens password bodies: scoped by name or id, unscoped."""
    from berth.identity.auth_request import by_name, password_auth, project_ref

    scoped = password_auth("u", "pw", by_name("Default"), project_ref(None, "p", "Dom"))
    assert scoped == {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": "u", "domain": {"name": "Default"}, "password": "pw"}
                },
            },
            "scope": {"project": {"name": "p", "domain": {"name": "Dom"}}},
        }
    }
    by_id = password_auth("u", "pw", by_name("Default"), project_ref("abc", "p", "Dom"))
    assert by_id["auth"]["scope"] == {"project": {"id": "abc"}}
    unscoped = password_auth("u", "pw", {"id": "default"})
    assert "scope" not in unscoped["auth"]
    assert unscoped["auth"]["identity"]["password"]["user"]["domain"] == {"id": "default"}
