"""The project's security groups and their ingress rules: list, create, add and delete rules,
delete.

Through ``berth.services.networks.security_groups`` (what ``/v1/security_groups`` calls) with the
session's context, so validation, policy (``security_group:*``) and tenancy are the API's:
a bad rule, the default group or a group in use comes back as a flash with the API's message.
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response

from berth import errors
from berth.dashboard.pages import redirect
from berth.dashboard.render import env_of, page
from berth.dashboard.session import Session
from berth.services.networks import security_groups as svc
from berth.services.networks.security_groups import RuleFields

__all__ = [
    "group_create",
    "group_delete",
    "rule_add",
    "rule_delete",
    "security_groups_page",
]

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{1,254}$")
PROTOCOLS = ("tcp", "udp", "icmp", "any")


async def security_groups_page(request: Request, session: Session) -> Response:
    """The project's groups (its default one created on first sight) with their rules."""
    rows = await svc.list_groups(env_of(request), session.ctx)
    names = {r.uuid: r.name for r in rows}
    return await page(
        request, "security_groups.html", session, groups=rows, names=names, protocols=PROTOCOLS
    )


async def group_create(request: Request, session: Session, form: dict[str, str]) -> Response:
    name = form.get("name", "").strip()
    if not _NAME.match(name):
        raise errors.Invalid(
            "The security group name must be 2-255 characters of letters, digits, '_', '.' or "
            "'-', starting with a letter or digit."
        )
    description = form.get("description", "").strip() or None
    if description is not None and len(description) > 255:
        raise errors.Invalid("The description must be at most 255 characters.")
    row = await svc.create(env_of(request), session.ctx, name, description)
    return redirect("/security_groups", ("ok", f"Security group {row.name} is created."))


def _port(form: dict[str, str], key: str, label: str) -> int | None:
    text = form.get(key, "").strip()
    if not text:
        return None
    if not text.isdigit():
        raise errors.Invalid(f"The {label} must be a port number 1-65535, not {text!r}.")
    return int(text)


async def rule_add(request: Request, session: Session, form: dict[str, str]) -> Response:
    ident = request.path_params["ident"]
    fields = RuleFields(
        protocol=form.get("protocol", "").strip() or None,
        port_range_min=_port(form, "port_min", "lowest port"),
        port_range_max=_port(form, "port_max", "highest port"),
        remote_ip_prefix=form.get("remote_ip_prefix", "").strip() or None,
        remote_group_id=form.get("remote_group_id", "").strip() or None,
    )
    row, _ = await svc.add_rule(env_of(request), session.ctx, ident, fields)
    return redirect("/security_groups", ("ok", f"The rule is added to {row.name}."))


async def rule_delete(request: Request, session: Session, form: dict[str, str]) -> Response:
    ident, rule_id = request.path_params["ident"], request.path_params["rule_id"]
    await svc.delete_rule(env_of(request), session.ctx, ident, rule_id)
    name = form.get("name") or ident
    return redirect("/security_groups", ("ok", f"The rule is deleted from {name}."))


async def group_delete(request: Request, session: Session, form: dict[str, str]) -> Response:
    ident = request.path_params["ident"]
    await svc.delete(env_of(request), session.ctx, ident)
    name = form.get("name") or ident
    return redirect("/security_groups", ("ok", f"Security group {name} is deleted."))
