"""A base for the API tests' in-memory cluster drivers that make node containers.

Such a driver's ``create`` converges the nodes to the spec; updating is creating
again, and deleting removes every node the cluster has.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from berth.clusters import ClusterSpec, NodeProvisioner, Outcome, Report

__all__ = ["ConvergingNodes"]


class ConvergingNodes(ABC):
    """``update`` is ``create`` again; ``delete`` removes every node of the cluster."""

    @abstractmethod
    async def create(self, spec: ClusterSpec, nodes: NodeProvisioner, report: Report) -> Outcome:
        """Make the cluster's nodes what ``spec`` says (each driver its own way)."""

    async def update(self, spec: ClusterSpec, nodes: NodeProvisioner, report: Report) -> Outcome:
        return await self.create(spec, nodes, report)

    async def delete(self, spec: ClusterSpec, nodes: NodeProvisioner, report: Report) -> None:
        for node in await nodes.list_nodes():
            await nodes.delete_node(node.name)
