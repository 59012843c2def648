"""Which rows a request may see: the policy decides, a ``Scope`` carries the answer to the store.

Two Zun rules, written once: a *list* covers every project only when asked
(``all_projects``) and allowed (``<resource>:get_all_all_projects``); a *lookup*
by identifier also searches every project for an admin, as Zun's ``get_by_uuid``
does for admin contexts.
"""

from __future__ import annotations

from berth.domain.context import RequestContext
from berth.services.env import Env
from berth.store.scope import Scope

__all__ = ["list_scope", "lookup_scope"]


def list_scope(env: Env, ctx: RequestContext, all_projects: bool, rule: str) -> Scope:
    """The caller's project, or every project once ``rule`` allowed ``all_projects``."""
    if all_projects:
        env.enforce(ctx, rule)
        return Scope(ctx.project_id, all_projects=True)
    return Scope(ctx.project_id)


def lookup_scope(
    env: Env, ctx: RequestContext, all_projects: bool = False, rule: str | None = None
) -> Scope:
    """The scope an identifier is resolved in: admins find every project's rows."""
    if all_projects and rule is not None:
        env.enforce(ctx, rule)
    return Scope(ctx.project_id, all_projects=all_projects or ctx.is_admin)
