"""Real Berth processes on free local ports, for tests that drive stock clients or crash them.

``live_server`` starts ``berth-api`` (``berth.cli.serve.api_main``) in a
subprocess configured only through ``BERTH_*`` environment variables, waits
until ``/container/`` answers, and on exit stops it and fails the test if its
log shows an unhandled error. ``live_api`` does the same but yields the
process itself, which can be SIGKILLed and restarted on the same data
directory, database and port. ``berth_agent`` runs a standalone
``berth-agent`` (``berth.cli.serve.agent_main``) against a live API, with the
same kill/restart controls.

Each process writes one log, appended to across restarts. When the body of
``live_api`` or ``berth_agent`` raises, the log is printed to stderr, so a
failing test shows what the processes said.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx

from berth.identity.auth_request import by_name, password_auth, project_ref

__all__ = [
    "LiveAgent",
    "LiveApi",
    "LiveProcess",
    "all_in_one_env",
    "berth_agent",
    "free_port",
    "live_api",
    "live_login",
    "live_server",
    "live_token",
]

# The real entry points, so BERTH_ALL_IN_ONE=true also runs the embedded agent.
_SERVE = "from berth.cli.serve import api_main\napi_main()\n"
_AGENT = "from berth.cli.serve import agent_main\nagent_main()\n"
_STARTUP_SECONDS = 60.0
_LOG_TAIL = 400  # lines of each log shown when a test fails


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def live_login(base_url: str, user: str, password: str, project: str) -> httpx.Response:
    """Log ``user`` in to ``project`` on the live Berth at ``base_url``; its 201 answer."""
    body = password_auth(user, password, by_name("Default"), project_ref(None, project, "Default"))
    r = httpx.post(f"{base_url}/identity/v3/auth/tokens", json=body, timeout=30)
    assert r.status_code == 201, r.text
    return r


def live_token(base_url: str, user: str, password: str, project: str) -> str:
    """A token of ``user`` scoped to ``project`` from the live Berth at ``base_url``."""
    return live_login(base_url, user, password, project).headers["x-subject-token"]


def all_in_one_env(work: Path, host: str, admin_password: str, **settings: str) -> dict[str, str]:
    """The settings of an all-in-one Berth keeping its state in ``work``, its agent named
    ``host`` on a free port; ``settings`` (``BERTH_*`` names) are added or override."""
    return {
        "BERTH_DATA_DIR": str(work / "data"),
        "BERTH_DATABASE_URL": f"sqlite+aiosqlite:///{work / 'berth.db'}",
        "BERTH_ADMIN_PASSWORD": admin_password,
        "BERTH_ALL_IN_ONE": "true",
        "BERTH_AGENT_HOST": host,
        "BERTH_AGENT_PORT": str(free_port()),
        **settings,
    }


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("BERTH_", "OS_"))}


class LiveProcess:
    """One Berth process run as ``python -c code``: start, SIGKILL, stop, restart.

    ``ready`` is polled after each start until it returns True (the process
    must stay alive meanwhile).
    """

    def __init__(
        self,
        name: str,
        code: str,
        env: dict[str, str],
        cwd: Path,
        log: Path,
        ready: Callable[[], bool],
        prefix: Sequence[str] = (),
    ) -> None:
        self.name = name
        self._prefix = list(prefix)
        self.env = env
        self.log = log
        self._code = code
        self._cwd = cwd
        self._ready = ready
        self._proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, *, wait: bool = True) -> None:
        """Start the process (a second start is a restart after a stop or kill)."""
        assert not self.alive, f"{self.name} is already running"
        self.starts += 1
        with self.log.open("ab") as out:
            out.write(f"===== {self.name} start #{self.starts} at {time.time():.3f}\n".encode())
            out.flush()
            self._proc = subprocess.Popen(
                [*self._prefix, sys.executable, "-c", self._code],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self._cwd,
            )
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = _STARTUP_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited with {self._proc.returncode}:\n{self.log_text()}"
                )
            if self._ready():
                return
            time.sleep(0.1)
        raise AssertionError(f"{self.name} was not ready within {timeout}s:\n{self.log_text()}")

    def kill(self) -> None:
        """``kill -9``: no shutdown handlers, no goodbyes."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait(timeout=10)
            self._note(f"killed with SIGKILL at {time.time():.3f}")

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL if it is still there after ``timeout`` seconds."""
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._note(f"did not stop within {timeout}s of SIGTERM; killing it")
            self._proc.kill()
            self._proc.wait(timeout=5)

    def restart(self, *, wait: bool = True) -> None:
        """Stop (gracefully) if running, then start again with the same settings."""
        self.stop()
        self.start(wait=wait)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def _note(self, message: str) -> None:
        with self.log.open("a") as out:
            out.write(f"===== {self.name} {message}\n")


class LiveApi(LiveProcess):
    """A berth-api process; its port, data directory and database survive restarts."""

    def __init__(self, env: dict[str, str], workdir: Path, port: int) -> None:
        self.port = port
        self.base_url = f"http://{env.get('BERTH_BIND_HOST', '127.0.0.1')}:{port}"
        self.workdir = workdir
        super().__init__("berth-api", _SERVE, env, workdir, workdir / "server.log", self._answers)

    def _answers(self) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            # Zun's version document: served without a token, whatever the identity backend.
            return httpx.get(f"{self.base_url}/container/", timeout=2.0).status_code == 200
        return False


class LiveAgent(LiveProcess):
    """A standalone berth-agent process for host ``host``, serving on ``port``."""

    def __init__(
        self,
        env: dict[str, str],
        workdir: Path,
        host: str,
        port: int,
        *,
        address: str = "127.0.0.1",
        prefix: Sequence[str] = (),
    ) -> None:
        self.host = host
        self.port = port
        self.url = f"http://{address}:{port}"
        super().__init__(
            "berth-agent", _AGENT, env, workdir, workdir / "agent.log", self._answers, prefix
        )

    def _answers(self) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{self.url}/healthz", timeout=2.0).status_code == 200
        return False


def _server_env(settings_env: dict[str, str], workdir: Path, port: int) -> dict[str, str]:
    env = _clean_env()
    env.update(
        BERTH_DATA_DIR=str(workdir / "data"),
        BERTH_DATABASE_URL=f"sqlite+aiosqlite:///{workdir / 'berth.db'}",
        BERTH_ALL_IN_ONE="false",
    )
    env.update(settings_env)
    env["BERTH_PORT"] = str(port)
    return env


def _show(procs: list[LiveProcess]) -> None:
    for proc in procs:
        lines = proc.log_text().splitlines()[-_LOG_TAIL:]
        print(
            f"\n----- {proc.name} log ({proc.log}), last {len(lines)} lines -----", file=sys.stderr
        )
        print("\n".join(lines), file=sys.stderr)


@contextlib.contextmanager
def live_api(
    settings_env: dict[str, str], *, workdir: Path | None = None, port: int | None = None
) -> Iterator[LiveApi]:
    """Run berth-api with ``settings_env`` (``BERTH_*`` variables); yield the process.

    Unset ``BERTH_DATA_DIR`` / ``BERTH_DATABASE_URL`` default to a directory
    under ``workdir`` (a fresh temporary one when None) and a SQLite file in
    it. ``BERTH_PORT`` is ``port``, or a free port chosen here, kept across restarts.
    """
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="berth-live-")))
        workdir.mkdir(parents=True, exist_ok=True)
        port = port or free_port()
        api = LiveApi(_server_env(settings_env, workdir, port), workdir, port)
        try:
            api.start()
            yield api
        except BaseException:
            _show([api])
            raise
        finally:
            api.stop()
        text = api.log_text()
        assert "unhandled error" not in text, f"berth-api logged an unhandled error:\n{text}"


@contextlib.contextmanager
def live_server(settings_env: dict[str, str]) -> Iterator[str]:
    """Run berth-api with ``settings_env`` (``BERTH_*`` variables); yield its base URL.

    Unset ``BERTH_DATA_DIR`` / ``BERTH_DATABASE_URL`` default to a fresh
    temporary directory and a SQLite file in it. ``BERTH_PORT`` is always a
    free port chosen here.
    """
    with live_api(settings_env) as api:
        yield api.base_url


@contextlib.contextmanager
def berth_agent(
    control_url: str,
    *,
    host: str,
    password: str,
    workdir: Path,
    settings_env: dict[str, str] | None = None,
    wait: bool = True,
    address: str = "127.0.0.1",
    prefix: Sequence[str] = (),
) -> Iterator[LiveAgent]:
    """Run a standalone berth-agent for ``host`` against the API at ``control_url``.

    It serves its own API on a free port (kept across restarts) and keeps its
    log in ``workdir/agent.log``. ``settings_env`` adds or overrides
    ``BERTH_*`` variables (say, ``BERTH_RECONCILE_INTERVAL``). Without
    ``wait`` it is yielded as soon as it started (call ``wait_ready``), so
    that several agents can start at once. On exit it is stopped, and the
    test fails if it logged a traceback. ``prefix`` runs it elsewhere (e.g. in a
    test host's network namespace, tests/multihost), serving on ``address``.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = _clean_env()
    env.update(
        BERTH_CONTROL_URL=control_url,
        BERTH_AGENT_PASSWORD=password,
        BERTH_AGENT_HOST=host,
        BERTH_AGENT_PORT=str(port),
        BERTH_AGENT_BIND_HOST=address,
        BERTH_AGENT_URL=f"http://{address}:{port}",
        BERTH_DATA_DIR=str(workdir / "agent-data"),
        BERTH_HEARTBEAT_INTERVAL="1",
    )
    env.update(settings_env or {})
    agent = LiveAgent(env, workdir, host, port, address=address, prefix=prefix)
    try:
        agent.start(wait=wait)
        yield agent
    except BaseException:
        _show([agent])
        raise
    finally:
        agent.stop()
    text = agent.log_text()
    assert "Traceback" not in text, f"berth-agent logged a traceback:\n{text}"
