"""Feasibility checks: each is a pure ``(request, host) -> Verdict`` that explains a rejection."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from berth.scheduler.model import PASS, HostState, PlacementRequest, Verdict

__all__ = [
    "AffinityFilter",
    "AvailabilityZoneFilter",
    "ComputeFilter",
    "CpuFilter",
    "CpuPinningFilter",
    "DiskFilter",
    "Filter",
    "LabelFilter",
    "RamFilter",
    "RequestedHostFilter",
    "RuntimeFilter",
    "TenantExclusiveFilter",
]


class Filter(Protocol):
    @property
    def name(self) -> str: ...

    def __call__(self, req: PlacementRequest, host: HostState) -> Verdict: ...


class RequestedHostFilter:
    name = "requested_host"

    def __call__(self, req: PlacementRequest, host: HostState) -> Verdict:
        if req.requested_host is None or req.requested_host == host.hostname:
            return PASS
        return Verdict(False, f"not the requested host {req.requested_host}")


class ComputeFilter:
    name = "compute"

    def __call__(self, req: PlacementRequest, host: HostState) -> Verdict:
        if not host.enabled:
            return Verdict(False, "service disabled")
        if not host.up:
            return Verdict(False, "service down (no recent heartbeat)")
        return PASS


@dataclass(frozen=True)
class AvailabilityZoneFilter:
    default_zone: str
    name: str = "availability_zone"

    def __call__(self, req: PlacementRequest, host: HostState) -> Verdict:
        if not req.availability_zone:
            return PASS
        zone = host.availability_zone or self.default_zone
        if zone == req.availability_zone:
            return PASS
        return Verdict(False, f"not in availability zone {req.availability_zone}")


class RuntimeFilter:
    name = "runtime"

    def __call__(self, req: PlacementRequest, host: HostState) -> Verdict:
        if not req.runtime or req.runtime in host.runtimes:
            return PASS
        return Verdict(False, f"runtime {req.runtime} not available")


class LabelFilter:
    name = "label"

    def __call__(self, req: PlacementRequest, host: HostState) -> Verdict:
        labels = dict(host.labels)
        for key, value in req.hints:
            if key.startswith("label:"):
                want_key, _, want_value = key[len("label:") :].partition("=")
                want_value = want_value or value
                if labels.get(want_key) != want_value:
                    return Verdict(False, f"label {want_key}={want_value} not on host")
        return PASS


@dataclass(frozen=True)
class CpuFilter:
    ratio: float
    name: str = "cpu"

    def __call__(self, req: PlacementRequest, host: HostState) -> Verdict:
        free = host.cpus * self.ratio - host.cpu_used
        if req.cpu <= free + 1e-9:
            return PASS
        return Verdict(False, f"not enough CPU (need {req.cpu:g}, {max(free, 0):g} free)")


@dataclass(frozen=True)
class RamFilter:
    ratio: float
    name: str = "ram"

    def __call__(self, req: PlacementRequest, host: HostState) -> Verdict:
        free = int(host.mem_total * self.ratio) - host.mem_used
        if req.memory <= free:
            return PASS
        return Verdict(False, f"not enough memory (need {req.memory} MiB, {max(free, 0)} free)")


@dataclass(frozen=True)
class DiskFilter:
    ratio: float
    name: str = "disk"

    def __call__(self, req: PlacementRequest, host: HostState) -> Verdict:
        if not req.disk:
            return PASS
        free = int(host.disk_total * self.ratio) - host.disk_used
        if req.disk > free:
            return Verdict(False, f"not enough disk (need {req.disk} GiB, {max(free, 0)} free)")
        if not host.disk_quota_supported:
            # Zun's compute refuses such a container ("Your host does not support disk
            # quota feature."): a size the engine cannot cap would be a promise not kept.
            return Verdict(
                False,
                "does not support disk quota: its engine cannot cap a container's disk "
                f"({req.disk} GiB asked; create it without disk)",
            )
        return PASS


class CpuPinningFilter:
    """``dedicated`` needs a pinning host with enough unpinned cores; ``shared`` avoids them.

    As in Zun, a host with CPU pinning enabled serves dedicated containers only,
    so a shared container can never run on a core that was promised exclusively.
    """

    name = "cpu_pinning"

    def __call__(self, req: PlacementRequest, host: HostState) -> Verdict:
        if req.cpu_policy != "dedicated":
            if host.enable_cpu_pinning:
                return Verdict(False, "host reserved for dedicated CPUs")
            return PASS
        if not host.enable_cpu_pinning:
            return Verdict(False, "no CPU pinning on host")
        free = len(host.free_cores())
        if free >= req.dedicated_cores:
            return PASS
        return Verdict(False, f"not enough free cores (need {req.dedicated_cores}, {free} free)")


@dataclass(frozen=True)
class TenantExclusiveFilter:
    """A host serves one project at a time (when the operator turns it on)."""

    enabled: bool
    name: str = "tenant_exclusive"

    def __call__(self, req: PlacementRequest, host: HostState) -> Verdict:
        if not self.enabled or not host.projects or host.projects == {req.project_id}:
            return PASS
        return Verdict(False, "host serves another project")


class AffinityFilter:
    """``same_host`` / ``different_host`` hints: next to, or away from, given containers."""

    name = "affinity"

    def __call__(self, req: PlacementRequest, host: HostState) -> Verdict:
        if req.same_host and host.hostname not in req.same_host:
            return Verdict(False, "not the host of the same_host containers")
        if host.hostname in req.different_host:
            return Verdict(False, "runs a different_host container")
        return PASS
