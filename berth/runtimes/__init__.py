"""Runtime drivers: the container engines an agent can drive.

``base`` holds the ``RuntimeDriver`` Protocol, the plain data it returns and
``RUNTIME_DRIVERS``, the ``berth.runtimes`` entry-point group an agent's driver
is chosen from (``runtime_driver``); ``docker`` is the reference driver;
``fake`` is an in-memory driver for tests (deliberately not an entry point).
"""

from __future__ import annotations

from berth.runtimes.base import (
    RUNTIME_DRIVERS,
    HostFacts,
    RuntimeContainer,
    RuntimeDriver,
    RuntimeFactory,
    TopResult,
    ZunStats,
    container_name,
    effective_pull_policy,
    parse_instant,
)

__all__ = [
    "RUNTIME_DRIVERS",
    "HostFacts",
    "RuntimeContainer",
    "RuntimeDriver",
    "RuntimeFactory",
    "TopResult",
    "ZunStats",
    "container_name",
    "effective_pull_policy",
    "parse_instant",
]
