"""The network driver contract: what the agent needs to wire a container up.

A Berth network ``<id>`` is the host-side network ``berth-net-<id>`` on every
host that runs one of its containers; it is created on demand and removed
when no container uses it any more. Drivers never talk to the control plane.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeAlias, runtime_checkable

from berth.config import Settings
from berth.domain.hostsync import NetworkRef, RemoteMember
from berth.plugins import Kind

__all__ = [
    "NETWORK_DRIVERS",
    "NETWORK_PREFIX",
    "FirewallRule",
    "FirewallSpec",
    "NetworkDriver",
    "NetworkFactory",
    "network_id_of",
    "network_name",
]

NETWORK_PREFIX = "berth-net-"


def network_name(network_id: str) -> str:
    """The host-side name of the Berth network ``network_id``."""
    return f"{NETWORK_PREFIX}{network_id}"


def network_id_of(name: str) -> str | None:
    """The Berth network id behind a host-side network name, or None if it is not Berth's."""
    return name[len(NETWORK_PREFIX) :] if name.startswith(NETWORK_PREFIX) else None


@dataclass(frozen=True, slots=True)
class FirewallRule:
    """One concrete allow rule: protocol (None: any), port range, source CIDRs.

    ``sources`` None means from anywhere.
    """

    protocol: str | None = None
    port_min: int | None = None
    port_max: int | None = None
    sources: tuple[str, ...] | None = None


# A container's filtering: the addresses it is reached at and the rules that may reach it.
FirewallSpec: TypeAlias = tuple[tuple[str, ...], tuple[FirewallRule, ...]]


@runtime_checkable
class NetworkDriver(Protocol):
    """Project networks and per-container ingress filtering on one host. Every method is async."""

    async def ensure(self, net: NetworkRef) -> None:
        """Create the host-side network of ``net`` unless it exists (idempotent)."""
        ...

    def forget(self, network_id: str) -> None:
        """Drop what the driver remembers of ``network_id`` (it may have been removed)."""
        ...

    async def connect(self, uuid: str, net: NetworkRef) -> None:
        """Attach the container ``uuid`` to ``net`` (creating the network first)."""
        ...

    async def disconnect(self, uuid: str, network_id: str) -> None:
        """Detach the container ``uuid`` from the network; not attached is success."""
        ...

    async def program(self, remote: Mapping[str, Sequence[RemoteMember]]) -> None:
        """Make each network reach its members on other hosts, by network id (level-triggered).

        The whole wanted picture every time: entries for members no longer listed
        go, networks not on this host are skipped (programmed once they are made).
        A driver whose networks do not span hosts does nothing.
        """
        ...

    async def prune(self, keep: set[str]) -> list[str]:
        """Remove this owner's networks that no container uses and whose id is not in ``keep``.

        Returns the ids removed.
        """
        ...

    async def write_firewalls(self, changes: Mapping[str, FirewallSpec | None]) -> None:
        """Change the filtering of several containers in one step, by uuid.

        A spec lets only its rules reach the container at its addresses
        (replacing what was there); None removes the container's filtering (none
        is success). All or nothing: on failure no change is kept.
        """
        ...

    async def firewalled(self) -> set[str]:
        """The container uuids this owner currently filters on the host."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class NetworkFactory(Protocol):
    """What a ``berth.networks`` entry point names: builds the agent's network driver."""

    def __call__(self, settings: Settings) -> NetworkDriver: ...


NETWORK_DRIVERS: Kind[NetworkFactory] = Kind("berth.networks", "network driver", "network_driver")
"""Host-side project networks and security groups (Berth's own: ``bridge``, ``overlay``)."""
