"""Cluster drivers found through the ``berth.cluster_drivers`` entry-point group, and selection.

The group is one ``berth.plugins.Kind`` like every other kind of driver; its
entries are factories taking no argument (a cluster driver holds no settings).

Selection follows Magnum: an explicit driver name wins; otherwise the driver whose
``(server_type, os, coe)`` matches the template (an ``os`` of None matches any).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from berth import errors
from berth.clusters.driver import ClusterDriver
from berth.plugins import Kind

__all__ = [
    "CLUSTER_DRIVERS",
    "ENTRY_POINT_GROUP",
    "ClusterDriverNotSupported",
    "DriverRegistry",
    "load_drivers",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "berth.cluster_drivers"
CLUSTER_DRIVERS: Kind[Callable[[], ClusterDriver]] = Kind(ENTRY_POINT_GROUP, "cluster driver")


class ClusterDriverNotSupported(errors.Invalid):
    """No installed driver provides the requested cluster type."""


class DriverRegistry:
    """The installed drivers, by name."""

    def __init__(self, drivers: Iterable[ClusterDriver] = ()) -> None:
        self.drivers: dict[str, ClusterDriver] = {d.info.name: d for d in drivers}

    def select(
        self, *, server_type: str, os: str | None, coe: str, name: str | None = None
    ) -> ClusterDriver:
        """The driver for a template, or ClusterDriverNotSupported (a 400)."""
        if name:
            driver = self.drivers.get(name)
            if driver is None:
                raise ClusterDriverNotSupported(f"Cluster driver ({name}) not supported.")
            return driver
        for key in sorted(self.drivers):
            info = self.drivers[key].info
            if (info.server_type, info.coe) == (server_type, coe) and os in (None, info.os):
                return self.drivers[key]
        raise ClusterDriverNotSupported(f"Cluster type ({server_type}, {os}, {coe}) not supported.")


def load_drivers() -> DriverRegistry:
    """Instantiate every driver registered under the entry-point group."""
    found: list[ClusterDriver] = []
    # A broken plug-in must not take the API down with it: its clusters fail with
    # "Driver ... is not installed" until it is fixed.
    for name, factory in CLUSTER_DRIVERS.load_all().items():
        try:
            found.append(factory())
        except Exception:
            log.exception("cluster driver %s cannot be loaded: its factory failed", name)
    return DriverRegistry(found)
