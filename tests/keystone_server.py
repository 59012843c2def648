"""A real OpenStack Keystone for tests: from PyPI, in its own virtualenv, on a loopback port.

``ensure_keystone_venv`` builds ``/var/tmp/berth-keystone-venv`` (or
``$BERTH_KEYSTONE_VENV``) with the pinned Keystone and gunicorn: about half
a minute the first time, then reused while its marker file names the same
pins. ``keystone_server`` makes a fresh Keystone in a directory (SQLite, Fernet
tokens, ``keystone-manage bootstrap`` with an ``admin`` user in project
``admin``), serves it with gunicorn on a free loopback port, and stops it on
exit; it can be stopped and started again in between (Keystone down).

``scripts/test`` builds the venv before pytest (``ensure_keystone_venv`` in
scripts/lib.sh). Without it a test that needs Keystone is skipped, except
under ``CI=true``, where it fails.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.live import free_port

__all__ = [
    "KEYSTONE_PINS",
    "KeystoneServer",
    "ensure_keystone_venv",
    "keystone_server",
    "keystone_venv_or_skip",
]

# Keystone 30.0.0 (2026.2) installs and runs on Python 3.11; gunicorn serves its WSGI app.
KEYSTONE_PINS = ("keystone==30.0.0", "gunicorn==27.0.1")
ADMIN_PASSWORD = "keystone-admin-pw"
_WSGI = (
    "import sys\n"
    "sys.argv = sys.argv[:1]  # oslo.config would parse gunicorn's arguments\n"
    "from keystone.server import wsgi\n"
    "application = wsgi.initialize_public_application()\n"
)


def _venv_dir() -> Path:
    return Path(os.environ.get("BERTH_KEYSTONE_VENV", "/var/tmp/berth-keystone-venv"))


def _marker(venv: Path) -> Path:
    return venv / "berth-keystone-pins"


def _ready(venv: Path) -> bool:
    marker = _marker(venv)
    return marker.is_file() and marker.read_text().split() == list(KEYSTONE_PINS)


def ensure_keystone_venv() -> Path:
    """The Keystone virtualenv, built now if missing or built with other pins.

    Several processes may call this at once: one builds (under a file lock),
    the others wait for it. Raises ``RuntimeError`` with pip's output if the
    build fails.
    """
    venv = _venv_dir()
    if _ready(venv):
        return venv
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{venv}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _ready(venv):
            return venv
        # Built in place; the marker, written last, is what says it is complete.
        shutil.rmtree(venv, ignore_errors=True)
        steps = (
            [sys.executable, "-m", "venv", str(venv)],
            [str(venv / "bin" / "pip"), "install", "-q", *KEYSTONE_PINS],
        )
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, timeout=900, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(step)} failed:\n{done.stdout}\n{done.stderr}")
        _marker(venv).write_text("\n".join(KEYSTONE_PINS) + "\n")
    return venv


def keystone_venv_or_skip() -> Path:
    """The venv; a test without it is skipped locally and fails under ``CI=true``."""
    try:
        return ensure_keystone_venv()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs a Keystone (scripts/lib.sh ensure_keystone_venv): {exc}")
        pytest.skip(f"no Keystone virtualenv could be built: {exc}")


@dataclass
class KeystoneServer:
    """One Keystone: ``url`` is its base (``url + "/v3"`` the API); stop/start keep its data."""

    venv: Path
    workdir: Path
    port: int
    admin_password: str = ADMIN_PASSWORD
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.workdir / "keystone.log"

    def manage(self, *args: str) -> None:
        """Run ``keystone-manage`` with this Keystone's configuration."""
        done = subprocess.run(
            [str(self.venv / "bin" / "keystone-manage"), "--config-file", str(self._conf), *args],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            cwd=self.workdir,
        )
        assert done.returncode == 0, f"keystone-manage {args[0]} failed:\n{done.stderr}"

    @property
    def _conf(self) -> Path:
        return self.workdir / "keystone.conf"

    def configure(self) -> None:
        """A fresh Keystone: SQLite, Fernet, the admin user and its endpoint."""
        for sub in ("fernet-keys", "credential-keys"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        self._conf.write_text(
            "[DEFAULT]\n"
            f"log_file = {self.workdir / 'keystone-app.log'}\n"
            "[database]\n"
            f"connection = sqlite:///{self.workdir / 'keystone.db'}\n"
            "[token]\n"
            "provider = fernet\n"
            "[fernet_tokens]\n"
            f"key_repository = {self.workdir / 'fernet-keys'}\n"
            "[credential]\n"
            f"key_repository = {self.workdir / 'credential-keys'}\n"
        )
        (self.workdir / "berth_keystone_wsgi.py").write_text(_WSGI)
        user = ("--keystone-user", "root", "--keystone-group", "root")
        self.manage("db_sync")
        self.manage("fernet_setup", *user)
        self.manage("credential_setup", *user)
        self.manage(
            "bootstrap",
            "--bootstrap-password", self.admin_password,
            "--bootstrap-public-url", f"{self.url}/v3",
            "--bootstrap-region-id", "RegionOne",
        )  # fmt: skip

    def start(self) -> None:
        """Serve with gunicorn until ``/v3`` answers (60 s at most)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "BERTH_"))}
        env["OS_KEYSTONE_CONFIG_FILES"] = str(self._conf)
        with self.log.open("ab") as out:
            self._proc = subprocess.Popen(
                [
                    str(self.venv / "bin" / "gunicorn"),
                    "--no-control-socket",
                    "--chdir", str(self.workdir),
                    "--bind", f"127.0.0.1:{self.port}",
                    "--workers", "1",
                    "--threads", "8",
                    "--timeout", "120",
                    "berth_keystone_wsgi:application",
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self._proc.poll() is None, f"Keystone exited:\n{self.log.read_text()[-4000:]}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/v3", timeout=5).status_code == 200:
                    return
            time.sleep(0.3)
        raise AssertionError(f"Keystone did not answer within 60 s:\n{self.log.read_text()}")

    def stop(self) -> None:
        """Stop gunicorn and its worker (the process group it leads)."""
        if self._proc is None or self._proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, signal.SIGTERM)
        try:
            self._proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait(timeout=10)

    def token(self, user: str, password: str, project: str) -> str:
        """A project-scoped token of ``user`` (domains: Default)."""
        ident = {"user": {"name": user, "domain": {"name": "Default"}, "password": password}}
        body = {
            "auth": {
                "identity": {"methods": ["password"], "password": ident},
                "scope": {"project": {"name": project, "domain": {"name": "Default"}}},
            }
        }
        r = httpx.post(f"{self.url}/v3/auth/tokens", json=body, timeout=30)
        assert r.status_code == 201, r.text
        return r.headers["x-subject-token"]


@contextlib.contextmanager
def keystone_server(
    workdir: Path, admin_password: str = ADMIN_PASSWORD
) -> Iterator[KeystoneServer]:
    """A fresh Keystone kept in ``workdir``, served on a free port; stopped on exit."""
    venv = keystone_venv_or_skip()
    workdir.mkdir(parents=True, exist_ok=True)
    server = KeystoneServer(venv, workdir, free_port(), admin_password)
    server.configure()
    try:
        server.start()
        yield server
    except BaseException:
        if server.log.exists():
            print(server.log.read_text()[-4000:], file=sys.stderr)
        raise
    finally:
        server.stop()
