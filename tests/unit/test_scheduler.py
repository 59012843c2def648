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
