"""The one ordered pipeline: cheap filters first, then weighers; every verdict recorded.

At scale the pipeline does not weigh every host. Like Nomad's limit
iterator it visits hosts in a random order and stops once ``candidates``
hosts passed every filter; the best of those wins. Only when fewer hosts
than that fit does it visit them all, so a "no valid host" answer still
carries a reason for every host.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Sequence
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
    NetworkSpreadWeigher,
    SpreadWeigher,
    Weigher,
)

__all__ = ["DEFAULT_CANDIDATES", "Pipeline", "Stage", "build_pipeline"]

# How many feasible hosts are weighed at most: enough that the best of them is
# near the best of all (the chance that none of 16 random feasible hosts is in
# the emptiest tenth is 0.9**16, under 19%), few enough to decide in well
# under a millisecond whatever the number of hosts.
DEFAULT_CANDIDATES = 16


def _always(_req: PlacementRequest) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class Stage:
    """A filter, and when it can reject anything at all.

    ``when`` is a cheap test of the request: if it is false the filter would
    pass every host (no zone asked, no hints given), so the pipeline leaves it
    out of that placement instead of calling it once per host.
    """

    check: Filter
    when: Callable[[PlacementRequest], bool] = _always


@dataclass(frozen=True)
class Pipeline:
    """Filters (as stages), weighers, and how many feasible hosts to weigh (0: all)."""

    stages: Sequence[Stage]
    weighers: Sequence[Weigher]
    candidates: int = 0

    @property
    def filters(self) -> list[Filter]:
        """Every filter, in order."""
        return [stage.check for stage in self.stages]

    def place(
        self, req: PlacementRequest, hosts: Sequence[HostState], rng: random.Random | None = None
    ) -> Decision:
        """Choose the best feasible host; ties go to the host with the smaller name.

        With more hosts than ``candidates`` the hosts are visited in a random
        order (``rng``, or the ``random`` module) until that many fit, and
        rejections are recorded for the hosts visited; otherwise every host is
        visited in the order given.
        """
        checks = [stage.check for stage in self.stages if stage.when(req)]
        limit = len(hosts)
        if 0 < self.candidates < limit:
            limit = self.candidates
        decision = Decision(host=None)
        best_score, best_name = -math.inf, ""
        for host in _visit(hosts, sampled=limit < len(hosts), rng=rng):
            decision.visited += 1
            reason = _reject(checks, req, host)
            if reason:
                decision.rejections[host.hostname] = reason
                continue
            score = sum(w(req, host) for w in self.weighers)
            decision.scores[host.hostname] = score
            if score > best_score or (score == best_score and host.hostname < best_name):
                best_score, best_name = score, host.hostname
                decision.host = host
            if len(decision.scores) >= limit:
                break
        if decision.host is not None:
            decision.because = self.because(req, decision.host, len(decision.scores))
        return decision

    def because(self, req: PlacementRequest, host: HostState, candidates: int) -> str:
        """Why ``host`` won among ``candidates`` feasible hosts: its score, weigher by weigher,
        and what the weighers that explain themselves saw there."""
        parts = {w.name: w(req, host) for w in self.weighers}
        notes = [note for w in self.weighers if (note := _note(w, req, host))]
        terms = " + ".join(f"{name} {score:.2f}" for name, score in parts.items() if score)
        return "; ".join(
            [
                f"{host.hostname}: best of {candidates} feasible "
                f"host{'s' if candidates != 1 else ''}, score {sum(parts.values()):.2f}"
                + (f" ({terms})" if terms else ""),
                *notes,
            ]
        )


def _note(weigher: Weigher, req: PlacementRequest, host: HostState) -> str:
    explain = getattr(weigher, "explain", None)
    return str(explain(req, host)) if explain is not None else ""


def _reject(checks: list[Filter], req: PlacementRequest, host: HostState) -> str:
    for check in checks:
        verdict = check(req, host)
        if not verdict.ok:
            return verdict.reason
    return ""


def _visit(
    hosts: Sequence[HostState], *, sampled: bool, rng: random.Random | None
) -> Iterator[HostState]:
    """Every host once: in the given order, or (``sampled``) in a random order.

    The random order is a random start and a random stride coprime with the
    number of hosts, which visits each host exactly once without the cost of
    shuffling thousands of them for every placement.
    """
    n = len(hosts)
    if not sampled or n < 2:
        yield from hosts
        return
    draw = rng.randrange if rng is not None else random.randrange
    start, stride = draw(n), draw(1, n)
    while math.gcd(stride, n) != 1:
        stride = draw(1, n)
    for k in range(n):
        yield hosts[(start + k * stride) % n]


def _asks_labels(req: PlacementRequest) -> bool:
    return any(key.startswith("label:") for key, _ in req.hints)


def build_pipeline(
    *,
    cpu_ratio: float,
    ram_ratio: float,
    disk_ratio: float,
    default_zone: str,
    weigher: str = "spread",
    tenant_exclusive: bool = False,
    candidates: int = DEFAULT_CANDIDATES,
) -> Pipeline:
    """The standard pipeline, in the order that rejects most cheaply first.

    A requested host and the service state are a field compare each, so they
    go first; zone, runtime, affinity, tenancy and labels next (set lookups);
    resources last, because their reasons ("need 512 MiB, 100 free") are the
    most useful ones to show for hosts that passed everything else. A filter
    runs only for requests it can reject (see ``Stage``): a plain request
    meets four filters, not eleven. Weighers: load balance (spread or binpack)
    counts twice as much as image locality; the ``spread_network`` hint outweighs
    both (one member fewer on a host wins). ``candidates``: see ``Pipeline``.
    """
    stages = [
        Stage(RequestedHostFilter(), lambda r: r.requested_host is not None),
        Stage(ComputeFilter()),
        Stage(AvailabilityZoneFilter(default_zone), lambda r: bool(r.availability_zone)),
        Stage(RuntimeFilter(), lambda r: bool(r.runtime)),
        Stage(AffinityFilter(), lambda r: bool(r.same_host or r.different_host)),
        Stage(TenantExclusiveFilter(tenant_exclusive), lambda _r: tenant_exclusive),
        Stage(LabelFilter(), _asks_labels),
        Stage(CpuPinningFilter()),  # also keeps shared requests off pinning hosts
        Stage(CpuFilter(cpu_ratio)),
        Stage(RamFilter(ram_ratio)),
        Stage(DiskFilter(disk_ratio), lambda r: bool(r.disk)),
    ]
    balance: Weigher = BinpackWeigher() if weigher == "binpack" else SpreadWeigher()
    weighers: list[Weigher] = [balance, ImageLocalityWeigher(), NetworkSpreadWeigher()]
    return Pipeline(stages=stages, weighers=weighers, candidates=max(0, candidates))
