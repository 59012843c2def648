"""The swarm-mode driver with nodes on hosts apart: published ports, zones, the nodes' MTU.

The in-memory cloud (``tests/fakes/swarm.py``) places each node on the host of its
availability zone; the control plane reaches a node there only through the port its
host publishes (its private address is no route from the control plane). The real
thing: ``tests/functional/test_swarm_across_hosts.py``.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from berth.clusters import ClusterSpec, NodeGroupSpec, NodeInfo
from berth.clusters.swarm import SwarmModeDriver
from berth.clusters.swarm.run import api_address
from tests.fakes.swarm import FakeCloud
from tests.unit.test_swarm_converge import CA, FAST, IMAGE, Steps, _master, _spec, _worker

HOSTS = {"zone-a": "192.0.2.1", "zone-b": "192.0.2.2"}


def _zoned(workers: int = 1) -> ClusterSpec:
    """One master in zone-a, ``workers`` workers in zone-b."""
    groups = (
        NodeGroupSpec("default-master", "master", 1, 1, 512, IMAGE,
                      {"availability_zone": "zone-a"}),
        NodeGroupSpec("default-worker", "worker", workers, 1, 512, IMAGE,
                      {"availability_zone": "zone-b"}),
    )  # fmt: skip
    return replace(_spec(workers=workers), nodegroups=groups)


@pytest.fixture
def cloud() -> FakeCloud:
    return FakeCloud(hosts=HOSTS, mtu=1450)


@pytest.fixture
def swarm(cloud: FakeCloud) -> SwarmModeDriver:
    return SwarmModeDriver(connect=cloud.connect, timeouts=FAST)


async def test_nodes_on_two_hosts_form_one_swarm_driven_through_published_ports(
    swarm: SwarmModeDriver, cloud: FakeCloud
) -> None:
    outcome = await swarm.create(_zoned(), cloud, Steps())

    master, worker = cloud.engines[_master(0)], cloud.engines[_worker(0)]
    assert (master.zone, worker.zone) == ("zone-a", "zone-b")
    assert {n: s["state"] for n, s in cloud.swarm_nodes().items()} == {
        master.name: "ready",
        worker.name: "ready",
    }
    # Users reach the master where its host publishes 2376; the nodes' own addresses
    # (what they use between them) stay the master and node addresses.
    assert outcome.api_address == f"tcp://192.0.2.1:{master.host_port}"
    assert (outcome.master_addresses, outcome.node_addresses) == (
        (master.address,),
        (worker.address,),
    )
    # Their certificates name both: `docker --tlsverify -H` either way verifies.
    for engine in (master, worker):
        assert engine.serves(CA.cert_pem, engine.address)
        assert engine.serves(CA.cert_pem, engine.host_address or "")


async def test_the_swarms_own_networks_fit_in_the_nodes_mtu(
    swarm: SwarmModeDriver, cloud: FakeCloud
) -> None:
    steps = Steps()
    await swarm.create(_zoned(), cloud, steps)

    # docker_gwbridge is a bridge NATed out of the node's eth0: the node's MTU, made
    # before the node entered the swarm (dockerd's own would have 1500).
    assert {n: e.bridges for n, e in cloud.engines.items()} == {
        _master(0): {"docker_gwbridge": 1450},
        _worker(0): {"docker_gwbridge": 1450},
    }
    # The ingress overlay is made again once, at init, for the nodes' 1450-byte links
    # (Docker's overlay driver takes VXLAN's 50 bytes off that), not for 1500.
    assert cloud.ingress_mtu == 1450
    assert "Made the swarm's ingress network again for MTU 1450 (1400 inside)." in steps.seen
    history = len(cloud.history)
    again = Steps()
    await swarm.update(_zoned(workers=2), cloud, again)
    assert cloud.engines[_worker(1)].bridges == {"docker_gwbridge": 1450}
    assert not any("ingress" in s for s in again.seen)
    assert [e for e in cloud.history[history:] if e.startswith("ingress")] == []


async def test_an_ingress_a_service_publishes_through_is_left_alone() -> None:
    cloud = FakeCloud(hosts=HOSTS)  # nodes of an older image: 1500, the swarm's defaults
    swarm = SwarmModeDriver(connect=cloud.connect, timeouts=FAST)
    await swarm.create(_zoned(), cloud, Steps())
    assert cloud.ingress_mtu == 1500 and not any(e.startswith("ingress") for e in cloud.history)
    for engine in cloud.engines.values():
        engine.mtu = 1450  # the nodes now say 1450, and a service publishes a port
    cloud.mesh_in_use = True
    await swarm.update(_zoned(workers=2), cloud, Steps())
    assert cloud.ingress_mtu == 1500  # re-creating it would cut the service off


@pytest.mark.parametrize(
    ("host", "published", "want"),
    [
        ("192.0.2.1", {2376: 32768}, "tcp://192.0.2.1:32768"),
        ("2001:db8::1", {2376: 32768}, "tcp://[2001:db8::1]:32768"),
        ("node-1.example", {2376: 32768}, "tcp://node-1.example:32768"),
        # An all-in-one's agent address is loopback: the node's own address reaches
        # further (from the host and from the project's containers).
        ("127.0.0.1", {2376: 32768}, "tcp://10.96.0.5:2376"),
        ("localhost", {2376: 32768}, "tcp://10.96.0.5:2376"),
        (None, {2376: 32768}, "tcp://10.96.0.5:2376"),
        ("192.0.2.1", {}, "tcp://10.96.0.5:2376"),
    ],
)
def test_api_address(host: str | None, published: dict[int, int], want: str) -> None:
    info = NodeInfo("m-0", "Running", "10.96.0.5", published=published, host_address=host)
    assert api_address(info) == want
