"""Hosts and their agents: registration, heartbeats, placement and calls to an agent.

Owns: the agent-facing use cases (``hosts``: register, desired state, reports),
Zun's host and service admin (``admin``), the in-memory host view (``cache``),
placement (``placement``), lost and returning hosts (``watch``, ``returning``),
calls to a container's agent (``calls``, ``agents``, ``agent_streams``,
``asgi_memory``). May import: services.containers (to apply observations),
services.networks, services.volumes, events, store, scheduler, domain.
"""
