"""Zun behaviours that reach the real engine: the agent's plan applied by DockerDriver.

Each test uses its own ``berth-<uuid>`` container and owner label and removes
what it made (containers, networks), whatever happens.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from berth.agent.apply import apply_plan
from berth.agent.diff import plan
from berth.domain.hostsync import DesiredContainer, NetworkRef, Observation
from berth.networks.base import network_name
from berth.runtimes.base import container_name
from tests.functional.boxes import Box, owned_box

pytestmark = [pytest.mark.docker, pytest.mark.asyncio]


class Host(Box):
    """One test's engine client, driver (its own owner) and container UUID."""

    async def converge(self, desired: DesiredContainer) -> Observation:
        """One agent step: plan against what runs, apply, and the observation."""
        observed = await self.driver.inspect(self.uuid)
        actions = plan(desired, observed)
        obs = await apply_plan(self.driver, self.uuid, actions, desired)
        assert obs.error is None, obs.error
        return obs

    def interfaces(self) -> list[str]:
        """The container's network interfaces as its processes see them."""
        exec_id = self.api.exec_create(container_name(self.uuid), ["ip", "-o", "link"])
        out: bytes = self.api.exec_start(exec_id)
        return [line.split(":")[1].strip().split("@")[0] for line in out.decode().splitlines()]


@pytest.fixture
async def host(api: Any) -> AsyncIterator[Host]:
    async with owned_box(api, Host) as made:
        yield made


async def test_detaching_the_last_network_leaves_loopback_and_attach_works_again(
    host: Host,
) -> None:
    """Zun's network_detach has no last-network rule (zun/compute/manager.py
    ``_do_network_detach``, zun/container/docker/driver.py ``network_detach``
    disconnects the one network): the container runs on with only loopback."""
    net = NetworkRef(f"n{host.uuid}", "default", "proj-1")
    obs = await host.converge(host.spec(networks=[net]))
    assert obs.state == "running" and list(obs.addresses or {}) == [net.id]

    obs = await host.converge(host.spec(networks=[], no_network=True))
    assert obs.state == "running" and obs.addresses == {}
    assert host.interfaces() == ["lo"]

    obs = await host.converge(host.spec(networks=[net]))
    assert obs.state == "running" and list(obs.addresses or {}) == [net.id]
    assert "lo" in host.interfaces() and len(host.interfaces()) == 2


async def test_a_container_made_while_detached_has_loopback_only_and_can_join_later(
    host: Host,
) -> None:
    """Recreated (say by a rebuild) while it has no network: never the engine's
    default bridge; a network attached later replaces the "none" mode."""
    net = NetworkRef(f"n{host.uuid}", "default", "proj-1")
    obs = await host.converge(host.spec(networks=[], no_network=True))
    assert obs.state == "running" and obs.addresses == {}
    assert host.interfaces() == ["lo"]
    assert host.api.inspect_container(container_name(host.uuid))["HostConfig"][
        "NetworkMode"
    ] == "none"

    obs = await host.converge(host.spec(networks=[net]))
    assert list(obs.addresses or {}) == [net.id]
    attached = host.api.inspect_container(container_name(host.uuid))["NetworkSettings"]
    assert list(attached["Networks"]) == [network_name(net.id)]
