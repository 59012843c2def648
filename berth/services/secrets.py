"""Secrets at rest: registry passwords are sealed with Fernet before they reach the database.

The key is a file, generated on first start into ``data_dir/secret.key``
(mode 0600), or named by ``secret_key_file``. Why a file and not a key
derived from something in the database: a database dump or backup alone
must not reveal the passwords; whoever reads them needs the key file too.
Several API processes (scale-out) must share the same key file.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from berth import errors
from berth.config import Settings

__all__ = ["SecretBox", "key_path", "open_box"]


class SecretBox:
    """Seals and opens short secrets with one Fernet key (AES-128-CBC + HMAC-SHA256)."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def seal(self, secret: str) -> str:
        """The ciphertext of ``secret``, as text for a database column."""
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str:
        """The secret back; BerthError when the key is not the one that sealed it."""
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken as exc:
            raise errors.BerthError(
                "a stored secret cannot be decrypted with this server's key file: every API "
                "process must use the same secret_key_file (see docs/operators.md)"
            ) from exc


def key_path(settings: Settings) -> Path:
    """Where the key lives: ``secret_key_file``, else ``data_dir/secret.key``."""
    return settings.secret_key_file or settings.data_dir / "secret.key"


def open_box(settings: Settings) -> SecretBox:
    """The SecretBox of this deployment, creating its key file (0600) on first use."""
    path = key_path(settings)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = Fernet.generate_key()
        # O_EXCL: of two processes starting at once, one writes and both read its key.
        with contextlib.suppress(FileExistsError):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(key + b"\n")
    data = path.read_bytes().strip()
    try:
        return SecretBox(data)
    except ValueError as exc:
        raise ValueError(f"{path} does not hold a Fernet key (32 url-safe base64 bytes)") from exc
