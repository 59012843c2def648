"""The ``berth`` CLI against the real ASGI app in memory (Typer's CliRunner, no network).

The CLI takes its httpx client from ``ctx.obj`` when one is given, so these
tests hand it a synchronous httpx client whose transport runs the app on an
event loop in a thread (the CLI is synchronous, the app is not); everything else (OS_*
credentials, clouds.yaml, the Zun API calls, error messages, exit codes) is
the code a user runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from fastapi import FastAPI
from typer.testing import CliRunner

from berth.api.app import create_app
from berth.cli import local
from berth.cli.credentials import CredentialsError, load_credentials
from berth.cli.main import app as cli
from berth.config import Settings
from tests.conftest import ADMIN_PASSWORD, AGENT_PASSWORD
from tests.helpers import zun_headers

AUTH_URL = "http://testserver/identity/v3"
ADMIN_ENV = {
    "OS_AUTH_URL": AUTH_URL,
    "OS_USERNAME": "admin",
    "OS_PASSWORD": ADMIN_PASSWORD,
    "OS_PROJECT_NAME": "admin",
    "OS_USER_DOMAIN_NAME": "Default",
    "OS_PROJECT_DOMAIN_NAME": "Default",
    "OS_CLOUD": "",
    "COLUMNS": "200",
}


T = TypeVar("T")


class LoopThread:
    """An event loop running in a thread, for calling async code from sync code."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


class SyncASGITransport(httpx.BaseTransport):
    """httpx's ASGITransport, made synchronous by running it on a LoopThread."""

    def __init__(self, app: FastAPI, loop: LoopThread) -> None:
        self._asgi = httpx.ASGITransport(app=app)
        self._loop = loop

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()

        async def send() -> httpx.Response:
            inner = httpx.Request(
                request.method, request.url, headers=request.headers, content=body
            )
            response = await self._asgi.handle_async_request(inner)
            content = await response.aread()
            return httpx.Response(response.status_code, headers=response.headers, content=content)

        return self._loop.run(send())


@pytest.fixture
def http(tmp_path: Path) -> Iterator[httpx.Client]:
    """A sync client of the real app (its lifespan run), as the CLI will use it."""
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'berth.db'}",
        admin_password=ADMIN_PASSWORD,
        agent_password=AGENT_PASSWORD,
        all_in_one=False,
    )
    app = create_app(settings, run_workers=False)
    loop = LoopThread()
    stack = contextlib.AsyncExitStack()
    loop.run(stack.enter_async_context(app.router.lifespan_context(app)))
    try:
        transport = SyncASGITransport(app, loop)
        with httpx.Client(transport=transport, base_url="http://testserver") as client:
            yield client
    finally:
        loop.run(stack.aclose())
        loop.close()
    assert not app.state.berth.saw_server_error


def berth(http: httpx.Client | None, *args: str, **env: str) -> Any:
    """Run ``berth ARGS`` with the admin's OS_* variables (overridden by ``env``)."""
    obj = (lambda: http) if http is not None else None
    return CliRunner().invoke(cli, list(args), env={**ADMIN_ENV, **env}, obj=obj)


def test_run_without_a_host_fails_with_the_reason_and_a_nonzero_exit(http: httpx.Client) -> None:
    r = berth(http, "container", "ls")
    assert r.exit_code == 0 and "No containers" in r.output
    r = berth(http, "container", "run", "--wait", "--name", "web", "busybox", "sleep", "60")
    assert r.exit_code == 1
    assert "web is Error: There are not enough hosts available" in r.output
    r = berth(http, "container", "ls")
    assert r.exit_code == 0 and "web" in r.output and "Error" in r.output
    r = berth(http, "container", "show", "web")
    assert r.exit_code == 0 and "sleep 60" in r.output and "not enough hosts" in r.output
    r = berth(http, "container", "rm", "web")
    assert r.exit_code == 0, r.output
    r = berth(http, "container", "show", "web")
    assert r.exit_code == 1
    assert "container web not found in project admin: list them with `berth container ls`" in (
        r.output
    )


def test_run_passes_every_option_to_the_api(http: httpx.Client) -> None:
    r = berth(
        http,
        *("container", "run", "--name", "opts", "--cpu", "0.5", "--memory", "64"),
        *("-e", "A=1", "-p", "8080", "--restart", "on-failure:2", "busybox", "sh", "-c", "x y"),
    )
    assert r.exit_code == 0, r.output
    token = http.post(
        "/identity/v3/auth/tokens",
        json={
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "name": "admin",
                            "domain": {"name": "Default"},
                            "password": ADMIN_PASSWORD,
                        }
                    },
                },
                "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}},
            }
        },
    ).headers["x-subject-token"]
    shown = http.get(
        "/container/v1/containers/opts",
        headers=zun_headers(token),
    ).json()
    assert shown["command"] == ["sh", "-c", "x y"]
    assert (shown["cpu"], shown["memory"], shown["environment"]) == (0.5, "64", {"A": "1"})
    assert shown["restart_policy"] == {"Name": "on-failure", "MaximumRetryCount": "2"}


def test_bad_options_and_api_refusals_say_what_to_do(http: httpx.Client) -> None:
    r = berth(http, "container", "run", "-e", "NOPE", "busybox")
    assert r.exit_code == 2 and "is not KEY=VALUE" in r.output
    r = berth(http, "container", "run", "--cpu", "99", "busybox")
    assert r.exit_code == 1 and "cpu" in r.output and "out of range" in r.output
    r = berth(http, "container", "logs", "nothing-here")
    assert r.exit_code == 1 and "container nothing-here not found" in r.output


def test_wrong_or_missing_credentials(http: httpx.Client) -> None:
    r = berth(http, "container", "ls", OS_PASSWORD="wrong")
    assert r.exit_code == 1
    assert "authentication failed for user admin in project admin" in r.output
    assert "OS_PASSWORD" in r.output
    r = berth(http, "container", "ls", OS_AUTH_URL="", OS_USERNAME="")
    assert r.exit_code == 1
    assert "OS_AUTH_URL, OS_USERNAME not set: source .berth/admin-openrc" in r.output


def test_an_unreachable_berth_says_how_to_start_it() -> None:
    r = berth(None, "container", "ls", OS_AUTH_URL="http://127.0.0.1:1/identity/v3")
    assert r.exit_code == 1
    assert "cannot reach Berth at http://127.0.0.1:1" in r.output
    assert "./scripts/up" in r.output
    r = berth(None, "status", "--url", "http://127.0.0.1:1")
    assert r.exit_code == 1 and "start it with ./scripts/up" in r.output


def test_status_reports_the_api_and_the_project(http: httpx.Client) -> None:
    r = berth(http, "status")
    assert r.exit_code == 0, r.output
    assert "Berth answers at http://testserver" in r.output
    assert "Project admin as admin: none" in r.output


def test_clouds_yaml_through_os_cloud(http: httpx.Client, tmp_path: Path) -> None:
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(
        "clouds:\n"
        "  berth:\n"
        "    auth:\n"
        f"      auth_url: {AUTH_URL}\n"
        "      username: admin\n"
        f"      password: {ADMIN_PASSWORD}\n"
        "      project_name: admin\n"
    )
    creds = load_credentials({"OS_CLOUD": "berth"}, (clouds,))
    assert (creds.username, creds.project_name, creds.base_url) == (
        "admin",
        "admin",
        "http://testserver",
    )
    overridden = load_credentials({"OS_CLOUD": "berth", "OS_PROJECT_NAME": "x"}, (clouds,))
    assert overridden.project_name == "x"
    with pytest.raises(CredentialsError, match=r"no clouds\.yaml defines it"):
        load_credentials({"OS_CLOUD": "other"}, (clouds,))


def test_up_and_down_wrap_the_repository_scripts(monkeypatch: pytest.MonkeyPatch) -> None:
    repo = local.find_repo()
    assert repo is not None and (repo / "scripts" / "up").is_file()
    monkeypatch.setattr(local, "find_repo", lambda start=None: None)
    r = berth(None, "up")
    assert r.exit_code == 1 and "runs scripts/up of a Berth checkout" in r.output


def test_version_and_help() -> None:
    assert "berth 0.1.0" in berth(None, "version").output
    r = berth(None, "container", "--help")
    assert r.exit_code == 0
    for command in ("run", "ls", "show", "logs", "exec", "stop", "start", "rm"):
        assert command in r.output


def test_host_commands(http: httpx.Client) -> None:
    result = berth(http, "host", "ls")
    assert result.exit_code == 0, result.output
    assert "Host" in result.output
    result = berth(http, "host", "evacuate", "nowhere")
    assert result.exit_code == 1
    assert "host nowhere not found" in result.output
