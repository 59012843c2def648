"""The host guard against the real engine and kernel: a tenant's container does not
reach the host's own services (issue #13), except the ports the operator allows.

Each test runs TCP servers of its own on the host (bound to 0.0.0.0 on free
ports), containers on Berth networks made by ``BridgeNetworks`` (the agent's
driver), and removes its containers, networks, chains and ``INPUT`` jumps
whatever happens.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import subprocess
import threading
import uuid as uuidlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from berth.domain.hostsync import NetworkRef
from berth.networks.base import network_name
from berth.networks.bridge import LABEL_NETWORK, LABEL_OWNER, BridgeNetworks
from berth.networks.hostguard import HostPort, guard_chain
from tests.functional.docker_engine import (
    ensure_test_image,
    remove_owned,
)

pytestmark = pytest.mark.docker


@contextlib.contextmanager
def host_server() -> Iterator[int]:
    """A TCP server on 0.0.0.0 of the host, on a free port, closing every connection at once
    (so a client's ``nc`` returns instead of waiting for data)."""
    stop = threading.Event()

    def serve(sock: socket.socket) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                sock.accept()[0].close()

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("0.0.0.0", 0))
        sock.listen(16)
        sock.settimeout(0.2)
        thread = threading.Thread(target=serve, args=(sock,), daemon=True)
        thread.start()
        try:
            yield int(sock.getsockname()[1])
        finally:
            stop.set()
            thread.join()


def host_addresses() -> list[str]:
    """The host's global IPv4 addresses that are not on a bridge of a container engine."""
    out = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True
    ).stdout
    found = []
    for line in out.splitlines():
        words = line.split()
        if not words[1].startswith(("docker", "br-", "brt", "veth")):
            found.append(words[3].split("/")[0])
    return found


@dataclass
class Guarded:
    """One test's engine, owner, driver and the containers it made."""

    api: Any
    owner: str
    image: str
    drivers: list[BridgeNetworks] = field(default_factory=list)

    def driver(self, *ports: HostPort, owner: str | None = None) -> BridgeNetworks:
        made = BridgeNetworks(owner=owner or self.owner, host_ports=ports)
        self.drivers.append(made)
        return made

    def run(self, name: str, net: str, *command: str, publish: int | None = None) -> str:
        """Start a container ``name`` on the host network ``net``; returns its address."""
        host_config = self.api.create_host_config(
            network_mode=net, port_bindings={publish: None} if publish else None
        )
        made = self.api.create_container(
            self.image,
            command=list(command) or ["sleep", "300"],
            name=name,
            labels={LABEL_OWNER: self.owner},
            host_config=host_config,
            ports=[publish] if publish else None,
            networking_config=self.api.create_networking_config(
                {net: self.api.create_endpoint_config(aliases=[name])}
            ),
        )
        self.api.start(made["Id"])
        networks = self.api.inspect_container(made["Id"])["NetworkSettings"]["Networks"]
        return str(networks[net]["IPAddress"])

    def gateway(self, net: str) -> str:
        config = self.api.inspect_network(net)["IPAM"]["Config"][0]
        return str(config.get("Gateway") or next(ipaddress.ip_network(config["Subnet"]).hosts()))

    def reaches(self, name: str, address: str, port: int) -> bool:
        """Whether the container ``name`` opens a TCP connection to ``address:port``."""
        # The servers close at once; ``timeout`` bounds a peer that would not.
        nc = ["timeout", "10", "nc", "-w", "3", address, str(port)]
        run = self.api.exec_create(name, nc, stdin=False)
        self.api.exec_start(run["Id"])
        return int(self.api.exec_inspect(run["Id"])["ExitCode"]) == 0


@pytest.fixture
async def guarded(api: Any) -> AsyncIterator[Guarded]:
    box = Guarded(api, f"test-hg-{uuidlib.uuid4().hex[:12]}", ensure_test_image(api))
    try:
        yield box
    finally:
        for driver in box.drivers:
            await driver.close()
        # The containers (all labelled with the first owner) go first, then each network.
        for owner in (box.owner, f"{box.owner}-b"):
            remove_owned(api, owner)


def _net(tag: str) -> NetworkRef:
    return NetworkRef(f"{tag}-{uuidlib.uuid4().hex[:8]}", "default", "proj-hg")


async def test_a_container_does_not_reach_the_hosts_own_services(guarded: Guarded) -> None:
    net = _net("n")
    await guarded.driver().ensure(net)
    name = network_name(net.id)
    peer = f"hg-peer-{guarded.owner}"
    peer_ip = guarded.run(peer, name, "httpd", "-f", "-p", "8000", publish=8000)
    client = f"hg-client-{guarded.owner}"
    guarded.run(client, name)
    with host_server() as port:
        # Not through the bridge's gateway, nor through any other address of the host.
        for address in [guarded.gateway(name), *host_addresses()]:
            assert not guarded.reaches(client, address, port), f"{address}:{port} is reachable"
        # The host still reaches the server itself (the guard is for the bridges only).
        socket.create_connection(("127.0.0.1", port), timeout=3).close()
    # Containers of the network still reach each other, by address and by name (DNS).
    assert guarded.reaches(client, peer_ip, 8000)
    assert guarded.reaches(client, peer, 8000)
    # The peer's published port is reachable from the host.
    bound = guarded.api.port(peer, 8000)[0]["HostPort"]
    socket.create_connection(("127.0.0.1", int(bound)), timeout=3).close()


async def test_an_allowlisted_port_is_reachable_and_no_other(guarded: Guarded) -> None:
    net = _net("a")
    await guarded.driver().ensure(net)
    name = network_name(net.id)
    client = f"hg-client-{guarded.owner}"
    guarded.run(client, name)
    with host_server() as allowed, host_server() as other:
        gateway = guarded.gateway(name)
        assert not guarded.reaches(client, gateway, allowed)
        # The agent restarted with the port allowlisted: its first prune rewrites the guard.
        await guarded.driver(HostPort(allowed)).prune({net.id})
        assert guarded.reaches(client, gateway, allowed)
        assert not guarded.reaches(client, gateway, other)


def _input_jumps(chain: str) -> list[str]:
    listing = subprocess.run(
        ["iptables", "-w", "-S", "INPUT"], capture_output=True, text=True, check=True
    ).stdout
    return [line for line in listing.splitlines() if line.endswith(f"-j {chain}")]


async def test_two_agents_on_one_kernel_keep_their_own_guards(guarded: Guarded) -> None:
    ours, theirs = guarded.driver(), guarded.driver(owner=f"{guarded.owner}-b")
    mine, other = _net("m"), _net("o")
    await ours.ensure(mine)
    await theirs.ensure(other)
    assert len(_input_jumps(guard_chain(guarded.owner))) == 1
    assert len(_input_jumps(guard_chain(f"{guarded.owner}-b"))) == 1
    # Pruning every network of ours removes our jump and chain, never theirs.
    assert await ours.prune(set()) == [mine.id]
    assert _input_jumps(guard_chain(guarded.owner)) == []
    assert len(_input_jumps(guard_chain(f"{guarded.owner}-b"))) == 1
    client = f"hg-client-{guarded.owner}"
    guarded.run(client, network_name(other.id))
    with host_server() as port:
        assert not guarded.reaches(client, guarded.gateway(network_name(other.id)), port)


async def test_a_network_made_before_the_guard_is_guarded_too(guarded: Guarded) -> None:
    # As a Berth without the guard made it: Docker's own bridge name, br-<12 of its id>.
    net = _net("old")
    name = network_name(net.id)
    labels = {LABEL_NETWORK: net.id, LABEL_OWNER: guarded.owner}
    guarded.api.create_network(name, driver="bridge", labels=labels)
    client = f"hg-client-{guarded.owner}"
    guarded.run(client, name)
    driver = guarded.driver()
    with host_server() as port:
        gateway = guarded.gateway(name)
        assert guarded.reaches(client, gateway, port)  # unguarded until the agent looks
        await driver.prune({net.id})  # the agent's first sync after the upgrade
        assert not guarded.reaches(client, gateway, port)
