"""The scheduler's nouns: a host snapshot, a request, a verdict and a decision."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["Decision", "HostState", "NetworkSpread", "PlacementRequest", "Verdict"]


@dataclass(frozen=True, slots=True)
class HostState:
    """One host as the scheduler sees it at the moment of the snapshot."""

    hostname: str
    cpus: int
    cpu_used: float
    mem_total: int
    mem_used: int
    disk_total: int = 0
    disk_used: int = 0
    runtimes: tuple[str, ...] = ("runc",)
    labels: tuple[tuple[str, str], ...] = ()
    availability_zone: str | None = None
    enabled: bool = True
    up: bool = True
    generation: int = 0
    total_containers: int = 0
    enable_cpu_pinning: bool = False
    pinned_cpus: frozenset[int] = frozenset()
    projects: frozenset[str] = frozenset()
    images: frozenset[str] = frozenset()
    # Whether its engine caps a container's writable layer at the container's ``disk``
    # (Zun's host field of that name). No driver here does (docs/security.md).
    disk_quota_supported: bool = False

    def free_cores(self) -> list[int]:
        """Core ids not pinned to a dedicated container, lowest first."""
        return [c for c in range(self.cpus) if c not in self.pinned_cpus]


@dataclass(frozen=True, slots=True)
class NetworkSpread:
    """Where a network's members run now (the ``spread_network`` hint): per host, per zone.

    A zone is the host's ``availability_zone``, ``""`` for a host without one
    (the default zone).
    """

    network: str  # its name, for explanations
    hosts: tuple[tuple[str, int], ...] = ()
    zones: tuple[tuple[str, int], ...] = ()

    @property
    def total(self) -> int:
        """Members placed on any host."""
        return sum(n for _, n in self.hosts)

    def on_host(self, hostname: str) -> int:
        return next((n for h, n in self.hosts if h == hostname), 0)

    def in_zone(self, zone: str | None) -> int:
        return next((n for z, n in self.zones if z == (zone or "")), 0)


@dataclass(frozen=True, slots=True)
class PlacementRequest:
    cpu: float
    memory: int
    disk: int = 0
    runtime: str | None = None
    availability_zone: str | None = None
    requested_host: str | None = None
    hints: tuple[tuple[str, str], ...] = ()
    cpu_policy: str = "shared"
    project_id: str = ""
    image: str = ""
    same_host: frozenset[str] = frozenset()
    different_host: frozenset[str] = frozenset()
    spread: NetworkSpread | None = None

    @property
    def dedicated_cores(self) -> int:
        """Whole cores a ``dedicated`` request pins (cpu rounded up)."""
        return max(1, math.ceil(self.cpu - 1e-9)) if self.cpu_policy == "dedicated" else 0


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    reason: str = ""


PASS = Verdict(True)


@dataclass(slots=True)
class Decision:
    """The chosen host (or None) and why: rejections per host, scores of the rest."""

    host: HostState | None
    rejections: dict[str, str] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)
    visited: int = 0  # hosts looked at (fewer than all once enough candidates fit)
    because: str = ""  # why the chosen host won (its score, weigher by weigher)

    def explain(self) -> str:
        """A one-line account of why no host fits, grouped by reason with host counts."""
        if not self.rejections:
            return "There are not enough hosts available: no host is registered."
        by_reason: dict[str, int] = {}
        for reason in self.rejections.values():
            by_reason[reason] = by_reason.get(reason, 0) + 1
        parts = [
            f"{n} host{'s' if n > 1 else ''}: {reason}"
            for reason, n in sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0]))
        ]
        return "There are not enough hosts available. " + "; ".join(parts) + "."
