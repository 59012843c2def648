"""The ``swarm-mode`` reference driver: nodes are Berth containers running ``dockerd`` with TLS.

``create`` and ``update`` are one level-triggered converge (``converge.py``, its
steps on nodes in ``run.py``), retried from the top when a node stops answering;
``health`` is in ``health.py``. The driver reaches nodes only through the
``ConnectNodes`` factory it is handed (``nodeapi.py``): the real one, mutual TLS
with the docker SDK, is the default; tests hand in an in-memory swarm.
"""

from __future__ import annotations

import asyncio
import time

import requests

from berth.clusters.driver import (
    ClusterSpec,
    DriverInfo,
    Health,
    NodeProvisioner,
    Outcome,
    Report,
)
from berth.clusters.swarm.converge import converge
from berth.clusters.swarm.health import health
from berth.clusters.swarm.nodeapi import ConnectNodes, NodeApiError, TlsNodeClients
from berth.clusters.swarm.run import Run, SwarmError, Timeouts, node_bundle

__all__ = ["SwarmError", "SwarmModeDriver", "Timeouts", "driver", "node_bundle"]

VERSION = "1.0.0"
_ATTEMPTS = 3
_ELECTION = 30.0  # seconds a swarm without a leader is waited for
_NO_LEADER = "does not have a leader"


class SwarmModeDriver:
    """Docker Swarm-mode clusters whose nodes are Docker-in-Docker Berth containers."""

    info = DriverInfo("swarm-mode", "vm", "fedora-atomic", "swarm-mode", VERSION)

    def __init__(
        self, connect: ConnectNodes = TlsNodeClients, timeouts: Timeouts | None = None
    ) -> None:
        self.connect = connect
        self.timeouts = timeouts or Timeouts()

    def _run(self, spec: ClusterSpec, nodes: NodeProvisioner, report: Report) -> Run:
        return Run(spec, nodes, report, self.connect, self.timeouts)

    async def create(self, spec: ClusterSpec, nodes: NodeProvisioner, report: Report) -> Outcome:
        """Bring up every node, form the swarm; the same converge as ``update``."""
        return await self._converge(spec, nodes, report)

    async def update(self, spec: ClusterSpec, nodes: NodeProvisioner, report: Report) -> Outcome:
        """Converge: counts, node groups, image (upgrade) and CA (rotation)."""
        return await self._converge(spec, nodes, report)

    async def delete(self, spec: ClusterSpec, nodes: NodeProvisioner, report: Report) -> None:
        """Delete every node container of the cluster (the swarm goes with them)."""
        existing = await nodes.list_nodes()
        if existing:
            await report(f"Deleting {len(existing)} node(s).")
        await asyncio.gather(*(nodes.delete_node(n.name) for n in existing))

    async def health(self, spec: ClusterSpec, nodes: NodeProvisioner) -> Health:
        """Each node: its container runs, its dockerd answers, the swarm sees it Ready."""

        async def quiet(reason: str) -> None:
            return None

        run = self._run(spec, nodes, quiet)
        try:
            return await health(run)
        finally:
            await asyncio.to_thread(run.close)

    async def _converge(self, spec: ClusterSpec, nodes: NodeProvisioner, report: Report) -> Outcome:
        # The converge is idempotent: a dropped connection (a dockerd restarting)
        # is retried from the top, a few times, before the operation fails; a swarm
        # electing a leader (managers restarted: a CA rotation, an upgrade) for up to
        # _ELECTION seconds from the first "no leader", whatever the count (measured: an
        # upgrade right after a rotation met "The swarm does not have a leader" three
        # times 2 s apart; the window once started with the converge and had passed).
        electing_until: float | None = None  # from the first "no leader" on
        attempt = 0
        while True:
            attempt += 1
            run = self._run(spec, nodes, report)
            try:
                return await converge(run)
            except NodeApiError as exc:
                raise SwarmError(str(exc)) from exc
            except requests.exceptions.RequestException as exc:
                if _NO_LEADER in str(exc) and electing_until is None:
                    electing_until = time.monotonic() + _ELECTION
                electing = electing_until is not None and time.monotonic() < electing_until
                if attempt >= _ATTEMPTS and not electing:
                    if electing_until is not None and _NO_LEADER in str(exc):
                        raise SwarmError(
                            f"the swarm has had no leader for {_ELECTION:.0f} s (too few "
                            f"managers online: check the master nodes, then update again): {exc}"
                        ) from exc
                    raise SwarmError(f"a node stopped answering: {exc}") from exc
                await report(f"A node stopped answering ({exc}); retrying.")
                await asyncio.sleep(self.timeouts.retry_pause)
            finally:
                await asyncio.to_thread(run.close)


def driver() -> SwarmModeDriver:
    """The entry point of ``berth.cluster_drivers``: the driver over real node clients."""
    return SwarmModeDriver(connect=TlsNodeClients)
