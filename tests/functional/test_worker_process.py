"""``berth-worker``: the control plane's background loops in a process of their own.

The command is what docs/operators.md gives for running the loops apart from the API;
it runs here as a user starts it (its entry point, ``worker_main``), beside a
berth-api on the same database, and its cluster worker reports itself where Magnum
clients look for conductors (``openstack coe service list``).
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.conftest import ADMIN_PASSWORD
from tests.live import LiveProcess, live_api, live_token

_WORKER = "from berth.cli.serve import worker_main\nworker_main()\n"


def _conductors(base_url: str, token: str) -> list[dict[str, object]]:
    r = httpx.get(
        f"{base_url}/container-infra/v1/mservices",
        headers={"X-Auth-Token": token, "OpenStack-API-Version": "container-infra latest"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    services: list[dict[str, object]] = r.json()["mservices"]
    return services


def test_berth_worker_runs_the_loops_beside_the_api(tmp_path: Path) -> None:
    settings = {
        "BERTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "BERTH_AGENT_HOST": "api-host",
        "BERTH_DATA_DIR": str(tmp_path / "data"),
        "BERTH_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'berth.db'}",
        "BERTH_HEARTBEAT_INTERVAL": "1",
    }
    with live_api(settings, workdir=tmp_path / "api") as api:
        token = live_token(api.base_url, "admin", ADMIN_PASSWORD, "admin")
        env = {**api.env, "BERTH_AGENT_HOST": "worker-host"}
        env.pop("BERTH_PORT")

        def reported() -> bool:
            return any(s["host"] == "worker-host" for s in _conductors(api.base_url, token))

        worker = LiveProcess(
            "berth-worker", _WORKER, env, tmp_path, tmp_path / "worker.log", reported
        )
        try:
            worker.start()
            first = next(s for s in _conductors(api.base_url, token) if s["host"] == "worker-host")
            assert first["binary"] == "magnum-conductor" and first["state"] == "up", first
            # It keeps running its loops: the heartbeat goes on.
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                now = next(
                    s for s in _conductors(api.base_url, token) if s["host"] == "worker-host"
                )
                if int(str(now["report_count"])) > int(str(first["report_count"])):
                    break
                time.sleep(0.2)
            else:
                raise AssertionError(f"the worker's heartbeat stopped: {first}")
            assert worker.alive
        finally:
            worker.stop()
        assert "Traceback" not in worker.log_text(), worker.log_text()
