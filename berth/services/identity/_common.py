"""What the identity use cases share: row conversions, policy checks, password hashing."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from berth import errors
from berth.domain.context import RequestContext
from berth.identity import passwords
from berth.identity import roles as rules
from berth.identity.models import Domain, Project, Role, User
from berth.services.slots import Slots
from berth.store.db import Session
from berth.store.identity import domains as domain_repo
from berth.store.identity import roles as role_repo
from berth.store.tables.identity import DomainRow, ProjectRow, RoleRow, UserRow

__all__ = [
    "AUTH_REQUIRED",
    "DEFAULT_DOMAIN_ID",
    "DEFAULT_DOMAIN_NAME",
    "NO_PROJECT",
    "all_domains",
    "deny",
    "effective_role_rows",
    "hash_password",
    "new_id",
    "password_turn",
    "require_admin",
    "require_admin_or_self",
    "same_domain",
    "to_domain",
    "to_project",
    "to_role",
    "to_user",
    "verify_password",
]

DEFAULT_DOMAIN_ID = "default"
DEFAULT_DOMAIN_NAME = "Default"
AUTH_REQUIRED = "The request you have made requires authentication."
# A login whose user holds a role in no project: said by the dashboard, for either backend.
NO_PROJECT = (
    "You hold no role in any project, so there is nothing to show yet: ask an admin to add "
    "you to one (openstack role add --user NAME --project PROJECT member)."
)


# -- conversions -------------------------------------------------------------


def to_domain(row: DomainRow) -> Domain:
    """The plain value of a domain row."""
    return Domain(row.id, row.name, row.description, row.enabled)


def to_project(row: ProjectRow) -> Project:
    """The plain value of a project row."""
    return Project(row.id, row.name, row.domain_id, row.description, row.enabled, dict(row.extra))


def to_user(row: UserRow) -> User:
    """The plain value of a user row (without its password hash)."""
    return User(
        row.id,
        row.name,
        row.domain_id,
        row.enabled,
        row.email,
        row.description,
        row.default_project_id,
        dict(row.extra),
    )


def to_role(row: RoleRow) -> Role:
    """The plain value of a role row."""
    return Role(row.id, row.name, row.domain_id, row.description)


def new_id() -> str:
    """A new Keystone-style id: 32 hex digits."""
    return uuid.uuid4().hex


# -- policy ------------------------------------------------------------------


def deny(action: str) -> errors.Forbidden:
    """The 403 Keystone answers when a policy rule refuses ``identity:<action>``."""
    return errors.Forbidden(
        f"You are not authorized to perform the requested action: identity:{action}."
    )


def require_admin(caller: RequestContext, action: str) -> None:
    """Return when the caller holds the admin role; ``Forbidden`` otherwise."""
    if not caller.is_admin:
        raise deny(action)


def require_admin_or_self(caller: RequestContext, user_id: str, action: str) -> None:
    """Return when the caller is an admin or the user ``user_id``; ``Forbidden`` otherwise."""
    if not (caller.is_admin or caller.user_id == user_id):
        raise deny(action)


# -- small helpers -----------------------------------------------------------


def same_domain(current: str, wanted: str | None) -> None:
    """Return when ``wanted`` is unset or the current domain: nothing moves between domains."""
    if wanted is not None and wanted != current:
        raise errors.Invalid("Cannot change Domain ID.")


async def all_domains(s: Session) -> dict[str, Domain]:
    """Every domain by id (there are very few)."""
    return {r.id: to_domain(r) for r in await domain_repo.all_rows(s)}


async def effective_role_rows(s: Session, names: Sequence[str]) -> tuple[Role, ...]:
    """The role rows of ``names`` and of every role they imply, in implication order."""
    wanted = rules.effective_roles(names)
    if not wanted:
        return ()
    found = await role_repo.by_names(s, wanted)
    return tuple(to_role(found[n]) for n in wanted if n in found)


# -- passwords ---------------------------------------------------------------

# A password check is scrypt: ~50 ms of a core and 16 MiB. They run on threads of
# their own, so that a flood of logins queues behind itself: on the process's shared
# default executor it queued every other thread hop behind it (a session's input, a
# wait for SQLite's write lock, a network driver's engine call). One client has at
# most as many checks on those threads as there are threads; the rest of its checks
# wait their turn outside, so another client's check is never behind a whole flood.
_HASHING_THREADS = 2
_hashing: ThreadPoolExecutor | None = None
_checks = Slots()  # password checks waiting or running, by client


def _hashing_pool() -> ThreadPoolExecutor:
    global _hashing
    if _hashing is None:
        _hashing = ThreadPoolExecutor(_HASHING_THREADS, thread_name_prefix="berth-scrypt")
    return _hashing


class _Turns:
    """A semaphore per client with checks in flight; dropped when it has none."""

    def __init__(self) -> None:
        self._turns: dict[str, tuple[asyncio.Semaphore, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def take(self, client: str) -> AsyncIterator[None]:
        turn, users = self._turns.setdefault(client, (asyncio.Semaphore(_HASHING_THREADS), [0]))
        users[0] += 1
        try:
            async with turn:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._turns[client]


_turns = _Turns()


@contextlib.asynccontextmanager
async def password_turn(bounds: tuple[int, int], client: str) -> AsyncIterator[None]:
    """Run the block as one password check of ``client`` (an address, or a user).

    ``bounds``: (per client, in all) checks waiting or running in this process; one
    more is ``TooManyAttempts`` (429, retry in a second) before anything is read or
    hashed. A client's checks run a few at a time; the others wait here.
    """
    refusals = (
        f"Too many password checks of {client} at once (max_password_checks_per_client): "
        "retry in a second, or reuse the token you have.",
        "Too many password checks at once on this API process (max_password_checks): "
        "retry in a second.",
    )
    with _checks.hold(client, bounds, refusals, lambda m: errors.TooManyAttempts(m, 1)):
        async with _turns.take(client):
            yield


async def hash_password(password: str) -> str:
    """The scrypt hash of ``password``, computed off the event loop."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_hashing_pool(), passwords.hash_password, password)


async def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches ``encoded``, checked off the event loop."""
    loop = asyncio.get_running_loop()
    check = passwords.verify_password
    return await loop.run_in_executor(_hashing_pool(), check, password, encoded)
