"""Token secrets: generated with ``secrets``; only their SHA-256 digest is ever stored.

A token is a random 256-bit secret. The database keeps ``digest(secret)``, so a
copy of the database does not hand out working tokens.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import secrets

__all__ = ["format_time", "new_audit_id", "new_token", "token_digest"]

_TOKEN_BYTES = 32


def new_token() -> str:
    """Return a fresh, URL-safe token secret with 256 bits of entropy."""
    return secrets.token_urlsafe(_TOKEN_BYTES)


def token_digest(token: str) -> str:
    """Return the hex SHA-256 digest under which a token is stored and looked up."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_audit_id() -> str:
    """Return a random audit id (22 URL-safe characters, as Keystone's)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(16)).decode("ascii").rstrip("=")


def format_time(moment: dt.datetime) -> str:
    """Render a timestamp as Keystone does: ``2026-11-21T14:00:00.000000Z`` in UTC."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime")
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
