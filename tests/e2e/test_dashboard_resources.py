"""Clusters, images and registries in a real browser, against a live all-in-one Berth.

Clusters run on the e2e fake driver (registered through the real entry point, see
``fake_cluster_driver``): a member creates a template and a cluster, watches its
progress live, sees its node groups and addresses, downloads its configuration and
deletes it; a failed cluster says why and what to do. An admin pulls an image from a
local registry onto the host and deletes it; a member manages the project's registries
and sees no Images page; another project sees none of it. Screenshots go to
test-artifacts/e2e/.
"""

from __future__ import annotations

import contextlib
import re
import uuid
import zipfile
from collections.abc import Iterator
from typing import Any

import docker
import pytest
from cryptography import x509
from playwright.sync_api import expect

from tests.e2e.conftest import ADMIN_PASSWORD, MEMBER_PASSWORD, World, login, shot, user_token
from tests.functional.docker_engine import engine_or_skip
from tests.functional.registry import local_registry

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

PROGRESS_TIMEOUT = 30_000


def _template(page: Any, name: str) -> None:
    page.goto("/clustertemplates")
    form = page.locator("#template-form")
    form.locator("input[name=name]").fill(name)
    form.locator("input[name=image_id]").fill("berth-test/busybox:latest")
    form.locator("input[name=driver]").fill("e2e-fake")
    form.locator("textarea[name=labels]").fill("e2e_step_seconds=0.6")
    form.get_by_role("button", name="Create template").click()
    expect(page.locator(".flash.ok")).to_contain_text(f"Cluster template {name} is created")


def test_a_member_builds_watches_downloads_and_deletes_a_cluster(
    browser: Any, world: World, tmp_path: Any
) -> None:
    page = login(browser, world, "alice", MEMBER_PASSWORD, "team-a")
    page.get_by_role("link", name="Clusters").click()
    expect(page.locator("#clusters")).to_contain_text("No clusters yet")
    _template(page, "e2e-swarm")
    page.locator("#templates tr[data-name=e2e-swarm]").get_by_role(
        "link", name="Create cluster"
    ).click()
    expect(page.locator("select[name=template]")).to_have_value(re.compile(r"[0-9a-f-]{36}"))
    page.fill("input[name=name]", "e2e-cluster")
    page.fill("input[name=node_count]", "3")
    page.select_option("select[name=flavor_id]", "m1.tiny")
    shot(page, "09-cluster-create-form")
    page.get_by_role("button", name="Create", exact=True).click()
    page.wait_for_url(re.compile(r".*/clusters/[0-9a-f-]{36}$"))
    expect(page.locator(".flash.ok")).to_contain_text("Cluster e2e-cluster is being created")

    # Live progress: the status line and the steps refresh themselves.
    status = page.locator("#cluster-status")
    expect(status).to_have_text("CREATE_IN_PROGRESS")
    # A step's text replaces "Cluster create requested." without a reload (which
    # step the page catches depends on the machine's speed: 0.6 s each).
    expect(page.locator("#cluster-reason")).to_contain_text(
        re.compile(r"Starting (master|node)"), timeout=PROGRESS_TIMEOUT
    )
    expect(page.locator("#cluster-steps")).to_contain_text("Starting master 1 of 1")
    shot(page, "10-cluster-progress")
    expect(status).to_have_text("CREATE_COMPLETE", timeout=PROGRESS_TIMEOUT)
    expect(page.locator("#cluster-steps")).to_contain_text("Starting node 3 of 3")
    spec = page.locator("#cluster-spec")
    expect(spec).to_contain_text("tcp://10.99.0.10:2376")
    expect(spec).to_contain_text("10.99.0.102")
    groups = page.locator("#nodegroups")
    expect(groups.locator("tr", has_text="default-worker")).to_contain_text("3")
    expect(groups.locator("tr", has_text="default-master")).to_contain_text("CREATE_COMPLETE")
    shot(page, "11-cluster-detail")

    with page.expect_download() as download_info:
        page.locator("#download-config").click()
    download = download_info.value
    assert download.suggested_filename == "e2e-cluster-config.zip"
    path = tmp_path / "config.zip"
    download.save_as(path)
    with zipfile.ZipFile(path) as bundle:
        files = {n.split("/", 1)[1]: bundle.read(n).decode() for n in bundle.namelist()}
    assert set(files) == {"ca.pem", "cert.pem", "key.pem", "env.sh"}
    cert = x509.load_pem_x509_certificate(files["cert.pem"].encode())
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(files["ca.pem"].encode()))
    assert "export DOCKER_HOST=tcp://10.99.0.10:2376" in files["env.sh"]

    detail = page.url
    page.goto("/clusters")
    row = page.locator("#clusters tr[data-name=e2e-cluster]")
    expect(row).to_contain_text("CREATE_COMPLETE")
    shot(page, "12-clusters")

    # Another project sees neither the cluster nor the template.
    bob = login(browser, world, "bob", MEMBER_PASSWORD, "team-b")
    bob.goto("/clusters")
    expect(bob.locator("#clusters")).not_to_contain_text("e2e-cluster")
    response = bob.goto(detail)
    assert response is not None and response.status == 404
    bob.goto("/clustertemplates")
    expect(bob.locator("#templates")).not_to_contain_text("e2e-swarm")
    bob.context.close()

    row.get_by_role("link", name="e2e-cluster").click()
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#cluster-live").get_by_role("button", name="Delete").click()
    page.wait_for_url(re.compile(r".*/clusters$"))
    expect(page.locator(".flash.ok")).to_contain_text("Deleting cluster e2e-cluster")
    expect(page.locator("#clusters tr[data-name=e2e-cluster]")).to_have_count(
        0, timeout=PROGRESS_TIMEOUT
    )
    page.context.close()


def test_a_failed_cluster_says_why_and_what_to_do(browser: Any, world: World) -> None:
    page = login(browser, world, "alice", MEMBER_PASSWORD, "team-c")
    _template(page, "e2e-failing")
    page.goto("/clusters/new?template=e2e-failing")
    page.fill("input[name=name]", "e2e-doomed")
    page.fill("textarea[name=labels]", "e2e_fail=no host has room for the masters")
    page.get_by_role("button", name="Create", exact=True).click()
    expect(page.locator("#cluster-status")).to_have_text("CREATE_FAILED", timeout=PROGRESS_TIMEOUT)
    expect(page.locator("#cluster-reason")).to_contain_text(
        "Cluster create failed: no host has room for the masters"
    )
    expect(page.locator("#cluster-live")).to_contain_text("Delete the cluster and create it again")
    shot(page, "13-cluster-failed")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#cluster-live").get_by_role("button", name="Delete").click()
    page.wait_for_url(re.compile(r".*/clusters$"))
    page.context.close()


@pytest.fixture(scope="module")
def registry_image() -> Iterator[tuple[str, str]]:
    """A local registry holding the test image: ``(registry, repository)``."""
    engine = engine_or_skip()
    with local_registry() as registry:
        repo = f"{registry}/e2e/busybox-{uuid.uuid4().hex[:6]}"
        engine.tag("berth-test/busybox:latest", repo, "v1")
        for line in engine.push(repo, tag="v1", stream=True, decode=True):
            assert "error" not in line, line
        engine.remove_image(f"{repo}:v1")
        try:
            yield registry, repo
        finally:
            with contextlib.suppress(docker.errors.APIError):
                engine.remove_image(f"{repo}:v1", force=True)


def test_an_admin_pulls_and_deletes_an_image(
    browser: Any, world: World, registry_image: tuple[str, str]
) -> None:
    _, repo = registry_image
    page = login(browser, world, "admin", ADMIN_PASSWORD, "admin")
    page.get_by_role("link", name="Images").click()
    form = page.locator("#pull-form")
    form.locator("input[name=repo]").fill(repo)
    form.locator("input[name=tag]").fill("v1")
    form.locator("select[name=host]").select_option(world.host)
    form.get_by_role("button", name="Pull").click()
    expect(page.locator(".flash.ok")).to_contain_text(f"Pulled {repo}:v1 onto {world.host}")
    row = page.locator(f"#images tr[data-repo='{repo}']")
    expect(row).to_contain_text("active")
    expect(row).to_contain_text(world.host)
    shot(page, "14-images")

    form.locator("input[name=repo]").fill(repo.rsplit("/", 1)[0] + "/not-there")
    form.get_by_role("button", name="Pull").click()
    expect(page.locator(".flash.error")).to_contain_text("not-there")

    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Delete").click()
    expect(page.locator(".flash.ok")).to_contain_text(f"Image {repo}:v1 is deleted")
    expect(page.locator(f"#images tr[data-repo='{repo}']")).to_have_count(0)
    page.context.close()


def test_registries_belong_to_the_project(
    browser: Any, world: World, registry_image: tuple[str, str]
) -> None:
    registry, _ = registry_image
    page = login(browser, world, "alice", MEMBER_PASSWORD, "team-a")
    expect(page.locator("nav")).not_to_contain_text("Images")
    response = page.goto("/images")
    assert response is not None and response.status == 403
    page.get_by_role("link", name="Registries").click()
    form = page.locator("#registry-form")
    form.locator("input[name=name]").fill("e2e-private")
    form.locator("input[name=domain]").fill(registry)
    form.locator("input[name=username]").fill("robot")
    form.locator("input[name=password]").fill("e2e-registry-secret")
    form.get_by_role("button", name="Add registry").click()
    expect(page.locator(".flash.ok")).to_contain_text("Registry e2e-private is added")
    row = page.locator("#registries tr[data-name=e2e-private]")
    expect(row).to_contain_text(registry)
    expect(row).to_contain_text("***")
    expect(page.locator("body")).not_to_contain_text("e2e-registry-secret")
    shot(page, "15-registries")

    bob = login(browser, world, "bob", MEMBER_PASSWORD, "team-b")
    bob.goto("/registries")
    expect(bob.locator("#registries")).not_to_contain_text("e2e-private")
    bob.context.close()

    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Delete").click()
    expect(page.locator(".flash.ok")).to_contain_text("Registry e2e-private is deleted")
    expect(page.locator("#registries tr[data-name=e2e-private]")).to_have_count(0)
    page.context.close()


def test_a_member_manages_networks_and_volumes(browser: Any, world: World) -> None:
    page = login(browser, world, "alice", MEMBER_PASSWORD, "team-a")
    page.get_by_role("link", name="Networks").click()
    expect(page.locator("#networks")).to_contain_text("(default)")
    page.locator("#network-form input[name=name]").fill("e2e-backend")
    page.get_by_role("button", name="Create network").click()
    expect(page.locator(".flash.ok")).to_contain_text("Network e2e-backend is created")
    page.get_by_role("link", name="Volumes").click()
    page.locator("#volume-form input[name=name]").fill("e2e-data")
    page.locator("#volume-form input[name=size]").fill("2")
    page.get_by_role("button", name="Create volume").click()
    expect(page.locator(".flash.ok")).to_contain_text("Volume e2e-data (2 GiB) is created")
    shot(page, "16-volumes")

    bob = login(browser, world, "bob", MEMBER_PASSWORD, "team-b")
    bob.goto("/volumes")
    expect(bob.locator("#volumes")).not_to_contain_text("e2e-data")
    bob.goto("/networks")
    expect(bob.locator("#networks")).not_to_contain_text("e2e-backend")
    bob.context.close()

    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#volumes tr[data-name=e2e-data]").get_by_role("button", name="Delete").click()
    expect(page.locator(".flash.ok")).to_contain_text("Volume e2e-data is deleted")
    page.goto("/networks")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#networks tr[data-name=e2e-backend]").get_by_role("button", name="Delete").click()
    expect(page.locator(".flash.ok")).to_contain_text("Network e2e-backend is deleted")
    page.context.close()


def test_a_member_runs_a_capsule(browser: Any, world: World) -> None:
    page = login(browser, world, "alice", MEMBER_PASSWORD, "team-a")
    page.get_by_role("link", name="Capsules").click()
    template = page.locator("textarea[name=template]")
    template.fill(template.input_value().replace("web-pod", "e2e-pod"))
    page.get_by_role("button", name="Create capsule").click()
    expect(page.locator(".flash.ok")).to_contain_text("Capsule e2e-pod is being created")
    row = page.locator("#capsules tr[data-name=e2e-pod]")
    expect(row.locator(".status").first).to_have_text("Running", timeout=45_000)
    expect(row).to_contain_text("web")
    shot(page, "17-capsules")

    bob = login(browser, world, "bob", MEMBER_PASSWORD, "team-b")
    bob.goto("/capsules")
    expect(bob.locator("#capsules")).not_to_contain_text("e2e-pod")
    bob.context.close()

    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Delete").click()
    expect(page.locator(".flash.ok")).to_contain_text("Deleting capsule e2e-pod")
    expect(page.locator("#capsules tr[data-name=e2e-pod]")).to_have_count(0, timeout=45_000)
    page.context.close()


def test_a_member_manages_security_groups(browser: Any, world: World) -> None:
    page = login(browser, world, "alice", MEMBER_PASSWORD, "team-a")
    page.get_by_role("link", name="Security groups").click()
    expect(page.locator("#security-groups section[data-name=default]")).to_contain_text(
        "members of default"
    )
    form = page.locator("#group-form")
    form.locator("input[name=name]").fill("e2e-web")
    form.locator("input[name=description]").fill("The web tier")
    form.get_by_role("button", name="Create group").click()
    expect(page.locator(".flash.ok")).to_contain_text("Security group e2e-web is created")
    group = page.locator("#security-groups section[data-name=e2e-web]")
    expect(group).to_contain_text("No rules: nothing gets in")

    # The service judges the rule: ports on icmp are refused with its message.
    rule = group.locator("form.rule-form")
    rule.locator("select[name=protocol]").select_option("icmp")
    rule.locator("input[name=port_min]").fill("80")
    rule.get_by_role("button", name="Add rule").click()
    expect(page.locator(".flash.error")).to_contain_text("Port ranges apply to tcp and udp only")

    rule.locator("select[name=protocol]").select_option("tcp")
    rule.locator("input[name=port_min]").fill("80")
    rule.locator("input[name=remote_ip_prefix]").fill("10.1.0.0/16")
    rule.get_by_role("button", name="Add rule").click()
    expect(page.locator(".flash.ok")).to_contain_text("The rule is added to e2e-web")
    row = group.locator("tr[data-rule=tcp-80]")
    expect(row).to_contain_text("10.1.0.0/16")
    shot(page, "18-security-groups")

    bob = login(browser, world, "bob", MEMBER_PASSWORD, "team-b")
    bob.goto("/security_groups")
    expect(bob.locator("#security-groups")).to_contain_text("default")
    expect(bob.locator("#security-groups")).not_to_contain_text("e2e-web")
    bob.context.close()

    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Delete rule").click()
    expect(page.locator(".flash.ok")).to_contain_text("The rule is deleted from e2e-web")
    expect(group.locator("tr[data-rule=tcp-80]")).to_have_count(0)
    page.once("dialog", lambda dialog: dialog.accept())
    group.get_by_role("button", name="Delete group").click()
    expect(page.locator(".flash.ok")).to_contain_text("Security group e2e-web is deleted")
    expect(page.locator("#security-groups section[data-name=e2e-web]")).to_have_count(0)
    page.context.close()


def test_a_container_from_the_form_gets_its_network_groups_and_volume(
    browser: Any, world: World
) -> None:
    page = login(browser, world, "alice", MEMBER_PASSWORD, "team-c")
    page.goto("/networks")
    page.locator("#network-form input[name=name]").fill("e2e-wired-net")
    page.get_by_role("button", name="Create network").click()
    expect(page.locator(".flash.ok")).to_contain_text("Network e2e-wired-net is created")
    page.goto("/security_groups")
    page.locator("#group-form input[name=name]").fill("e2e-app")
    page.get_by_role("button", name="Create group").click()
    expect(page.locator(".flash.ok")).to_contain_text("Security group e2e-app is created")

    page.goto("/containers/new")
    page.fill("input[name=image]", "berth-test/busybox:latest")
    page.fill("input[name=name]", "e2e-wired")
    page.fill("input[name=command]", "sleep 3600")
    page.select_option("select[name=network]", label="e2e-wired-net")
    page.select_option("select[name=security_groups]", label=["e2e-app"])
    page.fill("input[name=volume_size]", "1")
    # A mount without a destination: the volume service's message, the choices kept.
    page.get_by_role("button", name="Create", exact=True).click()
    expect(page.locator(".flash.error")).to_contain_text("a destination is required")
    expect(page.locator("select[name=security_groups] option:checked")).to_have_text("e2e-app")
    page.fill("input[name=mount_destination]", "/data")
    page.get_by_role("button", name="Create", exact=True).click()
    page.wait_for_url(re.compile(r".*/containers/[0-9a-f-]{36}$"))
    expect(page.locator("#status")).to_have_text("Running", timeout=45_000)
    expect(page.locator("#spec-networks")).to_have_text("e2e-wired-net")
    expect(page.locator("#spec-groups")).to_have_text("e2e-app")
    expect(page.locator("#spec-mounts")).to_contain_text("(1 GiB) at /data")
    uuid = page.url.rsplit("/", 1)[1]
    token = user_token(world, "alice", MEMBER_PASSWORD, "team-c")
    headers = {"OpenStack-API-Version": "container 1.40", "X-Auth-Token": token}
    body = world.api("GET", f"/container/v1/containers/{uuid}", headers=headers).json()
    assert [(m["destination"], m["size"]) for m in body["mounts"]] == [("/data", 1)]
    assert len(body["security_groups"]) == 1

    # A group in use cannot go: the API's reason is shown.
    page.goto("/security_groups")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#security-groups section[data-name=e2e-app]").get_by_role(
        "button", name="Delete group"
    ).click()
    expect(page.locator(".flash.error")).to_contain_text(f"is in use by container(s) {uuid}")

    r = world.api("DELETE", f"/container/v1/containers/{uuid}?stop=True", headers=headers)
    assert r.status_code == 204, r.text
    for _ in range(90):
        if world.api("GET", f"/container/v1/containers/{uuid}", headers=headers).status_code == 404:
            break
        page.wait_for_timeout(500)
    page.goto("/security_groups")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#security-groups section[data-name=e2e-app]").get_by_role(
        "button", name="Delete group"
    ).click()
    expect(page.locator(".flash.ok")).to_contain_text("Security group e2e-app is deleted")
    page.context.close()
