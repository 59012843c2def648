"""The dashboard over HTTP, in memory (no browser, no engine): sessions, CSRF, tenancy, errors.

These run on SQLite and PostgreSQL like the API tests (the ``client`` fixture).
"""

from __future__ import annotations

import re

import httpx
import pytest

from berth.config import Settings
from berth.dashboard.forms import container_from_form
from berth.errors import Invalid
from tests.conftest import ADMIN_PASSWORD
from tests.helpers import ZUN, ScriptedAgent, make_member

pytestmark = pytest.mark.e2e

MEMBER_PW = "pw-" + "x" * 8


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


async def login(
    client: httpx.AsyncClient, user: str, password: str, project: str = ""
) -> httpx.Response:
    page = await client.get("/login")
    form = {
        "csrf": _csrf(page.text),
        "username": user,
        "password": password,
        "project": project,
        "domain": "Default",
        "next": "/containers",
    }
    return await client.post("/login", data=form)


async def test_login_sets_a_strict_httponly_cookie_and_logout_revokes_it(
    client: httpx.AsyncClient,
) -> None:
    r = await client.get("/containers")
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Fcontainers"
    r = await login(client, "admin", ADMIN_PASSWORD)
    assert r.status_code == 303 and r.headers["location"] == "/containers"
    cookie = next(v for v in r.headers.get_list("set-cookie") if v.startswith("berth_session="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    token = client.cookies["berth_session"]
    page = await client.get("/containers")
    assert page.status_code == 200 and "Containers" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"

    r = await client.post("/logout", data={"csrf": _csrf(page.text)})
    assert r.status_code == 303 and r.headers["location"] == "/login"
    client.cookies.set("berth_session", token)  # a stolen copy of the old cookie
    r = await client.get("/containers")
    assert r.status_code == 303 and r.headers["location"].startswith("/login")


async def test_login_refuses_bad_credentials_and_forms_without_their_nonce(
    client: httpx.AsyncClient,
) -> None:
    r = await login(client, "admin", "wrong-password")
    assert r.status_code == 401 and "Wrong user name, password or project" in r.text
    assert "berth_session" not in client.cookies
    await client.get("/login")
    r = await client.post("/login", data={"csrf": "forged", "username": "admin", "password": "x"})
    assert r.status_code == 403 and "reload the page" in r.text


async def test_posts_need_the_session_csrf_token_and_our_origin(
    client: httpx.AsyncClient,
) -> None:
    await login(client, "admin", ADMIN_PASSWORD)
    page = await client.get("/containers/new")
    good = _csrf(page.text)
    form = {"image": "berth-test/busybox:latest", "name": "csrf-test"}
    r = await client.post("/containers/new", data={**form, "csrf": "forged"})
    assert r.status_code == 403 and "did not come from this dashboard" in r.text
    r = await client.post(
        "/containers/new", data={**form, "csrf": good}, headers={"Origin": "http://evil.example"}
    )
    assert r.status_code == 403
    r = await client.post("/containers/new", data={**form, "csrf": good})
    assert r.status_code == 303  # created (placed nowhere: no host in this test)


async def test_a_member_gets_403_pages_and_never_another_projects_container(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    agent = ScriptedAgent(client)
    await agent.register()
    r = await client.post(
        "/container/v1/containers",
        json={"image": "busybox", "name": "admins-own", "environment": {"X": "<b>bold</b>"}},
        headers={**ZUN, "X-Auth-Token": admin_token},
    )
    assert r.status_code == 202, r.text
    secret = r.json()["uuid"]
    await make_member(client, admin_token, "team-a", "alice", MEMBER_PW)

    await login(client, "admin", ADMIN_PASSWORD)
    page = await client.get(f"/containers/{secret}")
    assert "&lt;b&gt;bold&lt;/b&gt;" in page.text and "<b>bold</b>" not in page.text
    client.cookies.clear()

    r = await login(client, "alice", MEMBER_PW, "team-a")
    assert r.status_code == 303
    page = await client.get("/containers")
    assert "/admin/hosts" not in page.text and "admins-own" not in page.text
    for path in ("/admin/hosts", "/admin/services", "/admin/quotas"):
        r = await client.get(path)
        assert r.status_code == 403 and "Not allowed" in r.text, path
    r = await client.get(f"/containers/{secret}")
    assert r.status_code == 404 and "another project" in r.text
    r = await client.get(f"/containers/{secret}/live")
    assert r.headers["hx-redirect"] == "/containers"
    events = await client.get("/events")
    assert secret[:8] not in events.text.split('id="events"')[1]
    r = await client.post(
        f"/containers/{secret}/action", data={"csrf": _csrf(page.text), "action": "delete"}
    )
    assert r.status_code == 303 and r.headers["location"] == f"/containers/{secret}"
    shown = await client.get(r.headers["location"])
    assert shown.status_code == 404


async def test_fragments_ask_htmx_to_log_in_again(client: httpx.AsyncClient) -> None:
    r = await client.get("/containers/rows")
    assert r.status_code == 204 and r.headers["hx-redirect"] == "/login"


async def test_static_files_are_packaged_and_listed(client: httpx.AsyncClient) -> None:
    r = await client.get("/static/htmx.min.js")
    assert r.status_code == 200 and r.text.startswith("/* htmx 2.")
    assert (await client.get("/static/berth.css")).status_code == 200
    assert (await client.get("/static/../config.py")).status_code == 404
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert not any(p.startswith(("/containers", "/login", "/admin")) for p in paths)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("image", "", "Give an image"),
        ("name", "-bad", "The name must be"),
        ("cpu", "99", "CPU must be between"),
        ("memory", "64.5", "must be a whole number"),
        ("environment", "A=1\nnope", "line 2"),
        ("ports", "70000", "Port '70000' is not valid"),
        ("restart_retries", "3", "on-failure policy only"),
        ("hc_interval", "5", "Give the health check a command"),
        ("command", "sh -c 'open", "check its quotes"),
        ("runtime", "runsc", "not allowed"),
    ],
)
def test_the_create_form_says_what_to_fix(field: str, value: str, message: str) -> None:
    form = {"image": "busybox", field: value}
    with pytest.raises(Invalid, match=re.escape(message)):
        container_from_form(Settings(), form, runtime_allowed=False)


def test_the_create_form_builds_the_request() -> None:
    form = {
        "image": "busybox",
        "name": "web",
        "command": "sh -c 'echo hi; sleep 1'",
        "cpu": "0.5",
        "memory": "64",
        "environment": "A=1\n# comment\nB=x=y",
        "ports": "80, 53/udp",
        "restart_policy": "on-failure",
        "restart_retries": "3",
        "hc_cmd": "true",
        "hc_interval": "5",
        "run": "on",
    }
    new, run = container_from_form(Settings(), form, runtime_allowed=False)
    assert run
    assert new.command == ["sh", "-c", "echo hi; sleep 1"]
    assert (new.cpu, new.memory) == (0.5, 64)
    assert new.environment == {"A": "1", "B": "x=y"}
    assert new.exposed_ports == {"80/tcp": {}, "53/udp": {}}
    assert new.restart_policy == {"Name": "on-failure", "MaximumRetryCount": "3"}
    assert new.healthcheck == {"cmd": "true", "interval": 5}
    assert "runtime" not in new.given and {"name", "cpu", "memory"} <= new.given


async def test_terminal_and_log_follow_keep_to_the_session_and_its_project(
    client: httpx.AsyncClient, admin_token: str
) -> None:
    agent = ScriptedAgent(client)
    await agent.register()
    r = await client.post(
        "/container/v1/containers",
        json={"image": "busybox", "name": "admins-shell"},
        headers={**ZUN, "X-Auth-Token": admin_token},
    )
    assert r.status_code == 202, r.text
    secret = r.json()["uuid"]
    await make_member(client, admin_token, "team-a", "alice", MEMBER_PW)

    r = await client.post(f"/containers/{secret}/terminal", data={"csrf": "x"})
    assert r.status_code == 401 and "log in again" in r.json()["error"]
    r = await client.get(f"/containers/{secret}/logs/follow")
    assert r.status_code == 401

    await login(client, "alice", MEMBER_PW, "team-a")
    csrf = _csrf((await client.get("/containers")).text)
    r = await client.post(f"/containers/{secret}/terminal", data={"csrf": "forged"})
    assert r.status_code == 403 and "reload the page" in r.json()["error"]
    r = await client.post(f"/containers/{secret}/terminal", data={"csrf": csrf})
    assert r.status_code == 404 and "another project" in r.json()["error"]
    resize = {"csrf": csrf, "exec_id": "ab12", "cols": "80", "rows": "24"}
    r = await client.post(f"/containers/{secret}/terminal/resize", data=resize)
    assert r.status_code == 404
    r = await client.post(f"/containers/{secret}/terminal/resize", data={**resize, "cols": "0"})
    assert r.status_code == 400 and "columns and rows" in r.json()["error"]
    r = await client.post(f"/containers/{secret}/terminal/resize", data={**resize, "exec_id": ""})
    assert r.status_code == 400 and "reopen the terminal" in r.json()["error"]
    r = await client.get(f"/containers/{secret}/logs/follow")
    assert r.status_code == 404 and "another project" in r.text
    client.cookies.clear()

    # The owner's container is not Running: a clear 409, not a broken socket.
    await login(client, "admin", ADMIN_PASSWORD)
    page = await client.get(f"/containers/{secret}")
    assert "style-src 'self' 'unsafe-inline'" in page.headers["content-security-policy"]
    assert "script-src 'self';" in page.headers["content-security-policy"]
    r = await client.post(f"/containers/{secret}/terminal", data={"csrf": _csrf(page.text)})
    assert r.status_code == 409 and "in Creating state" in r.json()["error"], r.text


async def test_the_terminal_assets_are_vendored(client: httpx.AsyncClient) -> None:
    for name, head in [
        ("xterm.js", "/* @xterm/xterm 6."),
        ("xterm-addon-fit.js", "/* @xterm/addon-fit 0."),
        ("xterm.css", "/* @xterm/xterm 6."),
        ("container.js", "/* Berth dashboard"),
    ]:
        r = await client.get(f"/static/{name}")
        assert r.status_code == 200 and r.text.startswith(head), name
    r = await client.get("/static/xterm.LICENSE")
    assert "The xterm.js authors" in r.text
