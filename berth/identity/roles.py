"""Role implication: admin ⊃ member ⊃ reader, as pure functions over role names.

Holding a role means holding every role it implies, so checks ask for the
weakest role that suffices ("reader" to look, "member" to change) and admins
pass them all. ``service`` stands apart: it implies nothing and nothing implies it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = [
    "ADMIN",
    "BUILTIN_ROLES",
    "IMPLIES",
    "MEMBER",
    "READER",
    "SERVICE",
    "effective_roles",
    "has_role",
    "implied_roles",
]

ADMIN = "admin"
MEMBER = "member"
READER = "reader"
SERVICE = "service"
BUILTIN_ROLES: tuple[str, ...] = (ADMIN, MEMBER, READER, SERVICE)

# prior role -> the roles it directly implies (Keystone's "implied roles").
IMPLIES: Mapping[str, tuple[str, ...]] = {ADMIN: (MEMBER,), MEMBER: (READER,)}


def implied_roles(role: str, rules: Mapping[str, tuple[str, ...]] = IMPLIES) -> tuple[str, ...]:
    """Every role ``role`` implies, directly or transitively, nearest first; not itself."""
    seen: list[str] = []
    frontier = list(rules.get(role, ()))
    while frontier:
        current = frontier.pop(0)
        if current == role or current in seen:
            continue
        seen.append(current)
        frontier.extend(rules.get(current, ()))
    return tuple(seen)


def effective_roles(
    roles: Iterable[str], rules: Mapping[str, tuple[str, ...]] = IMPLIES
) -> tuple[str, ...]:
    """The given roles followed by the roles they imply, each once, in a stable order."""
    result: list[str] = []
    for role in roles:
        for name in (role, *implied_roles(role, rules)):
            if name not in result:
                result.append(name)
    return tuple(result)


def has_role(
    held: Iterable[str], required: str, rules: Mapping[str, tuple[str, ...]] = IMPLIES
) -> bool:
    """True when the held roles, with what they imply, include ``required``."""
    return required in effective_roles(held, rules)
