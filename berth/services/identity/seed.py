"""First start: the Default domain, the built-in roles, the admin and the agent accounts."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from pathlib import Path

from berth import errors
from berth.config import Settings
from berth.identity import roles as rules
from berth.identity.models import (
    BootstrapResult,
)
from berth.services.identity._common import (
    DEFAULT_DOMAIN_ID,
    DEFAULT_DOMAIN_NAME,
    hash_password,
    new_id,
    verify_password,
)
from berth.store.db import Database, Session
from berth.store.identity import projects as project_repo
from berth.store.identity import roles as role_repo
from berth.store.identity import users as user_repo
from berth.store.identity.common import conflicts_as_409
from berth.store.tables.identity import DomainRow, ProjectRow, RoleRow, UserRow

__all__ = [
    "AGENT_USERNAME",
    "SERVICE_PROJECT",
    "agent_secret",
    "bootstrap",
]

log = logging.getLogger(__name__)

SERVICE_PROJECT = "service"
AGENT_USERNAME = "berth-agent"


# -- bootstrap ---------------------------------------------------------------


async def bootstrap(db: Database, settings: Settings) -> BootstrapResult:
    """Make sure the Default domain, the built-in roles and the admin and agent accounts exist.

    Idempotent and safe when several processes start at once. A password is
    chosen (``settings.admin_password`` / ``settings.agent_password`` or a
    generated one) and written to ``data_dir/admin-password`` /
    ``data_dir/agent-password`` (mode 0600) only when the user is created. An
    existing user's password is never reset: a different ``BERTH_ADMIN_PASSWORD``
    on a later start is ignored with a warning; change it with
    ``openstack user set --password``. The result holds, per account, the
    password known to work (see ``BootstrapResult``).
    """
    admin_pw = settings.admin_password or secrets.token_urlsafe(18)
    agent_pw = settings.agent_password or secrets.token_urlsafe(18)
    for attempt in range(3):
        try:
            with conflicts_as_409("the identity bootstrap"):
                async with db.transaction() as s:
                    admin, agent = await _bootstrap_rows(s, settings, admin_pw, agent_pw)
            break
        except errors.Conflict:
            if attempt == 2:
                raise
            log.info("identity bootstrap raced another process; retrying")
    admin_known = await _settle_password(
        settings, "admin-password", admin, admin_pw, settings.admin_password
    )
    agent_known = await _settle_password(
        settings, "agent-password", agent, agent_pw, settings.agent_password
    )
    return BootstrapResult(admin_known, agent_known, admin[1], agent[1])


async def _bootstrap_rows(
    s: Session, settings: Settings, admin_pw: str, agent_pw: str
) -> tuple[tuple[str, bool], tuple[str, bool]]:
    """Create what is missing; return (stored password hash, created now) per account."""
    if await s.get(DomainRow, DEFAULT_DOMAIN_ID) is None:
        s.add(
            DomainRow(id=DEFAULT_DOMAIN_ID, name=DEFAULT_DOMAIN_NAME, description="", enabled=True)
        )
        await s.flush()
    role_ids = {name: await _ensure_role(s, name) for name in rules.BUILTIN_ROLES}
    admin_project = await _ensure_project(s, settings.admin_project, "Bootstrap project")
    service_project = await _ensure_project(s, SERVICE_PROJECT, "Berth services")
    admin = await _ensure_user(s, settings.admin_username, admin_project, admin_pw)
    agent = await _ensure_user(s, AGENT_USERNAME, service_project, agent_pw)
    await _ensure_grant(s, admin[0].id, admin_project, role_ids[rules.ADMIN])
    for name in (rules.ADMIN, rules.SERVICE):
        await _ensure_grant(s, agent[0].id, service_project, role_ids[name])
    return (admin[0].password_hash or "", admin[1]), (agent[0].password_hash or "", agent[1])


async def _ensure_role(s: Session, name: str) -> str:
    row = await role_repo.find_by_name(s, name)
    if row is None:
        row = RoleRow(id=new_id(), name=name, domain_id=None, description="")
        s.add(row)
        await s.flush()
    return row.id


async def _ensure_project(s: Session, name: str, description: str) -> str:
    row = await project_repo.find_by_name(s, DEFAULT_DOMAIN_ID, name)
    if row is None:
        row = ProjectRow(
            id=new_id(),
            name=name,
            domain_id=DEFAULT_DOMAIN_ID,
            description=description,
            enabled=True,
            extra={},
        )
        s.add(row)
        await s.flush()
    return row.id


async def _ensure_user(
    s: Session, name: str, project_id: str, password: str
) -> tuple[UserRow, bool]:
    row = await user_repo.find_by_name(s, DEFAULT_DOMAIN_ID, name)
    if row is not None:
        return row, False
    row = UserRow(
        id=new_id(),
        name=name,
        domain_id=DEFAULT_DOMAIN_ID,
        password_hash=await hash_password(password),
        default_project_id=project_id,
        enabled=True,
        extra={},
        description="",
    )
    s.add(row)
    await s.flush()
    return row, True


async def _ensure_grant(s: Session, user_id: str, project_id: str, role_id: str) -> None:
    await role_repo.add_grant(s, user_id, role_id, project_id, None)
    await s.flush()


async def _settle_password(
    settings: Settings,
    filename: str,
    account: tuple[str, bool],
    chosen: str,
    configured: str | None,
) -> str:
    """Write the password file for a new account; else find which known password works."""
    stored_hash, created = account
    path = settings.data_dir / filename
    if created:
        await asyncio.to_thread(_write_secret, path, chosen)
        return chosen
    on_file = await asyncio.to_thread(_read_secret, path)
    for candidate in (configured, on_file):
        if candidate and await verify_password(candidate, stored_hash):
            return candidate
    if configured:
        log.warning(
            "%s: the configured password differs from the stored one and is NOT applied "
            "(the password of an existing user is never reset at start; use "
            "`openstack user set --password`)",
            filename,
        )
    return configured or on_file or ""


async def agent_secret(settings: Settings) -> str:
    """The agents' shared secret without a built-in identity (an external Keystone).

    ``settings.agent_password`` when set; else the one in ``data_dir/agent-password``,
    generated and written there (mode 0600) the first time.
    """
    if settings.agent_password:
        return settings.agent_password
    path = settings.data_dir / "agent-password"
    known = await asyncio.to_thread(_read_secret, path)
    if known:
        return known
    chosen = secrets.token_urlsafe(18)
    await asyncio.to_thread(_write_secret, path, chosen)
    return chosen


def _write_secret(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    os.replace(tmp, path)


def _read_secret(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None
