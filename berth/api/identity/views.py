"""Response bodies of the identity API, in Keystone v3's shapes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import Request

from berth.config import Settings
from berth.identity.models import Assignment, Domain, Project, Role, TokenInfo, User
from berth.identity.tokens import format_time

__all__ = [
    "VERSION_ID",
    "assignment_view",
    "collection",
    "domain_view",
    "project_view",
    "role_view",
    "token_view",
    "user_view",
    "v3_url",
    "version_doc",
]

VERSION_ID = "v3.14"
_UPDATED = "2020-04-07T00:00:00Z"
_MEDIA_TYPES = [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}]


def v3_url(request: Request, settings: Settings) -> str:
    """The identity v3 root clients should use: the configured public URL, else the request's."""
    base = settings.public_url or str(request.base_url)
    return f"{base.rstrip('/')}/identity/v3"


def version_doc(v3: str) -> dict[str, Any]:
    """The v3 version document keystoneauth's discovery reads."""
    return {
        "id": VERSION_ID,
        "status": "stable",
        "updated": _UPDATED,
        "links": [{"rel": "self", "href": f"{v3}/"}],
        "media-types": _MEDIA_TYPES,
    }


def collection(key: str, items: Iterable[dict[str, Any]], self_url: str) -> dict[str, Any]:
    """A Keystone list body: the items plus ``links`` with no further pages."""
    return {key: list(items), "links": {"self": self_url, "previous": None, "next": None}}


def _ref(obj: Domain) -> dict[str, str]:
    return {"id": obj.id, "name": obj.name}


def domain_view(domain: Domain, v3: str) -> dict[str, Any]:
    """One domain."""
    return {
        "id": domain.id,
        "name": domain.name,
        "description": domain.description,
        "enabled": domain.enabled,
        "tags": [],
        "options": {},
        "links": {"self": f"{v3}/domains/{domain.id}"},
    }


def project_view(project: Project, v3: str) -> dict[str, Any]:
    """One project; extra attributes appear at the top level, as in Keystone."""
    return {
        "tags": [],
        "options": {},
        **project.extra,
        "id": project.id,
        "name": project.name,
        "domain_id": project.domain_id,
        "description": project.description,
        "enabled": project.enabled,
        "parent_id": project.domain_id,
        "is_domain": False,
        "links": {"self": f"{v3}/projects/{project.id}"},
    }


def user_view(user: User, v3: str) -> dict[str, Any]:
    """One user (never its password)."""
    body: dict[str, Any] = {
        "options": {},
        **user.extra,
        "id": user.id,
        "name": user.name,
        "domain_id": user.domain_id,
        "enabled": user.enabled,
        "password_expires_at": None,
        "links": {"self": f"{v3}/users/{user.id}"},
    }
    if user.description:
        body["description"] = user.description
    if user.email is not None:
        body["email"] = user.email
    if user.default_project_id is not None:
        body["default_project_id"] = user.default_project_id
    return body


def role_view(role: Role, v3: str) -> dict[str, Any]:
    """One role."""
    return {
        "id": role.id,
        "name": role.name,
        "domain_id": role.domain_id,
        "description": role.description,
        "options": {},
        "links": {"self": f"{v3}/roles/{role.id}"},
    }


def assignment_view(a: Assignment, v3: str, include_names: bool) -> dict[str, Any]:
    """One role assignment as ``GET /v3/role_assignments`` lists it."""
    role: dict[str, Any] = {"id": a.role.id}
    user: dict[str, Any] = {"id": a.user.id}
    domain: dict[str, Any] = {"id": a.domain.id}
    if include_names:
        role["name"] = a.role.name
        user.update(name=a.user.name, domain=_ref(a.user_domain))
        domain["name"] = a.domain.name
    if a.project is not None:
        project: dict[str, Any] = {"id": a.project.id}
        if include_names:
            project.update(name=a.project.name, domain=_ref(a.domain))
        scope: dict[str, Any] = {"project": project}
        target = f"{v3}/projects/{a.project.id}"
    else:
        scope = {"domain": domain}
        target = f"{v3}/domains/{a.domain.id}"
    prior = a.prior_role or a.role
    links = {"assignment": f"{target}/users/{a.user.id}/roles/{prior.id}"}
    if a.prior_role is not None:
        links["prior_role"] = f"{v3}/roles/{a.prior_role.id}"
    return {"role": role, "user": user, "scope": scope, "links": links}


def token_view(info: TokenInfo) -> dict[str, Any]:
    """The ``{"token": ...}`` body of ``POST`` and ``GET /v3/auth/tokens``."""
    token: dict[str, Any] = {
        "methods": list(info.methods),
        "user": {
            "id": info.user.id,
            "name": info.user.name,
            "domain": _ref(info.user_domain),
            "password_expires_at": None,
        },
        "audit_ids": list(info.audit_ids),
        "expires_at": format_time(info.expires_at),
        "issued_at": format_time(info.issued_at),
        "is_domain": False,
    }
    if info.project is not None and info.domain is not None:
        token["project"] = {
            "id": info.project.id,
            "name": info.project.name,
            "domain": _ref(info.domain),
        }
    elif info.scope == "domain" and info.domain is not None:
        token["domain"] = _ref(info.domain)
    if info.scope != "unscoped":
        token["roles"] = [{"id": r.id, "name": r.name} for r in info.roles]
    if info.catalog is not None:
        token["catalog"] = info.catalog
    return {"token": token}
