"""``berth cluster …`` against a live berth-api over HTTP, with a fake cluster driver.

The driver (``tests/e2e/fake_cluster_driver.py``: steps, no nodes) is registered with
the live server through the real ``berth.cluster_drivers`` entry point. A cluster is
created with ``--wait`` (its steps shown as they come), listed, shown, its configuration
written and checked against its CA, a failing one ends in exit 1 with its reason and what
to do next, both are deleted with ``--wait``; another project sees none of it.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from typer.testing import CliRunner

from berth.cli.main import app as cli
from tests.e2e import fake_cluster_driver
from tests.live import live_server, live_token

pytestmark = [pytest.mark.e2e]

PASSWORD = "cli-cluster-admin-pw"
MEMBER_PASSWORD = "cli-cluster-member-pw"


def _env(base_url: str, user: str, password: str, project: str) -> dict[str, str]:
    return {
        "OS_AUTH_URL": f"{base_url}/identity/v3",
        "OS_USERNAME": user,
        "OS_PASSWORD": password,
        "OS_PROJECT_NAME": project,
        "OS_USER_DOMAIN_NAME": "Default",
        "OS_PROJECT_DOMAIN_NAME": "Default",
        "OS_CLOUD": "",
        "COLUMNS": "200",
    }


def _member(base_url: str, token: str) -> None:
    """``carol`` with the member role in a new project ``team-x``."""
    h = {"X-Auth-Token": token}
    api = f"{base_url}/identity/v3"
    project = {"project": {"name": "team-x", "domain_id": "default"}}
    pid = httpx.post(f"{api}/projects", json=project, headers=h).json()["project"]["id"]
    user = {"user": {"name": "carol", "domain_id": "default", "password": MEMBER_PASSWORD}}
    uid = httpx.post(f"{api}/users", json=user, headers=h).json()["user"]["id"]
    role = httpx.get(f"{api}/roles?name=member", headers=h).json()["roles"][0]["id"]
    r = httpx.put(f"{api}/projects/{pid}/users/{uid}/roles/{role}", headers=h)
    assert r.status_code == 204, r.text


@pytest.fixture(scope="module")
def berth_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    work = tmp_path_factory.mktemp("cli-cluster")
    env = {
        "BERTH_DATA_DIR": str(work / "data"),
        "BERTH_DATABASE_URL": f"sqlite+aiosqlite:///{work / 'berth.db'}",
        "BERTH_ADMIN_PASSWORD": PASSWORD,
        **fake_cluster_driver.install(work / "drivers"),
    }
    with live_server(env) as base_url:
        token = live_token(base_url, "admin", PASSWORD, "admin")
        template = {
            "name": "cli-tpl",
            "coe": "swarm-mode",
            "image_id": "berth-test/busybox:latest",
            "driver": fake_cluster_driver.NAME,
            "labels": {"e2e_step_seconds": "0.3"},
        }
        r = httpx.post(
            f"{base_url}/container-infra/v1/clustertemplates",
            json=template,
            headers={"X-Auth-Token": token},
        )
        assert r.status_code == 201, r.text
        _member(base_url, token)
        yield base_url


def test_a_cluster_through_the_cli(berth_url: str, tmp_path: Path) -> None:
    env = _env(berth_url, "admin", PASSWORD, "admin")

    def berth(*args: str, as_env: dict[str, str] = env) -> Any:
        return CliRunner().invoke(cli, list(args), env=as_env)

    r = berth("cluster", "templates")
    assert r.exit_code == 0 and "cli-tpl" in r.output and "swarm-mode" in r.output
    r = berth("cluster", "create", "cli-c", "--template", "cli-tpl", "--node-count", "2",
              "--label", "e2e_step_seconds=1.2", "--wait", "--timeout", "120")  # fmt: skip
    assert r.exit_code == 0, r.output
    for step in ("Cluster create requested.", "Starting master 1 of 1", "Starting node 2 of 2"):
        assert step in r.output, r.output
    assert "cluster cli-c is CREATE_COMPLETE at tcp://10.99.0.10:2376" in r.output
    assert "berth cluster config cli-c" in r.output

    r = berth("cluster", "ls")
    assert r.exit_code == 0 and "cli-c" in r.output and "CREATE_COMPLETE" in r.output
    r = berth("cluster", "show", "cli-c")
    assert r.exit_code == 0 and "10.99.0.101" in r.output and "24.0.7" in r.output

    out = tmp_path / "cli-c"
    r = berth("cluster", "config", "cli-c", "--dir", str(out))
    assert r.exit_code == 0, r.output
    assert f"source {out.resolve() / 'env.sh'}" in r.output.replace("\n", "")
    ca = x509.load_pem_x509_certificate((out / "ca.pem").read_bytes())
    cert = x509.load_pem_x509_certificate((out / "cert.pem").read_bytes())
    cert.verify_directly_issued_by(ca)
    assert stat.S_IMODE((out / "key.pem").stat().st_mode) == 0o600
    sourced = (out / "env.sh").read_text()
    assert "export DOCKER_HOST=tcp://10.99.0.10:2376" in sourced
    assert f"export DOCKER_CERT_PATH={out.resolve()}" in sourced
    r = berth("cluster", "config", "cli-c", "--dir", str(out))
    assert r.exit_code == 2 and "already exist" in r.output and "--force" in r.output
    assert berth("cluster", "config", "cli-c", "--dir", str(out), "--force").exit_code == 0

    # Another project sees nothing, and is told where to look.
    carol = _env(berth_url, "carol", MEMBER_PASSWORD, "team-x")
    r = berth("cluster", "show", "cli-c", as_env=carol)
    assert r.exit_code == 1 and "cluster cli-c not found in project team-x" in r.output
    assert "berth cluster ls" in r.output
    r = berth("cluster", "ls", as_env=carol)
    assert r.exit_code == 0 and "cli-c" not in r.output and "no clusters" in r.output
    r = berth("cluster", "delete", "cli-c", as_env=carol)
    assert r.exit_code == 1 and "not found" in r.output

    r = berth("cluster", "create", "cli-bad", "--template", "cli-tpl", "--wait",
              "--label", "e2e_fail=no host has room")  # fmt: skip
    assert r.exit_code == 1, r.output
    assert "cluster cli-bad is CREATE_FAILED: Cluster create failed: no host has room" in r.output
    assert "berth cluster delete cli-bad" in r.output
    r = berth("cluster", "create", "cli-x", "--template", "no-such-template")
    assert r.exit_code == 1 and "no-such-template" in r.output
    r = berth("cluster", "create", "cli-y", "--template", "cli-tpl", "--label", "oops")
    assert r.exit_code == 2 and "KEY=VALUE" in r.output

    for name in ("cli-bad", "cli-c"):
        r = berth("cluster", "delete", name, "--wait", "--timeout", "60")
        assert r.exit_code == 0 and f"cluster {name} is deleted" in r.output, r.output
    r = berth("cluster", "ls")
    assert "cli-c" not in r.output
