"""The swarm-mode driver's converge, fast: the real driver over an in-memory cloud and swarm.

``tests/fakes/swarm.py`` honours the driver's ``NodeProvisioner`` and ``NodeApi``
seams; the real clusters are ``tests/compat/test_openstack_coe_swarm.py``. Each
test looks at what a user would: the node containers, ``docker node ls`` (roles,
availability, labels, Ready), the status reasons reported, the Outcome.
"""

from __future__ import annotations

import importlib
from dataclasses import replace

import pytest

from berth.clusters import ClusterSpec, NodeGroupSpec, Outcome, pki, run_operation
from berth.clusters.swarm import SwarmModeDriver, Timeouts, driver
from berth.clusters.swarm.nodeapi import MANAGED_LABELS, TlsNodeClients
from berth.clusters.swarm.plan import generation, node_name, parse_name
from tests.fakes.swarm import FakeCloud

UUID = "5d12f6fd-a196-4e36-9a6a-3c1b5b1c0c9e"
CA = pki.new_ca("c1")
CONTROL = pki.new_ca("berth-control")
IMAGE = "berth/swarm-node:24.0"
FAST = Timeouts(node_start=0.3, drain=0.2, ready=0.3, poll=0.001, swarm_poll=0.001,
                retry_pause=0)  # fmt: skip


def _spec(
    masters: int = 1, workers: int = 2, *, image: str = IMAGE, ca: pki.CertificateAuthority = CA,
    node_labels: dict[str, str] | None = None, nodes_to_remove: tuple[str, ...] = (),
    batch: int = 1,
) -> ClusterSpec:  # fmt: skip
    groups = (
        NodeGroupSpec("default-master", "master", masters, 1, 512, image),
        NodeGroupSpec("default-worker", "worker", workers, 1, 512, image,
                      node_labels=node_labels or {}, nodes_to_remove=nodes_to_remove),
    )  # fmt: skip
    return ClusterSpec(
        UUID, "c1", "p1", masters, workers, 1, 512, image, ca_cert_pem=ca.cert_pem,
        ca_key_pem=ca.key_pem, nodegroups=groups, control_ca_cert_pem=CONTROL.cert_pem,
        control_ca_key_pem=CONTROL.key_pem, max_batch_size=batch,
    )  # fmt: skip


def _name(group: str, index: int, image: str = IMAGE, ca: pki.CertificateAuthority = CA) -> str:
    return node_name(UUID, group, index, generation(image, ca.cert_pem))


def _worker(index: int, image: str = IMAGE, ca: pki.CertificateAuthority = CA) -> str:
    return _name("default-worker", index, image, ca)


def _master(index: int, image: str = IMAGE, ca: pki.CertificateAuthority = CA) -> str:
    return _name("default-master", index, image, ca)


class Steps:
    """The status reasons a user sees, in order."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def __call__(self, reason: str) -> None:
        self.seen.append(reason)

    def text(self) -> str:
        return "\n".join(self.seen)


@pytest.fixture
def cloud() -> FakeCloud:
    return FakeCloud()


@pytest.fixture
def swarm(cloud: FakeCloud) -> SwarmModeDriver:
    return SwarmModeDriver(connect=cloud.connect, timeouts=FAST)


async def _converge(swarm: SwarmModeDriver, cloud: FakeCloud, spec: ClusterSpec) -> Steps:
    steps = Steps()
    await swarm.update(spec, cloud, steps)
    return steps


def _ready(cloud: FakeCloud) -> dict[str, str]:
    """``docker node ls`` of the Ready nodes: hostname -> role."""
    return {h: n["role"] for h, n in cloud.swarm_nodes().items() if n["state"] == "ready"}


def _alive(cloud: FakeCloud, events: list[str], before: set[str]) -> list[dict[str, int]]:
    """How many node containers of each group existed after each event, from ``before``."""
    alive, counts = set(before), []
    for event in events:
        verb, name = event.split()[:2]
        if verb == "create":
            alive.add(name)
        elif verb == "delete":
            alive.discard(name)
        else:
            continue
        groups = [p.group for n in alive if (p := parse_name(UUID, n)) is not None]
        counts.append({g: groups.count(g) for g in ("default-master", "default-worker")})
    return counts


def test_the_entry_point_builds_the_driver_over_real_tls_clients() -> None:
    assert driver().connect is TlsNodeClients
    assert SwarmModeDriver().connect is TlsNodeClients


async def test_create_forms_a_swarm_of_one_master_and_two_workers(
    swarm: SwarmModeDriver, cloud: FakeCloud
) -> None:
    steps = Steps()
    outcome = await swarm.create(_spec(), cloud, steps)

    master, workers = _master(0), [_worker(0), _worker(1)]
    assert set(cloud.engines) == {master, *workers}
    assert _ready(cloud) == {master: "manager", workers[0]: "worker", workers[1]: "worker"}
    addr = {name: e.address for name, e in cloud.engines.items()}
    assert outcome == Outcome(
        api_address=f"tcp://{addr[master]}:2376", master_addresses=(addr[master],),
        node_addresses=(addr[workers[0]], addr[workers[1]]), coe_version="24.0.9",
        container_version="1.43",
    )  # fmt: skip
    assert steps.seen == [
        f"Creating 3 node(s): {master}, {workers[0]}, {workers[1]}.",
        f"Initialising the swarm on {master}.",
        "Joining 2 node(s) to the swarm.",
        "Waiting for 3 node(s) to be Ready in the swarm.",
        "Set the node labels of 3 node(s).",
    ]
    labels = cloud.swarm_nodes()[workers[0]]["labels"]
    assert labels["berth.nodegroup"] == "default-worker" and labels["berth.role"] == "worker"
    # Users' `docker --tlsverify -H tcp://<address>:2376` verifies: each node got a
    # certificate from the cluster CA naming its address, dropped in /etc/docker/tls/next/.
    for engine in cloud.engines.values():
        assert engine.serves(CA.cert_pem, engine.address)
        assert [sorted(d) for d in engine.tls_drops] == [
            ["next/ca.pem", "next/cert.pem", "next/key.pem", "next/ready"]
        ]
        assert CONTROL.cert_pem.strip() in engine.tls_drops[0]["next/ca.pem"]


async def test_a_second_converge_of_the_same_spec_changes_nothing(
    swarm: SwarmModeDriver, cloud: FakeCloud
) -> None:
    first = await swarm.create(_spec(), cloud, Steps())
    before = (set(cloud.engines), cloud.swarm_nodes(), len(cloud.history))
    steps = Steps()
    again = await swarm.update(_spec(), cloud, steps)
    assert again == first
    assert (set(cloud.engines), cloud.swarm_nodes(), len(cloud.history)) == before
    # (the nodes already in the swarm are counted as "joining", and left alone)
    assert steps.seen == [
        "Joining 2 node(s) to the swarm.", "Waiting for 3 node(s) to be Ready in the swarm."
    ]


async def test_resize_up_adds_workers_and_keeps_the_others(
    swarm: SwarmModeDriver, cloud: FakeCloud
) -> None:
    await swarm.create(_spec(workers=2), cloud, Steps())
    steps = await _converge(swarm, cloud, _spec(workers=4))
    assert set(cloud.engines) == {_master(0), *(_worker(i) for i in range(4))}
    assert _ready(cloud) == {_master(0): "manager", **{_worker(i): "worker" for i in range(4)}}
    assert f"Creating 2 node(s): {_worker(2)}, {_worker(3)}." in steps.seen
    assert "Set the node labels of 2 node(s)." in steps.seen  # only the new ones'


async def test_resize_down_drains_the_highest_workers_and_keeps_the_service_running(
    swarm: SwarmModeDriver, cloud: FakeCloud
) -> None:
    await swarm.create(_spec(workers=4), cloud, Steps())
    cloud.start_service(8)
    mark = len(cloud.history)
    steps = await _converge(swarm, cloud, _spec(workers=2))

    assert set(cloud.engines) == {_master(0), _worker(0), _worker(1)}
    assert set(cloud.swarm_nodes()) == set(cloud.engines)  # the removed nodes are forgotten
    events = cloud.history[mark:]
    for gone in (_worker(2), _worker(3)):
        assert f"Draining and removing node {gone}." in steps.seen
        assert events.index(f"drain {gone}") < events.index(f"delete {gone}")
    assert cloud.running_tasks() == 8 and cloud.interrupted == 0


async def test_nodes_to_remove_go_first_and_the_survivors_keep_their_names(
    swarm: SwarmModeDriver, cloud: FakeCloud
) -> None:
    await swarm.create(_spec(workers=3), cloud, Steps())
    cloud.start_service(6)
    await _converge(swarm, cloud, _spec(workers=2, nodes_to_remove=(_worker(0),)))
    assert set(cloud.engines) == {_master(0), _worker(1), _worker(2)}
    assert cloud.history[-2:] == [f"leave {_worker(0)}", f"delete {_worker(0)}"]
    assert cloud.running_tasks() == 6 and cloud.interrupted == 0

    # At the same count the named node is replaced by a new one (in the lowest free
    # slot), not kept.
    old_address = cloud.engines[_worker(1)].address
    await _converge(swarm, cloud, _spec(workers=2, nodes_to_remove=(_worker(2),)))
    assert set(cloud.engines) == {_master(0), _worker(0), _worker(1)}
    assert _ready(cloud) == {_master(0): "manager", _worker(0): "worker", _worker(1): "worker"}
    assert cloud.engines[_worker(1)].address == old_address


@pytest.mark.parametrize("batch", [1, 2])
async def test_upgrade_replaces_new_before_old_in_batches_and_masters_one_by_one(
    swarm: SwarmModeDriver, cloud: FakeCloud, batch: int
) -> None:
    await swarm.create(_spec(masters=3, workers=4), cloud, Steps())
    cloud.start_service(12)
    before, mark = set(cloud.engines), len(cloud.history)
    steps = await _converge(swarm, cloud, _spec(masters=3, workers=4, image="node:25", batch=batch))

    new = {*(_master(i, "node:25") for i in range(3)), *(_worker(i, "node:25") for i in range(4))}
    assert set(cloud.engines) == new
    assert set(_ready(cloud)) == new and set(cloud.swarm_nodes()) == new
    assert {e.image for e in cloud.engines.values()} == {"node:25"}
    counts = _alive(cloud, cloud.history[mark:], before)
    workers = [c["default-worker"] for c in counts]
    masters = [c["default-master"] for c in counts]
    # New before old: never fewer nodes than asked; workers `batch` extra at most,
    # masters one extra at most (the swarm keeps its quorum).
    assert min(workers) == 4 and max(workers) == 4 + batch
    assert min(masters) == 3 and max(masters) == 4
    replacing = [s for s in steps.seen if s.startswith("Replacing ")]
    assert len(replacing) == 4 // batch + 3
    assert all(_master(0) not in s for s in replacing[: 4 // batch])  # workers first
    assert cloud.running_tasks() == 12 and cloud.interrupted == 0


async def test_node_labels_are_set_changed_and_removed_but_hand_added_labels_stay(
    swarm: SwarmModeDriver, cloud: FakeCloud
) -> None:
    await swarm.create(_spec(node_labels={"disk": "ssd"}), cloud, Steps())
    worker = _worker(0)
    assert cloud.swarm_nodes()[worker]["labels"]["disk"] == "ssd"
    cloud.add_label(worker, "owner", "ops")

    steps = await _converge(swarm, cloud, _spec(node_labels={"disk": "hdd", "zone": "a"}))
    assert "Set the node labels of 2 node(s)." in steps.seen  # the master's did not change
    labels = cloud.swarm_nodes()[worker]["labels"]
    assert (labels["disk"], labels["zone"], labels["owner"]) == ("hdd", "a", "ops")

    await _converge(swarm, cloud, _spec(node_labels={}))
    assert cloud.swarm_nodes()[worker]["labels"] == {
        "owner": "ops", "berth.nodegroup": "default-worker", "berth.role": "worker",
        MANAGED_LABELS: "berth.nodegroup,berth.role",
    }  # fmt: skip
    assert set(cloud.engines) == {_master(0), _worker(0), _worker(1)}  # labels replace nothing


async def test_ca_rotation_replaces_every_node_with_certificates_of_the_new_ca(
    swarm: SwarmModeDriver, cloud: FakeCloud
) -> None:
    first = await swarm.create(_spec(), cloud, Steps())
    cloud.start_service(4)
    new_ca = pki.new_ca("c1")
    rotated = await swarm.update(_spec(ca=new_ca), cloud, Steps())

    names = {_master(0, ca=new_ca), _worker(0, ca=new_ca), _worker(1, ca=new_ca)}
    assert set(cloud.engines) == names and set(_ready(cloud)) == names
    for engine in cloud.engines.values():
        assert engine.serves(new_ca.cert_pem, engine.address)
        assert not engine.serves(CA.cert_pem, engine.address)  # old client configs fail
    assert rotated.api_address != first.api_address  # the master was replaced too
    assert cloud.running_tasks() == 4 and cloud.interrupted == 0


async def test_a_node_that_never_runs_fails_the_operation_with_its_name(
    swarm: SwarmModeDriver, cloud: FakeCloud
) -> None:
    cloud.never_running[_worker(1)] = None
    steps = Steps()
    result = await run_operation("CREATE", swarm, _spec(), cloud, steps, timeout_s=30)
    assert result.status == "CREATE_FAILED"
    assert result.reason == f"Cluster create failed: node {_worker(1)} is not running after 0.3 s"

    cloud.never_running[_worker(1)] = "no host has room for 512 MB"
    result = await run_operation("UPDATE", swarm, _spec(), cloud, steps, timeout_s=30)
    assert result.reason == (
        f"Cluster update failed: node {_worker(1)} failed: no host has room for 512 MB"
    )


async def test_a_node_the_swarm_never_sees_ready_or_without_its_certificate_fails_by_name(
    swarm: SwarmModeDriver, cloud: FakeCloud
) -> None:
    await swarm.create(_spec(), cloud, Steps())
    cloud.partition(_worker(1))
    result = await run_operation("UPDATE", swarm, _spec(), cloud, Steps(), timeout_s=30)
    assert result.reason == f"Cluster update failed: nodes not Ready in the swarm: {_worker(1)}"

    cloud.keeps_old_certificate.add(_worker(2))
    result = await run_operation("UPDATE", swarm, _spec(workers=3), cloud, Steps(), timeout_s=30)
    assert result.reason == (
        f"Cluster update failed: node {_worker(2)} did not take its new certificate"
    )


async def test_node_containers_get_the_templates_registry_and_storage_driver(
    swarm: SwarmModeDriver, cloud: FakeCloud
) -> None:
    spec = replace(_spec(), insecure_registry="10.0.0.1:5000",
                   labels={"docker_storage_driver": "overlay2"})  # fmt: skip
    await swarm.create(spec, cloud, Steps())
    env = cloud.engines[_worker(0)].environment
    assert env["BERTH_NODE_INSECURE_REGISTRIES"] == "10.0.0.1:5000"
    assert env["BERTH_NODE_STORAGE_DRIVER"] == "overlay2"
    assert env["BERTH_NODE_LABELS"] == "berth.nodegroup=default-worker,berth.role=worker"


async def test_a_dropped_connection_retries_the_converge_from_the_top(
    swarm: SwarmModeDriver, cloud: FakeCloud
) -> None:
    await swarm.create(_spec(workers=1), cloud, Steps())
    cloud.engines[_master(0)].drops["nodes"] = 1  # the swarm's node list, once
    steps = await _converge(swarm, cloud, _spec(workers=2))
    assert any(s.startswith("A node stopped answering (") for s in steps.seen)
    assert set(_ready(cloud)) == {_master(0), _worker(0), _worker(1)}

    cloud.engines[_master(0)].drops["nodes"] = 100
    result = await run_operation("UPDATE", swarm, _spec(workers=2), cloud, Steps(), timeout_s=30)
    assert result.status == "UPDATE_FAILED" and "a node stopped answering" in result.reason


async def test_a_swarm_electing_a_leader_is_waited_for_beyond_the_retry_count(
    swarm: SwarmModeDriver, cloud: FakeCloud
) -> None:
    """Managers restarted (a CA rotation, an upgrade): an election answers "no leader"
    for seconds; the converge waits for it instead of failing after three tries."""
    await swarm.create(_spec(workers=1), cloud, Steps())
    cloud.engines[_master(0)].leaderless["nodes"] = 5
    steps = await _converge(swarm, cloud, _spec(workers=2))
    assert sum("does not have a leader" in s for s in steps.seen) == 5
    assert set(_ready(cloud)) == {_master(0), _worker(0), _worker(1)}


async def test_an_election_after_a_long_converge_is_still_waited_for(
    cloud: FakeCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The election window starts at the first "no leader", not with the converge
    (an upgrade took longer than the window before its managers restarted)."""
    # The module, not the package's ``driver`` entry point of the same name.
    monkeypatch.setattr(importlib.import_module("berth.clusters.swarm.driver"), "_ELECTION", 2.0)
    swarm = SwarmModeDriver(connect=cloud.connect, timeouts=replace(FAST, retry_pause=1.1))
    await swarm.create(_spec(workers=1), cloud, Steps())
    cloud.engines[_master(0)].drops["nodes"] = 2  # 2.2 s of retries, past the window
    cloud.engines[_master(0)].leaderless["nodes"] = 2
    steps = await _converge(swarm, cloud, _spec(workers=2))
    assert sum("does not have a leader" in s for s in steps.seen) == 2
    assert set(_ready(cloud)) == {_master(0), _worker(0), _worker(1)}


@pytest.mark.parametrize("masters", [1, 3])
async def test_a_replaced_master_leaves_only_once_it_is_out_of_raft(
    swarm: SwarmModeDriver, cloud: FakeCloud, masters: int
) -> None:
    """A demotion takes the manager out of raft after it returns; leaving before that
    left one manager of two, no majority, and no leader for good (CI, stop 22)."""
    await swarm.create(_spec(masters=masters, workers=1), cloud, Steps())
    cloud.demotion_lag = 3
    steps = await _converge(swarm, cloud, _spec(masters=masters, workers=1, image="node:25"))
    assert not cloud.quorum_lost(), steps.text()
    assert not any("still in raft" in h for h in cloud.history)
    assert _ready(cloud) == {**{_master(i, "node:25"): "manager" for i in range(masters)},
                             _worker(0, "node:25"): "worker"}  # fmt: skip


async def test_a_master_that_stays_in_raft_fails_the_update_and_is_kept(
    swarm: SwarmModeDriver, cloud: FakeCloud
) -> None:
    await swarm.create(_spec(workers=1), cloud, Steps())
    cloud.demotion_lag = 10_000  # the role manager never takes it out
    result = await run_operation(
        "UPDATE", swarm, _spec(workers=1, image="node:25"), cloud, Steps(), timeout_s=30
    )
    assert result.status == "UPDATE_FAILED", result.reason
    assert "is still a swarm manager" in (result.reason or "")
    assert not cloud.quorum_lost()
    assert _master(0) in cloud.engines  # the old master still runs the swarm


async def test_a_dead_worker_is_replaced_under_its_name_and_its_swarm_entry_pruned(
    swarm: SwarmModeDriver, cloud: FakeCloud
) -> None:
    await swarm.create(_spec(), cloud, Steps())
    old_address = cloud.engines[_worker(0)].address
    await cloud.delete_node(_worker(0))  # auto-healing deletes a dead container
    assert cloud.swarm_nodes()[_worker(0)]["state"] == "down"

    await _converge(swarm, cloud, _spec())
    assert cloud.engines[_worker(0)].address != old_address
    assert cloud.node_ls() == sorted((name, "ready") for name in cloud.engines)


async def test_health_follows_containers_dockerds_and_the_swarm(
    swarm: SwarmModeDriver, cloud: FakeCloud
) -> None:
    spec = _spec()
    assert (await swarm.health(spec, cloud)).reasons == {"api": "the cluster has no node"}
    await swarm.create(spec, cloud, Steps())
    ok = await swarm.health(spec, cloud)
    assert ok.status == "HEALTHY" and ok.dead_nodes == ()
    assert ok.reasons == {
        "api": "ok", _master(0): "Ready", _worker(0): "Ready", _worker(1): "Ready"
    }

    cloud.engines[_worker(0)].status = "Stopped"
    sick = await swarm.health(spec, cloud)
    assert sick.status == "UNHEALTHY" and sick.dead_nodes == (_worker(0),)
    assert sick.reasons[_worker(0)] == "container Stopped"

    cloud.engines[_master(0)].answering = False
    lost = await swarm.health(spec, cloud)
    assert lost.status == "UNHEALTHY" and lost.reasons["api"] == "no swarm manager answers"
    assert lost.reasons[_master(0)] == "dockerd does not answer"
    assert lost.reasons[_worker(1)] == "dockerd answers"

    cloud.engines[_worker(0)].status = "Running"
    assert (await swarm.health(spec, cloud)).status == "UNKNOWN"


async def test_delete_removes_every_node_container(
    swarm: SwarmModeDriver, cloud: FakeCloud
) -> None:
    await swarm.create(_spec(), cloud, Steps())
    steps = Steps()
    await swarm.delete(_spec(), cloud, steps)
    assert cloud.engines == {} and steps.seen == ["Deleting 3 node(s)."]


async def test_a_cluster_without_a_master_or_a_control_ca_is_refused(
    swarm: SwarmModeDriver, cloud: FakeCloud
) -> None:
    result = await run_operation("CREATE", swarm, _spec(masters=0), cloud, Steps(), timeout_s=5)
    assert result.reason == "Cluster create failed: a swarm-mode cluster needs at least one master"
    no_control = replace(_spec(), control_ca_key_pem="")
    result = await run_operation("CREATE", swarm, no_control, cloud, Steps(), timeout_s=5)
    assert result.reason == "Cluster create failed: the cluster has no control CA"
    assert cloud.engines == {}
