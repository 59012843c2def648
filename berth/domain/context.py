"""Who is calling: the identity facts every use case receives."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["RequestContext"]


@dataclass(frozen=True, slots=True)
class RequestContext:
    """An authenticated caller, scoped to one project (or to a domain for admin calls)."""

    user_id: str
    user_name: str
    project_id: str | None
    project_name: str | None
    roles: tuple[str, ...]
    request_id: str = ""
    domain_id: str = "default"
    audit_id: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    # The caller's own token, for calls made on their behalf (the cloud's Glance
    # decides what they may see). Never shown, never compared.
    auth_token: str = field(default="", repr=False, compare=False)

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    @property
    def is_service(self) -> bool:
        return "service" in self.roles
