"""Acceptance: the stock ``openstack appcontainer registry …`` and ``image …`` commands
against a live all-in-one Berth on each real engine (Docker, Podman).

The test image reaches the local registry through the machine's Docker engine
(``docker_api``); the host's engine (``engine``) is the one that pulls it."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import docker.errors
import pytest

from tests.compat.oscli import ADMIN_PASSWORD, Cli
from tests.compat.runtimes import EngineView
from tests.functional.registry import local_registry
from tests.live import free_port, live_server

pytestmark = [pytest.mark.compat, pytest.mark.docker, pytest.mark.slow]

PW = "member-pw-123"


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, engine: EngineView
) -> Iterator[tuple[Cli, str, str, EngineView]]:
    work = tmp_path_factory.mktemp("compat-images")
    host = f"compat-img-{uuid.uuid4().hex[:8]}"
    env = {
        "BERTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "BERTH_ALL_IN_ONE": "true",
        "BERTH_AGENT_HOST": host,
        "BERTH_AGENT_PORT": str(free_port()),
        **engine.settings,
    }
    with local_registry() as registry:
        try:
            with live_server(env) as base_url:
                cli = Cli(base_url, work)
                for project, user in (("team-a", "alice"), ("team-b", "bob")):
                    cli.add_member(project, user, PW)
                yield cli, host, registry, engine
        finally:
            engine.remove_owned(host)


def alice(cli: Cli, *args: str, **kw: Any) -> Any:
    return cli.run(*args, user="alice", password=PW, project="team-a", **kw)


def alice_json(cli: Cli, *args: str) -> Any:
    return cli.json(*args, user="alice", password=PW, project="team-a")


# Registry records are rows in Berth's database: no engine is asked (the engine reads
# them only when it pulls, which test_image_commands does on both runtimes), so the
# commands run against the Docker world only.
@pytest.mark.parametrize("runtime", ["docker"], indirect=True)
def test_registry_commands(world: tuple[Cli, str, str, EngineView]) -> None:
    cli, _, _, _ = world
    created = alice_json(
        cli, "appcontainer", "registry", "create", "--name", "quay", "--domain",
        "quay.example.com", "--username", "robot", "--password", "t0ps3cret",
    )  # fmt: skip
    assert created["password"] == "***" and created["domain"] == "quay.example.com"
    listed = alice_json(cli, "appcontainer", "registry", "list")
    assert [(r["name"], r["password"]) for r in listed] == [("quay", "***")]
    shown = alice_json(cli, "appcontainer", "registry", "show", "quay")
    assert shown["uuid"] == created["uuid"] and "t0ps3cret" not in str(shown)
    updated = alice_json(
        cli, "appcontainer", "registry", "update", "quay", "--username", "robot2", "--password", "x"
    )
    assert updated["username"] == "robot2" and updated["password"] == "***"
    r = cli.run("appcontainer", "registry", "show", "quay", user="bob", password=PW,
                project="team-b", check=False)  # fmt: skip
    assert r.returncode != 0 and "could not be found" in r.stderr
    bob_list = cli.json(
        "appcontainer", "registry", "list", user="bob", password=PW, project="team-b"
    )
    assert bob_list == []
    out = alice(cli, "appcontainer", "registry", "delete", "quay").stdout
    assert "accepted" in out
    assert alice_json(cli, "appcontainer", "registry", "list") == []


def test_image_commands(world: tuple[Cli, str, str, EngineView], docker_api: Any) -> None:
    cli, host, registry, engine = world
    ref = f"{registry}/compat/busybox"
    tag = uuid.uuid4().hex[:8]
    docker_api.tag("berth-test/busybox:latest", ref, tag)
    for line in docker_api.push(ref, tag=tag, stream=True, decode=True):
        assert "error" not in line, line
    docker_api.remove_image(f"{ref}:{tag}")
    try:
        pulled = cli.json("appcontainer", "image", "pull", f"{ref}:{tag}", host)
        assert pulled["status"] == "active", pulled
        assert (pulled["repo"], pulled["tag"], pulled["host"]) == (ref, tag, host)
        assert engine.has_image(f"{ref}:{tag}")  # it is on the host now
        listed = cli.json("appcontainer", "image", "list")
        assert [i["uuid"] for i in listed] == [pulled["uuid"]]
        shown = cli.json("appcontainer", "image", "show", pulled["uuid"])
        assert shown["image_id"] == pulled["image_id"]
        r = alice(cli, "appcontainer", "image", "list", check=False)
        assert r.returncode != 0 and "image:get_all" in r.stderr
        out = cli.run("appcontainer", "image", "delete", pulled["uuid"]).stdout
        assert "accepted" in out
        assert not engine.has_image(f"{ref}:{tag}")
        assert cli.json("appcontainer", "image", "list") == []
        hits = alice_json(cli, "appcontainer", "image", "search", "busybox")
        assert hits == []  # no registry of team-a, no image store here
    finally:
        with contextlib.suppress(docker.errors.APIError):
            docker_api.remove_image(f"{ref}:{tag}", force=True)
        engine.remove_image(f"{ref}:{tag}")
