"""The agent on the real engine: Agent + DockerDriver + an in-memory control plane."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
import uuid as uuidlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from berth.agent.client import ControlClient
from berth.agent.fake_control import FakeControlPlane, now_iso
from berth.agent.firewall import ipv4_addresses
from berth.agent.loop import Agent
from berth.config import Settings
from berth.domain.hostsync import DesiredContainer, NetworkRef, Observation
from berth.networks import chain_name
from berth.networks.bridge import BridgeNetworks
from berth.runtimes.base import container_name
from berth.runtimes.docker import DockerDriver
from berth.runtimes.dockermap import TenantLimits
from berth.volumes.local import LocalVolumeDriver
from tests.functional.docker_engine import (
    DOCKER_URL,
    docker_driver,
    ensure_test_image,
    remove_owned,
)

pytestmark = pytest.mark.docker

PASSWORD = "agent-secret"


@dataclass
class Site:
    """A control plane, a driver scoped to this test, and the engine to check on them."""

    api: Any
    control: FakeControlPlane
    driver: DockerDriver
    settings: Settings
    image: str

    def container(self, **kw: Any) -> DesiredContainer:
        values: dict[str, Any] = {
            "uuid": f"t{uuidlib.uuid4().hex[:16]}",
            "name": "web",
            "project_id": "proj-1",
            "image": self.image,
            "desired_state": "running",
            "spec_version": 1,
            "command": ["sleep", "300"],
            "desired_since": now_iso(),
            "memory": 64,
            **kw,
        }
        return DesiredContainer(**values)

    def engine_state(self, uuid: str) -> str | None:
        found = self.api.containers(all=True, filters={"name": f"^/{container_name(uuid)}$"})
        return found[0]["State"] if found else None


@pytest.fixture
async def site(api: Any) -> AsyncIterator[Site]:
    owner = f"agent-test-{uuidlib.uuid4().hex[:12]}"
    driver = docker_driver(owner)
    settings = Settings(
        agent_host=owner, reconcile_interval=0.5, heartbeat_interval=1.0, agent_password=PASSWORD
    )
    try:
        yield Site(api, FakeControlPlane(PASSWORD), driver, settings, ensure_test_image(api))
    finally:
        await driver.close()
        remove_owned(api, owner)


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


async def test_create_runs_within_seconds_then_delete_leaves_nothing(site: Site) -> None:
    spec = site.container()
    async with agent(site):
        await site.control.wait_for(lambda: bool(site.control.hosts))
        started = time.monotonic()
        await site.control.put(spec)
        await site.control.wait_for(lambda: site.control.state_of(spec.uuid) == "running")
        elapsed = time.monotonic() - started
        assert elapsed < 5, f"create → running took {elapsed:.2f}s"
        assert site.engine_state(spec.uuid) == "running"
        obs = site.control.latest[spec.uuid]
        assert obs.runtime_id and obs.status_detail and obs.status_detail.startswith("Up")

        await site.control.change(spec.uuid, desired_state="deleted")
        await site.control.wait_for(lambda: spec.uuid not in site.control.containers)
    assert site.engine_state(spec.uuid) is None
    assert await site.driver.list_managed() == []


async def test_exited_container_is_reported_and_left_alone(site: Site) -> None:
    spec = site.container(command=["sh", "-c", "exit 3"])
    async with agent(site):
        await site.control.put(spec)
        await site.control.wait_for(lambda: site.control.state_of(spec.uuid) == "stopped")
        first_start = site.api.inspect_container(container_name(spec.uuid))["State"]["StartedAt"]
        await asyncio.sleep(4 * site.settings.reconcile_interval)
    assert site.control.latest[spec.uuid].exit_code == 3
    state = site.api.inspect_container(container_name(spec.uuid))["State"]
    assert (state["Status"], state["StartedAt"]) == ("exited", first_start)


async def test_agent_killed_after_create_converges(site: Site) -> None:
    spec = site.container()
    await site.driver.create(spec)  # what a killed agent left behind
    await site.control.put(spec)
    async with agent(site):
        await site.control.wait_for(lambda: site.control.state_of(spec.uuid) == "running")
    managed = [c for c in await site.driver.list_managed() if c.uuid == spec.uuid]
    assert len(managed) == 1 and managed[0].state == "running"


async def test_stop_and_start_through_desired_state(site: Site) -> None:
    spec = site.container()
    async with agent(site):
        await site.control.put(spec)
        await site.control.wait_for(lambda: site.control.state_of(spec.uuid) == "running")
        await site.control.change(spec.uuid, desired_state="stopped", stop_timeout=1)
        await site.control.wait_for(lambda: site.control.state_of(spec.uuid) == "stopped")
        await site.control.change(spec.uuid, desired_state="running")
        await site.control.wait_for(lambda: site.control.state_of(spec.uuid) == "running")
    assert site.engine_state(spec.uuid) == "running"


def _filtered(uuid: str, addresses: list[str]) -> bool:
    """Whether the host's iptables send every one of ``addresses`` through ``uuid``'s chain."""
    chain = chain_name(uuid)
    listing = subprocess.run(["iptables", "-w", "-S"], capture_output=True, text=True).stdout
    lines = listing.splitlines()
    jumps = [
        line for line in lines if line.startswith("-A BERTH-FORWARD") and f"-j {chain}" in line
    ]
    return f"-A {chain} -j DROP" in lines and all(
        any(f"-d {ip}/32" in line for line in jumps) for ip in addresses
    )


async def test_a_filtered_container_is_filtered_before_it_is_reported_running(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A neighbour must not reach a tenant's container in the moment after Running.

    The host's iptables are read as each report arrives (the fake control plane
    shares the agent's event loop, so nothing moves meanwhile): every report
    that says running must find the container's chain already in place.
    """
    net = NetworkRef(f"n{uuidlib.uuid4().hex[:12]}", "default", "proj-1")
    seen: list[tuple[str, list[str], bool]] = []
    fold = site.control._fold

    def watching(obs: Observation) -> bool:
        if obs.state == "running":
            ips = ipv4_addresses(obs.addresses)
            seen.append((obs.uuid, ips, bool(ips) and _filtered(obs.uuid, ips)))
        return fold(obs)

    monkeypatch.setattr(site.control, "_fold", watching)
    specs = [site.container(networks=[net], security_groups=["g"], ingress=[]) for _ in range(4)]
    async with agent(site):
        await site.control.wait_for(lambda: bool(site.control.hosts))
        for spec in specs:
            await site.control.put(spec)
        every = {s.uuid for s in specs}
        await site.control.wait_for(lambda: {u for u, _, _ in seen} == every, 30)
        # Once more for one of them: stopped and started again (its address may change).
        first = specs[0].uuid
        await site.control.change(first, desired_state="stopped", stop_timeout=1)
        await site.control.wait_for(lambda: site.control.state_of(first) == "stopped", 20)
        await site.control.change(first, desired_state="running")
        await site.control.wait_for(lambda: sum(u == first for u, _, _ in seen) >= 2, 20)
    assert len(seen) >= 5
    assert [(u, ips) for u, ips, filtered in seen if not filtered] == []


async def test_a_container_its_engine_restarts_is_never_running_unfiltered(site: Site) -> None:
    """A restart policy's container crashes and the engine restarts it (listed
    ``restarting``, without an address, in between): sampled every 20 ms for several
    restarts, whenever the engine says it runs, its address goes through its chain."""
    net = NetworkRef(f"n{uuidlib.uuid4().hex[:12]}", "default", "proj-1")
    spec = site.container(
        networks=[net],
        security_groups=["g"],
        ingress=[],
        command=["sh", "-c", "sleep 0.3; exit 1"],
        restart_policy={"Name": "always", "MaximumRetryCount": "0"},
    )
    site.settings = site.settings.model_copy(update={"reconcile_interval": 0.1})
    unfiltered: list[tuple[int, str]] = []
    async with agent(site):
        await site.control.put(spec)
        await site.control.wait_for(lambda: site.control.state_of(spec.uuid) == "running", 30)
        restarts, deadline = 0, time.monotonic() + 20
        while restarts < 5 and time.monotonic() < deadline:
            state = await asyncio.to_thread(site.api.inspect_container, container_name(spec.uuid))
            restarts = state["RestartCount"]
            ips = [n["IPAddress"] for n in state["NetworkSettings"]["Networks"].values()]
            ips = [ip for ip in ips if ip]
            running = state["State"]["Status"] == "running" and ips
            if running and not await asyncio.to_thread(_filtered, spec.uuid, ips):
                unfiltered.append((restarts, ips[0]))
            await asyncio.sleep(0.02)
    assert restarts >= 5, "the engine did not restart it often enough to tell"
    assert unfiltered == []


_REFUSING_RESTORE = """#!/bin/sh
# iptables-restore as the host has it, except that while {flag} exists it refuses a
# write of any security-group chain of {chain} (as a broken or busy table would).
input=$(cat)
if [ -e {flag} ] && printf '%s\\n' "$input" | grep -q -- '{chain}'; then
    echo "iptables-restore: line 2 failed" >&2
    exit 1
fi
printf '%s\\n' "$input" | exec iptables-restore "$@"
"""


async def test_a_container_whose_chain_the_host_refuses_is_stopped_not_run_unfiltered(
    api: Any, tmp_path: Path
) -> None:
    """Fail closed on the real engine: the host's iptables-restore refusing the
    container's chain leaves it stopped on the engine and in error, never running
    unfiltered; once the host takes chains again, the user's start runs it, filtered."""
    owner = f"agent-test-{uuidlib.uuid4().hex[:12]}"
    spec_uuid = f"t{uuidlib.uuid4().hex[:16]}"
    flag = tmp_path / "refuse"
    flag.touch()
    (tmp_path / "iptables").symlink_to(shutil.which("iptables") or "/usr/sbin/iptables")
    restore = tmp_path / "iptables-restore"
    restore.write_text(_REFUSING_RESTORE.format(flag=flag, chain=chain_name(spec_uuid)))
    restore.chmod(0o755)
    driver = DockerDriver(
        DOCKER_URL,
        owner=owner,
        limits=TenantLimits(),
        networks=BridgeNetworks(DOCKER_URL, owner=owner, iptables=str(tmp_path / "iptables")),
        volumes=LocalVolumeDriver(DOCKER_URL, owner=owner),
    )
    settings = Settings(
        agent_host=owner, reconcile_interval=0.5, heartbeat_interval=1.0, agent_password=PASSWORD
    )
    site = Site(api, FakeControlPlane(PASSWORD), driver, settings, ensure_test_image(api))
    net = NetworkRef(f"n{uuidlib.uuid4().hex[:12]}", "default", "proj-1")
    spec = site.container(uuid=spec_uuid, networks=[net], security_groups=["g"], ingress=[])
    try:
        async with agent(site):
            await site.control.put(spec)

            def reported_error() -> str | None:
                obs = site.control.latest.get(spec.uuid)
                return obs.error if obs else None

            await site.control.wait_for(lambda: reported_error() is not None, 30)
            error = reported_error()
            assert error is not None and "security groups could not be applied" in error
            assert "iptables-restore" not in error  # the host's words stay in the agent's log
            assert site.engine_state(spec.uuid) == "exited"
            assert all(obs.state != "running" for obs in site.control.observations)
            assert not _filtered(spec.uuid, [])

            flag.unlink()
            await site.control.change(spec.uuid, desired_state="running")  # the user's start
            await site.control.wait_for(lambda: site.control.state_of(spec.uuid) == "running", 30)
            ips = ipv4_addresses(site.control.latest[spec.uuid].addresses)
            assert ips and _filtered(spec.uuid, ips)
            assert site.engine_state(spec.uuid) == "running"
    finally:
        await driver.close()
        remove_owned(api, owner)


async def test_a_fork_bomb_and_a_chatty_container_stay_inside_their_limits(api: Any) -> None:
    """A tenant container runs at most ``container_pids_limit`` processes (forking
    past it fails inside the container, the host's process table is untouched) and
    its engine log rotates at ``container_log_max_mb``."""
    owner = f"agent-test-{uuidlib.uuid4().hex[:12]}"
    limits = TenantLimits(pids=20, log_max_mb=1, log_files=2)
    driver = docker_driver(owner, limits=limits)
    settings = Settings(
        agent_host=owner, reconcile_interval=0.5, heartbeat_interval=1.0, agent_password=PASSWORD
    )
    site = Site(api, FakeControlPlane(PASSWORD), driver, settings, ensure_test_image(api))
    spec = site.container()
    try:
        async with agent(site):
            await site.control.wait_for(lambda: bool(site.control.hosts))
            await site.control.put(spec)
            await site.control.wait_for(lambda: site.control.state_of(spec.uuid) == "running")
            name = container_name(spec.uuid)
            assert api.inspect_container(name)["HostConfig"]["PidsLimit"] == 20
            # 40 background sleeps, twice the cap: the forks past it fail.
            bomb = api.exec_create(name, ["sh", "-c", "for i in $(seq 40); do sleep 60 & done"])
            api.exec_start(bomb["Id"], detach=True)
            await asyncio.sleep(1.5)
            top = api.top(name)["Processes"]
            assert 10 < len(top) <= 20, f"{len(top)} processes under a cap of 20"
            # 8 MB on stdout: the engine keeps at most 2 files of about 1 MB.
            chatty = site.container(
                command=["sh", "-c", "yes 0123456789abcdef | head -c 8000000; sleep 300"]
            )
            await site.control.put(chatty)
            await site.control.wait_for(lambda: site.control.state_of(chatty.uuid) == "running")
            log_path = Path(api.inspect_container(container_name(chatty.uuid))["LogPath"])
            await asyncio.sleep(2)
            kept = sum(p.stat().st_size for p in log_path.parent.glob(log_path.name + "*"))
            assert 0 < kept < 3_000_000, f"{kept} bytes of log kept for 8 MB of output"
    finally:
        await driver.close()
        remove_owned(api, owner)
