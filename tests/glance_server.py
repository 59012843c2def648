"""A real OpenStack Glance for tests: from PyPI, in its own virtualenv, on a loopback port.

``ensure_glance_venv`` builds ``/var/tmp/berth-glance-venv`` (or
``$BERTH_GLANCE_VENV``) with the pinned Glance (33.0.0, the release of the
test Keystone's 30.0.0) and gunicorn: about a minute the first time, then reused
while its marker file names the same pins. ``glance_server`` configures a fresh
Glance beside a ``KeystoneServer`` (SQLite, the file store, keystonemiddleware
against that Keystone as user ``glance`` with ``admin`` in project ``service``,
as Glance's install guide has it), registers the ``image`` service and its
endpoints in Keystone's catalog, serves ``glance.wsgi.api`` with gunicorn on
a free loopback port and stops it on exit; it can be stopped and started again
(Glance down).

``scripts/test`` builds the venv before pytest (``ensure_glance_venv`` in
scripts/lib.sh). Without it a test that needs Glance is skipped, except under
``CI=true``, where it fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.keystone_server import KeystoneServer, build_venv, serve_until_ready, stop_server
from tests.live import free_port

__all__ = ["GLANCE_PINS", "GlanceServer", "ensure_glance_venv", "glance_server"]

# Glance 33.0.0 is the 2026.2 release, like Keystone 30.0.0; both install on Python 3.11.
GLANCE_PINS = ("glance==33.0.0", "gunicorn==27.0.1")
GLANCE_PASSWORD = "glance-service-pw"


def _venv_dir() -> Path:
    return Path(os.environ.get("BERTH_GLANCE_VENV", "/var/tmp/berth-glance-venv"))


def ensure_glance_venv() -> Path:
    """The Glance virtualenv, built now if missing or built with other pins (see build_venv)."""
    return build_venv(_venv_dir(), GLANCE_PINS)


def glance_venv_or_skip() -> Path:
    """The venv; a test without it is skipped locally and fails under ``CI=true``."""
    try:
        return ensure_glance_venv()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs a Glance (scripts/lib.sh ensure_glance_venv): {exc}")
        pytest.skip(f"no Glance virtualenv could be built: {exc}")


def _conf(workdir: Path, keystone: KeystoneServer) -> str:
    return (
        "[DEFAULT]\n"
        f"log_file = {workdir / 'glance-app.log'}\n"
        "enabled_import_methods = []\n"
        "[database]\n"
        f"connection = sqlite:///{workdir / 'glance.db'}\n"
        "[glance_store]\n"
        "stores = file\n"
        "default_store = file\n"
        f"filesystem_store_datadir = {workdir / 'images'}\n"
        "[os_glance_staging_store]\n"
        f"filesystem_store_datadir = {workdir / 'staging'}\n"
        "[os_glance_tasks_store]\n"
        f"filesystem_store_datadir = {workdir / 'tasks'}\n"
        "[paste_deploy]\n"
        "flavor = keystone\n"
        f"config_file = {workdir / 'glance-api-paste.ini'}\n"
        "[keystone_authtoken]\n"
        f"www_authenticate_uri = {keystone.url}/v3\n"
        f"auth_url = {keystone.url}/v3\n"
        "auth_type = password\n"
        "interface = public\n"
        "username = glance\n"
        f"password = {GLANCE_PASSWORD}\n"
        "project_name = service\n"
        "user_domain_name = Default\n"
        "project_domain_name = Default\n"
        "service_token_roles_required = true\n"
        "[oslo_concurrency]\n"
        f"lock_path = {workdir / 'locks'}\n"
    )


def _synced_db(venv: Path) -> Path:
    """An empty Glance database after ``glance-manage db_sync`` (a few CPU-seconds),
    made once per venv: in a scratch directory renamed into place when complete."""
    template = venv / "berth-glance-template"
    if (template / "glance.db").is_file():
        return template / "glance.db"
    scratch = Path(tempfile.mkdtemp(prefix="berth-glance-template-", dir=venv))
    try:
        conf = scratch / "glance-api.conf"
        conf.write_text(f"[database]\nconnection = sqlite:///{scratch / 'glance.db'}\n")
        done = subprocess.run(
            [str(venv / "bin" / "glance-manage"), "--config-file", str(conf), "db_sync"],
            capture_output=True, text=True, timeout=300, check=False, cwd=scratch,
        )  # fmt: skip
        assert done.returncode == 0, f"glance-manage db_sync failed:\n{done.stderr}"
        conf.unlink()
        with contextlib.suppress(OSError):  # another process's template came first: use that
            scratch.rename(template)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    assert (template / "glance.db").is_file(), template
    return template / "glance.db"


class _Admin:
    """Keystone admin calls (the bootstrap admin's token), enough to register Glance."""

    def __init__(self, keystone: KeystoneServer) -> None:
        self.url = f"{keystone.url}/v3"
        self.headers = {"X-Auth-Token": keystone.token("admin", keystone.admin_password, "admin")}

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        r = httpx.request(method, self.url + path, json=body, headers=self.headers, timeout=30)
        assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content else None

    def one(self, kind: str, name: str, create: dict[str, Any]) -> str:
        found = self.call("GET", f"/{kind}?name={name}")[kind]
        if found:
            return str(found[0]["id"])
        return str(self.call("POST", f"/{kind}", create)[kind[:-1]]["id"])


@dataclass
class GlanceServer:
    """One Glance: ``url`` its endpoint (as in Keystone's catalog); stop/start keep its data."""

    venv: Path
    workdir: Path
    port: int
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.workdir / "glance.log"

    def configure(self, keystone: KeystoneServer) -> None:
        """A fresh Glance: config, its database, its user and endpoints in ``keystone``."""
        for sub in ("images", "staging", "tasks", "locks"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        (self.workdir / "glance-api.conf").write_text(_conf(self.workdir, keystone))
        shutil.copy(self.venv / "etc" / "glance" / "glance-api-paste.ini", self.workdir)
        # The synced empty schema, the same for every Glance: made once per venv.
        shutil.copy(_synced_db(self.venv), self.workdir / "glance.db")
        self._register(_Admin(keystone))

    def _register(self, admin: _Admin) -> None:
        """User ``glance`` (admin in ``service``), the ``image`` service and its endpoints."""
        project = admin.one("projects", "service", {"project": {"name": "service"}})
        user = admin.one(
            "users", "glance", {"user": {"name": "glance", "password": GLANCE_PASSWORD}}
        )
        role = admin.one("roles", "admin", {"role": {"name": "admin"}})
        admin.call("PUT", f"/projects/{project}/users/{user}/roles/{role}")
        service = admin.one("services", "glance", {"service": {"name": "glance", "type": "image"}})
        for interface in ("public", "internal", "admin"):
            endpoint = {
                "service_id": service,
                "interface": interface,
                "url": self.url,
                "region_id": "RegionOne",
            }
            admin.call("POST", "/endpoints", {"endpoint": endpoint})

    def start(self) -> None:
        """Serve with gunicorn until ``/versions`` answers (90 s at most)."""
        config = {"OS_GLANCE_CONFIG_DIR": str(self.workdir)}
        self._proc = serve_until_ready(
            self.venv, self.workdir, self.port, "glance.wsgi.api:application", config,
            self.log, f"{self.url}/versions", "Glance", 90,
        )  # fmt: skip

    def stop(self) -> None:
        """Stop gunicorn and its worker."""
        stop_server(self._proc)


@contextlib.contextmanager
def glance_server(workdir: Path, keystone: KeystoneServer) -> Iterator[GlanceServer]:
    """A fresh Glance kept in ``workdir`` behind ``keystone``, on a free port; stopped on exit."""
    venv = glance_venv_or_skip()
    workdir.mkdir(parents=True, exist_ok=True)
    server = GlanceServer(venv, workdir, free_port())
    server.configure(keystone)
    try:
        server.start()
        yield server
    except BaseException:
        for log in (server.log, workdir / "glance-app.log"):
            if log.exists():
                print(log.read_text()[-4000:], file=sys.stderr)
        raise
    finally:
        server.stop()
