"""The compat suite's ``openstack`` fork server answers as the ``openstack`` script does.

tests/compat/osc_forkserver.py runs the CLI's own ``main`` in a child forked from a
process that imported it once (a second of start-up saved per run). Here the same
commands run both ways against a live berth-api: a fresh ``openstack`` process and
the fork server give the same exit status, stdout and stderr, byte for byte.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.compat.oscli import OPENSTACK, Cli, live_cli

_SERVER = Path(__file__).with_name("osc_forkserver.py")

pytestmark = pytest.mark.compat


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    with live_cli(tmp_path_factory.mktemp("compat-forkserver")) as cli:
        # A project with a non-ASCII description: the output's encoding is compared too.
        cli.run("project", "create", "fork-proj", "--description", "für die Prüfung ✓")
        yield cli


COMMANDS = [
    ("--version",),
    ("project", "show", "fork-proj"),
    ("project", "show", "fork-proj", "-f", "json"),
    ("project", "show", "no-such-project"),  # exit 1, the API's message on stderr
    ("appcontainer", "list"),
    ("appcontainer", "show", "no-such-container"),
    ("no-such-command",),  # exit 2, the CLI's suggestions
    ("appcontainer", "run"),  # argparse's usage error
    ("role", "list", "--help"),
]


def _ids(text: str) -> str:
    """``text`` with the request ids the API gives each request made the same."""
    return re.sub(r"req-[0-9a-f-]{36}", "req-…", text)


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a))
def test_the_fork_server_answers_as_a_fresh_openstack_process(
    cli: Cli, args: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BERTH_TEST_OSC_FORK", "0")
    fresh = cli.run(*args, check=False)
    monkeypatch.setenv("BERTH_TEST_OSC_FORK", "1")
    forked = cli.run(*args, check=False)
    assert (forked.returncode, forked.stdout, _ids(forked.stderr)) == (
        fresh.returncode,
        fresh.stdout,
        _ids(fresh.stderr),
    )
    assert fresh.stdout or fresh.stderr  # each command says something


def test_a_run_leaves_nothing_behind_for_the_next(cli: Cli) -> None:
    """Each run is a fresh copy of the warmed-up server: a wrong password, then the
    right one, then another user's environment, as three separate processes would."""
    wrong = cli.run("token", "issue", password="not-the-password", check=False)
    assert wrong.returncode == 1 and "401" in wrong.stderr
    assert cli.json("token", "issue")["project_id"] == cli.project_id("admin")
    cli.add_member("fork-other", "fork-user", "fork-pw")
    mine = cli.json("token", "issue", user="fork-user", password="fork-pw", project="fork-other")
    assert mine["project_id"] == cli.project_id("fork-other")
    assert cli.json("token", "issue")["project_id"] == cli.project_id("admin")


def test_the_fork_server_ends_with_the_process_that_started_it(tmp_path: Path) -> None:
    """A pytest-xdist worker ends without running ``atexit``, where the server is
    stopped: the server notices its parent is gone, exits and removes its directory
    (two servers and their directories were left behind by every CI run before)."""
    home = Path(tempfile.mkdtemp(prefix="berth-osc-", dir=tmp_path))
    starter = (
        "import subprocess, sys\n"
        "p = subprocess.Popen([sys.executable, sys.argv[1], sys.argv[2], sys.argv[3]],"
        " stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)\n"
        "assert p.stdout.readline() == 'ready\\n'\n"
        "print(p.pid, flush=True)\n"
        "import os; os._exit(0)\n"  # as an xdist worker leaves: no atexit, no kill
    )
    args = [sys.executable, "-c", starter, str(_SERVER), str(OPENSTACK), str(home / "fork.sock")]
    server = int(
        subprocess.run(args, capture_output=True, text=True, timeout=120, check=True).stdout
    )
    deadline = time.monotonic() + 15
    while Path(f"/proc/{server}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not Path(f"/proc/{server}").exists(), "the fork server outlived its parent"
    assert not home.exists()
