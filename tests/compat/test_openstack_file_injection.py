"""Acceptance: file injection with the unmodified ``openstack appcontainer run --mount type=bind``.

python-zunclient 5.5.0 (``zunclient/common/utils.py`` ``parse_mounts``) reads
the local file named by ``source``, and ``zunclient/v1/containers.py``
``_process_mounts`` base64-encodes it; Zun 18.0.0 keeps it as the volume's
``contents`` (``zun/api/controllers/v1/containers.py``
``_build_requested_volumes``) and its ``Local`` volume driver
(``zun/volume/driver.py``) writes it where the container sees it at
``destination``. Here a live all-in-one Berth on each real engine (Docker, Podman): the
file is there when the container's command runs, and again after a rebuild.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.compat.oscli import ADMIN_PASSWORD, Cli
from tests.compat.runtimes import EngineView
from tests.live import all_in_one_env, live_server

pytestmark = [pytest.mark.compat, pytest.mark.docker]

PW = "member-pw-123"
CONTENT = "injected by the stock client\nsecond line\n"


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, engine: EngineView
) -> Iterator[tuple[Cli, Path, EngineView]]:
    work = tmp_path_factory.mktemp("compat-inject")
    host = f"compat-{uuid.uuid4().hex[:8]}"
    env = all_in_one_env(work, host, ADMIN_PASSWORD, **engine.settings)
    try:
        with live_server(env) as base_url:
            cli = Cli(base_url, work)
            cli.add_member("team-a", "alice", PW)
            yield cli, work, engine
    finally:
        engine.remove_owned(host)


def alice(cli: Cli, *args: str, check: bool = True) -> Any:
    return cli.run(*args, user="alice", password=PW, project="team-a", check=check)


def shown_status(cli: Cli, name: str) -> str:
    """Alice's container ``name``'s status, read from the API (quicker than the CLI)."""
    r = cli.rest("GET", f"/container/v1/containers/{name}", user="alice", password=PW,
                 project="team-a")  # fmt: skip
    assert r.status_code == 200, r.text
    return str(r.json()["status"])


def wait_logs(cli: Cli, name: str, want: str, timeout: float = 60) -> str:
    """Wait for ``want`` in the logs of ``name`` through the API, then read them with
    the stock CLI (each ``openstack`` run costs a second or more: not for polling)."""
    deadline = time.monotonic() + timeout
    out = ""
    while time.monotonic() < deadline:
        r = cli.rest("GET", f"/container/v1/containers/{name}/logs", user="alice",
                     password=PW, project="team-a")  # fmt: skip
        out = r.json() if r.status_code == 200 else out  # the text, as a JSON string
        if want in out:
            out = alice(cli, "appcontainer", "logs", name).stdout
            assert want in out, out
            return out
        time.sleep(0.2)
    raise AssertionError(f"{name}'s logs never showed {want!r}: {out!r}")


def test_stock_client_injects_a_file_the_command_reads(
    world: tuple[Cli, Path, EngineView],
) -> None:
    cli, work, engine = world
    (work / "testfile").write_text(CONTENT)
    created = json.loads(
        alice(
            cli,
            "appcontainer",
            "run",
            "-f",
            "json",
            "--name",
            "inject",
            "--mount",
            "type=bind,source=testfile,destination=/data/testfile",
            "berth-test/busybox",
            "cat",
            "/data/testfile",
        ).stdout
    )
    wait_logs(cli, "inject", CONTENT)
    shown = json.loads(alice(cli, "appcontainer", "show", "-f", "json", "inject").stdout)
    assert shown["mounts"] == [
        {
            "type": "bind",
            "source": None,
            "destination": "/data/testfile",
            "file_size": len(CONTENT),
        }
    ]
    # Written into the container's own file system, not bind-mounted from the host.
    found = engine.containers(f"berth.uuid={created['uuid']}")
    assert found and engine.inspect(found[0])["Mounts"] == []

    # A rebuild makes a new container from the image (left created: the old one had
    # exited): the file is written into it again, before anything starts it.
    old_id = found[0]
    alice(cli, "appcontainer", "rebuild", "inject")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = engine.containers(f"berth.uuid={created['uuid']}")
        if now and now[0] != old_id:
            break
        time.sleep(0.2)
    else:
        shown = json.loads(alice(cli, "appcontainer", "show", "-f", "json", "inject").stdout)
        raise AssertionError(f"the rebuild never replaced the container: {shown}")
    # Zun refuses a start while Rebuilding (409, and zunclient exits 0): wait for the
    # rebuild's report first, and check the start was accepted.
    deadline = time.monotonic() + 60
    while (status := shown_status(cli, "inject")) not in ("Created", "Stopped"):
        assert time.monotonic() < deadline, f"the rebuild never ended: {status}"
        time.sleep(0.2)
    assert "accepted" in alice(cli, "appcontainer", "start", "inject").stdout
    deadline = time.monotonic() + 60
    while CONTENT not in engine.logs(now[0]):
        assert time.monotonic() < deadline, engine.inspect(now[0])["State"]
        time.sleep(0.2)
