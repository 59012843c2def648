"""What each of Berth's commands loads before it does anything.

A ``berth`` command is an HTTP client: ``berth container list`` and ``berth --help``
took 2.3 s here, 1.7 s of it importing the control plane and the agent (FastAPI,
SQLAlchemy, Alembic, the AMQP client, every service) because the ``sim-pool``
command's module imported them to exist. A standalone ``berth-agent`` imported the
control plane too, for the all-in-one's sake, and carried it in its memory. Each
case runs in a fresh interpreter, as a user's shell starts it.
"""

from __future__ import annotations

import json
import subprocess
import sys

# The control plane's packages and the libraries only it uses.
CONTROL_PLANE = ("berth.api", "berth.services", "berth.store", "sqlalchemy", "alembic", "aio_pika")
# What only a process running containers needs.
AGENT = ("berth.agent", "berth.runtimes", "docker", "uvicorn", "fastapi")


def _loaded(code: str) -> set[str]:
    """The top modules and Berth's packages loaded after running ``code`` in a new process."""
    probe = (
        f"{code}\nimport json, sys\n"
        "print(json.dumps(sorted({'.'.join(m.split('.')[:2]) if m.startswith('berth.') "
        "else m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_the_berth_command_loads_neither_the_control_plane_nor_the_agent() -> None:
    loaded = _loaded("import berth.cli.main")
    assert "berth.cli" in loaded and "httpx" in loaded, loaded
    assert not loaded & {*CONTROL_PLANE, *AGENT}, sorted(loaded & {*CONTROL_PLANE, *AGENT})


def test_a_berth_command_runs_without_loading_them() -> None:
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom berth.cli.main import app\n"
        "result = CliRunner().invoke(app, ['version'])\n"
        "assert result.exit_code == 0 and 'berth' in result.output, result.output"
    )
    loaded = _loaded(code)
    assert not loaded & {*CONTROL_PLANE, *AGENT}, sorted(loaded & {*CONTROL_PLANE, *AGENT})


def test_the_standalone_agents_module_loads_no_control_plane() -> None:
    loaded = _loaded("import berth.cli.serve")
    assert {"berth.agent", "uvicorn"} <= loaded, loaded
    assert not loaded & set(CONTROL_PLANE), sorted(loaded & set(CONTROL_PLANE))
