"""The cluster-driver extension point: what a driver provides and what it is handed.

A driver never imports ``berth.services``/``berth.store``/``berth.api``: the
lifecycle engine hands it a ``NodeProvisioner`` (implemented in services, over
the container use cases with the cluster owner's context) and a ``report``
callback that makes every step visible as the cluster's status_reason and an event.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = [
    "ClusterDriver",
    "ClusterSpec",
    "DriverInfo",
    "NodeInfo",
    "NodeProvisioner",
    "NodeSpec",
    "Outcome",
    "Report",
]

Report = Callable[[str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class DriverInfo:
    """What a driver provides: Magnum's ``(server_type, os, coe)`` triple and a version."""

    name: str
    server_type: str
    os: str
    coe: str
    version: str


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    """Everything a driver needs to know about one cluster (plain data, no rows)."""

    uuid: str
    name: str
    project_id: str
    master_count: int
    node_count: int
    cpu: float
    memory_mb: int
    image: str
    labels: Mapping[str, str] = field(default_factory=dict)
    ca_cert_pem: str = ""
    ca_key_pem: str = ""


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """One node container to create (idempotently, by ``name``)."""

    name: str
    image: str
    cpu: float
    memory_mb: int
    command: tuple[str, ...] = ()
    environment: Mapping[str, str] = field(default_factory=dict)
    publish: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What the provisioner observed of a node container."""

    name: str
    status: str
    address: str | None = None
    published: Mapping[int, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The observable result of a create/update: addresses and versions to show the user."""

    api_address: str | None = None
    master_addresses: tuple[str, ...] = ()
    node_addresses: tuple[str, ...] = ()
    coe_version: str | None = None
    container_version: str | None = None


@runtime_checkable
class NodeProvisioner(Protocol):
    """Node containers in the cluster owner's project: create, inspect, delete."""

    async def create_node(self, spec: NodeSpec) -> NodeInfo:
        """Create and start ``spec.name`` unless it exists; return what runs."""
        ...

    async def inspect_node(self, name: str) -> NodeInfo | None:
        """The node's observed state, or None when it does not exist."""
        ...

    async def delete_node(self, name: str) -> None:
        """Remove the node; no error when it is already gone."""
        ...


@runtime_checkable
class ClusterDriver(Protocol):
    """A COE implementation. Every operation is idempotent: it may be re-run after a crash."""

    info: DriverInfo

    async def create(self, spec: ClusterSpec, nodes: NodeProvisioner, report: Report) -> Outcome:
        """Bring up the cluster's nodes and return its addresses."""
        ...

    async def update(self, spec: ClusterSpec, nodes: NodeProvisioner, report: Report) -> Outcome:
        """Converge the nodes to ``spec`` (resize)."""
        ...

    async def delete(self, spec: ClusterSpec, nodes: NodeProvisioner, report: Report) -> None:
        """Remove every node the cluster owns."""
        ...
