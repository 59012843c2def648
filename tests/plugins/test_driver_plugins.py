"""Drivers from another package: the in-memory drivers of ``memory_drivers`` are registered
through entry points only, and a real all-in-one berth-api selects them by its settings.

No engine is involved: the container runs in the plug-in's memory, which is the point (Berth
runs it without knowing the driver).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.helpers import ZUN
from tests.live import _clean_env, all_in_one_env, live_server, live_token
from tests.plugins import memory_drivers

ADMIN_PASSWORD = "plugin-admin-pw"
HOST = "plugin-host"


def _plugged_env(work: Path, **settings: str) -> dict[str, str]:
    """An all-in-one Berth whose agent runs on the plug-in's drivers (``settings`` override)."""
    plugged = {
        "BERTH_RUNTIME_DRIVER": memory_drivers.NAME,
        "BERTH_NETWORK_DRIVER": memory_drivers.NAME,
        "BERTH_VOLUME_DRIVER": memory_drivers.NAME,
        "BERTH_RECONCILE_INTERVAL": "0.5",
        "BERTH_HEARTBEAT_INTERVAL": "1",
        **memory_drivers.install(work / "site-packages"),
    }
    return all_in_one_env(work, HOST, ADMIN_PASSWORD, **{**plugged, **settings})


def _settled(base: str, headers: dict[str, str], uuid: str) -> dict[str, Any]:
    """The container once it is Running or in Error (30 s at most)."""
    deadline = time.monotonic() + 30
    shown: dict[str, Any] = {}
    while time.monotonic() < deadline:
        shown = httpx.get(f"{base}/container/v1/containers/{uuid}", headers=headers).json()
        if shown["status"] in ("Running", "Error"):
            break
        time.sleep(0.2)
    return shown


def test_berth_runs_a_container_on_a_runtime_driver_it_does_not_ship(tmp_path: Path) -> None:
    with live_server(_plugged_env(tmp_path)) as base:
        headers = {"X-Auth-Token": live_token(base, "admin", ADMIN_PASSWORD, "admin"), **ZUN}

        def run(name: str, engine: str | None = None) -> dict[str, Any]:
            body: dict[str, Any] = {"image": "busybox", "name": name, "command": ["sleep", "600"]}
            if engine:
                body["hints"] = {"label:berth.engine": engine}
            r = httpx.post(
                f"{base}/container/v1/containers?run=true", json=body, headers=headers, timeout=30
            )
            assert r.status_code == 202, r.text
            return _settled(base, headers, r.json()["uuid"])

        shown = run("plugged")
        assert shown["status"] == "Running", shown
        assert shown["host"] == HOST
        # The host's facts came from the plug-in, not from an engine on this machine, and
        # the host says which engine it runs (a label, as Zun's engine-reported labels).
        hosts = httpx.get(f"{base}/container/v1/hosts", headers=headers).json()["hosts"]
        assert [(h["hostname"], h["os"]) for h in hosts] == [(HOST, memory_drivers.OS)]
        assert hosts[0]["labels"] == {"berth.engine": "memory", "berth.engine_version": "1.0"}
        # Mixed pools: a request names the engine with a scheduler hint.
        assert run("on-memory", memory_drivers.NAME)["status"] == "Running"
        refused = run("on-docker", "docker")
        assert refused["status"] == "Error", refused
        assert "berth.engine=docker" in refused["status_reason"], refused
        r = httpx.delete(
            f"{base}/container/v1/containers/{shown['uuid']}?force=true", headers=headers
        )
        assert r.status_code == 204, r.text


def test_a_driver_that_is_not_installed_stops_berth_with_the_choices(tmp_path: Path) -> None:
    env = {**_clean_env(), **_plugged_env(tmp_path, BERTH_RUNTIME_DRIVER="podman")}
    done = subprocess.run(
        [sys.executable, "-c", "from berth.cli.serve import api_main\napi_main()\n"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "no runtime driver named 'podman' is installed" in done.stderr, done.stderr
    assert "BERTH_RUNTIME_DRIVER" in done.stderr
    assert memory_drivers.NAME in done.stderr.split("the installed ones are", 1)[1]
