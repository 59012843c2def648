"""What an agent registers: CPU pinning from its settings, and its images as they change."""

from __future__ import annotations

import asyncio
import contextlib

from berth.agent.client import ControlClient
from berth.agent.fake_control import FakeControlPlane
from berth.agent.loop import Agent
from berth.config import Settings
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
