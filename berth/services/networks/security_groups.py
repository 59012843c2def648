"""Security groups: project resources with ingress rules, enforced by each host's agent.

Every project has a ``default`` group (created with its first container or
group) whose one rule lets its members reach each other; a container joins
``default`` unless the user names groups. ``exposed_ports`` adds a group of
the container's own (``exposed-<container uuid>``) that opens those ports from
anywhere, next to the container's other groups (Zun replaced them). Rules are
plain dicts, Neutron's field names; ``ingress`` turns a container's groups
into what the agent enforces.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from berth import errors
from berth.domain.containers import action_allowed
from berth.domain.context import RequestContext
from berth.domain.hostsync import IngressRule
from berth.events.actions import emit
from berth.services import quotas
from berth.services.env import Env
from berth.services.scopes import list_scope, lookup_scope
from berth.store import containers as containers_repo
from berth.store import desired_feed
from berth.store import networks as repo
from berth.store.base import new_uuid, utcnow
from berth.store.db import Session
from berth.store.scope import Scope
from berth.store.tables import ContainerRow, SecurityGroupRow

__all__ = [
    "DEFAULT_GROUP",
    "RuleFields",
    "add_rule",
    "add_to_container",
    "create",
    "default_group",
    "delete",
    "delete_rule",
    "drop_container_group",
    "exposed_group",
    "get",
    "ingress",
    "list_groups",
    "parse_exposed_ports",
    "remove_from_container",
    "resolve",
]

DEFAULT_GROUP = "default"
PROTOCOLS = ("tcp", "udp", "icmp")


@dataclass
class RuleFields:
    """An ingress rule as the user gave it (validated here, not in the API)."""

    protocol: str | None = None
    port_range_min: int | None = None
    port_range_max: int | None = None
    remote_ip_prefix: str | None = None
    remote_group_id: str | None = None


def _rule(fields: RuleFields, remote_group: str | None) -> dict[str, Any]:
    return {
        "id": new_uuid(),
        "direction": "ingress",
        "ethertype": "IPv4",
        "protocol": fields.protocol,
        "port_range_min": fields.port_range_min,
        "port_range_max": fields.port_range_max,
        "remote_ip_prefix": fields.remote_ip_prefix,
        "remote_group_id": remote_group,
    }


async def default_group(session: Session, project_id: str, user_id: str) -> SecurityGroupRow:
    """The project's ``default`` group, created (members reach each other) if missing."""
    row = await repo.default_group(session, project_id)
    if row is not None:
        return row
    uuid = new_uuid()
    return await repo.insert(
        session,
        SecurityGroupRow(
            uuid=uuid,
            project_id=project_id,
            user_id=user_id,
            name=DEFAULT_GROUP,
            description="Members of this group reach each other; nothing else gets in.",
            is_default=True,
            rules=[_rule(RuleFields(), uuid)],
            created_at=utcnow(),
        ),
    )


async def create(
    env: Env, ctx: RequestContext, name: str, description: str | None
) -> SecurityGroupRow:
    """A new group of the caller's project, with no rule (it lets nothing in)."""
    env.enforce(ctx, "security_group:create")
    if not ctx.project_id:
        raise errors.Forbidden("A project-scoped token is needed to create security groups.")
    await _ensure_default(env, ctx.project_id, ctx.user_id)
    async with env.db.transaction() as session:
        await _check_free(session, ctx.project_id, name)
        await quotas.cap_records(
            env,
            session,
            ctx.project_id,
            SecurityGroupRow,
            "max_security_groups_per_project",
            "security groups",
        )
        # A concurrent create of the same name may still win: insert says so (409).
        return await repo.insert(
            session,
            SecurityGroupRow(
                uuid=new_uuid(),
                project_id=ctx.project_id,
                user_id=ctx.user_id,
                name=name,
                description=description,
                rules=[],
                created_at=utcnow(),
            ),
        )


async def _check_free(session: Session, project_id: str, name: str) -> None:
    try:
        await repo.get_group(session, Scope(project_id), name)
    except errors.NotFound:
        return
    raise errors.Conflict(f"A security group named {name} already exists in this project.")


async def list_groups(
    env: Env, ctx: RequestContext, all_projects: bool = False
) -> Sequence[SecurityGroupRow]:
    """The caller's project's groups (its default one created on first sight)."""
    env.enforce(ctx, "security_group:get_all")
    scope = list_scope(env, ctx, all_projects, "security_group:get_all_all_projects")
    if ctx.project_id:
        await _ensure_default(env, ctx.project_id, ctx.user_id)
    async with env.db.read() as session:
        return await repo.list_groups(session, scope)


async def _ensure_default(env: Env, project_id: str, user_id: str) -> None:
    """The default group in a transaction of its own (a racing creator may win: fine)."""
    for attempt in range(2):
        try:
            async with env.db.transaction() as session:
                await default_group(session, project_id, user_id)
            return
        except repo.NameTaken:
            if attempt:
                raise


async def get(env: Env, ctx: RequestContext, ident: str) -> SecurityGroupRow:
    """The group ``ident`` (uuid or name) if the caller may see it."""
    async with env.db.read() as session:
        row = await repo.get_group(session, lookup_scope(env, ctx), ident)
    env.enforce(ctx, "security_group:get", row.project_id)
    return row


async def delete(env: Env, ctx: RequestContext, ident: str) -> None:
    """Remove a group no container uses and no other group's rule names."""
    async with env.db.transaction() as session:
        row = await repo.get_group(session, lookup_scope(env, ctx), ident, for_update=True)
        env.enforce(ctx, "security_group:delete", row.project_id)
        if row.is_default:
            raise errors.Conflict("The default security group of a project cannot be deleted.")
        members = await repo.group_members(session, row)
        if members:
            raise errors.Conflict(
                f"Security group {row.name} is in use by container(s) {', '.join(members)}; "
                "remove it from them first."
            )
        for other in await repo.list_groups(session, Scope(row.project_id)):
            if other.uuid != row.uuid and any(
                r.get("remote_group_id") == row.uuid for r in other.rules
            ):
                raise errors.Conflict(
                    f"Security group {row.name} is named by a rule of group {other.name}."
                )
        await session.delete(row)


def _validate(fields: RuleFields) -> RuleFields:
    proto = _protocol(fields.protocol)
    low, high = _ports(proto, fields.port_range_min, fields.port_range_max)
    prefix = _prefix(fields.remote_ip_prefix, fields.remote_group_id)
    return RuleFields(proto, low, high, prefix, fields.remote_group_id)


def _protocol(given: str | None) -> str | None:
    """The protocol in lower case; None for any ("any", empty or not given)."""
    proto = given.lower() if given else None
    if proto in ("any", ""):
        proto = None
    if proto is not None and proto not in PROTOCOLS:
        raise errors.Invalid(
            f"Invalid protocol {given!r}: use one of {', '.join(PROTOCOLS)} or omit it."
        )
    return proto


def _ports(proto: str | None, low: int | None, high: int | None) -> tuple[int | None, int | None]:
    """The port range, one end given meaning a single port; tcp and udp only."""
    if (low is not None or high is not None) and proto not in ("tcp", "udp"):
        raise errors.Invalid("Port ranges apply to tcp and udp only: give protocol tcp or udp.")
    if low is None and high is not None:
        low = high
    if high is None:
        high = low
    for port in (low, high):
        if port is not None and not 1 <= port <= 65535:
            raise errors.Invalid(f"Invalid port {port}: ports are 1-65535.")
    if low is not None and high is not None and low > high:
        raise errors.Invalid(f"Invalid port range {low}-{high}: the minimum exceeds the maximum.")
    return low, high


def _prefix(prefix: str | None, remote_group_id: str | None) -> str | None:
    """The remote IPv4 network in its normal form (host bits cleared), if given."""
    if prefix is None:
        return None
    if remote_group_id:
        raise errors.Invalid("Give remote_ip_prefix or remote_group_id, not both.")
    try:
        net = ipaddress.ip_network(prefix, strict=False)
    except ValueError as exc:
        raise errors.Invalid(f"Invalid remote_ip_prefix {prefix!r}: {exc}.") from exc
    if net.version != 4:
        raise errors.Invalid("Only IPv4 remote_ip_prefix values are supported.")
    return str(net)


async def add_rule(
    env: Env, ctx: RequestContext, ident: str, fields: RuleFields
) -> tuple[SecurityGroupRow, dict[str, Any]]:
    """Append an ingress rule; the hosts of its members apply it on their next pass."""
    clean = _validate(fields)
    async with env.db.transaction() as session:
        row = await repo.get_group(session, lookup_scope(env, ctx), ident)
        env.enforce(ctx, "security_group:update", row.project_id)
        remote = None
        if clean.remote_group_id:
            try:
                group = await repo.get_group(session, Scope(row.project_id), clean.remote_group_id)
            except errors.NotFound as exc:
                raise errors.Invalid(
                    f"Invalid remote_group_id: {exc.message} (groups of this project only)."
                ) from exc
            remote = group.uuid
        # Both locked, in one order: the rule's group against other changes, the one it
        # names against deletion (whose check for rules naming it then sees this one).
        locked = await repo.lock_groups(session, {row.uuid, *([remote] if remote else [])})
        if row.uuid not in locked:
            raise errors.SecurityGroupNotFound(f"Security group {ident} could not be found.")
        if remote is not None and remote not in locked:
            raise errors.Invalid(f"Invalid remote_group_id: security group {remote} is gone.")
        row = locked[row.uuid]
        rule = _rule(clean, remote)
        same = {k: v for k, v in rule.items() if k != "id"}
        if any({k: v for k, v in r.items() if k != "id"} == same for r in row.rules):
            raise errors.Conflict("This security group already has that rule.")
        bound = env.settings.max_rules_per_security_group
        if len(row.rules) >= bound:  # each is written into every member's host firewall
            raise errors.OverQuota(
                f"Security group {row.name or row.uuid} has {len(row.rules)} rules, the most "
                "one may (max_rules_per_security_group): delete one, or use another group."
            )
        row.rules = [*row.rules, rule]
        row.updated_at = utcnow()
        hosts = await repo.member_hosts(session, row)
        await desired_feed.mark(session, hosts)  # the members' ingress changed
    for host in hosts:
        await env.notifier.touch(host)
    return row, rule


async def delete_rule(env: Env, ctx: RequestContext, ident: str, rule_id: str) -> None:
    """Remove one rule of a group."""
    async with env.db.transaction() as session:
        row = await repo.get_group(session, lookup_scope(env, ctx), ident, for_update=True)
        env.enforce(ctx, "security_group:update", row.project_id)
        kept = [r for r in row.rules if r.get("id") != rule_id]
        if len(kept) == len(row.rules):
            raise errors.ResourceNotFound(
                f"Rule {rule_id} of security group {row.name} could not be found."
            )
        row.rules = kept
        row.updated_at = utcnow()
        hosts = await repo.member_hosts(session, row)
        await desired_feed.mark(session, hosts)  # the members' ingress changed
    for host in hosts:
        await env.notifier.touch(host)


async def resolve(
    session: Session,
    project_id: str,
    user_id: str,
    names: Sequence[str],
    default: str | None = None,
) -> list[str]:
    """Group uuids for the names/uuids given (none: the default group); unknown is a 400.

    ``default``: the default group's uuid when the caller knows it (no read then).
    """
    if not names:
        if default is not None:
            return [default]
        return [(await default_group(session, project_id, user_id)).uuid]
    found: list[str] = []
    for name in names:
        try:
            row = await repo.get_group(session, Scope(project_id), name)
        except errors.NotFound as exc:
            raise errors.Invalid(f"Invalid security group: {exc.message}") from exc
        if row.uuid not in found:
            found.append(row.uuid)
    return found


def parse_exposed_ports(ports: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Zun's ``exposed_ports`` as ``{"<port>/<tcp|udp>": {}}``; bad or overlapping: a 400."""
    result: dict[str, dict[str, Any]] = {}
    for key, value in (ports or {}).items():
        text = str(key).strip()
        port_text, _, proto = text.partition("/")
        proto = (proto or "tcp").lower()
        if proto not in ("tcp", "udp"):
            raise errors.Invalid(f"Invalid exposed port {key!r}: the protocol is tcp or udp.")
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise errors.Invalid(f"Invalid exposed port {key!r}: the port is a number 1-65535.")
        if value not in ({}, None):
            raise errors.Invalid(f"Invalid exposed port {key!r}: its value must be {{}}.")
        normal = f"{int(port_text)}/{proto}"
        if normal in result:
            raise errors.Invalid(f"Exposed port {normal} is given more than once ({key!r}).")
        result[normal] = {}
    return result


async def exposed_group(session: Session, row: ContainerRow) -> str | None:
    """Create the container's own group opening its exposed ports; its uuid (None: no ports)."""
    ports = parse_exposed_ports(row.exposed_ports)
    if not ports:
        return None
    rules = []
    for key in ports:
        number, proto = key.split("/")
        rules.append(_rule(RuleFields(proto, int(number), int(number), "0.0.0.0/0"), None))
    group = SecurityGroupRow(
        uuid=new_uuid(),
        project_id=row.project_id,
        user_id=row.user_id,
        name=f"exposed-{row.uuid}",
        description=f"The exposed ports of container {row.name}.",
        container_uuid=row.uuid,
        rules=rules,
        created_at=utcnow(),
    )
    session.add(group)
    return group.uuid


async def drop_container_group(session: Session, container_uuid: str) -> None:
    """Remove the exposed-ports group of a container that is gone."""
    await repo.drop_container_groups(session, container_uuid)


def ingress(groups: Sequence[SecurityGroupRow]) -> list[IngressRule]:
    """The union of the groups' rules, as the agent enforces them."""
    rules: list[IngressRule] = []
    for group in groups:
        for r in group.rules:
            rule = IngressRule(
                protocol=r.get("protocol"),
                port_min=r.get("port_range_min"),
                port_max=r.get("port_range_max"),
                remote_cidr=r.get("remote_ip_prefix"),
                remote_group=r.get("remote_group_id"),
            )
            if rule not in rules:
                rules.append(rule)
    return rules


async def _change_container(
    env: Env, ctx: RequestContext, ident: str, name: str, action: str
) -> None:
    if not name:
        raise errors.Invalid("A security group name or uuid is required (name=...).")
    async with env.db.transaction() as session:
        row = await containers_repo.get(session, lookup_scope(env, ctx), ident, for_update=True)
        env.enforce(ctx, f"container:{action}", row.project_id)
        if not action_allowed(action, row.status):
            raise errors.InvalidStateException(
                f"Cannot {action} for container {row.uuid} in {row.status} state."
            )
        try:
            # Locked for share: a delete of the group waits, then sees this container.
            group = await repo.get_group(session, Scope(row.project_id), name, for_share=True)
        except errors.NotFound as exc:
            raise errors.Invalid(f"Invalid security group: {exc.message}") from exc
        current = list(row.security_groups or [])
        if action == "add_security_group":
            if group.uuid in current:
                raise errors.Invalid(
                    f"Security group {group.name} is already in container {row.name}."
                )
            row.security_groups = [*current, group.uuid]
        else:
            if group.uuid not in current:
                raise errors.Invalid(f"Security group {group.name} is not in container {row.name}.")
            if len(current) == 1:
                raise errors.Invalid(
                    f"Security group {group.name} is the only group of container {row.name}: "
                    "add another one first (a container without groups would let nothing in)."
                )
            row.security_groups = [g for g in current if g != group.uuid]
        row.updated_at = utcnow()
        emit(session, row, f"container.{action}", ctx.request_id, security_group=group.uuid)
    await env.notifier.touch(row.host)


async def add_to_container(env: Env, ctx: RequestContext, ident: str, name: str) -> None:
    """Make the container a member of another group of its project (its others stay)."""
    await _change_container(env, ctx, ident, name, "add_security_group")


async def remove_from_container(env: Env, ctx: RequestContext, ident: str, name: str) -> None:
    """Take the container out of one of its groups (it keeps at least one)."""
    await _change_container(env, ctx, ident, name, "remove_security_group")
