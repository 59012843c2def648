"""The Keystone-v3-compatible identity API through the real app (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import re
import stat
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from berth import errors
from berth.config import Settings
from berth.identity import passwords
from berth.identity.models import AuthRequest, PasswordCredentials, ScopeRequest
from berth.identity.tokens import token_digest
from berth.services import identity
from berth.store.base import utcnow
from berth.store.db import Database
from berth.store.tables.identity import RoleAssignmentRow, TokenRow, UserRow
from tests.conftest import ADMIN_PASSWORD, AGENT_PASSWORD, issue_token

V3 = "/identity/v3"
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
AUTH_BODY = {
    "error": {
        "code": 401,
        "title": "Unauthorized",
        "message": "The request you have made requires authentication.",
    }
}


def h(token: str, subject: str | None = None) -> dict[str, str]:
    headers = {"X-Auth-Token": token}
    if subject is not None:
        headers["X-Subject-Token"] = subject
    return headers


def password_body(
    user: dict[str, Any], password: str, scope: dict[str, Any] | str | None
) -> dict[str, Any]:
    auth: dict[str, Any] = {
        "identity": {"methods": ["password"], "password": {"user": {**user, "password": password}}}
    }
    if scope is not None:
        auth["scope"] = scope
    return {"auth": auth}


def by_name(name: str) -> dict[str, Any]:
    return {"name": name, "domain": {"name": "Default"}}


def project_scope(name: str) -> dict[str, Any]:
    return {"project": {"name": name, "domain": {"name": "Default"}}}


def keystone_error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    err: dict[str, Any] = r.json()["error"]
    assert err["code"] == status and err["title"] and err["message"]
    return err


async def role_id(client: httpx.AsyncClient, admin: str, name: str) -> str:
    r = await client.get(f"{V3}/roles", params={"name": name}, headers=h(admin))
    assert r.status_code == 200, r.text
    (role,) = r.json()["roles"]
    return str(role["id"])


async def make_project(client: httpx.AsyncClient, admin: str, name: str) -> str:
    r = await client.post(f"{V3}/projects", headers=h(admin), json={"project": {"name": name}})
    assert r.status_code == 201, r.text
    return str(r.json()["project"]["id"])


async def make_user(
    client: httpx.AsyncClient,
    admin: str,
    name: str,
    password: str = "user-pw-123",
    grants: dict[str, str] | None = None,
) -> str:
    """Create a user and grant it ``{project_id: role_name}``; return its id."""
    r = await client.post(
        f"{V3}/users", headers=h(admin), json={"user": {"name": name, "password": password}}
    )
    assert r.status_code == 201, r.text
    uid = str(r.json()["user"]["id"])
    for pid, role in (grants or {}).items():
        rid = await role_id(client, admin, role)
        r = await client.put(f"{V3}/projects/{pid}/users/{uid}/roles/{rid}", headers=h(admin))
        assert r.status_code == 204, r.text
    return uid


def db_of(app: FastAPI) -> Database:
    db: Database = app.state.berth.db
    return db


# -- discovery ---------------------------------------------------------------


async def test_version_discovery(client: httpx.AsyncClient) -> None:
    for path in ("/identity", "/identity/"):
        r = await client.get(path)
        assert r.status_code == 300, path
        (doc,) = r.json()["versions"]["values"]
        assert doc["id"] == "v3.14" and doc["status"] == "stable"
        assert doc["links"][0] == {"rel": "self", "href": "http://testserver/identity/v3/"}
    for path in ("/identity/v3", "/identity/v3/"):
        r = await client.get(path)
        assert r.status_code == 200, path
        doc = r.json()["version"]
        assert doc["id"] == "v3.14" and doc["status"] == "stable" and doc["updated"]
        assert doc["links"] == [{"rel": "self", "href": "http://testserver/identity/v3/"}]
        assert doc["media-types"][0]["type"] == "application/vnd.openstack.identity-v3+json"


# -- issuing tokens ----------------------------------------------------------


async def test_password_token_by_name(client: httpx.AsyncClient) -> None:
    body = password_body(by_name("admin"), ADMIN_PASSWORD, project_scope("admin"))
    r = await client.post(f"{V3}/auth/tokens", json=body)
    assert r.status_code == 201, r.text
    assert r.headers["x-subject-token"]
    token = r.json()["token"]
    assert token["methods"] == ["password"]
    assert token["user"]["name"] == "admin"
    assert token["user"]["domain"] == {"id": "default", "name": "Default"}
    assert token["user"]["password_expires_at"] is None
    assert token["project"]["name"] == "admin"
    assert token["project"]["domain"] == {"id": "default", "name": "Default"}
    assert [x["name"] for x in token["roles"]] == ["admin", "member", "reader"]
    assert all(x["id"] for x in token["roles"])
    assert TIME.match(token["expires_at"]) and TIME.match(token["issued_at"])
    assert token["is_domain"] is False and len(token["audit_ids"]) == 1
    catalog = {e["type"]: e for e in token["catalog"]}
    assert set(catalog) == {"identity", "container", "container-infra"}
    assert catalog["container-infra"]["endpoints"][0]["url"].endswith("/container-infra/v1")
    container = catalog["container"]["endpoints"]
    assert {e["interface"] for e in container} == {"public", "internal", "admin"}
    public = next(e for e in container if e["interface"] == "public")
    assert public["url"].endswith("/container/v1") and public["region_id"] == "RegionOne"
    identity_public = catalog["identity"]["endpoints"][0]["url"]
    assert identity_public.endswith("/identity/v3")


async def test_password_token_by_id_and_ttl(
    client: httpx.AsyncClient, admin_token: str, settings: Settings
) -> None:
    r = await client.get(f"{V3}/auth/tokens", headers=h(admin_token, admin_token))
    ids = r.json()["token"]
    body = password_body(
        {"id": ids["user"]["id"]}, ADMIN_PASSWORD, {"project": {"id": ids["project"]["id"]}}
    )
    r = await client.post(f"{V3}/auth/tokens?nocatalog", json=body)
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    assert token["project"]["id"] == ids["project"]["id"] and "catalog" not in token
    issued = dt.datetime.fromisoformat(token["issued_at"].replace("Z", "+00:00"))
    expires = dt.datetime.fromisoformat(token["expires_at"].replace("Z", "+00:00"))
    assert (expires - issued).total_seconds() == pytest.approx(settings.token_ttl_seconds, abs=2)


async def test_unscoped_token_then_rescope_with_token_method(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    p1 = await make_project(client, admin_token, "rescope-one")
    p2 = await make_project(client, admin_token, "rescope-two")
    await make_user(client, admin_token, "roamer", grants={p1: "member", p2: "reader"})
    r = await client.post(
        f"{V3}/auth/tokens", json=password_body(by_name("roamer"), "user-pw-123", "unscoped")
    )
    assert r.status_code == 201, r.text
    unscoped = r.json()["token"]
    assert "project" not in unscoped and "roles" not in unscoped and "catalog" not in unscoped
    r = await client.get(f"{V3}/auth/projects", headers=h(r.headers["x-subject-token"]))
    assert r.status_code == 200
    assert sorted(p["name"] for p in r.json()["projects"]) == ["rescope-one", "rescope-two"]

    first = await issue_token(client, "roamer", "user-pw-123", "rescope-one")
    body = {
        "auth": {
            "identity": {"methods": ["token"], "token": {"id": first}},
            "scope": {"project": {"id": p2}},
        }
    }
    r = await client.post(f"{V3}/auth/tokens", json=body)
    assert r.status_code == 201, r.text
    rescoped = r.json()["token"]
    assert rescoped["project"]["id"] == p2
    assert [x["name"] for x in rescoped["roles"]] == ["reader"]
    assert rescoped["methods"][0] == "token" and "password" in rescoped["methods"]
    parent = (await client.get(f"{V3}/auth/tokens", headers=h(first, first))).json()["token"]
    assert rescoped["expires_at"] == parent["expires_at"]  # rescoping never extends a token
    # No role on the admin project: no token for it.
    body["auth"]["scope"] = project_scope("admin")
    keystone_error(await client.post(f"{V3}/auth/tokens", json=body), 401)


async def test_no_scope_uses_the_default_project(client: httpx.AsyncClient) -> None:
    r = await client.post(
        f"{V3}/auth/tokens", json=password_body(by_name("admin"), ADMIN_PASSWORD, None)
    )
    assert r.status_code == 201, r.text
    assert r.json()["token"]["project"]["name"] == "admin"


@pytest.mark.parametrize(
    ("user", "password"),
    [
        (by_name("admin"), "wrong-password"),
        (by_name("nobody"), ADMIN_PASSWORD),
        ({"id": "0" * 32}, ADMIN_PASSWORD),
        ({"name": "admin", "domain": {"id": "other"}}, ADMIN_PASSWORD),
    ],
)
async def test_bad_credentials_are_401(
    client: httpx.AsyncClient, user: dict[str, Any], password: str
) -> None:
    r = await client.post(
        f"{V3}/auth/tokens", json=password_body(user, password, project_scope("admin"))
    )
    assert r.status_code == 401
    assert r.json() == AUTH_BODY
    assert "x-subject-token" not in r.headers
    assert r.headers["www-authenticate"].startswith("Keystone")


async def test_unknown_project_and_unsupported_method_are_401(client: httpx.AsyncClient) -> None:
    body = password_body(by_name("admin"), ADMIN_PASSWORD, project_scope("no-such-project"))
    keystone_error(await client.post(f"{V3}/auth/tokens", json=body), 401)
    body = {"auth": {"identity": {"methods": ["totp"], "totp": {}}}}
    keystone_error(await client.post(f"{V3}/auth/tokens", json=body), 401)


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"",
        b"[1, 2]",
        b'{"auth": "x"}',
        b'{"auth": {"identity": {"methods": []}}}',
        b'{"auth": {"identity": {"methods": ["password"]}}}',
        b'{"auth": {"identity": {"methods": ["token"], "token": {}}}}',
        b'{"auth": {"identity": {"methods": ["password"], "password": {"user": '
        b'{"id": "a", "password": "x"}}}, "scope": "everything"}}',
        b'{"auth": {"identity": {"methods": ["password"], "password": {"user": {}}}}}',
        b'{"auth": {"identity": {"methods": ["password"], '
        b'"password": {"user": {"name": "admin", "password": "x"}}}}}',
        b'{"auth": {"identity": {"methods": ["password"], "password": {"user": '
        b'{"id": "a", "password": "x"}}}, "scope": {"project": {"name": "admin"}}}}',
    ],
)
async def test_malformed_auth_bodies_are_400(client: httpx.AsyncClient, content: bytes) -> None:
    r = await client.post(
        f"{V3}/auth/tokens", content=content, headers={"Content-Type": "application/json"}
    )
    keystone_error(r, 400)


# -- validating and revoking -------------------------------------------------


async def test_validate_head_and_revoke(client: httpx.AsyncClient, admin_token: str) -> None:
    other = await issue_token(client, "admin", ADMIN_PASSWORD, "admin")
    r = await client.get(f"{V3}/auth/tokens", headers=h(admin_token, other))
    assert r.status_code == 200 and r.headers["x-subject-token"] == other
    assert r.json()["token"]["user"]["name"] == "admin"
    assert (
        await client.head(f"{V3}/auth/tokens", headers=h(admin_token, other))
    ).status_code == 200
    r = await client.delete(f"{V3}/auth/tokens", headers=h(admin_token, other))
    assert r.status_code == 204
    assert (
        await client.head(f"{V3}/auth/tokens", headers=h(admin_token, other))
    ).status_code == 404
    keystone_error(await client.get(f"{V3}/auth/tokens", headers=h(admin_token, other)), 404)
    keystone_error(await client.delete(f"{V3}/auth/tokens", headers=h(admin_token, other)), 404)
    r = await client.get(f"{V3}/projects", headers=h(other))
    assert r.status_code == 401 and r.json() == AUTH_BODY
    keystone_error(await client.get(f"{V3}/auth/tokens", headers=h(admin_token)), 400)
    keystone_error(await client.get(f"{V3}/auth/tokens", headers={"X-Subject-Token": other}), 401)


async def test_expired_token_is_401(
    client: httpx.AsyncClient, app: FastAPI, admin_token: str
) -> None:
    doomed = await issue_token(client, "admin", ADMIN_PASSWORD, "admin")
    assert (await client.get(f"{V3}/projects", headers=h(doomed))).status_code == 200
    past = utcnow() - dt.timedelta(seconds=1)
    async with db_of(app).transaction() as s:
        await s.execute(
            update(TokenRow).where(TokenRow.digest == token_digest(doomed)).values(expires_at=past)
        )
    r = await client.get(f"{V3}/projects", headers=h(doomed))
    assert r.status_code == 401 and r.json() == AUTH_BODY
    keystone_error(await client.get(f"{V3}/auth/tokens", headers=h(admin_token, doomed)), 404)
    body = {"auth": {"identity": {"methods": ["token"], "token": {"id": doomed}}}}
    keystone_error(await client.post(f"{V3}/auth/tokens", json=body), 401)


async def test_a_user_holds_at_most_max_tokens_per_user(
    client: httpx.AsyncClient, app: FastAPI, admin_token: str
) -> None:
    """A loop of re-scopes ends the user's oldest tokens, not the table's growth."""
    app.state.berth.settings.max_tokens_per_user = 10
    pid = await make_project(client, admin_token, "looping")
    uid = await make_user(client, admin_token, "looper", grants={pid: "member"})
    issued = [await issue_token(client, "looper", "user-pw-123", "looping")]
    listing = "/container/v1/containers"
    r = await client.get(listing, headers={"X-Auth-Token": issued[0]})
    assert r.status_code == 200, r.text  # validated once: in the token cache now
    for _ in range(10):
        identity = {"methods": ["token"], "token": {"id": issued[-1]}}
        body = {"auth": {"identity": identity, "scope": {"project": {"id": pid}}}}
        r = await client.post(f"{V3}/auth/tokens", json=body)
        assert r.status_code == 201, r.text
        issued.append(r.headers["x-subject-token"])
    async with db_of(app).read() as s:
        held = (await s.execute(select(TokenRow.digest).where(TokenRow.user_id == uid))).all()
    assert len(held) == 9  # eleven issued; over ten, the newest nine tenths stay
    for gone in issued[:2]:
        r = await client.get(listing, headers={"X-Auth-Token": gone})
        assert r.status_code == 401, r.text
        keystone_error(await client.get(f"{V3}/auth/tokens", headers=h(admin_token, gone)), 404)
    for kept in issued[2:]:
        r = await client.get(listing, headers={"X-Auth-Token": kept})
        assert r.status_code == 200, r.text
    # Another user's tokens are not this user's bound's business.
    assert (await client.get(f"{V3}/projects", headers=h(admin_token))).status_code == 200


async def test_short_ttl_expires(client: httpx.AsyncClient, app: FastAPI) -> None:
    app.state.berth.settings.token_ttl_seconds = 0
    token = await issue_token(client, "admin", ADMIN_PASSWORD, "admin")
    keystone_error(await client.get(f"{V3}/projects", headers=h(token)), 401)


async def test_users_see_only_their_own_tokens(client: httpx.AsyncClient, admin_token: str) -> None:
    pid = await make_project(client, admin_token, "own-tokens")
    await make_user(client, admin_token, "tina", grants={pid: "member"})
    tina = await issue_token(client, "tina", "user-pw-123", "own-tokens")
    assert (await client.get(f"{V3}/auth/tokens", headers=h(tina, tina))).status_code == 200
    keystone_error(await client.get(f"{V3}/auth/tokens", headers=h(tina, admin_token)), 403)
    keystone_error(await client.delete(f"{V3}/auth/tokens", headers=h(tina, admin_token)), 403)
    r = await client.get(f"{V3}/auth/catalog", headers=h(tina))
    assert r.status_code == 200
    assert {e["type"] for e in r.json()["catalog"]} == {"identity", "container", "container-infra"}


# -- roles and policy --------------------------------------------------------


async def test_member_implies_reader(
    client: httpx.AsyncClient, app: FastAPI, admin_token: str
) -> None:
    pid = await make_project(client, admin_token, "implied")
    await make_user(client, admin_token, "mia", grants={pid: "member"})
    token = await issue_token(client, "mia", "user-pw-123", "implied")
    r = await client.get(f"{V3}/auth/tokens", headers=h(token, token))
    assert [x["name"] for x in r.json()["token"]["roles"]] == ["member", "reader"]
    ctx = await identity.validate_token(db_of(app), token)
    assert ctx.roles == ("member", "reader") and not ctx.is_admin
    assert ctx.project_id == pid and ctx.project_name == "implied" and ctx.user_name == "mia"
    admin = await identity.validate_token(db_of(app), admin_token)
    assert admin.roles == ("admin", "member", "reader") and admin.is_admin


async def test_non_admin_gets_403_on_management(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    pid = await make_project(client, admin_token, "plain")
    uid = await make_user(client, admin_token, "pat", grants={pid: "member"})
    other = await make_user(client, admin_token, "quinn")
    pat = await issue_token(client, "pat", "user-pw-123", "plain")
    r = await client.post(f"{V3}/projects", headers=h(pat), json={"project": {"name": "mine"}})
    err = keystone_error(r, 403)
    assert err["title"] == "Forbidden" and "identity:create_project" in err["message"]
    for path in ("/projects", "/users", "/roles", f"/users/{other}", "/role_assignments"):
        keystone_error(await client.get(V3 + path, headers=h(pat)), 403)
    keystone_error(
        await client.patch(f"{V3}/users/{uid}", headers=h(pat), json={"user": {"name": "x"}}), 403
    )
    # ...but a user may read itself, its projects and its own assignments.
    assert (await client.get(f"{V3}/users/{uid}", headers=h(pat))).status_code == 200
    assert (await client.get(f"{V3}/projects/{pid}", headers=h(pat))).status_code == 200
    r = await client.get(f"{V3}/users/{uid}/projects", headers=h(pat))
    assert [p["id"] for p in r.json()["projects"]] == [pid]
    r = await client.get(f"{V3}/role_assignments", params={"user.id": uid}, headers=h(pat))
    assert r.status_code == 200 and len(r.json()["role_assignments"]) == 1
    r = await client.get(f"{V3}/domains", headers=h(pat))
    assert [d["id"] for d in r.json()["domains"]] == ["default"]


async def test_unauthenticated_management_is_401(client: httpx.AsyncClient) -> None:
    r = await client.get(f"{V3}/projects")
    assert r.status_code == 401 and r.json() == AUTH_BODY
    r = await client.get(f"{V3}/projects", headers=h("bogus-token"))
    assert r.status_code == 401 and r.json() == AUTH_BODY


# -- CRUD --------------------------------------------------------------------


async def test_project_crud(client: httpx.AsyncClient, admin_token: str) -> None:
    a = h(admin_token)
    body = {
        "project": {
            "name": "alpha",
            "description": "first",
            "domain_id": "default",
            "enabled": True,
            "tags": ["t1"],
            "color": "blue",
        }
    }
    r = await client.post(f"{V3}/projects", headers=a, json=body)
    assert r.status_code == 201, r.text
    project = r.json()["project"]
    pid = project["id"]
    assert project["links"]["self"] == f"http://testserver{V3}/projects/{pid}"
    assert (project["name"], project["description"], project["domain_id"]) == (
        "alpha",
        "first",
        "default",
    )
    assert project["enabled"] is True and project["is_domain"] is False
    assert project["tags"] == ["t1"] and project["color"] == "blue"
    assert project["parent_id"] == "default"

    r = await client.get(f"{V3}/projects", headers=a, params={"name": "alpha"})
    listing = r.json()
    assert [p["id"] for p in listing["projects"]] == [pid]
    assert listing["links"]["previous"] is None and listing["links"]["next"] is None
    assert listing["links"]["self"].startswith(f"http://testserver{V3}/projects")
    names = {p["name"] for p in (await client.get(f"{V3}/projects", headers=a)).json()["projects"]}
    assert {"admin", "service", "alpha"} <= names
    r = await client.get(f"{V3}/projects", headers=a, params={"domain_id": "nope"})
    assert r.json()["projects"] == []

    r = await client.patch(
        f"{V3}/projects/{pid}",
        headers=a,
        json={"project": {"enabled": False, "description": "changed"}},
    )
    assert r.status_code == 200 and r.json()["project"]["enabled"] is False
    assert r.json()["project"]["color"] == "blue"
    r = await client.get(f"{V3}/projects", headers=a, params={"enabled": "false"})
    assert [p["name"] for p in r.json()["projects"]] == ["alpha"]
    r = await client.get(f"{V3}/projects/{pid}", headers=a)
    assert r.json()["project"]["description"] == "changed"
    r = await client.patch(
        f"{V3}/projects/{pid}", headers=a, json={"project": {"domain_id": "elsewhere"}}
    )
    keystone_error(r, 400)

    assert (await client.delete(f"{V3}/projects/{pid}", headers=a)).status_code == 204
    keystone_error(await client.get(f"{V3}/projects/{pid}", headers=a), 404)
    keystone_error(await client.delete(f"{V3}/projects/{pid}", headers=a), 404)


async def test_user_crud_and_password_change(client: httpx.AsyncClient, admin_token: str) -> None:
    a = h(admin_token)
    pid = await make_project(client, admin_token, "home")
    body = {
        "user": {
            "name": "uma",
            "password": "first-pw",
            "email": "uma@example.org",
            "default_project_id": pid,
            "description": "d",
        }
    }
    r = await client.post(f"{V3}/users", headers=a, json=body)
    assert r.status_code == 201, r.text
    user = r.json()["user"]
    uid = user["id"]
    assert "password" not in user and "password_hash" not in user
    assert (user["name"], user["domain_id"], user["email"], user["default_project_id"]) == (
        "uma",
        "default",
        "uma@example.org",
        pid,
    )
    assert user["enabled"] is True and user["password_expires_at"] is None
    assert user["links"]["self"].endswith(f"/users/{uid}")

    r = await client.get(f"{V3}/users", headers=a, params={"name": "uma", "domain_id": "default"})
    assert [u["id"] for u in r.json()["users"]] == [uid]
    assert (await client.get(f"{V3}/users/{uid}", headers=a)).json()["user"]["name"] == "uma"

    rid = await role_id(client, admin_token, "member")
    await client.put(f"{V3}/projects/{pid}/users/{uid}/roles/{rid}", headers=a)
    old_token = await issue_token(client, "uma", "first-pw", "home")
    r = await client.patch(f"{V3}/users/{uid}", headers=a, json={"user": {"password": "second-pw"}})
    assert r.status_code == 200, r.text
    keystone_error(await client.get(f"{V3}/users/{uid}", headers=h(old_token)), 401)
    body2 = password_body(by_name("uma"), "first-pw", project_scope("home"))
    keystone_error(await client.post(f"{V3}/auth/tokens", json=body2), 401)
    token = await issue_token(client, "uma", "second-pw", "home")

    # A user changes its own password by proving the original one.
    change = {"user": {"password": "third-pw", "original_password": "wrong"}}
    keystone_error(
        await client.post(f"{V3}/users/{uid}/password", headers=h(token), json=change), 401
    )
    change["user"]["original_password"] = "second-pw"
    r = await client.post(f"{V3}/users/{uid}/password", headers=h(token), json=change)
    assert r.status_code == 204, r.text
    token = await issue_token(client, "uma", "third-pw", "home")

    r = await client.patch(f"{V3}/users/{uid}", headers=a, json={"user": {"enabled": False}})
    assert r.json()["user"]["enabled"] is False
    keystone_error(await client.get(f"{V3}/users/{uid}", headers=h(token)), 401)
    body3 = password_body(by_name("uma"), "third-pw", project_scope("home"))
    keystone_error(await client.post(f"{V3}/auth/tokens", json=body3), 401)
    await client.patch(f"{V3}/users/{uid}", headers=a, json={"user": {"enabled": True}})
    token = await issue_token(client, "uma", "third-pw", "home")

    assert (await client.delete(f"{V3}/users/{uid}", headers=a)).status_code == 204
    keystone_error(await client.get(f"{V3}/users/{uid}", headers=a), 404)
    keystone_error(await client.get(f"{V3}/auth/catalog", headers=h(token)), 401)
    r = await client.get(f"{V3}/role_assignments", headers=a, params={"scope.project.id": pid})
    assert r.json()["role_assignments"] == []


async def test_deleting_a_project_cascades(
    client: httpx.AsyncClient, app: FastAPI, admin_token: str
) -> None:
    pid = await make_project(client, admin_token, "doomed")
    uid = await make_user(client, admin_token, "dora", grants={pid: "member"})
    token = await issue_token(client, "dora", "user-pw-123", "doomed")
    assert (await client.delete(f"{V3}/projects/{pid}", headers=h(admin_token))).status_code == 204
    keystone_error(await client.get(f"{V3}/users/{uid}", headers=h(token)), 401)
    async with db_of(app).read() as s:
        left = await s.scalars(select(RoleAssignmentRow).where(RoleAssignmentRow.user_id == uid))
        assert left.all() == []
        assert (await s.scalars(select(TokenRow).where(TokenRow.project_id == pid))).all() == []


async def test_disabled_project_ends_its_tokens(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    pid = await make_project(client, admin_token, "paused")
    await make_user(client, admin_token, "pia", grants={pid: "member"})
    token = await issue_token(client, "pia", "user-pw-123", "paused")
    body = {"project": {"enabled": False}}
    assert (
        await client.patch(f"{V3}/projects/{pid}", headers=h(admin_token), json=body)
    ).is_success
    keystone_error(await client.get(f"{V3}/auth/catalog", headers=h(token)), 401)
    body2 = password_body(by_name("pia"), "user-pw-123", project_scope("paused"))
    keystone_error(await client.post(f"{V3}/auth/tokens", json=body2), 401)


async def test_roles_grants_and_assignments(client: httpx.AsyncClient, admin_token: str) -> None:
    a = h(admin_token)
    r = await client.post(f"{V3}/roles", headers=a, json={"role": {"name": "auditor"}})
    assert r.status_code == 201, r.text
    auditor = r.json()["role"]["id"]
    assert (await client.get(f"{V3}/roles/{auditor}", headers=a)).json()["role"][
        "name"
    ] == "auditor"
    names = {x["name"] for x in (await client.get(f"{V3}/roles", headers=a)).json()["roles"]}
    assert {"admin", "member", "reader", "service", "auditor"} <= names

    pid = await make_project(client, admin_token, "granted")
    uid = await make_user(client, admin_token, "gus")
    member = await role_id(client, admin_token, "member")
    grant = f"{V3}/projects/{pid}/users/{uid}/roles/{member}"
    assert (await client.head(grant, headers=a)).status_code == 404
    assert (await client.put(grant, headers=a)).status_code == 204
    assert (await client.put(grant, headers=a)).status_code == 204  # idempotent
    assert (await client.head(grant, headers=a)).status_code == 204
    r = await client.get(f"{V3}/projects/{pid}/users/{uid}/roles", headers=a)
    assert [x["name"] for x in r.json()["roles"]] == ["member"]

    q = {"user.id": uid, "scope.project.id": pid, "include_names": "True"}
    r = await client.get(f"{V3}/role_assignments", headers=a, params=q)
    (one,) = r.json()["role_assignments"]
    assert one["role"] == {"id": member, "name": "member"}
    assert one["user"] == {"id": uid, "name": "gus", "domain": {"id": "default", "name": "Default"}}
    assert one["scope"]["project"]["name"] == "granted"
    assert one["scope"]["project"]["domain"] == {"id": "default", "name": "Default"}
    assert one["links"]["assignment"].endswith(grant)
    r = await client.get(f"{V3}/role_assignments", headers=a, params={**q, "effective": ""})
    effective = {x["role"]["name"] for x in r.json()["role_assignments"]}
    assert effective == {"member", "reader"}
    reader = await role_id(client, admin_token, "reader")
    r = await client.get(
        f"{V3}/role_assignments", headers=a, params={"role.id": reader, "user.id": uid}
    )
    assert r.json()["role_assignments"] == []
    r = await client.get(
        f"{V3}/role_assignments",
        headers=a,
        params={"role.id": reader, "user.id": uid, "effective": "1"},
    )
    assert len(r.json()["role_assignments"]) == 1
    r = await client.get(f"{V3}/role_assignments", headers=a, params={"role.id": member})
    assert uid in {x["user"]["id"] for x in r.json()["role_assignments"]}
    r = await client.get(f"{V3}/role_assignments", headers=a, params={"scope.domain.id": "default"})
    assert r.json()["role_assignments"] == []

    assert (await client.delete(grant, headers=a)).status_code == 204
    keystone_error(await client.delete(grant, headers=a), 404)
    keystone_error(await client.put(f"{V3}/projects/{pid}/users/{uid}/roles/nope", headers=a), 404)
    keystone_error(
        await client.put(f"{V3}/projects/nope/users/{uid}/roles/{member}", headers=a), 404
    )

    assert (await client.delete(f"{V3}/roles/{auditor}", headers=a)).status_code == 204
    keystone_error(await client.get(f"{V3}/roles/{auditor}", headers=a), 404)
    keystone_error(await client.delete(f"{V3}/roles/{member}", headers=a), 403)


async def test_domain_grants_and_domain_scope(client: httpx.AsyncClient, admin_token: str) -> None:
    uid = await make_user(client, admin_token, "dom")
    admin_role = await role_id(client, admin_token, "admin")
    grant = f"{V3}/domains/default/users/{uid}/roles/{admin_role}"
    assert (await client.put(grant, headers=h(admin_token))).status_code == 204
    r = await client.get(f"{V3}/domains/default/users/{uid}/roles", headers=h(admin_token))
    assert [x["name"] for x in r.json()["roles"]] == ["admin"]
    body = password_body(by_name("dom"), "user-pw-123", {"domain": {"name": "Default"}})
    r = await client.post(f"{V3}/auth/tokens", json=body)
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    assert token["domain"] == {"id": "default", "name": "Default"} and "project" not in token
    assert [x["name"] for x in token["roles"]] == ["admin", "member", "reader"]
    r = await client.get(f"{V3}/auth/domains", headers=h(r.headers["x-subject-token"]))
    assert [d["id"] for d in r.json()["domains"]] == ["default"]
    r = await client.get(
        f"{V3}/role_assignments",
        headers=h(admin_token),
        params={"scope.domain.id": "default", "include_names": "1"},
    )
    (one,) = r.json()["role_assignments"]
    assert one["scope"] == {"domain": {"id": "default", "name": "Default"}}


async def test_domains_are_read_only(client: httpx.AsyncClient, admin_token: str) -> None:
    a = h(admin_token)
    r = await client.get(f"{V3}/domains", headers=a, params={"name": "Default"})
    (domain,) = r.json()["domains"]
    assert domain["id"] == "default" and domain["links"]["self"].endswith("/domains/default")
    r = await client.get(f"{V3}/domains/default", headers=a)
    assert r.json()["domain"]["name"] == "Default"
    keystone_error(await client.get(f"{V3}/domains/Default", headers=a), 404)
    keystone_error(
        await client.post(f"{V3}/domains", headers=a, json={"domain": {"name": "x"}}), 403
    )


async def test_duplicates_are_409(client: httpx.AsyncClient, admin_token: str) -> None:
    a = h(admin_token)
    for path, key, name in [
        ("/projects", "project", "admin"),
        ("/users", "user", "admin"),
        ("/roles", "role", "member"),
    ]:
        r = await client.post(V3 + path, headers=a, json={key: {"name": name}})
        assert "Duplicate" in keystone_error(r, 409)["message"]
    pid = await make_project(client, admin_token, "twin")
    r = await client.patch(f"{V3}/projects/{pid}", headers=a, json={"project": {"name": "admin"}})
    keystone_error(r, 409)


@pytest.mark.parametrize(
    ("path", "content"),
    [
        ("/projects", b"{broken"),
        ("/projects", b'{"project": {}}'),
        ("/projects", b'{"project": {"name": ""}}'),
        ("/projects", b'{"project": {"name": "x", "enabled": "yes"}}'),
        ("/projects", b'{"project": {"name": "' + b"x" * 65 + b'"}}'),
        ("/projects", b'{"name": "x"}'),
        ("/users", b"{broken"),
        ("/users", b'{"user": {"name": 5}}'),
        ("/roles", b"null"),
    ],
)
async def test_malformed_bodies_are_400(
    client: httpx.AsyncClient, admin_token: str, path: str, content: bytes
) -> None:
    headers = {**h(admin_token), "Content-Type": "application/json"}
    keystone_error(await client.post(V3 + path, headers=headers, content=content), 400)


async def test_unknown_things_are_404(client: httpx.AsyncClient, admin_token: str) -> None:
    a = h(admin_token)
    for path in ("/projects/nope", "/users/nope", "/roles/nope", "/users/nope/projects"):
        keystone_error(await client.get(V3 + path, headers=a), 404)
    r = await client.post(
        f"{V3}/projects", headers=a, json={"project": {"name": "x", "domain_id": "nope"}}
    )
    keystone_error(r, 404)


# -- bootstrap ---------------------------------------------------------------


async def test_bootstrap_is_idempotent_and_keeps_passwords(
    client: httpx.AsyncClient, app: FastAPI, settings: Settings
) -> None:
    db = db_of(app)
    admin_file = settings.data_dir / "admin-password"
    agent_file = settings.data_dir / "agent-password"
    assert admin_file.read_text().strip() == ADMIN_PASSWORD
    assert agent_file.read_text().strip() == AGENT_PASSWORD
    for path in (admin_file, agent_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600

    async with db.read() as s:
        before = len((await s.scalars(select(UserRow))).all())
    again = await identity.bootstrap(db, settings)
    assert (again.admin_password, again.agent_password) == (ADMIN_PASSWORD, AGENT_PASSWORD)
    assert not again.admin_created and not again.agent_created
    changed = settings.model_copy(update={"admin_password": "a-new-one"})
    result = await identity.bootstrap(db, changed)
    assert result.admin_password == ADMIN_PASSWORD  # the stored password is kept
    async with db.read() as s:
        assert len((await s.scalars(select(UserRow))).all()) == before
    await issue_token(client, "admin", ADMIN_PASSWORD, "admin")
    await issue_token(client, "berth-agent", AGENT_PASSWORD, "service")
    assert admin_file.read_text().strip() == ADMIN_PASSWORD


async def test_bootstrap_generates_passwords(tmp_path: Any, db_url: str) -> None:
    settings = Settings(data_dir=tmp_path / "fresh", database_url=db_url, all_in_one=False)
    db = Database(db_url)
    try:
        await db.migrate()
        first = await identity.bootstrap(db, settings)
        assert first.admin_created and first.agent_created
        assert len(first.admin_password) >= 20 and first.admin_password != first.agent_password
        saved = (settings.data_dir / "admin-password").read_text().strip()
        assert saved == first.admin_password
        async with db.read() as s:
            admin = (await s.scalars(select(UserRow).where(UserRow.name == "admin"))).one()
        assert admin.password_hash and admin.password_hash.startswith("scrypt$")
        assert passwords.verify_password(saved, admin.password_hash)
        second = await identity.bootstrap(db, settings)
        assert second.admin_password == first.admin_password and not second.admin_created
        agent = await identity.validate_token(
            db,
            (await identity.authenticate(db, settings, _agent_auth(second.agent_password))).token,
        )
        assert agent.is_admin and agent.is_service and agent.project_name == "service"
        with pytest.raises(errors.Unauthorized):
            await identity.validate_token(db, "not-a-token")
    finally:
        await db.close()


def _agent_auth(password: str) -> AuthRequest:
    return AuthRequest(
        ("password",),
        PasswordCredentials(password, user_name="berth-agent", domain_name="Default"),
        scope=ScopeRequest("project", name="service", domain_id="default"),
    )


async def test_a_reader_reads_itself_and_changes_its_own_password(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    """Keystone's ``identity:get_user`` lets a user read itself whatever its roles, and a
    password change needs only the original password: a reader does both, and nothing
    of another user's."""
    pid = await make_project(client, admin_token, "read-self")
    uid = await make_user(client, admin_token, "rita", grants={pid: "reader"})
    other = await make_user(client, admin_token, "otto", grants={pid: "member"})
    token = await issue_token(client, "rita", "user-pw-123", "read-self")
    r = await client.get(f"{V3}/users/{uid}", headers=h(token))
    assert r.status_code == 200 and r.json()["user"]["name"] == "rita", r.text
    r = await client.get(f"{V3}/users/{uid}/projects", headers=h(token))
    assert [p["id"] for p in r.json()["projects"]] == [pid], r.text
    keystone_error(await client.get(f"{V3}/users/{other}", headers=h(token)), 403)
    change = {"user": {"password": "rita-pw-456", "original_password": "user-pw-123"}}
    r = await client.post(f"{V3}/users/{other}/password", headers=h(token), json=change)
    keystone_error(r, 403)
    r = await client.post(f"{V3}/users/{uid}/password", headers=h(token), json=change)
    assert r.status_code == 204, r.text
    await issue_token(client, "rita", "rita-pw-456", "read-self")
