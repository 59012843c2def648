"""The ``berth`` CLI end to end: a live all-in-one Berth on the real Docker engine, over HTTP.

A container goes through its life with ``berth container …`` only, and the
engine is checked to hold nothing of it afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from berth.cli.main import app as cli
from tests.functional.docker_engine import engine_or_skip, ensure_test_image, remove_owned
from tests.live import all_in_one_env, live_server

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

PASSWORD = "cli-live-admin-pw"
# sh as PID 1 ignores SIGTERM unless it traps it: the trap keeps stop fast.
SERVE = "trap 'exit 0' TERM; echo ready-from-cli; sleep 3600 & wait"


@pytest.fixture(scope="module")
def berth_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], Any]]:
    engine = engine_or_skip()
    ensure_test_image(engine)
    work = tmp_path_factory.mktemp("cli-live")
    host = f"cli-{uuid.uuid4().hex[:8]}"
    env = all_in_one_env(work, host, PASSWORD)
    try:
        with live_server(env) as base_url:
            yield (
                {
                    "OS_AUTH_URL": f"{base_url}/identity/v3",
                    "OS_USERNAME": "admin",
                    "OS_PASSWORD": PASSWORD,
                    "OS_PROJECT_NAME": "admin",
                    "OS_USER_DOMAIN_NAME": "Default",
                    "OS_PROJECT_DOMAIN_NAME": "Default",
                    "OS_CLOUD": "",
                    "COLUMNS": "200",
                },
                (engine, host),
            )
    finally:
        remove_owned(engine, host)


def test_a_container_lives_and_dies_through_the_cli(
    berth_env: tuple[dict[str, str], Any],
) -> None:
    env, (engine, host) = berth_env

    def berth(*args: str) -> Any:
        return CliRunner().invoke(cli, list(args), env=env)

    r = berth("container", "run", "--wait", "--name", "cli-web", "--memory", "64",
              "berth-test/busybox:latest", "sh", "-c", SERVE)  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "cli-web is Running" in r.output
    r = berth("container", "logs", "cli-web")
    assert r.exit_code == 0 and "ready-from-cli" in r.output
    r = berth("container", "exec", "cli-web", "sh", "-c", "echo inside; exit 3")
    assert r.exit_code == 3 and "inside" in r.output
    r = berth("container", "ls")
    assert "cli-web" in r.output and "Running" in r.output and host in r.output
    r = berth("status")
    assert r.exit_code == 0 and "1 Running" in r.output and f"on {host}: up" in r.output

    r = berth("container", "stop", "--wait", "cli-web")
    assert r.exit_code == 0 and "cli-web is Stopped" in r.output, r.output
    r = berth("container", "start", "--wait", "cli-web")
    assert r.exit_code == 0 and "cli-web is Running" in r.output, r.output
    r = berth("container", "rm", "cli-web")
    assert r.exit_code == 1 and "Stop it first or use --stop" in r.output
    r = berth("container", "rm", "--stop", "--wait", "cli-web")
    assert r.exit_code == 0 and "cli-web is deleted" in r.output, r.output
    assert engine.containers(all=True, filters={"label": f"berth.owner={host}"}) == []

    r = berth("container", "run", "--wait", "--name", "cli-bad", "berth-test/no-such-image:0")
    assert r.exit_code == 1
    assert "cli-bad is Error" in r.output and "no-such-image" in r.output
    assert berth("container", "rm", "cli-bad").exit_code == 0


def test_logs_follow_prints_output_as_it_comes_until_the_container_stops(
    berth_env: tuple[dict[str, str], Any],
) -> None:
    env, _ = berth_env

    def berth(*args: str) -> Any:
        return CliRunner().invoke(cli, list(args), env=env)

    script = "echo first-line; sleep 2; echo second-line; sleep 1"
    r = berth("container", "run", "--wait", "--name", "cli-follow",
              "berth-test/busybox:latest", "sh", "-c", script)  # fmt: skip
    assert r.exit_code == 0, r.output
    r = berth("container", "logs", "-f", "cli-follow")
    assert r.exit_code == 0, r.output
    assert r.output.index("first-line") < r.output.index("second-line")
    r = berth("container", "logs", "-f", "no-such-container")
    assert r.exit_code == 1 and "berth container ls" in r.output
    assert berth("container", "rm", "--force", "--wait", "cli-follow").exit_code == 0


def test_exec_it_gives_the_command_this_terminal(
    berth_env: tuple[dict[str, str], Any],
) -> None:
    """``berth container exec -it`` in a real pseudo-terminal of 33 rows by 101 columns."""
    import fcntl
    import os
    import select
    import struct
    import subprocess
    import sys
    import termios
    import time

    env, _ = berth_env
    r = CliRunner().invoke(
        cli,
        ["container", "run", "--wait", "--name", "cli-tty", "berth-test/busybox:latest",
         "sh", "-c", SERVE],
        env=env,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
    proc = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "berth"),
         "container", "exec", "-it", "cli-tty", "sh"],
        stdin=slave, stdout=slave, stderr=slave, env={**os.environ, **env}, close_fds=True,
    )  # fmt: skip
    os.close(slave)
    seen = b""

    def read_until(marker: bytes, timeout: float = 30) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while marker not in seen:
            assert time.monotonic() < deadline, f"never saw {marker!r} in {seen!r}"
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    seen += os.read(master, 4096)
                except OSError:  # the process ended and closed its side
                    break

    try:
        read_until(b"/ # ")  # the shell's prompt: the session is up
        os.write(master, b"echo $((6 * 7))-from-a-tty; stty size\r")
        read_until(b"42-from-a-tty")
        read_until(b"33 101")
        os.write(master, b"exit\r")
        assert proc.wait(timeout=30) == 0, seen
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    r = CliRunner().invoke(cli, ["container", "rm", "--force", "--wait", "cli-tty"], env=env)
    assert r.exit_code == 0, r.output
