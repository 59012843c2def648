"""Runs the unmodified ``openstack`` CLI as a given user against a live berth-api."""

from __future__ import annotations

import atexit
import json
import locale
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.live import live_server

__all__ = ["ADMIN_PASSWORD", "OPENSTACK", "Cli", "live_cli"]

ADMIN_PASSWORD = "compat-admin-pw"
OPENSTACK = Path(sys.executable).parent / "openstack"
_FORKSERVER = Path(__file__).with_name("osc_forkserver.py")
_TIMEOUT = 120


class _ForkServer:
    """This test process's osc_forkserver.py (started on first use, stopped at exit)."""

    _lock = threading.Lock()
    _proc: subprocess.Popen[str] | None = None
    _socket = ""

    @classmethod
    def enabled(cls) -> bool:
        return os.environ.get("BERTH_TEST_OSC_FORK", "1") != "0"

    @classmethod
    def address(cls) -> str:
        with cls._lock:
            if cls._proc is None or cls._proc.poll() is not None:
                home = tempfile.mkdtemp(prefix="berth-osc-")
                cls._socket = os.path.join(home, "fork.sock")
                env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "BERTH_"))}
                cls._proc = subprocess.Popen(
                    [sys.executable, str(_FORKSERVER), str(OPENSTACK), cls._socket],
                    stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=env,
                    cwd=home,
                )  # fmt: skip
                assert cls._proc.stdout is not None
                ready = cls._proc.stdout.readline()
                assert ready == "ready\n", f"osc_forkserver.py did not start: {ready!r}"
                atexit.register(shutil.rmtree, home, True)  # after the kill (atexit: LIFO)
                atexit.register(cls._proc.kill)
            return cls._socket

    @classmethod
    def run(
        cls, argv: list[str], env: dict[str, str], cwd: Path
    ) -> subprocess.CompletedProcess[str]:
        """``argv`` as the ``openstack`` script would run it: what subprocess.run(...,
        capture_output=True, text=True, timeout=120) returns, or raises on a timeout."""
        with tempfile.TemporaryDirectory(prefix="berth-osc-run-") as tmp:
            out, err = Path(tmp, "stdout"), Path(tmp, "stderr")
            out.touch()
            err.touch()
            request = {"argv": argv, "env": env, "cwd": str(cwd), "stdout": str(out),
                       "stderr": str(err)}  # fmt: skip
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(_TIMEOUT)
                conn.connect(cls.address())
                conn.sendall(json.dumps(request).encode() + b"\n")
                answers = conn.makefile("rb")
                pid = json.loads(answers.readline())["pid"]
                try:
                    line = answers.readline()
                except TimeoutError:
                    os.kill(pid, signal.SIGKILL)
                    raise subprocess.TimeoutExpired(argv, _TIMEOUT) from None
            assert line, f"openstack {argv[1:]}: the fork server's child died without an answer"
            rc = json.loads(line)["rc"]
            # As subprocess's text mode decodes: the locale's encoding, universal newlines.
            encoding = locale.getpreferredencoding(False)
            stdout = out.read_text(encoding=encoding)
            stderr = err.read_text(encoding=encoding)
        return subprocess.CompletedProcess(argv, rc, stdout, stderr)


@contextmanager
def live_cli(work: Path, **env: str) -> Iterator[Cli]:
    """A live berth-api on SQLite in ``work`` (``env``: more of its settings), and a
    ``Cli`` against it as its admin."""
    if not OPENSTACK.exists():
        pytest.fail(f"{OPENSTACK} is missing: install the test extras")
    settings = {
        "BERTH_DATA_DIR": str(work / "data"),
        "BERTH_DATABASE_URL": f"sqlite+aiosqlite:///{work / 'berth.db'}",
        "BERTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
        **env,
    }
    with live_server(settings) as base_url:
        yield Cli(base_url, work)


class Cli:
    """Runs ``openstack`` as a given user with a clean ``OS_*`` environment."""

    def __init__(self, base_url: str, home: Path, *, auth_url: str | None = None) -> None:
        self.base_url = base_url
        self.home = home
        # Berth's own identity, or an external Keystone's v3 URL (identity_backend=keystone).
        self.auth_url = auth_url or f"{base_url}/identity/v3"
        self._tokens: dict[tuple[str, str], str] = {}

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
        argv = [str(OPENSTACK), *args]
        env = self.env(user, password, project)
        if _ForkServer.enabled():
            proc = _ForkServer.run(argv, env, self.home)
        else:
            proc = subprocess.run(
                argv, env=env, capture_output=True, text=True, timeout=_TIMEOUT, cwd=self.home
            )
        if check:
            assert proc.returncode == 0, f"openstack {' '.join(args)}:\n{proc.stderr}"
        return proc

    def rest(
        self,
        method: str,
        path: str,
        *,
        user: str,
        password: str,
        project: str,
        version: str = "container 1.40",
        **kw: Any,
    ) -> httpx.Response:
        """``method path`` on the live Berth's API as ``user`` (a token kept per user).

        For waiting: each ``openstack`` run costs a second or more of CPU, so the
        CLI is kept for the calls under test and the polls in between go direct.
        """
        headers = {
            "X-Auth-Token": self._token(user, password, project),
            "OpenStack-API-Version": version,
        }
        return httpx.request(method, f"{self.base_url}{path}", headers=headers, timeout=30, **kw)

    def token(self, user: str, password: str, project: str) -> str:
        """A token of ``user`` scoped to ``project``, issued by the identity API (kept per
        user; what ``openstack token issue`` prints, without a second of CLI start-up)."""
        return self._token(user, password, project)

    def _token(self, user: str, password: str, project: str) -> str:
        key = (user, project)
        if key not in self._tokens:
            r = httpx.post(
                f"{self.auth_url}/auth/tokens",
                json={"auth": {
                    "identity": {"methods": ["password"], "password": {"user": {
                        "name": user, "password": password, "domain": {"name": "Default"}}}},
                    "scope": {"project": {"name": project, "domain": {"name": "Default"}}},
                }},
                timeout=30,
            )  # fmt: skip
            assert r.status_code == 201, r.text
            self._tokens[key] = r.headers["x-subject-token"]
        return self._tokens[key]

    def add_member(self, project: str, user: str, password: str) -> None:
        """Create ``project`` and ``user`` in it with the member role, as the admin would.

        Through the identity API the ``openstack`` CLI calls (three CLI runs cost
        ~5 s a world); the CLI's own ``project create``/``user create``/``role add``
        are under test in test_openstack_keystone.py and test_openstack_coe.py.
        """

        def admin(method: str, path: str, **kw: Any) -> Any:
            r = self.identity(method, path, **kw)
            assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text}"
            return r.json() if r.content else None

        pid = admin("POST", "/projects", json={"project": {"name": project,
                                                           "domain_id": "default"}})  # fmt: skip
        uid = admin("POST", "/users", json={"user": {
            "name": user, "password": password, "domain_id": "default",
            "default_project_id": pid["project"]["id"]}})  # fmt: skip
        roles = admin("GET", "/roles", params={"name": "member"})["roles"]
        assert len(roles) == 1, roles
        admin("PUT", f"/projects/{pid['project']['id']}/users/{uid['user']['id']}"
              f"/roles/{roles[0]['id']}")  # fmt: skip

    def grant(self, user: str, project: str, role: str) -> None:
        """``role`` on ``project`` for ``user`` (all existing, by name), through the
        identity API as the admin: what ``openstack role add`` does, without a CLI run."""

        def one(kind: str, name: str) -> str:
            r = self.identity("GET", f"/{kind}", params={"name": name})
            assert r.status_code == 200, r.text
            found = r.json()[kind]
            assert len(found) == 1, (kind, name, found)
            return str(found[0]["id"])

        path = (f"/projects/{one('projects', project)}/users/{one('users', user)}"
                f"/roles/{one('roles', role)}")  # fmt: skip
        r = self.identity("PUT", path)
        assert r.status_code < 300, r.text

    def project_id(self, name: str) -> str:
        """The id of project ``name`` (what ``openstack project show`` prints), by the API."""
        r = self.identity("GET", "/projects", params={"name": name})
        assert r.status_code == 200, r.text
        (project,) = r.json()["projects"]
        return str(project["id"])

    def identity(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """``method path`` on the identity v3 API as the admin."""
        token = self._token("admin", ADMIN_PASSWORD, "admin")
        headers = {"X-Auth-Token": token}
        return httpx.request(method, f"{self.auth_url}{path}", headers=headers, timeout=30, **kw)

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
