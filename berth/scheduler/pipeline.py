"""The one ordered pipeline: cheap filters first, then weighers; every verdict recorded."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from berth.scheduler.filters import (
    AffinityFilter,
    AvailabilityZoneFilter,
    ComputeFilter,
    CpuFilter,
    CpuPinningFilter,
    DiskFilter,
    Filter,
    LabelFilter,
    RamFilter,
    RequestedHostFilter,
    RuntimeFilter,
    TenantExclusiveFilter,
)
from berth.scheduler.model import Decision, HostState, PlacementRequest
from berth.scheduler.weighers import (
    BinpackWeigher,
    ImageLocalityWeigher,
    SpreadWeigher,
    Weigher,
)

__all__ = ["Pipeline", "build_pipeline"]


@dataclass(frozen=True)
class Pipeline:
    filters: Sequence[Filter]
    weighers: Sequence[Weigher]

    def place(self, req: PlacementRequest, hosts: Iterable[HostState]) -> Decision:
        """Choose the best feasible host; ties go to the host with the smaller name."""
        decision = Decision(host=None)
        best: tuple[float, str] | None = None
        for host in hosts:
            reason = self._reject(req, host)
            if reason:
                decision.rejections[host.hostname] = reason
                continue
            score = sum(w(req, host) for w in self.weighers)
            decision.scores[host.hostname] = score
            key = (score, _neg(host.hostname))
            if best is None or key > best:
                best = key
                decision.host = host
        return decision

    def _reject(self, req: PlacementRequest, host: HostState) -> str:
        for check in self.filters:
            verdict = check(req, host)
            if not verdict.ok:
                return verdict.reason
        return ""


def _neg(name: str) -> str:
    # Inverts the ordering of names so that max() prefers the smaller one.
    return "".join(chr(0x10FFFF - ord(c)) for c in name)


def build_pipeline(
    *,
    cpu_ratio: float,
    ram_ratio: float,
    disk_ratio: float,
    default_zone: str,
    weigher: str = "spread",
    tenant_exclusive: bool = False,
) -> Pipeline:
    """The standard pipeline, in the order that rejects most cheaply first.

    A requested host and the service state are a field compare each, so they
    go first; zone, runtime, affinity, tenancy and labels next (set lookups);
    resources last, because their reasons ("need 512 MiB, 100 free") are the
    most useful ones to show for hosts that passed everything else. Weighers:
    load balance (spread or binpack) counts twice as much as image locality.
    """
    filters: list[Filter] = [
        RequestedHostFilter(),
        ComputeFilter(),
        AvailabilityZoneFilter(default_zone),
        RuntimeFilter(),
        AffinityFilter(),
        TenantExclusiveFilter(tenant_exclusive),
        LabelFilter(),
        CpuPinningFilter(),
        CpuFilter(cpu_ratio),
        RamFilter(ram_ratio),
        DiskFilter(disk_ratio),
    ]
    balance: Weigher = BinpackWeigher() if weigher == "binpack" else SpreadWeigher()
    weighers: list[Weigher] = [balance, ImageLocalityWeigher()]
    return Pipeline(filters=filters, weighers=weighers)
