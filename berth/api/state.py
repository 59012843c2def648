"""What the API process holds: built once in ``create_app`` and passed via ``app.state``."""

from __future__ import annotations

from dataclasses import dataclass, field

from berth.config import Settings
from berth.domain.context import RequestContext
from berth.events.notify import Notifier
from berth.services import identity as identity_service
from berth.services.env import Env
from berth.services.identity.keystone import KeystoneTokens
from berth.store.db import Database

__all__ = ["AppState"]


@dataclass
class AppState:
    settings: Settings
    db: Database
    notifier: Notifier
    env: Env
    # Set when identity_backend = keystone: tokens are then the external Keystone's.
    keystone: KeystoneTokens | None = None
    saw_server_error: list[str] = field(default_factory=list)

    async def caller_of(self, token: str) -> RequestContext:
        """The caller ``token`` stands for: the one place every API turns a token into one.

        Built-in identity: Berth's own token table. ``identity_backend = keystone``:
        Keystone's validation (``Unauthorized`` if refused, ``IdentityUnavailable``
        if Keystone cannot be asked).
        """
        if self.keystone is not None:
            return await self.keystone.caller_of(token)
        return await identity_service.validate_token(self.db, token)
