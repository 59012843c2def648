"""Ranking: each weigher is a pure ``(request, host) -> score in 0..1``; higher wins."""

from __future__ import annotations

from typing import Protocol

from berth.scheduler.model import HostState, PlacementRequest

__all__ = [
    "BinpackWeigher",
    "ImageLocalityWeigher",
    "NetworkSpreadWeigher",
    "SpreadWeigher",
    "Weigher",
    "local_name",
]


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


class ImageLocalityWeigher:
    """Prefers hosts that already hold the image (no pull). Worth less than load balance."""

    name = "image_locality"
    weight = 0.5

    def __call__(self, req: PlacementRequest, host: HostState) -> float:
        if not req.image or not host.images:
            return 0.0
        return self.weight if local_name(req.image) in host.images else 0.0


class NetworkSpreadWeigher:
    """The ``spread_network`` hint: prefers the zone, then the host, with the fewest members
    of the network, so they land on as many hosts (and zones) as there are.

    A preference, not a filter: it never rejects a host, and once every feasible
    host holds a member the fewest win again. It outweighs the others: each
    member already on a host costs ``weight`` (2), more than load balance (at most
    1) and image locality (0.5) together can make up, and each member already in
    the host's zone costs more than every member on a host can (zones first).
    The score is 0 for a host of an empty zone and negative otherwise.
    """

    name = "spread_network"
    weight = 2.0

    def __call__(self, req: PlacementRequest, host: HostState) -> float:
        spread = req.spread
        if spread is None:
            return 0.0
        zone = spread.in_zone(host.availability_zone)
        return -self.weight * (zone * (spread.total + 1) + spread.on_host(host.hostname))

    def explain(self, req: PlacementRequest, host: HostState) -> str:
        """What the chosen host had of the network: '' without the hint."""
        spread = req.spread
        if spread is None:
            return ""
        zone = f"zone {host.availability_zone}" if host.availability_zone else "the default zone"
        return (
            f"network {spread.network}: {spread.on_host(host.hostname)} of its "
            f"{spread.total} members on this host, {spread.in_zone(host.availability_zone)} "
            f"in {zone}"
        )


_HUB_PREFIXES = ("docker.io/library/", "index.docker.io/library/", "docker.io/", "index.docker.io/")


def local_name(image: str) -> str:
    """``image`` as an engine lists it among its images: Docker Hub short form, with a tag.

    ``busybox``, ``docker.io/library/busybox`` and ``busybox:latest`` are all
    ``busybox:latest``; a digest reference stays as it is.
    """
    for prefix in _HUB_PREFIXES:
        if image.startswith(prefix):
            image = image[len(prefix) :]
            break
    last = image.rsplit("/", 1)[-1]
    return image if ":" in last or "@" in last else f"{image}:latest"
