"""The dashboard in a real browser against a live all-in-one Berth on the real engine.

A member logs in, creates a container, sees it Running and its logs, stops and
starts it, and deletes it; a member sees neither the admin pages nor another
project's containers; an admin sees hosts, services, quotas and every
project's events. Screenshots go to test-artifacts/e2e/.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import ADMIN_PASSWORD, MEMBER_PASSWORD, World, login, shot, user_token

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

STATUS_TIMEOUT = 45_000
# sh as PID 1 ignores SIGTERM unless it traps it: without the trap every stop waits 10 s.
SERVE = 'sh -c "trap exit TERM; echo hello-from-berth $GREETING; sleep 3600 & wait"'


def _status(page: Any) -> Any:
    return page.locator("#status")


def _act(page: Any, label: str) -> None:
    page.locator("#live").get_by_role("button", name=label, exact=True).click()
    expect(page.locator(".flash.ok")).to_contain_text("requested")


def _wait_logs(page: Any, text: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in (page.locator("#logs").text_content() or ""):
        assert time.monotonic() < deadline, f"logs never showed {text!r}"
        page.click("#refresh-logs")
        page.wait_for_timeout(400)


def test_member_runs_a_container_through_its_life(browser: Any, world: World) -> None:
    page = login(browser, world, "alice", MEMBER_PASSWORD, "team-a")
    expect(page.locator("nav")).not_to_contain_text("Hosts")
    page.get_by_role("link", name="Create container").click()
    page.fill("input[name=image]", "berth-test/busybox:latest")
    page.fill("input[name=name]", "e2e-web")
    page.fill("input[name=command]", SERVE)
    page.fill("input[name=memory]", "64")
    page.fill("textarea[name=environment]", "GREETING=ahoy")
    page.fill("input[name=ports]", "8080")
    page.select_option("select[name=restart_policy]", "on-failure")
    page.fill("input[name=restart_retries]", "2")
    shot(page, "02-create-form")
    page.get_by_role("button", name="Create").click()
    page.wait_for_url(re.compile(r".*/containers/[0-9a-f-]{36}$"))
    expect(_status(page)).to_have_text("Running", timeout=STATUS_TIMEOUT)
    _wait_logs(page, "hello-from-berth ahoy")
    shot(page, "03-container-detail")

    _act(page, "Stop")
    expect(_status(page)).to_have_text("Stopped", timeout=STATUS_TIMEOUT)
    _act(page, "Start")
    expect(_status(page)).to_have_text("Running", timeout=STATUS_TIMEOUT)
    history = page.locator("#history")
    for action in ("create", "stop", "start"):
        expect(history).to_contain_text(action)

    page.goto("/containers")
    row = page.locator("#containers tr[data-name=e2e-web]")
    expect(row).to_contain_text("Running")
    shot(page, "01-containers")

    row.get_by_role("link", name="e2e-web").click()
    page.once("dialog", lambda dialog: dialog.accept())
    _status(page).wait_for()
    page.locator("#live").get_by_role("button", name="Delete", exact=True).click()
    page.wait_for_url(re.compile(r".*/containers$"))
    expect(page.locator(".flash.ok")).to_contain_text("Deleting container e2e-web")
    # The list polls itself: the row goes once the agent confirms the removal.
    expect(page.locator("#containers tr[data-name=e2e-web]")).to_have_count(
        0, timeout=STATUS_TIMEOUT
    )
    page.context.close()


def test_a_wrong_form_comes_back_with_what_to_fix(browser: Any, world: World) -> None:
    page = login(browser, world, "alice", MEMBER_PASSWORD, "team-a")
    page.goto("/containers/new")
    page.fill("input[name=image]", "berth-test/busybox:latest")
    page.fill("input[name=name]", "keep-me")
    page.fill("textarea[name=environment]", "NOT A PAIR")
    page.get_by_role("button", name="Create").click()
    expect(page.locator(".flash.error")).to_contain_text("is not KEY=VALUE")
    expect(page.locator("input[name=name]")).to_have_value("keep-me")
    page.context.close()


def test_a_member_sees_no_admin_page_and_no_other_project(browser: Any, world: World) -> None:
    bob = login(browser, world, "bob", MEMBER_PASSWORD, "team-b")
    bob.goto("/containers/new")
    bob.fill("input[name=image]", "berth-test/busybox:latest")
    bob.fill("input[name=name]", "bobs-secret")
    bob.fill("input[name=command]", SERVE)
    bob.get_by_role("button", name="Create").click()
    bob.wait_for_url(re.compile(r".*/containers/[0-9a-f-]{36}$"))
    secret = bob.url.rsplit("/", 1)[1]

    page = login(browser, world, "alice", MEMBER_PASSWORD, "team-a")
    for path in ("/admin/hosts", "/admin/services", "/admin/quotas"):
        response = page.goto(path)
        assert response is not None and response.status == 403, path
        expect(page.locator("h1")).to_have_text("Not allowed")
        expect(page.locator(".error-text")).to_contain_text("ask an admin")
    shot(page, "05-member-forbidden")
    response = page.goto(f"/containers/{secret}")
    assert response is not None and response.status == 404
    page.goto("/containers")
    expect(page.locator("#containers")).not_to_contain_text("bobs-secret")
    page.goto("/events")
    expect(page.locator("#events")).not_to_contain_text(secret[:8])

    # Switching project re-scopes the session: team-c is empty.
    page.goto("/containers")
    page.select_option("select[name=project_id]", label="team-c")
    expect(page.locator(".flash.ok")).to_contain_text("Now working in project team-c")
    expect(page.locator("h1")).to_contain_text("team-c")
    page.context.close()

    bob.once("dialog", lambda dialog: dialog.accept())
    expect(_status(bob)).to_have_text("Running", timeout=STATUS_TIMEOUT)
    bob.locator("#live").get_by_role("button", name="Delete", exact=True).click()
    bob.wait_for_url(re.compile(r".*/containers$"))
    bob.context.close()


def test_an_admin_sees_hosts_services_quotas_and_all_events(browser: Any, world: World) -> None:
    # A team-a event of its own (the member's test above makes one too, but this test
    # must hold when it runs alone or first).
    token = user_token(world, "alice", MEMBER_PASSWORD, "team-a")
    made = world.api(
        "POST",
        "/container/v1/containers",
        json={"image": "berth-test/busybox:latest", "name": "e2e-evented"},
        headers={"X-Auth-Token": token, "OpenStack-API-Version": "container 1.40"},
    )
    assert made.status_code == 202, made.text
    page = login(browser, world, "admin", ADMIN_PASSWORD, "admin")
    page.get_by_role("link", name="Hosts").click()
    host = page.locator("#hosts .host", has_text=world.host)
    expect(host).to_contain_text("up")
    expect(host.locator("meter")).to_have_count(3)
    shot(page, "04-admin-hosts")
    page.get_by_role("link", name="Services").click()
    expect(page.locator("#services")).to_contain_text(world.host)
    page.get_by_role("link", name="Quotas").click()
    row = page.locator("#quotas tr", has_text="team-b")
    row.locator("input[name=containers]").fill("7")
    row.get_by_role("button", name="Save").click()
    expect(page.locator(".flash.ok")).to_contain_text("Quotas of project team-b are updated")
    expect(
        page.locator("#quotas tr", has_text="team-b").locator("input[name=containers]")
    ).to_have_value("7")
    page.get_by_role("link", name="Events").click()
    expect(page.locator("#events")).to_contain_text("container.create")
    expect(page.locator("#events")).to_contain_text("team-a")
    shot(page, "06-admin-events")
    page.context.close()
    gone = world.api(
        "DELETE",
        f"/container/v1/containers/{made.json()['uuid']}?force=True",
        headers={"OpenStack-API-Version": "container 1.40"},  # the admin may force,
    )
    assert gone.status_code == 204, gone.text
