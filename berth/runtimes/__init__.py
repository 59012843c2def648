"""Runtime drivers: the container engines an agent can drive.

``base`` holds the ``RuntimeDriver`` Protocol and the plain data it returns;
``docker`` is the reference driver; ``fake`` is an in-memory driver for tests
(deliberately not in ``DRIVERS``).
"""

from __future__ import annotations

from berth.runtimes.base import (
    HostFacts,
    RuntimeContainer,
    RuntimeDriver,
    TopResult,
    ZunStats,
    container_name,
    effective_pull_policy,
    parse_instant,
)

__all__ = [
    "DRIVERS",
    "HostFacts",
    "RuntimeContainer",
    "RuntimeDriver",
    "TopResult",
    "ZunStats",
    "container_name",
    "effective_pull_policy",
    "parse_instant",
]

DRIVERS: dict[str, str] = {"docker": "berth.runtimes.docker:DockerDriver"}
"""Built-in drivers by name, as ``module:Class`` (imported only when chosen)."""
