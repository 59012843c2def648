"""Keystone v3 password-authentication request bodies (the client side of /auth/tokens).

One builder for every place Berth logs in somewhere (its agents to Berth or to
Keystone, the CLI, ``berth openstack register``, the Keystone token validator's
service user). References are by name or id, as Keystone's API takes them:
``{"name": "Default"}`` or ``{"id": "default"}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["by_name", "password_auth", "project_ref"]


def by_name(name: str) -> dict[str, str]:
    """A reference to a domain (or other named thing) by name."""
    return {"name": name}


def project_ref(project_id: str | None, name: str | None, domain: str) -> dict[str, Any]:
    """A project by id when there is one, else by name within ``domain`` (a domain name)."""
    if project_id:
        return {"id": project_id}
    return {"name": name, "domain": by_name(domain)}


def password_auth(
    username: str,
    password: str,
    user_domain: Mapping[str, str],
    project: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The body of ``POST /v3/auth/tokens`` for ``username``'s password: scoped to
    ``project`` when given, unscoped otherwise."""
    user = {"name": username, "domain": dict(user_domain), "password": password}
    auth: dict[str, Any] = {"identity": {"methods": ["password"], "password": {"user": user}}}
    if project is not None:
        auth["scope"] = {"project": dict(project)}
    return {"auth": auth}
