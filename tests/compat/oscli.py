"""Runs the unmodified ``openstack`` CLI as a given user against a live berth-api."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["ADMIN_PASSWORD", "OPENSTACK", "Cli"]

ADMIN_PASSWORD = "compat-admin-pw"
OPENSTACK = Path(sys.executable).parent / "openstack"


class Cli:
    """Runs ``openstack`` as a given user with a clean ``OS_*`` environment."""

    def __init__(self, base_url: str, home: Path, *, auth_url: str | None = None) -> None:
        self.base_url = base_url
        self.home = home
        # Berth's own identity, or an external Keystone's v3 URL (identity_backend=keystone).
        self.auth_url = auth_url or f"{base_url}/identity/v3"

    def env(self, user: str, password: str, project: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "BERTH_"))}
        # A login shell always sets SHELL; `coe cluster config` reads it
        # (os.environ["SHELL"]) to pick export vs setenv lines, and CI runs without one.
        env.setdefault("SHELL", "/bin/bash")
        env.update(
            HOME=str(self.home),  # no stray clouds.yaml
            OS_AUTH_URL=self.auth_url,
            OS_USERNAME=user,
            OS_PASSWORD=password,
            OS_PROJECT_NAME=project,
            OS_USER_DOMAIN_NAME="Default",
            OS_PROJECT_DOMAIN_NAME="Default",
            OS_IDENTITY_API_VERSION="3",
        )
        return env

    def run(
        self,
        *args: str,
        user: str = "admin",
        password: str = ADMIN_PASSWORD,
        project: str = "admin",
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(OPENSTACK), *args],
            env=self.env(user, password, project),
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.home,
        )
        if check:
            assert proc.returncode == 0, f"openstack {' '.join(args)}:\n{proc.stderr}"
        return proc

    def add_member(self, project: str, user: str, password: str) -> None:
        """Create ``project`` and ``user`` in it with the member role, as the admin would."""
        self.run("project", "create", project)
        self.run("user", "create", "--project", project, "--password", password, user)
        self.run("role", "add", "--user", user, "--project", project, "member")

    def zun_library(self, expression: str, *, user: str, password: str, project: str) -> Any:
        """Evaluate ``expression`` (JSON-able) with ``zun``, an unmodified zunclient
        Client logged in as ``user``: for calls the ``openstack`` CLI cannot make."""
        code = (
            "import json, os\n"
            "from keystoneauth1 import loading, session\n"
            "from zunclient import client\n"
            "auth = loading.get_plugin_loader('password').load_from_options(\n"
            "    auth_url=os.environ['OS_AUTH_URL'], username=os.environ['OS_USERNAME'],\n"
            "    password=os.environ['OS_PASSWORD'], project_name=os.environ['OS_PROJECT_NAME'],\n"
            "    user_domain_name='Default', project_domain_name='Default')\n"
            "zun = client.Client('1.latest', session=session.Session(auth=auth))\n"
            f"print(json.dumps({expression}))\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code],
            env=self.env(user, password, project),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def json(self, *args: str, **kwargs: Any) -> Any:
        return json.loads(self.run(*args, "-f", "json", **kwargs).stdout)
