"""The all-in-one Berth switched to Podman by its settings, driven through the Zun API.

``BERTH_RUNTIME_DRIVER=podman`` and ``BERTH_PODMAN_URL`` pick the native libpod
driver (berth/runtimes/podman.py) through its entry point; ``BERTH_DOCKER_URL``
points the bridge network and local volume drivers at the same service, which
answers Docker's API too. Checked as a user sees it: the host says it runs
Podman, a container runs and answers exec, a capsule is a real Podman pod whose
members share its network namespace, and deletes leave nothing in Podman.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import docker
import httpx
import pytest

from tests.functional.docker_engine import TEST_IMAGE, engine_or_skip, remove_owned_networking
from tests.functional.podman_engine import load_test_image, podman_service, remove_podman_owned
from tests.helpers import ZUN
from tests.live import all_in_one_env, live_server, live_token

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ADMIN_PASSWORD = "podman-admin-pw"
HOST = "podman-aio"


@pytest.fixture(scope="module")
def berth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    engine_or_skip().close()  # the test image comes from the machine's Docker engine
    work = tmp_path_factory.mktemp("podman-aio")
    with podman_service(work) as url:
        load_test_image(TEST_IMAGE)
        env = all_in_one_env(
            work,
            HOST,
            ADMIN_PASSWORD,
            BERTH_RUNTIME_DRIVER="podman",
            BERTH_PODMAN_URL=url,
            BERTH_DOCKER_URL=url,
            BERTH_RECONCILE_INTERVAL="0.5",
            BERTH_HEARTBEAT_INTERVAL="1",
        )
        try:
            with live_server(env) as base:
                token = live_token(base, "admin", ADMIN_PASSWORD, "admin")
                yield base, {"X-Auth-Token": token, **ZUN}
        finally:
            remove_podman_owned(HOST)
            # its project network and host guard, made over the Docker-compatible API
            api = docker.APIClient(base_url=url, version="auto", timeout=60)
            remove_owned_networking(api, HOST)
            api.close()


def _call(berth: tuple[str, dict[str, str]], method: str, path: str, **kw: Any) -> httpx.Response:
    base, headers = berth
    r = httpx.request(method, f"{base}/container/v1{path}", headers=headers, timeout=60, **kw)
    assert r.status_code < 500, f"{method} {path}: {r.status_code} {r.text}"
    return r


def _wait(berth: tuple[str, dict[str, str]], path: str, done: set[str]) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    shown: dict[str, Any] = {}
    while time.monotonic() < deadline:
        shown = _call(berth, "GET", path).json()
        if shown["status"] in done | {"Error"}:
            return shown
        time.sleep(0.3)
    raise AssertionError(f"{path} stayed {shown.get('status')}: {shown}")


def _podman(*args: str) -> Any:
    out = subprocess.run(["podman", *args], capture_output=True, text=True, check=True).stdout
    return json.loads(out) if out.strip() else None


def test_a_container_runs_on_podman(berth: tuple[str, dict[str, str]]) -> None:
    deadline = time.monotonic() + 30
    while not (hosts := _call(berth, "GET", "/hosts").json()["hosts"]):
        assert time.monotonic() < deadline, "the Podman host never registered"
        time.sleep(0.3)
    (host,) = hosts
    assert host["hostname"] == HOST
    assert host["labels"]["berth.engine"] == "podman"
    r = _call(
        berth,
        "POST",
        "/containers?run=true",
        json={"image": TEST_IMAGE, "name": "on-podman", "command": ["sleep", "300"]},
    )
    assert r.status_code == 202, r.text
    uuid = r.json()["uuid"]
    shown = _wait(berth, f"/containers/{uuid}", {"Running"})
    assert shown["status"] == "Running", shown
    (inspected,) = _podman("container", "inspect", f"berth-{uuid}")
    assert inspected["State"]["Running"]
    out = _call(
        berth, "POST", f"/containers/{uuid}/execute", params={"command": "echo from-podman"}
    ).json()
    assert out["output"].strip() == "from-podman" and out["exit_code"] == 0, out
    assert _call(berth, "DELETE", f"/containers/{uuid}?force=true").status_code == 204
    deadline = time.monotonic() + 30
    while _call(berth, "GET", f"/containers/{uuid}").status_code != 404:
        assert time.monotonic() < deadline, "the container was not deleted"
        time.sleep(0.3)
    gone = subprocess.run(["podman", "container", "exists", f"berth-{uuid}"], check=False)
    assert gone.returncode == 1


def test_a_capsule_is_a_podman_pod(berth: tuple[str, dict[str, str]]) -> None:
    template = {
        "kind": "capsule",
        "metadata": {"name": "pod-demo"},
        "spec": {
            "initContainers": [
                {"image": TEST_IMAGE, "name": "prep", "command": ["sh", "-c", "true"]}
            ],
            "containers": [
                {"image": TEST_IMAGE, "name": "app", "command": ["sleep", "300"]},
                {"image": TEST_IMAGE, "name": "side", "command": ["sleep", "300"]},
            ],
        },
    }
    r = _call(berth, "POST", "/capsules", json={"template": template})
    assert r.status_code == 202, r.text
    uuid = r.json()["uuid"]
    shown = _wait(berth, f"/capsules/{uuid}", {"Running"})
    assert shown["status"] == "Running", shown
    pod = _podman("pod", "inspect", f"berth-pod-{uuid}")
    pod = pod[0] if isinstance(pod, list) else pod  # podman 4.3 answers one object
    assert {"net", "uts", "ipc"} <= set(pod["SharedNamespaces"])
    members = {c["Name"] for c in pod["Containers"]}
    assert len(members) >= 3, members  # infra (the sandbox) and the two apps
    assert _call(berth, "DELETE", f"/capsules/{uuid}").status_code == 204
    deadline = time.monotonic() + 30
    while subprocess.run(["podman", "pod", "exists", f"berth-pod-{uuid}"]).returncode == 0:
        assert time.monotonic() < deadline, "the pod outlived its capsule"
        time.sleep(0.3)
