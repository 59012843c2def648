"""A real berth-api process on a free local port, for tests that drive stock clients.

``live_server`` starts ``uvicorn.run(create_app(Settings()))`` in a subprocess
configured only through ``BERTH_*`` environment variables (as ``berth-api``
is), waits until ``/identity/v3`` answers, and on exit stops it and fails the
test if its log shows an unhandled error.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

__all__ = ["free_port", "live_server"]

# The real entry point, so BERTH_ALL_IN_ONE=true also runs the embedded agent.
_SERVE = "from berth.cli.serve import api_main\napi_main()\n"
_STARTUP_SECONDS = 60.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _server_env(settings_env: dict[str, str], workdir: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BERTH_", "OS_"))}
    env.update(
        BERTH_DATA_DIR=str(workdir / "data"),
        BERTH_DATABASE_URL=f"sqlite+aiosqlite:///{workdir / 'berth.db'}",
        BERTH_ALL_IN_ONE="false",
    )
    env.update(settings_env)
    env["BERTH_PORT"] = str(port)
    return env


def _wait_ready(proc: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
    deadline = time.monotonic() + _STARTUP_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"berth-api exited with {proc.returncode}:\n{log.read_text()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base_url}/identity/v3", timeout=2.0).status_code == 200:
                return
        time.sleep(0.2)
    raise AssertionError(f"berth-api did not answer within {_STARTUP_SECONDS}s:\n{log.read_text()}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@contextlib.contextmanager
def live_server(settings_env: dict[str, str]) -> Iterator[str]:
    """Run berth-api with ``settings_env`` (``BERTH_*`` variables); yield its base URL.

    Unset ``BERTH_DATA_DIR`` / ``BERTH_DATABASE_URL`` default to a fresh
    temporary directory and a SQLite file in it. ``BERTH_PORT`` is always a
    free port chosen here.
    """
    with tempfile.TemporaryDirectory(prefix="berth-live-") as tmp:
        workdir = Path(tmp)
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        log = workdir / "server.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-c", _SERVE],
                env=_server_env(settings_env, workdir, port),
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=workdir,
            )
            try:
                _wait_ready(proc, base_url, log)
                yield base_url
            finally:
                _stop(proc)
        text = log.read_text(errors="replace")
        assert "unhandled error" not in text, f"berth-api logged an unhandled error:\n{text}"
