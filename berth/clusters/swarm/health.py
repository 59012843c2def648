"""A swarm-mode cluster's health: each node's container runs, its dockerd answers, it is Ready."""

from __future__ import annotations

import asyncio

from berth.clusters.driver import Health, NodeInfo
from berth.clusters.swarm.nodeapi import NodeApi
from berth.clusters.swarm.plan import parse_name
from berth.clusters.swarm.run import Run

__all__ = ["health"]

# A node container in one of these states no longer runs at all (auto-healing replaces it).
_DEAD = ("Stopped", "Error", "Unknown")


async def health(run: Run) -> Health:
    """HEALTHY (every node Ready), UNHEALTHY (some is not) or UNKNOWN (no manager answers)."""
    existing = await run.nodes.list_nodes()
    if not existing:
        return Health("UNKNOWN", {"api": "the cluster has no node"})
    managers = [
        n for n in existing
        if (p := parse_name(run.spec.uuid, n.name)) is not None and "master" in p.group
    ]  # fmt: skip
    manager = await run.manager(managers or existing)
    reasons = {"api": "no swarm manager answers" if manager is None else "ok"}
    states = {} if manager is None else await _swarm_states(manager)
    for info in existing:
        reasons[info.name] = await _node_reason(run, info, manager, states)
    dead = [i.name for i in existing if i.status in _DEAD]
    healthy = manager is not None and all(r == "Ready" for k, r in reasons.items() if k != "api")
    status = (
        "HEALTHY" if healthy else ("UNKNOWN" if manager is None and not dead else "UNHEALTHY")
    )
    return Health(status, reasons, tuple(dead))


async def _swarm_states(manager: NodeApi) -> dict[str, str]:
    """Each swarm node's state by hostname, ``ready`` winning over a replaced node's entry."""
    states: dict[str, str] = {}
    for node in await asyncio.to_thread(manager.nodes):
        host = node.get("Description", {}).get("Hostname", "")
        if states.get(host) != "ready":  # a replaced node's old entry may linger
            states[host] = str(node.get("Status", {}).get("State", "unknown"))
    return states


async def _node_reason(
    run: Run, info: NodeInfo, manager: NodeApi | None, states: dict[str, str]
) -> str:
    """Why a node is (not) well: its container, else its dockerd or its swarm state."""
    if info.status != "Running":
        return f"container {info.status}"
    if manager is None:
        answers = await asyncio.to_thread(run.api(info).ping)
        return "dockerd answers" if answers else "dockerd does not answer"
    state = states.get(info.name, "not in the swarm")
    return "Ready" if state == "ready" else f"swarm: {state}"
