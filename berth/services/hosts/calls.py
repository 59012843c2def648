"""Reaching the host of a container for an operation it must answer now."""

from __future__ import annotations

from typing import Any

from berth import errors
from berth.domain.containers import action_allowed
from berth.domain.context import RequestContext
from berth.services.containers.containers import get
from berth.services.env import Env
from berth.services.hosts import hosts
from berth.store.tables import ContainerRow

__all__ = ["agent_address", "call_agent", "container_for"]


async def container_for(env: Env, ctx: RequestContext, ident: str, action: str) -> ContainerRow:
    """The container, once the policy ``container:<action>`` and the state table allow it.

    Another project's container is ContainerNotFound, as everywhere; one
    without a host cannot be reached (InvalidStateException).
    """
    row = await get(env, ctx, ident, rule=f"container:{action}")
    if not action_allowed(action, row.status):
        raise errors.InvalidStateException(
            f"Cannot {action} container {row.uuid} in {row.status} state."
        )
    if row.host is None:
        raise errors.InvalidStateException(
            f"Cannot {action} container {row.uuid}: it has no host. "
            "Delete it and create it again."
        )
    return row


async def agent_address(env: Env, row: ContainerRow) -> tuple[str, str | None]:
    """(host name, agent URL) of the container's host."""
    hostname = row.host or ""
    return hostname, await hosts.agent_url(env, hostname)


async def call_agent(env: Env, row: ContainerRow, method: str, path: str, **kw: Any) -> Any:
    """``method`` on ``/v1/containers/<uuid>/<path>`` at the container's agent; its JSON."""
    hostname, url = await agent_address(env, row)
    return await env.agents.call(hostname, url, method, f"/v1/containers/{row.uuid}/{path}", **kw)
