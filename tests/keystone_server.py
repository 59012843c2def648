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
import tempfile
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
    "build_venv",
    "ensure_keystone_venv",
    "keystone_server",
    "keystone_venv_or_skip",
    "run_server",
    "serve_until_ready",
    "stop_server",
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


def build_venv(venv: Path, pins: tuple[str, ...], marker_name: str = "berth-pins") -> Path:
    """The virtualenv ``venv`` with ``pins`` installed, built now if missing or built with others.

    Several processes may call this at once: one builds (under a file lock),
    the others wait for it. Raises ``RuntimeError`` with pip's output if the
    build fails. Shared with tests/glance_server.py.
    """
    marker = venv / marker_name  # written last: the build is complete

    def ready() -> bool:
        return marker.is_file() and marker.read_text().split() == list(pins)

    if ready():
        return venv
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{venv}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready():
            return venv
        # Built in place; the marker, written last, is what says it is complete.
        shutil.rmtree(venv, ignore_errors=True)
        steps = (
            [sys.executable, "-m", "venv", str(venv)],
            [str(venv / "bin" / "pip"), "install", "-q", *pins],
        )
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, timeout=900, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(step)} failed:\n{done.stdout}\n{done.stderr}")
        marker.write_text("\n".join(pins) + "\n")
    return venv


def ensure_keystone_venv() -> Path:
    """The Keystone virtualenv, built now if missing or built with other pins."""
    return build_venv(_venv_dir(), KEYSTONE_PINS, "berth-keystone-pins")


def run_server(
    venv: Path, workdir: Path, port: int, app: str, env: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    """gunicorn serving the WSGI ``app`` (``module:name``) on 127.0.0.1:``port``, in its group."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                str(venv / "bin" / "gunicorn"),
                "--no-control-socket",
                "--chdir", str(workdir),
                "--bind", f"127.0.0.1:{port}",
                "--workers", "1",
                "--threads", "8",
                "--timeout", "120",
                app,
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            start_new_session=True,
        )  # fmt: skip


def serve_until_ready(
    venv: Path, workdir: Path, port: int, app: str, config: dict[str, str], log: Path,
    ready_url: str, what: str, timeout: float,
) -> subprocess.Popen[bytes]:  # fmt: skip
    """``run_server`` with this environment (no OS_/BERTH_ variables) plus ``config``,
    then wait until ``ready_url`` answers 200 (``timeout`` s at most)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "BERTH_"))}
    proc = run_server(venv, workdir, port, app, {**env, **config}, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited:\n{log.read_text()[-4000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(ready_url, timeout=5).status_code == 200:
                return proc
        time.sleep(0.3)
    stop_server(proc)
    raise AssertionError(f"{what} did not answer within {timeout:g} s:\n{log.read_text()}")


def stop_server(proc: subprocess.Popen[bytes] | None) -> None:
    """Stop a ``run_server`` gunicorn and its worker (the process group it leads)."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def keystone_venv_or_skip() -> Path:
    """The venv; a test without it is skipped locally and fails under ``CI=true``."""
    try:
        return ensure_keystone_venv()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs a Keystone (scripts/lib.sh ensure_keystone_venv): {exc}")
        pytest.skip(f"no Keystone virtualenv could be built: {exc}")


_TEMPLATE_PARTS = ("keystone.db", "fernet-keys", "credential-keys")


def _write_conf(conf: Path, workdir: Path) -> None:
    """keystone.conf for a Keystone kept in ``workdir`` (SQLite, Fernet)."""
    conf.write_text(
        "[DEFAULT]\n"
        f"log_file = {workdir / 'keystone-app.log'}\n"
        "[database]\n"
        f"connection = sqlite:///{workdir / 'keystone.db'}\n"
        "[token]\n"
        "provider = fernet\n"
        "[fernet_tokens]\n"
        f"key_repository = {workdir / 'fernet-keys'}\n"
        "[credential]\n"
        f"key_repository = {workdir / 'credential-keys'}\n"
    )


def _template(venv: Path) -> Path:
    """``venv``'s Keystone template: a synced empty database and both key repositories.

    Made once per venv (a rebuilt venv makes it again) in a scratch directory that is
    renamed into place when complete, so concurrent callers never copy half of one."""
    template = venv / "berth-keystone-template"
    if (template / "complete").is_file():
        return template
    scratch = Path(tempfile.mkdtemp(prefix="berth-keystone-template-", dir=venv))
    try:
        for sub in _TEMPLATE_PARTS[1:]:
            (scratch / sub).mkdir()
        conf = scratch / "keystone.conf"
        _write_conf(conf, scratch)
        user = ("--keystone-user", "root", "--keystone-group", "root")
        for args in (("db_sync",), ("fernet_setup", *user), ("credential_setup", *user)):
            done = subprocess.run(
                [str(venv / "bin" / "keystone-manage"), "--config-file", str(conf), *args],
                capture_output=True, text=True, timeout=300, check=False, cwd=scratch,
            )  # fmt: skip
            assert done.returncode == 0, f"keystone-manage {args[0]} failed:\n{done.stderr}"
        (scratch / "complete").write_text("")
        with contextlib.suppress(OSError):  # another process's template came first: use that
            scratch.rename(template)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    assert (template / "complete").is_file(), template
    return template


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
        """A fresh Keystone: SQLite, Fernet, the admin user and its endpoint.

        The schema and the key repositories come from a copy of the venv's template
        (``keystone-manage db_sync``, ``fernet_setup``, ``credential_setup`` once per
        venv: three runs of a few CPU-seconds each, the same for every Keystone);
        ``bootstrap``, which names this one's password and URL, runs here."""
        for sub in _TEMPLATE_PARTS[1:]:
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        _write_conf(self._conf, self.workdir)
        (self.workdir / "berth_keystone_wsgi.py").write_text(_WSGI)
        template = _template(self.venv)
        shutil.copy(template / "keystone.db", self.workdir / "keystone.db")
        for sub in _TEMPLATE_PARTS[1:]:
            shutil.copytree(template / sub, self.workdir / sub, dirs_exist_ok=True)
        self.manage(
            "bootstrap",
            "--bootstrap-password", self.admin_password,
            "--bootstrap-public-url", f"{self.url}/v3",
            "--bootstrap-region-id", "RegionOne",
        )  # fmt: skip

    def start(self) -> None:
        """Serve with gunicorn until ``/v3`` answers (60 s at most)."""
        config = {"OS_KEYSTONE_CONFIG_FILES": str(self._conf)}
        self._proc = serve_until_ready(
            self.venv, self.workdir, self.port, "berth_keystone_wsgi:application", config,
            self.log, f"{self.url}/v3", "Keystone", 60,
        )  # fmt: skip

    def stop(self) -> None:
        """Stop gunicorn and its worker (the process group it leads)."""
        stop_server(self._proc)

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
