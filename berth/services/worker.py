"""Background loops of the control plane (run as tasks in berth-api or in berth-worker)."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from sqlalchemy import delete

from berth.services.env import Env
from berth.store.base import utcnow
from berth.store.tables import TokenRow

__all__ = ["run"]

log = logging.getLogger(__name__)

_PURGE_EVERY = 600.0


class _HasEnv(Protocol):
    env: Env


async def purge_expired_tokens(env: Env) -> int:
    """Delete tokens that expired; returns how many."""
    async with env.db.transaction() as session:
        result = await session.execute(delete(TokenRow).where(TokenRow.expires_at < utcnow()))
    return int(getattr(result, "rowcount", 0) or 0)


async def run(state: _HasEnv) -> None:
    """Housekeeping forever: expired tokens are purged every ten minutes."""
    while True:
        purged = await purge_expired_tokens(state.env)
        if purged:
            log.info("purged %d expired tokens", purged)
        await asyncio.sleep(_PURGE_EVERY)
