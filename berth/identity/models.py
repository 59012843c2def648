"""Plain values the identity use cases take and return (no I/O, no HTTP)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "Assignment",
    "AssignmentFilter",
    "AuthRequest",
    "BootstrapResult",
    "Domain",
    "IssuedToken",
    "PasswordCredentials",
    "Project",
    "ProjectSpec",
    "ProjectUpdate",
    "Role",
    "RoleSpec",
    "ScopeKind",
    "ScopeRequest",
    "TokenInfo",
    "User",
    "UserSpec",
    "UserUpdate",
]

ScopeKind = Literal["project", "domain", "unscoped", "default"]


@dataclass(frozen=True, slots=True)
class Domain:
    id: str
    name: str
    description: str = ""
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class Project:
    id: str
    name: str
    domain_id: str
    description: str = ""
    enabled: bool = True
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class User:
    id: str
    name: str
    domain_id: str
    enabled: bool = True
    email: str | None = None
    description: str = ""
    default_project_id: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Role:
    id: str
    name: str
    domain_id: str | None = None
    description: str = ""


@dataclass(frozen=True, slots=True)
class Assignment:
    """A role of a user on a project or a domain; ``prior_role`` is set for implied roles."""

    role: Role
    user: User
    user_domain: Domain
    project: Project | None
    domain: Domain  # the project's domain, or the domain the role is held on
    prior_role: Role | None = None


@dataclass(frozen=True, slots=True)
class AssignmentFilter:
    """The filters of ``GET /v3/role_assignments``; ``None`` means "any"."""

    user_id: str | None = None
    project_id: str | None = None
    domain_id: str | None = None
    role_id: str | None = None
    effective: bool = False


@dataclass(frozen=True, slots=True)
class PasswordCredentials:
    password: str
    user_id: str | None = None
    user_name: str | None = None
    domain_id: str | None = None
    domain_name: str | None = None


@dataclass(frozen=True, slots=True)
class ScopeRequest:
    """What the token should be scoped to. ``default`` means "the user's default project"."""

    kind: ScopeKind = "default"
    id: str | None = None
    name: str | None = None
    domain_id: str | None = None
    domain_name: str | None = None


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """A parsed ``POST /v3/auth/tokens`` body."""

    methods: tuple[str, ...]
    password: PasswordCredentials | None = None
    token: str | None = None
    scope: ScopeRequest = ScopeRequest()


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """Everything a token response shows. ``domain`` is the project's domain or the scope."""

    user: User
    user_domain: Domain
    scope: Literal["project", "domain", "unscoped"]
    project: Project | None
    domain: Domain | None
    roles: tuple[Role, ...]
    methods: tuple[str, ...]
    issued_at: dt.datetime
    expires_at: dt.datetime
    audit_ids: tuple[str, ...]
    catalog: list[dict[str, Any]] | None = None


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A new token: the secret (shown once, in ``X-Subject-Token``) and what it grants."""

    token: str
    info: TokenInfo


@dataclass(frozen=True, slots=True)
class ProjectSpec:
    name: str
    domain_id: str = "default"
    description: str = ""
    enabled: bool = True
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ProjectUpdate:
    """Fields to change; ``None`` leaves a field as it is."""

    name: str | None = None
    description: str | None = None
    enabled: bool | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    domain_id: str | None = None  # may only repeat the current one


@dataclass(frozen=True, slots=True)
class UserSpec:
    name: str
    domain_id: str = "default"
    password: str | None = None
    email: str | None = None
    description: str = ""
    enabled: bool = True
    default_project_id: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class UserUpdate:
    """Fields to change; ``None`` leaves a field as it is."""

    name: str | None = None
    password: str | None = None
    email: str | None = None
    description: str | None = None
    enabled: bool | None = None
    default_project_id: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    domain_id: str | None = None  # may only repeat the current one


@dataclass(frozen=True, slots=True)
class RoleSpec:
    name: str
    description: str = ""
    domain_id: str | None = None


@dataclass(frozen=True, slots=True)
class BootstrapResult:
    """The passwords of the bootstrap users.

    Each is the password known to work (checked against the stored hash); when
    none checks out (changed through the API since), the configured or saved
    one is returned as a best guess, or ``""`` when there is neither.
    """

    admin_password: str
    agent_password: str
    admin_created: bool = False
    agent_created: bool = False
