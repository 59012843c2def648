"""The ``swarm-mode`` reference cluster driver (Docker Swarm mode on Docker-in-Docker nodes)."""

from berth.clusters.swarm.driver import SwarmModeDriver, driver

__all__ = ["SwarmModeDriver", "driver"]
