"""Runs one driver operation under a deadline and turns its end into a Magnum status.

Every operation ends in ``<OP>_COMPLETE`` or ``<OP>_FAILED`` with a reason: a
driver error, a timeout, or a crash of the driver all become a FAILED status,
never an IN_PROGRESS forever.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from berth.clusters.driver import ClusterDriver, ClusterSpec, NodeProvisioner, Outcome, Report

__all__ = ["Result", "run_operation"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Result:
    """The final status of an operation, its reason, and the driver's outcome on success."""

    status: str
    reason: str
    outcome: Outcome | None = None


async def run_operation(
    op: str,
    driver: ClusterDriver,
    spec: ClusterSpec,
    nodes: NodeProvisioner,
    report: Report,
    *,
    timeout_s: float | None,
) -> Result:
    """Run ``op`` (CREATE, UPDATE or DELETE) and return its final status and reason."""
    label = op.lower()
    try:
        async with asyncio.timeout(timeout_s):
            if op == "CREATE":
                outcome: Outcome | None = await driver.create(spec, nodes, report)
            elif op == "UPDATE":
                outcome = await driver.update(spec, nodes, report)
            elif op == "DELETE":
                await driver.delete(spec, nodes, report)
                outcome = None
            else:
                raise ValueError(f"unknown cluster operation {op}")
    except TimeoutError:
        minutes = (timeout_s or 0) / 60
        return Result(f"{op}_FAILED", f"Cluster {label} timed out after {minutes:g} minutes.")
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a driver bug must still end the operation
        log.warning("cluster %s %s failed", spec.uuid, label, exc_info=True)
        return Result(f"{op}_FAILED", f"Cluster {label} failed: {exc}")
    return Result(f"{op}_COMPLETE", f"Cluster {label} complete.", outcome)
