"""The tenancy boundary every repository query goes through."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Scope"]


@dataclass(frozen=True, slots=True)
class Scope:
    """Who is asking: rows of other projects are invisible unless ``all_projects``.

    ``all_projects`` is only ever set by the services layer after the policy
    allowed it, so a repository never has to know about roles.
    """

    project_id: str | None
    all_projects: bool = False

    def sees(self, project_id: str) -> bool:
        return self.all_projects or project_id == self.project_id
