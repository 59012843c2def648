"""Pure placement: filters and weighers over a snapshot of hosts, with every decision explained."""

from berth.scheduler.model import Decision, HostState, PlacementRequest, Verdict
from berth.scheduler.pipeline import Pipeline, build_pipeline

__all__ = ["Decision", "HostState", "Pipeline", "PlacementRequest", "Verdict", "build_pipeline"]
