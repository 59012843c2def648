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
    "Health",
    "HealthCheck",
    "NodeGroupSpec",
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
class NodeGroupSpec:
    """One node group: ``node_count`` nodes of one role, flavor and image.

    Every cluster has ``default-master`` (role ``master``) and ``default-worker``
    (role ``worker``); users may add more worker groups (Magnum 1.9+).
    """

    name: str
    role: str
    node_count: int
    cpu: float
    memory_mb: int
    image: str
    labels: Mapping[str, str] = field(default_factory=dict)
    # Magnum's ``node_labels``: labels for the group's nodes in the orchestrator
    # (swarm-mode: node labels, for ``--constraint node.labels.<key>==<value>``).
    node_labels: Mapping[str, str] = field(default_factory=dict)
    # The names of this group's nodes a resize asked to remove (Magnum's
    # ``nodes_to_remove``): they go first, whatever the new count.
    nodes_to_remove: tuple[str, ...] = ()


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
    # The desired node groups. ``update`` converges the running nodes to them:
    # resize, node groups added or removed, a new image (upgrade: rolling
    # replace) and a new CA (rotation) are all one level-triggered update.
    nodegroups: tuple[NodeGroupSpec, ...] = ()
    # Berth's own CA for the control plane's connections to the nodes: never
    # rotated and never handed to users (nodes accept its client certificates).
    control_ca_cert_pem: str = ""
    control_ca_key_pem: str = ""
    # The template's ``insecure_registry``: a registry nodes pull from over HTTP.
    insecure_registry: str = ""
    # An upgrade's ``max_batch_size``: how many worker nodes a rolling replace
    # takes down together (1 for every other update).
    max_batch_size: int = 1


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
    # "dind": run with the Docker-in-Docker options a node running dockerd needs.
    profile: str | None = None
    # The node group the node belongs to (a label on the node container, so the
    # API can tell which group a node named in ``nodes_to_remove`` is in).
    group: str | None = None
    # Where the scheduler must place the node (Magnum's label ``availability_zone``).
    availability_zone: str | None = None


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What the provisioner observed of a node container."""

    name: str
    status: str
    # The node's own address on its project network (what the nodes use between them).
    address: str | None = None
    # The host ports its ``NodeSpec.publish`` ports are published on, by container port,
    # and the address its host is reached at (the host's agent address): together,
    # where the control plane and users reach a port of the node from outside its host.
    published: Mapping[int, int] = field(default_factory=dict)
    host_address: str | None = None
    image: str | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
    status_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """The observable result of a create/update: addresses and versions to show the user."""

    api_address: str | None = None
    master_addresses: tuple[str, ...] = ()
    node_addresses: tuple[str, ...] = ()
    coe_version: str | None = None
    container_version: str | None = None


@dataclass(frozen=True, slots=True)
class Health:
    """A cluster's health: HEALTHY, UNHEALTHY or UNKNOWN, a reason per node, dead nodes.

    ``dead_nodes`` names node containers that no longer run at all: with the label
    ``auto_healing_enabled=true`` they are deleted and the cluster converged again.
    """

    status: str
    reasons: Mapping[str, str] = field(default_factory=dict)
    dead_nodes: tuple[str, ...] = ()


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

    async def list_nodes(self) -> list[NodeInfo]:
        """Every node container of this cluster."""
        ...


@runtime_checkable
class ClusterDriver(Protocol):
    """A COE implementation. Every operation is idempotent: it may be re-run after a crash."""

    info: DriverInfo

    async def create(self, spec: ClusterSpec, nodes: NodeProvisioner, report: Report) -> Outcome:
        """Bring up the cluster's nodes and return its addresses."""
        ...

    async def update(self, spec: ClusterSpec, nodes: NodeProvisioner, report: Report) -> Outcome:
        """Converge the nodes to ``spec``: counts, node groups, image and CA."""
        ...

    async def delete(self, spec: ClusterSpec, nodes: NodeProvisioner, report: Report) -> None:
        """Remove every node the cluster owns."""
        ...


@runtime_checkable
class HealthCheck(Protocol):
    """Optional: a driver that can tell its cluster's health (polled periodically)."""

    async def health(self, spec: ClusterSpec, nodes: NodeProvisioner) -> Health:
        """Poll every node; never raise for a sick node, report it."""
        ...
