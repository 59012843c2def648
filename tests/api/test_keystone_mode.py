"""The API with ``identity_backend = keystone``: one token check for every API, /identity not
served, Keystone's failures in each API's error format. Keystone is the small in-memory one
(tests/fakes/keystone.py); tests/compat/test_openstack_keystone.py does this with the real one."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from berth.api.app import create_app
from berth.config import Settings
from berth.services.identity.keystone import KeystoneTokens
from tests.conftest import make_settings
from tests.fakes.keystone import KS, FakeKeystone, token_body
from tests.helpers import zun_headers as h


@pytest.fixture
def keystone() -> FakeKeystone:
    ks = FakeKeystone()
    ks.valid["alice"] = token_body(["member"])
    ks.valid["reader"] = token_body(["reader"], user="rita")
    ks.valid["admin"] = token_body(["admin"], user="root", project="admin-project")
    return ks


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return make_settings(
        tmp_path,
        db_url,
        identity_backend="keystone",
        keystone_url=KS,
        keystone_service_password=FakeKeystone.SERVICE_PASSWORD,
    )


@pytest.fixture
async def app(settings: Settings, keystone: FakeKeystone) -> AsyncIterator[FastAPI]:
    application = create_app(settings, run_workers=False)
    state = application.state.berth
    await state.keystone.aclose()
    http = httpx.AsyncClient(transport=httpx.MockTransport(keystone.handler))
    state.keystone = KeystoneTokens(settings, http)
    async with application.router.lifespan_context(application):
        yield application
    await http.aclose()


async def test_identity_is_not_served_and_no_builtin_user_exists(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    assert (await client.get("/identity/v3")).status_code == 404
    body = {"auth": {"identity": {"methods": ["password"]}}}
    assert (await client.post("/identity/v3/auth/tokens", json=body)).status_code == 404
    assert not (settings.data_dir / "admin-password").exists()


async def test_keystone_tokens_reach_every_api(client: httpx.AsyncClient) -> None:
    zun = await client.get("/container/v1/containers", headers=h("alice"))
    assert zun.status_code == 200 and zun.json()["containers"] == []
    magnum = await client.get(
        "/container-infra/v1/clusters",
        headers={"X-Auth-Token": "alice", "OpenStack-API-Version": "container-infra latest"},
    )
    assert magnum.status_code == 200


async def test_a_refused_token_is_401_naming_keystone(client: httpx.AsyncClient) -> None:
    r = await client.get("/container/v1/containers", headers=h("forged"))
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == f'Keystone uri="{KS}/v3"'


async def test_a_reader_cannot_create(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/container/v1/containers", json={"image": "busybox"}, headers=h("reader")
    )
    assert r.status_code == 403
    assert r.json()["errors"][0]["detail"] == (
        "Policy doesn't allow container:create to be performed."
    )


@pytest.mark.allows_5xx("Keystone is down: the API answers 503, as it must")
async def test_keystone_down_is_503_in_each_apis_format(
    client: httpx.AsyncClient, keystone: FakeKeystone
) -> None:
    keystone.down = True
    zun = await client.get("/container/v1/containers", headers=h("alice"))
    assert zun.status_code == 503
    assert zun.json()["errors"][0]["code"] == "container.identity-unavailable"
    magnum = await client.get(
        "/container-infra/v1/clusters",
        headers={"X-Auth-Token": "alice", "OpenStack-API-Version": "container-infra latest"},
    )
    assert magnum.status_code == 503 and magnum.json()["errors"][0]["code"] == "server"


async def test_a_magnum_quota_may_name_a_keystone_project(client: httpx.AsyncClient) -> None:
    # Berth cannot list Keystone's projects; like Magnum it takes the admin's word.
    r = await client.post(
        "/container-infra/v1/quotas",
        json={"project_id": "p-in-keystone", "resource": "Cluster", "hard_limit": 3},
        headers={"X-Auth-Token": "admin", "OpenStack-API-Version": "container-infra latest"},
    )
    assert r.status_code == 201, r.text


async def _dashboard_login(client: httpx.AsyncClient, password: str) -> httpx.Response:
    page = await client.get("/login")
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text[:300]
    form = {"csrf": found.group(1), "username": "alice", "password": password,
            "project": "", "domain": "Default", "next": "/containers"}  # fmt: skip
    return await client.post("/login", data=form)


@pytest.mark.allows_5xx("Keystone is down: the dashboard's login page says so with a 503")
async def test_the_dashboard_login_asks_keystone_and_says_when_it_cannot(
    client: httpx.AsyncClient, keystone: FakeKeystone
) -> None:
    # The real Keystone's logins, projects and logout: tests/compat/test_openstack_keystone.py.
    wrong = await _dashboard_login(client, "not-it")
    assert wrong.status_code == 401 and "Wrong user name" in wrong.text
    keystone.down = True
    down = await _dashboard_login(client, "not-it")
    assert down.status_code == 503
    assert "Keystone" in down.text and "try again later" in down.text


async def test_a_login_keystone_calls_malformed_is_a_wrong_login_not_an_outage(
    settings: Settings,
) -> None:
    """The real Keystone answers 401 to NUL bytes, 60,000-character names or unknown
    domains (measured); one that answers 400 to input it will not take must give the
    login page's 401 too, not the 503 of Keystone being down."""
    from berth import errors

    def strict(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": {"code": 400, "message": "Invalid input"}})

    async with httpx.AsyncClient(transport=httpx.MockTransport(strict)) as http:
        tokens = KeystoneTokens(settings, http)
        with pytest.raises(errors.Unauthorized):
            await tokens.user_login("a\x00" * 30000, "pw", "", "Default")
        with pytest.raises(errors.Unauthorized):
            await tokens.rescope("some-token", "x\x00y")


async def test_the_quotas_page_lists_keystones_projects_as_it_lists_them_to_the_admin(
    settings: Settings,
) -> None:
    """With an external Keystone the quotas page lists the projects Keystone lists to
    the admin's own token (enabled ones, by name, at most MAX_LISTED_PROJECTS); a user
    Keystone does not let list them gets a 403 that says what to do instead. The real
    Keystone's page: tests/compat/test_openstack_keystone.py."""
    from berth import errors
    from berth.services.identity.keystone import MAX_LISTED_PROJECTS

    seen: list[httpx.Request] = []

    def listing(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.headers.get("x-auth-token") == "member-token":
            return httpx.Response(403, json={"error": {"code": 403}})
        projects = [{"id": f"p{i:04d}", "name": f"proj-{i:04d}", "enabled": True}
                    for i in range(MAX_LISTED_PROJECTS + 20)]  # fmt: skip
        projects += [{"id": "off", "name": "aaa-off", "enabled": False}, {"name": "no id"}, 7]
        return httpx.Response(200, json={"projects": projects[::-1]})

    async with httpx.AsyncClient(transport=httpx.MockTransport(listing)) as http:
        tokens = KeystoneTokens(settings, http)
        found = await tokens.all_projects("admin-token")
        assert len(found) == MAX_LISTED_PROJECTS
        assert [p.name for p in found[:2]] == ["proj-0000", "proj-0001"]  # by name, not "off"
        assert seen[-1].url.path.endswith("/v3/projects")
        assert seen[-1].headers["x-auth-token"] == "admin-token"  # the user's own token
        with pytest.raises(errors.Forbidden, match="quota update"):
            await tokens.all_projects("member-token")
