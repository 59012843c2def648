"""The pure scheduler: every filter explains itself, the pipeline picks and explains."""

from __future__ import annotations

import dataclasses
import random

import pytest

from berth.scheduler import (
    HostState,
    NetworkSpread,
    Pipeline,
    PlacementRequest,
    Stage,
    Verdict,
    build_pipeline,
)
from berth.scheduler.weighers import local_name

BASE = HostState(
    hostname="h1",
    cpus=4,
    cpu_used=0.0,
    mem_total=4096,
    mem_used=0,
    disk_total=100,
    disk_used=0,
    runtimes=("runc",),
    availability_zone="az1",
)


def pipeline(weigher: str = "spread"):  # type: ignore[no-untyped-def]
    return build_pipeline(
        cpu_ratio=1.0, ram_ratio=1.0, disk_ratio=1.0, default_zone="nova", weigher=weigher
    )


def req(**kw: object) -> PlacementRequest:
    return dataclasses.replace(PlacementRequest(cpu=1.0, memory=512), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("host_changes", "request_changes", "reason"),
    [
        ({"enabled": False}, {}, "service disabled"),
        ({"up": False}, {}, "service down (no recent heartbeat)"),
        ({}, {"availability_zone": "az2"}, "not in availability zone az2"),
        ({}, {"runtime": "runsc"}, "runtime runsc not available"),
        ({}, {"requested_host": "h9"}, "not the requested host h9"),
        ({"mem_used": 4000}, {}, "not enough memory (need 512 MiB, 96 free)"),
        ({"cpu_used": 3.5}, {}, "not enough CPU (need 1, 0.5 free)"),
        ({}, {"disk": 200}, "not enough disk (need 200 GiB, 100 free)"),
        (
            {},
            {"disk": 5},
            "does not support disk quota: its engine cannot cap a container's disk "
            "(5 GiB asked; create it without disk)",
        ),
        ({}, {"hints": (("label:gpu", "yes"),)}, "label gpu=yes not on host"),
    ],
)
def test_each_rejection_is_explained(
    host_changes: dict[str, object], request_changes: dict[str, object], reason: str
) -> None:
    host = dataclasses.replace(BASE, **host_changes)  # type: ignore[arg-type]
    decision = pipeline().place(req(**request_changes), [host])
    assert decision.host is None
    assert decision.rejections == {"h1": reason}
    assert reason in decision.explain()


def test_a_disk_size_goes_only_where_its_engine_caps_it() -> None:
    """As in Zun: a container's ``disk`` needs a host whose engine enforces it."""
    capped = dataclasses.replace(BASE, hostname="h2", disk_quota_supported=True)
    decision = pipeline().place(req(disk=5), [BASE, capped])
    assert decision.host == capped
    # Without disk, both fit.
    assert len(pipeline().place(req(), [BASE, capped]).scores) == 2


def test_label_hint_matches() -> None:
    host = dataclasses.replace(BASE, labels=(("gpu", "yes"),))
    assert pipeline().place(req(hints=(("label:gpu", "yes"),)), [host]).host == host


def test_default_zone_applies_to_hosts_without_zone() -> None:
    host = dataclasses.replace(BASE, availability_zone=None)
    assert pipeline().place(req(availability_zone="nova"), [host]).host == host


def test_spread_prefers_emptier_and_binpack_fuller() -> None:
    empty = dataclasses.replace(BASE, hostname="empty")
    busy = dataclasses.replace(BASE, hostname="busy", mem_used=2048, cpu_used=2.0)
    assert pipeline("spread").place(req(), [busy, empty]).host == empty
    assert pipeline("binpack").place(req(), [busy, empty]).host == busy


def test_ties_go_to_the_smaller_name() -> None:
    a, b = dataclasses.replace(BASE, hostname="a"), dataclasses.replace(BASE, hostname="b")
    assert pipeline().place(req(), [b, a]).host == a


def test_explain_groups_reasons_with_counts() -> None:
    hosts = [dataclasses.replace(BASE, hostname=f"h{i}", mem_used=4096) for i in range(3)]
    hosts.append(dataclasses.replace(BASE, hostname="off", enabled=False))
    text = pipeline().place(req(), hosts).explain()
    assert "3 hosts: not enough memory (need 512 MiB, 0 free)" in text
    assert "1 host: service disabled" in text


def test_no_hosts_at_all() -> None:
    assert "no host is registered" in pipeline().place(req(), []).explain()


def test_dedicated_needs_pinning_host_with_free_cores() -> None:
    pinning = dataclasses.replace(
        BASE, hostname="pin", enable_cpu_pinning=True, pinned_cpus=frozenset({0, 1, 2})
    )
    plain = dataclasses.replace(BASE, hostname="plain")
    decision = pipeline().place(req(cpu=1.5, cpu_policy="dedicated"), [pinning, plain])
    assert decision.host is None
    assert decision.rejections == {
        "pin": "not enough free cores (need 2, 1 free)",
        "plain": "no CPU pinning on host",
    }
    assert pipeline().place(req(cpu=1, cpu_policy="dedicated"), [pinning, plain]).host == pinning
    # shared containers stay off hosts whose cores are promised exclusively
    assert pipeline().place(req(), [pinning, plain]).host == plain
    assert pinning.free_cores() == [3]


def test_tenant_exclusive_hosts() -> None:
    taken = dataclasses.replace(BASE, hostname="taken", projects=frozenset({"p1"}))
    free = dataclasses.replace(BASE, hostname="free", mem_used=3000)
    strict = build_pipeline(
        cpu_ratio=1, ram_ratio=1, disk_ratio=1, default_zone="nova", tenant_exclusive=True
    )
    assert strict.place(req(project_id="p2"), [taken, free]).host == free
    assert strict.place(req(project_id="p1"), [taken, free]).host == taken
    assert strict.place(req(project_id="p2"), [taken]).rejections == {
        "taken": "host serves another project"
    }
    assert pipeline().place(req(project_id="p2"), [taken, free]).host == taken


def test_affinity_hints() -> None:
    a, b = dataclasses.replace(BASE, hostname="a"), dataclasses.replace(BASE, hostname="b")
    assert pipeline().place(req(same_host=frozenset({"b"})), [a, b]).host == b
    assert pipeline().place(req(different_host=frozenset({"a"})), [a, b]).host == b
    assert pipeline().place(req(different_host=frozenset({"a", "b"})), [a, b]).host is None


def test_image_locality_breaks_near_ties_but_not_load() -> None:
    cached = dataclasses.replace(
        BASE, hostname="cached", images=frozenset({"img:latest"}), mem_used=100
    )
    empty = dataclasses.replace(BASE, hostname="empty")
    assert pipeline().place(req(image="img"), [cached, empty]).host == cached
    loaded = dataclasses.replace(cached, mem_used=4000, cpu_used=3.5)
    assert pipeline().place(req(image="img", memory=64), [loaded, empty]).host == empty


def many(n: int, **changes: object) -> list[HostState]:
    return [
        dataclasses.replace(BASE, hostname=f"h{i:04d}", **changes)  # type: ignore[arg-type]
        for i in range(n)
    ]


def sampled(candidates: int, weigher: str = "spread"):  # type: ignore[no-untyped-def]
    return build_pipeline(
        cpu_ratio=1.0,
        ram_ratio=1.0,
        disk_ratio=1.0,
        default_zone="nova",
        weigher=weigher,
        candidates=candidates,
    )


def test_limit_weighs_only_that_many_feasible_hosts() -> None:
    decision = sampled(4).place(req(), many(1000), random.Random(7))
    assert decision.host is not None
    assert len(decision.scores) == 4
    assert decision.visited == 4 and not decision.rejections


def test_limit_visits_every_host_when_too_few_fit() -> None:
    hosts = many(500, mem_used=4096)
    lucky = random.Random(3).randrange(500)
    hosts[lucky] = dataclasses.replace(hosts[lucky], mem_used=0)
    decision = sampled(4).place(req(), hosts, random.Random(11))
    assert decision.host == hosts[lucky]
    assert decision.visited == 500 and len(decision.rejections) == 499


def test_no_valid_host_still_explains_every_host_when_sampling() -> None:
    hosts = many(300, mem_used=4096)
    hosts += [dataclasses.replace(BASE, hostname=f"off{i}", enabled=False) for i in range(20)]
    decision = sampled(8).place(req(), hosts, random.Random(5))
    assert decision.host is None
    assert len(decision.rejections) == 320
    assert decision.explain() == (
        "There are not enough hosts available. "
        "300 hosts: not enough memory (need 512 MiB, 0 free); 20 hosts: service disabled."
    )


def test_random_order_visits_each_host_exactly_once() -> None:
    for n in (2, 3, 97, 100, 1024):
        hosts = many(n, mem_used=4096)
        decision = sampled(1).place(req(), hosts, random.Random(n))
        assert decision.visited == n and len(decision.rejections) == n


def test_sampled_spread_mostly_finds_empty_hosts() -> None:
    # One host in ten is empty, the rest half full: the best of 16 random
    # feasible hosts is an empty one unless all 16 missed them (0.9**16, ~19%).
    hosts = many(1000, mem_used=2048, cpu_used=2.0)
    for i in range(0, 1000, 10):
        hosts[i] = dataclasses.replace(hosts[i], mem_used=0, cpu_used=0.0)
    rng = random.Random(1)
    chosen = [sampled(16).place(req(), hosts, rng).host for _ in range(300)]
    empty = sum(1 for h in chosen if h is not None and h.mem_used == 0)
    assert empty > 200


def test_same_seed_same_choice() -> None:
    hosts = many(2000)
    hosts = [dataclasses.replace(h, mem_used=(i * 37) % 4000) for i, h in enumerate(hosts)]
    first = sampled(16).place(req(), hosts, random.Random(42)).host
    assert first == sampled(16).place(req(), hosts, random.Random(42)).host


def test_filters_run_only_for_requests_they_can_reject() -> None:
    calls: list[str] = []

    class Counting:
        name = "counting"

        def __call__(self, r: PlacementRequest, host: HostState) -> Verdict:
            calls.append(host.hostname)
            return Verdict(True)

    p = Pipeline(stages=[Stage(Counting(), lambda r: bool(r.runtime))], weighers=[])
    p.place(req(), many(3))
    assert calls == []
    p.place(req(runtime="runsc"), many(3))
    assert calls == ["h0000", "h0001", "h0002"]
    # the standard pipeline: a plain request meets compute, pinning, CPU and RAM only
    plain = [s.check.name for s in pipeline().stages if s.when(req())]
    assert plain == ["compute", "cpu_pinning", "cpu", "ram"]


def test_requested_host_and_hints_still_filtered() -> None:
    hosts = many(40)
    d = sampled(4).place(req(requested_host="h0031"), hosts, random.Random(2))
    assert d.host is not None and d.host.hostname == "h0031"


@pytest.mark.parametrize(
    ("image", "local"),
    [
        ("busybox", "busybox:latest"),
        ("busybox:1.36", "busybox:1.36"),
        ("docker.io/library/busybox", "busybox:latest"),
        ("docker.io/me/app:2", "me/app:2"),
        ("registry:5000/app", "registry:5000/app:latest"),
        ("app@sha256:abc", "app@sha256:abc"),
    ],
)
def test_local_image_names(image: str, local: str) -> None:
    assert local_name(image) == local


def _spread(network: str = "backend", **hosts: int) -> NetworkSpread:
    return NetworkSpread(network, tuple(sorted(hosts.items())), (("az1", sum(hosts.values())),))


@pytest.mark.parametrize("weigher", ["spread", "binpack"])
def test_spread_network_prefers_the_host_with_fewest_members_over_load_and_image(
    weigher: str,
) -> None:
    # h1 is the emptiest (spread's pick) and holds the image; h2 the fullest (binpack's).
    h1 = dataclasses.replace(BASE, hostname="h1", images=frozenset({"busybox:latest"}))
    h2 = dataclasses.replace(BASE, hostname="h2", mem_used=3000, cpu_used=3.0)
    h3 = dataclasses.replace(BASE, hostname="h3", mem_used=1000, cpu_used=1.0)
    plain = pipeline(weigher).place(req(image="busybox"), [h1, h2, h3]).host
    assert plain is not None and plain.hostname == ("h1" if weigher == "spread" else "h2")
    spread = _spread(h1=1, h2=1)
    decision = pipeline(weigher).place(req(image="busybox", spread=spread), [h1, h2, h3])
    assert decision.host == h3
    assert "network backend: 0 of its 2 members on this host" in decision.because
    # Every host holds one: the fewest win again, and load decides among equals.
    even = pipeline(weigher).place(req(spread=_spread(h1=2, h2=1, h3=1)), [h1, h2, h3])
    assert even.host == (h3 if weigher == "spread" else h2)


def test_spread_network_never_rejects_a_host() -> None:
    crowded = dataclasses.replace(BASE, hostname="h1")
    full = dataclasses.replace(BASE, hostname="h2", mem_used=4096)
    decision = pipeline().place(req(spread=_spread(h1=5)), [crowded, full])
    assert decision.host == crowded
    assert decision.rejections == {"h2": "not enough memory (need 512 MiB, 0 free)"}
    assert "5 of its 5 members on this host" in decision.because


def test_spread_network_spreads_over_zones_first_then_hosts() -> None:
    a1 = dataclasses.replace(BASE, hostname="a1", availability_zone="az1")
    a2 = dataclasses.replace(BASE, hostname="a2", availability_zone="az1")
    b1 = dataclasses.replace(BASE, hostname="b1", availability_zone="az2", mem_used=2000)
    hosts = [a1, a2, b1]
    # One member on a1: the other zone wins, though a2 is emptier and holds none either.
    one = NetworkSpread("web", (("a1", 1),), (("az1", 1),))
    decision = pipeline().place(req(spread=one), hosts)
    assert decision.host == b1
    assert "0 in zone az2" in decision.because
    # One in each zone: the host without a member, in a zone as full as the other.
    two = NetworkSpread("web", (("a1", 1), ("b1", 1)), (("az1", 1), ("az2", 1)))
    assert pipeline().place(req(spread=two), hosts).host == a2
    # Hosts without a zone are in the default zone ("").
    bare = [dataclasses.replace(h, availability_zone=None) for h in hosts]
    decision = pipeline().place(req(spread=NetworkSpread("web", (("a1", 1),), (("", 1),))), bare)
    assert decision.host is not None and decision.host.hostname == "a2"
    assert "in the default zone" in decision.because


def test_the_chosen_host_is_explained() -> None:
    h1 = dataclasses.replace(BASE, hostname="h1", mem_used=2048, cpu_used=2.0)
    h2 = dataclasses.replace(BASE, hostname="h2", mem_used=1024, cpu_used=1.0)
    decision = pipeline().place(req(), [h1, h2])
    assert decision.because == "h2: best of 2 feasible hosts, score 0.75 (spread 0.75)"
    assert pipeline().place(req(), [h1]).because.startswith("h1: best of 1 feasible host,")
    assert pipeline().place(req(memory=8192), [h1]).because == ""
