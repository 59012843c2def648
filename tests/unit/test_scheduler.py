"""The pure scheduler: every filter explains itself, the pipeline picks and explains."""

from __future__ import annotations

import dataclasses

import pytest

from berth.scheduler import HostState, PlacementRequest, build_pipeline

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
