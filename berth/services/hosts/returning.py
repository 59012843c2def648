"""A lost host answers again: its ``Unknown`` containers show what its agent last saw.

``host_watch.mark_lost_hosts`` marks the containers of a silent host
``Unknown``. An agent that restarts reports everything afresh, but one that
simply resumes (a network outage, an API down for longer than
``service_down_time``, an admin lifting a forced down) may have nothing new
to report: what it last reported is true again, and whatever it could not
send meanwhile it sends again. So the heartbeat that ends an outage, and the
end of a forced down, put those containers back to their observed status.
"""

from __future__ import annotations

from berth.domain.containers import status_for_observation
from berth.store import hosts as repo
from berth.store.base import utcnow
from berth.store.db import Session

__all__ = ["lost_reason", "restore_returned"]


def lost_reason(host: str, why: str) -> str:
    """The status_reason of a container on a lost host (``restore_returned`` looks for it)."""
    return f"Host {host} {why}"


async def restore_returned(session: Session, host: str) -> int:
    """Give the containers that ``host``'s loss made ``Unknown`` their observed status again.

    Containers never observed, or observed gone, stay as they are until the
    agent's next report. Returns how many changed.
    """
    rows = await repo.unknown_on(session, host)
    changed = 0
    for row in rows:
        if not row.observed_state or row.observed_state == "absent":
            continue
        row.status = status_for_observation(row.observed_state, row.desired_state, None)
        row.status_reason = None
        row.updated_at = utcnow()
        changed += 1
    return changed
