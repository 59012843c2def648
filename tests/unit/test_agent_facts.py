"""What an agent registers: CPU pinning from its settings, its images as they change, and
which engine it drives (mixed pools)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace

from berth.agent.client import ControlClient
from berth.agent.fake_control import FakeControlPlane
from berth.agent.loop import Agent
from berth.config import Settings
from berth.runtimes.base import (
    HOST_LABEL_ENGINE,
    HOST_LABEL_ENGINE_VERSION,
    HostFacts,
    engine_labels,
)
from berth.runtimes.fake import FakeDriver

PASSWORD = "agent-secret"


async def test_registration_carries_pinning_and_images_and_follows_image_changes() -> None:
    settings = Settings(
        agent_host="pin-1",
        agent_cpu_pinning=True,
        agent_labels={"disk": "ssd"},
        agent_availability_zone="az-2",
        heartbeat_interval=0.05,
        agent_facts_interval=0.1,
        reconcile_interval=0.2,
        agent_password=PASSWORD,
    )
    control = FakeControlPlane(PASSWORD)
    runtime = FakeDriver(images={"busybox:1", "nginx:1"})
    async with control.client() as http:
        task = asyncio.create_task(Agent(settings, ControlClient(http, PASSWORD), runtime).run())
        try:
            await control.wait_for(lambda: control.heartbeats.get("pin-1", 0) >= 1)
            first = control.hosts["pin-1"]
            assert first.enable_cpu_pinning is True
            assert first.images == ["busybox:1", "nginx:1"]
            assert (first.labels, first.availability_zone) == ({"disk": "ssd"}, "az-2")
            await asyncio.sleep(0.35)  # several fact checks: nothing changed, no registration
            assert control.hosts["pin-1"] is first
            runtime.images.add("redis:7")
            runtime.images.discard("nginx:1")
            now = ["busybox:1", "redis:7"]
            await control.wait_for(lambda: control.hosts["pin-1"].images == now)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class _EngineDriver(FakeDriver):
    """A fake that says which engine it is, as the Docker driver does."""

    async def host_facts(self) -> HostFacts:
        return replace(await super().host_facts(), engine="podman", engine_version="5.2")


async def test_registration_says_which_engine_the_host_runs_over_an_operators_label() -> None:
    settings = Settings(
        agent_host="eng-1",
        agent_labels={"disk": "ssd", "berth.engine": "wrong"},
        heartbeat_interval=0.05,
        agent_password=PASSWORD,
    )
    control = FakeControlPlane(PASSWORD)
    async with control.client() as http:
        agent = Agent(settings, ControlClient(http, PASSWORD), _EngineDriver())
        task = asyncio.create_task(agent.run())
        try:
            await control.wait_for(lambda: "eng-1" in control.hosts)
            labels = control.hosts["eng-1"].labels
            engine = {HOST_LABEL_ENGINE: "podman", HOST_LABEL_ENGINE_VERSION: "5.2"}
            assert labels == {"disk": "ssd", **engine}
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def test_a_host_whose_engine_is_unknown_gets_no_engine_label() -> None:
    facts = HostFacts(cpus=1, mem_total=1, disk_total=1, runtimes=["runc"], engine_version="1")
    assert engine_labels(facts) == {}
    assert engine_labels(replace(facts, engine="docker")) == {
        HOST_LABEL_ENGINE: "docker",
        HOST_LABEL_ENGINE_VERSION: "1",
    }
