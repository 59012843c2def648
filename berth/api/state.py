"""What the API process holds: built once in ``create_app`` and passed via ``app.state``."""

from __future__ import annotations

from dataclasses import dataclass, field

from berth.config import Settings
from berth.events.notify import Notifier
from berth.services.env import Env
from berth.store.db import Database

__all__ = ["AppState"]


@dataclass
class AppState:
    settings: Settings
    db: Database
    notifier: Notifier
    env: Env
    saw_server_error: list[str] = field(default_factory=list)
