"""Clusters: the driver extension point, driver selection, the lifecycle engine and the PKI.

Nothing here imports ``berth.services``, ``berth.store`` or ``berth.api``: the
services layer persists clusters and hands drivers a node provisioner.
"""

from berth.clusters import pki
from berth.clusters.driver import (
    ClusterDriver,
    ClusterSpec,
    DriverInfo,
    Health,
    HealthCheck,
    NodeGroupSpec,
    NodeInfo,
    NodeProvisioner,
    NodeSpec,
    Outcome,
    Report,
)
from berth.clusters.engine import Result, run_operation
from berth.clusters.registry import (
    ENTRY_POINT_GROUP,
    ClusterDriverNotSupported,
    DriverRegistry,
    load_drivers,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "ClusterDriver",
    "ClusterDriverNotSupported",
    "ClusterSpec",
    "DriverInfo",
    "DriverRegistry",
    "Health",
    "HealthCheck",
    "NodeGroupSpec",
    "NodeInfo",
    "NodeProvisioner",
    "NodeSpec",
    "Outcome",
    "Report",
    "Result",
    "load_drivers",
    "pki",
    "run_operation",
]
