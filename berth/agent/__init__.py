"""The host agent: pull desired state, diff, apply through a runtime driver, report.

``loop.Agent`` runs it; ``client.ControlClient`` talks to the control plane;
``diff.plan`` is the pure decision; ``apply.apply_plan`` acts; ``server``
serves the synchronous operations (logs, exec, top, stats, update).
"""

from __future__ import annotations

from berth.agent.client import ControlClient, ControlPlaneError
from berth.agent.loop import Agent
from berth.agent.server import create_agent_app

__all__ = ["Agent", "ControlClient", "ControlPlaneError", "create_agent_app"]
