"""Files of the image store: a ``docker-registry`` config with htpasswd auth.

``prepare_store`` is idempotent: the password is generated once (mode 0600)
and kept, so restarting the store or Berth changes nothing. ``scripts/up``
and the test fixtures call it, then run ``docker-registry serve <config>``.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import bcrypt

__all__ = ["StoreFiles", "htpasswd_line", "prepare_store", "write_private"]

USERNAME = "berth"


@dataclass(frozen=True, slots=True)
class StoreFiles:
    """Where the store listens, its config file, and the credentials Berth uses."""

    address: str
    config: Path
    username: str
    password: str


def htpasswd_line(username: str, password: str) -> str:
    """One htpasswd entry with a bcrypt hash (the only kind docker-registry accepts)."""
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10)).decode()
    return f"{username}:{hashed}\n"


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (created 0600, never wider)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


def prepare_store(directory: Path, port: int, host: str = "127.0.0.1") -> StoreFiles:
    """Write (or reuse) the store's password, htpasswd and config under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    password_file = directory / "password"
    if password_file.exists() and password_file.read_text().strip():
        password = password_file.read_text().strip()
    else:
        password = secrets.token_urlsafe(24)
        write_private(password_file, password + "\n")
    htpasswd = directory / "htpasswd"
    write_private(htpasswd, htpasswd_line(USERNAME, password))
    config = directory / "config.yml"
    write_private(
        config,
        "version: 0.1\n"
        "log: {level: warn}\n"
        "storage:\n"
        f"  filesystem: {{rootdirectory: {directory / 'data'}}}\n"
        "  delete: {enabled: true}\n"
        f"http: {{addr: '{host}:{port}'}}\n"
        f"auth: {{htpasswd: {{realm: berth-image-store, path: {htpasswd}}}}}\n",
    )
    return StoreFiles(f"{host}:{port}", config, USERNAME, password)
