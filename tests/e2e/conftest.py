"""Browser tests: a live all-in-one Berth on the real engine, driven by Debian's Chromium.

The browser is the system's ``/usr/bin/chromium`` (``apt-get install chromium``,
which scripts/test does), launched by Playwright's Python driver with
``executable_path``: Playwright's own browser download is never used. Without
Chromium the tests skip, except in CI (``CI=true``), where that is a failure.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e import fake_cluster_driver
from tests.functional.docker_engine import engine_or_skip, ensure_test_image, remove_owned
from tests.helpers import open_clusters_file
from tests.live import all_in_one_env, live_server, live_token

CHROMIUM = Path(os.environ.get("BERTH_CHROMIUM", "/usr/bin/chromium"))
# Without the background-networking flags Chromium's own connections are refused on a
# closed network and it stalls; the rest keep a test browser quiet and fast.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "e2e"
ADMIN_PASSWORD = "e2e-admin-pw"
MEMBER_PASSWORD = "e2e-member-pw"


@dataclass
class World:
    """The live Berth and who is in it."""

    base_url: str
    host: str
    admin_token: str

    def api(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {"X-Auth-Token": self.admin_token, **kw.pop("headers", {})}
        return httpx.request(method, f"{self.base_url}{path}", headers=headers, timeout=30, **kw)


def chromium_or_skip() -> Path:
    """Debian's Chromium; skip without it (fail in CI)."""
    if CHROMIUM.exists():
        return CHROMIUM
    message = f"no Chromium at {CHROMIUM}: apt-get install chromium (scripts/test does)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def user_token(world: World, user: str, password: str, project: str) -> str:
    """A project-scoped token of ``user`` on the live Berth."""
    return live_token(world.base_url, user, password, project)


def add_member(world: World, user: str, *projects: str) -> None:
    """Create ``user`` (if needed) with the member role in each project (created if needed)."""
    member = world.api("GET", "/identity/v3/roles?name=member").json()["roles"][0]["id"]
    found = world.api("GET", f"/identity/v3/users?name={user}").json()["users"]
    if found:
        uid = found[0]["id"]
    else:
        r = world.api(
            "POST",
            "/identity/v3/users",
            json={"user": {"name": user, "domain_id": "default", "password": MEMBER_PASSWORD}},
        )
        assert r.status_code == 201, r.text
        uid = r.json()["user"]["id"]
    for project in projects:
        existing = world.api("GET", f"/identity/v3/projects?name={project}").json()["projects"]
        if existing:
            pid = existing[0]["id"]
        else:
            r = world.api(
                "POST",
                "/identity/v3/projects",
                json={"project": {"name": project, "domain_id": "default"}},
            )
            assert r.status_code == 201, r.text
            pid = r.json()["project"]["id"]
        r = world.api("PUT", f"/identity/v3/projects/{pid}/users/{uid}/roles/{member}")
        assert r.status_code == 204, r.text


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """An all-in-one Berth on the real engine with two projects and a member in each."""
    chromium_or_skip()
    engine = engine_or_skip()
    ensure_test_image(engine)
    work = tmp_path_factory.mktemp("e2e")
    host = f"e2e-{uuid.uuid4().hex[:8]}"
    env = all_in_one_env(
        work,
        host,
        ADMIN_PASSWORD,
        # Members run clusters here, as an operator's policy file allows (admin-only by default).
        BERTH_POLICY_FILE=str(open_clusters_file(work)),
        BERTH_RECONCILE_INTERVAL="1",
        # Capsules: a sandbox from the local test image (nothing is pulled from the internet).
        BERTH_SANDBOX_IMAGE="berth-test/busybox:latest",
        # The tests' own registries listen on loopback ports picked later: the operator's
        # allowlist lets members name them (tests/api/test_image_addresses.py checks that
        # loopback is refused without it).
        BERTH_IMAGE_REGISTRY_ALLOWLIST='["127.0.0.1"]',
        # Clusters: a driver with steps and no nodes, registered through the entry point.
        **fake_cluster_driver.install(work / "drivers"),
    )
    try:
        with live_server(env) as base_url:
            w = World(base_url, host, live_token(base_url, "admin", ADMIN_PASSWORD, "admin"))
            add_member(w, "alice", "team-a", "team-c")
            add_member(w, "bob", "team-b")
            yield w
    finally:
        remove_owned(engine, host)


@pytest.fixture(scope="module")
def browser(world: World) -> Iterator[Any]:
    """One headless Chromium per module: sync Playwright keeps an event loop running in this
    thread while it is open, which async tests after it must not find."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=str(chromium_or_skip()), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            chromium.close()


def login(browser: Any, world: World, user: str, password: str, project: str = "") -> Any:
    """A new browser context logged in as ``user``; returns its page."""
    context = browser.new_context(base_url=world.base_url, viewport={"width": 1280, "height": 860})
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto("/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    if project:
        page.fill("input[name=project]", project)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/containers$"))
    return page


def shot(page: Any, name: str) -> Path:
    """Save a full-page screenshot under test-artifacts/e2e/."""
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
