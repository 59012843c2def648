"""The swarm-mode driver's pure parts: node names, generations, the converge plan, DinD options."""

from __future__ import annotations

from dataclasses import replace

from berth.clusters import ClusterSpec, NodeGroupSpec, NodeInfo
from berth.clusters.swarm.plan import batches, generation, node_name, parse_name, plan
from berth.domain.hostsync import DesiredContainer
from berth.runtimes import dockermap

UUID = "0123abcd-0000-0000-0000-000000000000"
CA = "-----BEGIN CERTIFICATE-----\nCA1\n-----END CERTIFICATE-----\n"


def _spec(masters: int = 1, workers: int = 2, image: str = "img:1", ca: str = CA,
          extra: tuple[NodeGroupSpec, ...] = ()) -> ClusterSpec:  # fmt: skip
    groups = (
        NodeGroupSpec("default-master", "master", masters, 1, 1024, image),
        NodeGroupSpec("default-worker", "worker", workers, 1, 1024, image),
        *extra,
    )
    return ClusterSpec(UUID, "c", "p", masters, workers, 1, 1024, image, ca_cert_pem=ca,
                       nodegroups=groups)  # fmt: skip


def _nodes(spec: ClusterSpec, image: str = "img:1", ca: str = CA) -> list[NodeInfo]:
    gen = generation(image, ca)
    return [
        NodeInfo(node_name(UUID, g.name, i, gen), "Running", f"10.0.0.{n}")
        for n, (g, i) in enumerate(
            (g, i) for g in spec.nodegroups for i in range(g.node_count)
        )
    ]  # fmt: skip


def test_names_round_trip_and_foreign_names_are_not_ours() -> None:
    name = node_name(UUID, "Default Worker!", 3, "abc123")
    assert name == "0123abcd-default-worker-3-abc123"
    parsed = parse_name(UUID, name)
    assert parsed is not None and (parsed.group, parsed.index, parsed.gen) == (
        "default-worker", 3, "abc123",
    )  # fmt: skip
    assert parse_name(UUID, "ffffffff-default-worker-3-abc123") is None
    assert parse_name(UUID, "0123abcd-oops") is None


def test_generation_changes_with_image_or_ca_only() -> None:
    assert generation("img:1", CA) == generation("img:1", CA + "\n")
    assert generation("img:2", CA) != generation("img:1", CA)
    assert generation("img:1", CA.replace("CA1", "CA2")) != generation("img:1", CA)


def test_fresh_cluster_creates_every_node_masters_first() -> None:
    p = plan(_spec(), [])
    assert [s.name.split("-", 1)[1] for s in p.create] == [
        f"default-master-0-{generation('img:1', CA)}",
        f"default-worker-0-{generation('img:1', CA)}",
        f"default-worker-1-{generation('img:1', CA)}",
    ]
    assert not p.keep and not p.replace and not p.retire


def test_converged_cluster_is_a_no_op() -> None:
    spec = _spec()
    p = plan(spec, _nodes(spec))
    assert len(p.keep) == 3 and not p.create and not p.replace and not p.retire


def test_resize_down_retires_the_highest_indexes_and_a_removed_group() -> None:
    extra = (NodeGroupSpec("gpu", "worker", 1, 1, 1024, "img:1"),)
    big = _spec(workers=3, extra=extra)
    p = plan(_spec(workers=1), _nodes(big))
    assert sorted(n.name.split("-", 1)[1][:-7] for n in p.retire) == [
        "default-worker-1", "default-worker-2", "gpu-0",
    ]  # fmt: skip
    assert len(p.keep) == 2


def _worker_spec(workers: int, remove: tuple[str, ...] = ()) -> ClusterSpec:
    base = _spec(workers=workers)
    groups = tuple(
        replace(g, nodes_to_remove=remove) if g.name == "default-worker" else g
        for g in base.nodegroups
    )
    return replace(base, nodegroups=groups)


def _short(name: str) -> str:
    return name.split("-", 1)[1][:-7]  # "default-worker-1"


def test_nodes_to_remove_go_first_and_the_others_keep_their_names() -> None:
    nodes = _nodes(_spec(workers=3))
    w = {_short(n.name): n.name for n in nodes}
    p = plan(_worker_spec(1, (w["default-worker-0"], w["default-worker-1"])), nodes)
    assert sorted(_short(n.name) for n in p.retire) == ["default-worker-0", "default-worker-1"]
    assert sorted(_short(s.name) for s, _ in p.keep) == ["default-master-0", "default-worker-2"]
    assert not p.create and not p.replace
    # The next update (no hint any more) keeps the survivor and fills the lowest free slot.
    survivors = [n for n in nodes if n.name not in {w["default-worker-0"], w["default-worker-1"]}]
    grown = plan(_worker_spec(2), survivors)
    assert [_short(s.name) for s in grown.create] == ["default-worker-0"]
    assert sorted(_short(s.name) for s, _ in grown.keep) == ["default-master-0", "default-worker-2"]


def test_removing_a_node_at_the_same_count_replaces_it_under_a_new_name() -> None:
    nodes = _nodes(_spec(workers=2))
    doomed = next(n.name for n in nodes if "-default-worker-0-" in n.name)
    p = plan(_worker_spec(2, (doomed,)), nodes)
    assert [n.name for n in p.retire] == [doomed]
    assert [_short(s.name) for s in p.create] == ["default-worker-2"]
    assert "default-worker-1" in {_short(s.name) for s, _ in p.keep}


def test_nodes_to_remove_only_touch_their_own_group() -> None:
    nodes = _nodes(_spec(workers=2))
    master = next(n.name for n in nodes if "-default-master-" in n.name)
    p = plan(_worker_spec(2, (master,)), nodes)
    assert not p.retire and not p.create and len(p.keep) == 3


def test_new_image_or_ca_replaces_workers_before_masters() -> None:
    old = _spec()
    for new in (_spec(image="img:2"), _spec(ca=CA.replace("CA1", "CA2"))):
        p = plan(new, _nodes(old))
        assert not p.keep and not p.create and not p.retire
        assert [s.manager for s, _ in p.replace] == [False, False, True]
        assert all(len(olds) == 1 and olds[0].name != s.name for s, olds in p.replace)


def test_replace_batches_take_workers_together_and_masters_singly() -> None:
    old = _spec(masters=3, workers=5)
    p = plan(_spec(masters=3, workers=5, image="img:2"), _nodes(old))
    for size, worker_steps in ((1, [1, 1, 1, 1, 1]), (2, [2, 2, 1]), (5, [5]), (9, [5])):
        steps = batches(p.replace, size)
        roles = [[s.manager for s, _ in step] for step in steps]
        assert [len(r) for r in roles] == [*worker_steps, 1, 1, 1], size
        assert all(not any(r) for r in roles[: len(worker_steps)]) and all(
            r == [True] for r in roles[len(worker_steps) :]
        )
        assert sum(len(step) for step in steps) == len(p.replace) == 8
    assert batches([], 3) == []


def test_crash_during_a_replace_keeps_the_new_node_and_retires_the_old() -> None:
    old_nodes = _nodes(_spec())
    new = _spec(image="img:2")
    half = [*old_nodes, _nodes(new, image="img:2")[1]]  # worker 0 already replaced
    p = plan(new, half)
    assert [s.name for s, _ in p.keep] == [_nodes(new, image="img:2")[1].name]
    assert [n.name for n in p.retire] == [old_nodes[1].name]
    assert len(p.replace) == 2


def test_unknown_containers_with_the_cluster_label_are_retired() -> None:
    spec = _spec()
    p = plan(spec, [*_nodes(spec), NodeInfo("hand-made", "Running")])
    assert [n.name for n in p.retire] == ["hand-made"]


def _desired(profile: str | None) -> DesiredContainer:
    return DesiredContainer(
        uuid="u", name="n", project_id="p", image="i", desired_state="running",
        spec_version=1, node_profile=profile,
    )  # fmt: skip


def test_dind_profile_adds_the_docker_in_docker_host_options() -> None:
    _, plain = dockermap.create_params(_desired(None), "me")
    assert "cap_add" not in plain and "cgroupns" not in plain
    _, host = dockermap.create_params(_desired("dind"), "me")
    assert host["cap_add"] == ["ALL"] and host["cap_drop"] == ["SYS_RESOURCE"]
    assert "seccomp=unconfined" in host["security_opt"]
    assert host["cgroupns"] == "host" and host["privileged"] is False
    assert "/sys/fs/cgroup:/sys/fs/cgroup:rw" in host["binds"]
    assert host["tmpfs"]["/var/lib/docker"] == "exec"
