"""The unmodified ``openstack`` CLI (openstackclient + keystoneauth1) against a live berth-api."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.compat.oscli import Cli, live_cli

pytestmark = pytest.mark.compat


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    with live_cli(tmp_path_factory.mktemp("compat-identity")) as cli:
        yield cli


def test_token_issue_and_catalog(cli: Cli) -> None:
    token = cli.json("token", "issue")
    assert token["id"] and token["project_id"] and token["user_id"] and token["expires"]
    services = {s["Type"] for s in cli.json("catalog", "list")}
    assert {"identity", "container"} <= services


def test_wrong_password_fails(cli: Cli) -> None:
    proc = cli.run("token", "issue", password="not-the-password", check=False)
    assert proc.returncode != 0
    assert "401" in proc.stderr or "authentication" in proc.stderr.lower()


def test_project_user_role_lifecycle(cli: Cli) -> None:
    project = cli.json("project", "create", "compat-proj", "--description", "from the CLI")
    assert project["name"] == "compat-proj" and project["enabled"] is True
    assert "compat-proj" in {p["Name"] for p in cli.json("project", "list")}
    shown = cli.json("project", "show", "compat-proj")
    assert shown["id"] == project["id"] and shown["description"] == "from the CLI"

    user = cli.json(
        "user", "create", "--project", "compat-proj", "--password", "first-pw", "compat-user"
    )
    assert user["name"] == "compat-user" and user["default_project_id"] == project["id"]
    assert "compat-user" in {u["Name"] for u in cli.json("user", "list")}
    assert cli.json("user", "show", "compat-user")["id"] == user["id"]

    cli.run("role", "add", "--user", "compat-user", "--project", "compat-proj", "member")
    rows = cli.json(
        "role",
        "assignment",
        "list",
        "--user",
        "compat-user",
        "--project",
        "compat-proj",
        "--names",
    )
    assert [(r["Role"], r["User"], r["Project"]) for r in rows] == [
        ("member", "compat-user@Default", "compat-proj@Default")
    ]
    as_user = {"user": "compat-user", "project": "compat-proj"}
    assert cli.json("token", "issue", password="first-pw", **as_user)["project_id"] == project["id"]

    cli.run("user", "set", "--password", "second-pw", "compat-user")
    assert cli.json("token", "issue", password="second-pw", **as_user)["user_id"] == user["id"]
    assert cli.run("token", "issue", password="first-pw", check=False, **as_user).returncode != 0

    cli.run("role", "remove", "--user", "compat-user", "--project", "compat-proj", "member")
    rows = cli.json(
        "role", "assignment", "list", "--user", "compat-user", "--project", "compat-proj", "--names"
    )
    assert rows == []

    cli.run("user", "delete", "compat-user")
    assert "compat-user" not in {u["Name"] for u in cli.json("user", "list")}
    cli.run("project", "delete", "compat-proj")
    assert "compat-proj" not in {p["Name"] for p in cli.json("project", "list")}
