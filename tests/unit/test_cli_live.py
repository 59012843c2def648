"""The ``berth`` CLI end to end: a live all-in-one Berth on the real Docker engine, over HTTP.

A container goes through its life with ``berth container …`` only, and the
engine is checked to hold nothing of it afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from berth.cli.main import app as cli
from tests.functional.docker_engine import engine_or_skip, ensure_test_image, remove_owned
from tests.live import free_port, live_server

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

PASSWORD = "cli-live-admin-pw"
# sh as PID 1 ignores SIGTERM unless it traps it: the trap keeps stop fast.
SERVE = "trap 'exit 0' TERM; echo ready-from-cli; sleep 3600 & wait"


@pytest.fixture(scope="module")
def berth_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], Any]]:
    engine = engine_or_skip()
    ensure_test_image(engine)
    work = tmp_path_factory.mktemp("cli-live")
    host = f"cli-{uuid.uuid4().hex[:8]}"
    env = {
        "BERTH_DATA_DIR": str(work / "data"),
        "BERTH_DATABASE_URL": f"sqlite+aiosqlite:///{work / 'berth.db'}",
        "BERTH_ADMIN_PASSWORD": PASSWORD,
        "BERTH_ALL_IN_ONE": "true",
        "BERTH_AGENT_HOST": host,
        "BERTH_AGENT_PORT": str(free_port()),
    }
    try:
        with live_server(env) as base_url:
            yield (
                {
                    "OS_AUTH_URL": f"{base_url}/identity/v3",
                    "OS_USERNAME": "admin",
                    "OS_PASSWORD": PASSWORD,
                    "OS_PROJECT_NAME": "admin",
                    "OS_USER_DOMAIN_NAME": "Default",
                    "OS_PROJECT_DOMAIN_NAME": "Default",
                    "OS_CLOUD": "",
                    "COLUMNS": "200",
                },
                (engine, host),
            )
    finally:
        remove_owned(engine, host)


def test_a_container_lives_and_dies_through_the_cli(
    berth_env: tuple[dict[str, str], Any],
) -> None:
    env, (engine, host) = berth_env

    def berth(*args: str) -> Any:
        return CliRunner().invoke(cli, list(args), env=env)

    r = berth("container", "run", "--wait", "--name", "cli-web", "--memory", "64",
              "berth-test/busybox:latest", "sh", "-c", SERVE)  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "cli-web is Running" in r.output
    r = berth("container", "logs", "cli-web")
    assert r.exit_code == 0 and "ready-from-cli" in r.output
    r = berth("container", "exec", "cli-web", "sh", "-c", "echo inside; exit 3")
    assert r.exit_code == 3 and "inside" in r.output
    r = berth("container", "ls")
    assert "cli-web" in r.output and "Running" in r.output and host in r.output
    r = berth("status")
    assert r.exit_code == 0 and "1 Running" in r.output and f"on {host}: up" in r.output

    r = berth("container", "stop", "--wait", "cli-web")
    assert r.exit_code == 0 and "cli-web is Stopped" in r.output, r.output
    r = berth("container", "start", "--wait", "cli-web")
    assert r.exit_code == 0 and "cli-web is Running" in r.output, r.output
    r = berth("container", "rm", "cli-web")
    assert r.exit_code == 1 and "Stop it first or use --stop" in r.output
    r = berth("container", "rm", "--stop", "--wait", "cli-web")
    assert r.exit_code == 0 and "cli-web is deleted" in r.output, r.output
    assert engine.containers(all=True, filters={"label": f"berth.owner={host}"}) == []

    r = berth("container", "run", "--wait", "--name", "cli-bad", "berth-test/no-such-image:0")
    assert r.exit_code == 1
    assert "cli-bad is Error" in r.output and "no-such-image" in r.output
    assert berth("container", "rm", "cli-bad").exit_code == 0
