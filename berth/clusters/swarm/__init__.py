"""The ``swarm-mode`` reference cluster driver (Docker Swarm mode on Docker-in-Docker nodes)."""

from berth.clusters.swarm.driver import SwarmModeDriver, Timeouts, driver
from berth.clusters.swarm.nodeapi import ConnectNodes, NodeApi, NodeClients

__all__ = ["ConnectNodes", "NodeApi", "NodeClients", "SwarmModeDriver", "Timeouts", "driver"]
