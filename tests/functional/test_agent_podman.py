"""The agent on a real Podman service: Agent + PodmanDriver + an in-memory control plane.

The capsule test hands the agent a capsule's containers in the order the
control plane does (``services.containers.capsules.advance``): the sandbox, an
init container once the sandbox runs, the app container once the init one
exited 0; Podman then shows one pod holding all three.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import uuid as uuidlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from berth.agent.client import ControlClient
from berth.agent.fake_control import FakeControlPlane, now_iso
from berth.agent.loop import Agent
from berth.config import Settings
from berth.domain.hostsync import DesiredContainer
from berth.runtimes.podman import PodmanDriver
from tests.functional.docker_engine import TEST_IMAGE
from tests.functional.podman_engine import (
    load_test_image,
    pod_member_states,
    podman_service,
    remove_podman_owned,
)

pytestmark = pytest.mark.docker

PASSWORD = "agent-secret"


@pytest.fixture(scope="module")
def podman_url(api: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with podman_service(tmp_path_factory.mktemp("podman")) as url:
        load_test_image(TEST_IMAGE)
        yield url


@dataclass
class Site:
    control: FakeControlPlane
    driver: PodmanDriver
    settings: Settings

    def container(self, **kw: Any) -> DesiredContainer:
        values: dict[str, Any] = {
            "uuid": f"t{uuidlib.uuid4().hex[:16]}",
            "name": "web",
            "project_id": "proj-1",
            "image": TEST_IMAGE,
            "desired_state": "running",
            "spec_version": 1,
            "command": ["sleep", "300"],
            "desired_since": now_iso(),
            "stop_timeout": 1,
            **kw,
        }
        return DesiredContainer(**values)


@pytest.fixture
async def site(podman_url: str) -> AsyncIterator[Site]:
    owner = f"agent-test-{uuidlib.uuid4().hex[:12]}"
    driver = PodmanDriver(podman_url, owner=owner)
    settings = Settings(
        agent_host=owner, reconcile_interval=0.5, heartbeat_interval=1.0, agent_password=PASSWORD
    )
    try:
        yield Site(FakeControlPlane(PASSWORD), driver, settings)
    finally:
        await driver.close()
        await asyncio.to_thread(remove_podman_owned, owner)


@contextlib.asynccontextmanager
async def agent(site: Site) -> AsyncIterator[None]:
    async with site.control.client() as http:
        task = asyncio.create_task(
            Agent(site.settings, ControlClient(http, PASSWORD), site.driver).run()
        )
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def podman_json(*args: str) -> Any:
    done = subprocess.run(["podman", *args], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


async def test_create_run_stop_delete(site: Site) -> None:
    spec = site.container()
    async with agent(site):
        await site.control.wait_for(lambda: bool(site.control.hosts))
        await site.control.put(spec)
        await site.control.wait_for(lambda: site.control.state_of(spec.uuid) == "running")
        obs = site.control.latest[spec.uuid]
        assert obs.runtime_id and obs.status_detail and obs.status_detail.startswith("Up")
        await site.control.change(spec.uuid, desired_state="stopped")
        await site.control.wait_for(lambda: site.control.state_of(spec.uuid) == "stopped")
        await site.control.change(spec.uuid, desired_state="deleted")
        await site.control.wait_for(lambda: spec.uuid not in site.control.containers)
    assert await site.driver.list_managed() == []


async def test_capsule_runs_as_a_pod(site: Site) -> None:
    capsule = f"t{uuidlib.uuid4().hex[:16]}"
    sandbox = site.container(
        uuid=capsule,
        name="capsule-web-sandbox",
        labels={"berth.capsule": capsule},
        command=["sleep", "2147483647"],
        hostname="web",
        restart_policy={"Name": "always", "MaximumRetryCount": "0"},
    )
    init = site.container(
        name="init-0",
        network_container=capsule,
        command=["sh", "-c", "echo ready > /dev/shm/ready"],
    )
    app = site.container(
        name="app", network_container=capsule, command=["sh", "-c", "cat /dev/shm/ready; sleep 300"]
    )
    async with agent(site):
        await site.control.put(sandbox)
        await site.control.wait_for(lambda: site.control.state_of(capsule) == "running")
        await site.control.put(init)
        await site.control.wait_for(lambda: site.control.state_of(init.uuid) == "stopped")
        assert site.control.latest[init.uuid].exit_code == 0
        await site.control.put(app)
        await site.control.wait_for(lambda: site.control.state_of(app.uuid) == "running")
        # Running is reported as the command starts: its first line may reach the
        # log a moment later (seen in CI: an empty log read at once).
        logs = ""
        for _ in range(100):
            if logs := await site.driver.logs(app.uuid):
                break
            await asyncio.sleep(0.1)
        assert logs == "ready\n"  # the pod's IPC namespace

        pod = podman_json("pod", "inspect", f"berth-pod-{capsule}")
        assert "net" in pod["SharedNamespaces"]
        states = pod_member_states(pod)
        assert states == {
            f"berth-{capsule}": "running",
            f"berth-{init.uuid}": "exited",
            f"berth-{app.uuid}": "running",
        }
        infra, first, second = podman_json(
            "container", "inspect", *(f"berth-{u}" for u in (capsule, init.uuid, app.uuid))
        )
        assert infra["Id"] == pod["InfraContainerID"]
        netns = {os.readlink(f"/proc/{c['State']['Pid']}/ns/net") for c in (infra, second)}
        assert len(netns) == 1
        assert first["State"]["FinishedAt"] < second["State"]["StartedAt"]

        # Delete as the control plane does: the members, then the sandbox.
        for member in (app, init):
            await site.control.change(member.uuid, desired_state="deleted")
        await site.control.wait_for(
            lambda: (
                app.uuid not in site.control.containers and init.uuid not in site.control.containers
            )
        )
        await site.control.change(capsule, desired_state="deleted")
        await site.control.wait_for(lambda: capsule not in site.control.containers)
    pods = podman_json("pod", "ps", "--filter", f"name=berth-pod-{capsule}", "--format", "json")
    assert not pods
