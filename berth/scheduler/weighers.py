"""Ranking: each weigher is a pure ``(request, host) -> score in 0..1``; higher wins."""

from __future__ import annotations

from typing import Protocol

from berth.scheduler.model import HostState, PlacementRequest

__all__ = ["BinpackWeigher", "SpreadWeigher", "Weigher"]


class Weigher(Protocol):
    @property
    def name(self) -> str: ...

    def __call__(self, req: PlacementRequest, host: HostState) -> float: ...


def _free_fraction(host: HostState) -> float:
    mem = 1.0 - host.mem_used / host.mem_total if host.mem_total else 0.0
    cpu = 1.0 - host.cpu_used / host.cpus if host.cpus else 0.0
    return max(0.0, min(1.0, (mem + cpu) / 2))


class SpreadWeigher:
    """Prefers the emptiest host, so load spreads out."""

    name = "spread"

    def __call__(self, req: PlacementRequest, host: HostState) -> float:
        return _free_fraction(host)


class BinpackWeigher:
    """Prefers the fullest host that still fits, so whole hosts stay free."""

    name = "binpack"

    def __call__(self, req: PlacementRequest, host: HostState) -> float:
        return 1.0 - _free_fraction(host)
