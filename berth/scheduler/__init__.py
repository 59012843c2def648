"""Pure placement: filters and weighers over a snapshot of hosts, with every decision explained."""

from berth.scheduler.model import Decision, HostState, NetworkSpread, PlacementRequest, Verdict
from berth.scheduler.pipeline import DEFAULT_CANDIDATES, Pipeline, Stage, build_pipeline

__all__ = [
    "DEFAULT_CANDIDATES",
    "Decision",
    "HostState",
    "NetworkSpread",
    "Pipeline",
    "PlacementRequest",
    "Stage",
    "Verdict",
    "build_pipeline",
]
