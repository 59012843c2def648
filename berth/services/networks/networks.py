"""Project networks: CRUD, a container's networks at create, attach, detach and list.

A network belongs to one project; every project has a ``default`` one that
its containers join unless told otherwise (``--net network=<name or uuid>``).
On each host the agent's network driver makes a network an isolated bridge
(see ``berth.networks`` and docs/networking.md). A container's networks are
stored resolved in its ``nets`` column as ``[{"network": uuid, "name": name}]``.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from berth import errors
from berth.domain.containers import Status
from berth.domain.context import RequestContext
from berth.domain.hostsync import NetworkRef
from berth.events.actions import emit
from berth.services import quotas
from berth.services.env import Env
from berth.services.networks import security_groups
from berth.services.scopes import list_scope, lookup_scope
from berth.store import containers as containers_repo
from berth.store import networks as repo
from berth.store import overlay as overlay_repo
from berth.store.base import new_uuid, utcnow
from berth.store.db import Database, Session
from berth.store.scope import Scope
from berth.store.tables import ContainerRow, NetworkRow

__all__ = [
    "DEFAULT_NETWORK",
    "Defaults",
    "attach",
    "create",
    "default_network",
    "delete",
    "detach",
    "detached_from_all",
    "ensure_defaults",
    "get",
    "list_networks",
    "network_list",
    "refs",
    "resolve_nets",
    "wire",
]

DEFAULT_NETWORK = "default"


@dataclass(frozen=True, slots=True)
class Defaults:
    """A project's default network and security group, by uuid.

    Neither is ever deleted (a 409) nor renamed, so once seen they hold for the
    life of the process: a create that joins them needs no read of either.
    """

    network: str
    network_name: str
    group: str


# The default network and group of the projects this process has seen them made in.
_DEFAULTS_MADE: weakref.WeakKeyDictionary[Database, dict[str, Defaults]] = (
    weakref.WeakKeyDictionary()
)


async def default_network(session: Session, project_id: str, user_id: str) -> NetworkRow:
    """The project's ``default`` network, created if missing."""
    row = await repo.default_network(session, project_id)
    if row is not None:
        return row
    return await repo.insert(
        session,
        NetworkRow(
            uuid=new_uuid(),
            project_id=project_id,
            user_id=user_id,
            name=DEFAULT_NETWORK,
            is_default=True,
            created_at=utcnow(),
        ),
    )


async def ensure_defaults(env: Env, project_id: str, user_id: str) -> Defaults:
    """Create the project's default network and security group unless they exist; both.

    Its own short transaction: two first creates racing in a new project hit
    the unique name, and the loser finds the winner's rows on its second try.
    """
    known = _DEFAULTS_MADE.setdefault(env.db, {})
    found = known.get(project_id)
    if found is not None:
        # Made before, in this process: skip a write transaction per create (and,
        # in ``resolve``, the two reads that would find them again).
        return found
    try:
        found = await _make_defaults(env, project_id, user_id)
    except repo.NameTaken:  # a concurrent first create won: its rows are there now
        found = await _make_defaults(env, project_id, user_id)
    known[project_id] = found
    return found


async def _make_defaults(env: Env, project_id: str, user_id: str) -> Defaults:
    async with env.db.transaction() as session:
        net = await default_network(session, project_id, user_id)
        group = await security_groups.default_group(session, project_id, user_id)
        return Defaults(net.uuid, net.name, group.uuid)


async def create(env: Env, ctx: RequestContext, name: str) -> NetworkRow:
    """A new network of the caller's project."""
    env.enforce(ctx, "network:create")
    if not ctx.project_id:
        raise errors.Forbidden("A project-scoped token is needed to create networks.")
    await ensure_defaults(env, ctx.project_id, ctx.user_id)
    async with env.db.transaction() as session:
        try:
            await repo.get_network(session, Scope(ctx.project_id), name)
        except errors.NotFound:
            pass
        else:
            raise errors.Conflict(f"A network named {name} already exists in this project.")
        await quotas.cap_records(
            env, session, ctx.project_id, NetworkRow, "max_networks_per_project", "networks"
        )
        # A concurrent create of the same name may still win: insert says so (409).
        return await repo.insert(
            session,
            NetworkRow(
                uuid=new_uuid(),
                project_id=ctx.project_id,
                user_id=ctx.user_id,
                name=name,
                created_at=utcnow(),
            ),
        )


async def list_networks(
    env: Env, ctx: RequestContext, all_projects: bool = False
) -> Sequence[NetworkRow]:
    """The caller's project's networks (every project's with ``all_projects``)."""
    env.enforce(ctx, "network:get_all")
    scope = list_scope(env, ctx, all_projects, "network:get_all_all_projects")
    if ctx.project_id:
        await ensure_defaults(env, ctx.project_id, ctx.user_id)
    async with env.db.read() as session:
        return await repo.list_networks(session, scope)


async def get(env: Env, ctx: RequestContext, ident: str) -> NetworkRow:
    """The network ``ident`` (uuid or name) if the caller may see it."""
    async with env.db.read() as session:
        row = await repo.get_network(session, lookup_scope(env, ctx), ident)
    env.enforce(ctx, "network:get", row.project_id)
    return row


def _uses(row: ContainerRow, network_uuid: str) -> bool:
    return any(n.get("network") == network_uuid for n in row.nets or [])


async def delete(env: Env, ctx: RequestContext, ident: str) -> None:
    """Remove a network no container uses (hosts drop their bridges once unused)."""
    async with env.db.transaction() as session:
        row = await repo.get_network(session, lookup_scope(env, ctx), ident, for_update=True)
        env.enforce(ctx, "network:delete", row.project_id)
        if row.is_default:
            raise errors.Conflict("The default network of a project cannot be deleted.")
        users = await repo.network_users(session, row)
        if users:
            raise errors.Conflict(_in_use(row, users))
        await overlay_repo.forget_network(session, row.uuid)  # its leases, if overlaid
        await session.delete(row)


def _in_use(row: NetworkRow, users: Sequence[ContainerRow]) -> str:
    """Why the network cannot go yet, and what to do: containers being deleted need time."""
    going = [c.uuid for c in users if c.status == Status.DELETING]
    staying = [c.uuid for c in users if c.status != Status.DELETING]
    parts = []
    if staying:
        parts.append(f"in use by container(s) {', '.join(staying)}; detach or delete them")
    if going:
        parts.append(
            f"still held by container(s) {', '.join(going)}, being deleted; "
            "retry once they are gone"
        )
    return f"Network {row.name} is {' and '.join(parts)}."


async def resolve_nets(
    session: Session,
    project_id: str,
    user_id: str,
    nets: Sequence[dict[str, Any]],
    defaults: Defaults | None = None,
) -> list[dict[str, str]]:
    """The networks a new container joins (none given: the default one), resolved and checked.

    ``defaults``: the project's, as ``ensure_defaults`` answered (no read then).
    """
    if not nets:
        if defaults is not None:
            return [{"network": defaults.network, "name": defaults.network_name}]
        row = await default_network(session, project_id, user_id)
        return [{"network": row.uuid, "name": row.name}]
    result: list[dict[str, str]] = []
    for spec in nets:
        row = await _requested(session, project_id, spec)
        if any(n["network"] == row.uuid for n in result):
            raise errors.Invalid(f"Network {row.name} is given more than once.")
        result.append({"network": row.uuid, "name": row.name})
    return result


async def _requested(session: Session, project_id: str, spec: dict[str, Any]) -> NetworkRow:
    if not isinstance(spec, dict):
        raise errors.Invalid("Invalid input for field 'nets': each entry is an object.")
    unknown = set(spec) - {"network", "port", "v4-fixed-ip", "v6-fixed-ip"}
    if unknown:
        raise errors.Invalid(f"Invalid input for field 'nets': unknown key(s) {sorted(unknown)}.")
    if spec.get("port"):
        raise errors.Invalid(
            "Berth has no Neutron ports: give network=<name or uuid> instead of port=."
        )
    if spec.get("v4-fixed-ip") or spec.get("v6-fixed-ip"):
        raise errors.Invalid("Fixed IPs are not supported: each host assigns the addresses.")
    ident = spec.get("network")
    if not isinstance(ident, str) or not ident:
        raise errors.Invalid("Invalid input for field 'nets': give network=<name or uuid>.")
    return await repo.get_network(session, Scope(project_id), ident)


async def wire(
    session: Session,
    row: ContainerRow,
    nets: Sequence[dict[str, Any]] = (),
    groups: Sequence[str] = (),
) -> None:
    """Give a new container row its networks and security groups (by uuid).

    None given: the project's default network and group, but with exposed ports
    only their own group (as Zun); given groups keep it beside them. Call
    ``ensure_defaults`` before the transaction to make concurrent first creates
    in a project safe.
    """
    await resolve(session, row, nets, groups)
    await add_exposed_group(session, row)


async def resolve(
    session: Session,
    row: ContainerRow,
    nets: Sequence[dict[str, Any]] = (),
    groups: Sequence[str] = (),
    defaults: Defaults | None = None,
) -> None:
    """The reading half of ``wire``: networks and groups by uuid (no writes).

    ``defaults``: the project's default network and group, as ``ensure_defaults``
    answered: a create that joins them reads neither.
    """
    row.nets = await resolve_nets(session, row.project_id, row.user_id, nets, defaults)
    if not groups and row.exposed_ports:
        # Zun's driver (``_process_exposed_ports``) gives such a container only its
        # exposed-port group: reachable on those ports, by its network's members
        # too, and on no other port (Neutron's rule; see docs/networking.md).
        row.security_groups = []
        return
    row.security_groups = await security_groups.resolve(
        session, row.project_id, row.user_id, groups, defaults.group if defaults else None
    )


async def still_there(
    session: Session,
    row: ContainerRow,
    given: Sequence[dict[str, Any]],
    groups: Sequence[str] = (),
) -> None:
    """Inside the create's transaction: the networks and security groups ``resolve``
    found for the ``given`` ones and ``groups`` were not deleted meanwhile, and are not
    until it commits. A delete locks its row and looks for users in its own
    transaction: with these rows locked for share, either the delete waits and then
    sees the new container, or this waits and then sees the row gone (on PostgreSQL,
    whose transactions overlap: there both used to pass, leaving a container on a
    network or in a group that was gone). None given means the defaults, which cannot
    be deleted: nothing to read."""
    if given:
        nets = {n["network"] for n in row.nets or [] if isinstance(n, dict) and "network" in n}
        await _all_there(session, "Network", nets, repo.existing_networks)
    if groups:
        chosen = set(row.security_groups or [])
        await _all_there(session, "Security group", chosen, repo.existing_groups)


async def _all_there(
    session: Session,
    noun: str,
    wanted: set[str],
    existing: Callable[[Session, set[str]], Awaitable[set[str]]],
) -> None:
    """Conflict when one of ``wanted`` is gone (``existing`` locks what it finds)."""
    gone = wanted - await existing(session, wanted) if wanted else set()
    if gone:
        raise errors.Conflict(
            f"{noun} {', '.join(sorted(gone))} was deleted while the container was being "
            "created; create it again."
        )


async def add_exposed_group(session: Session, row: ContainerRow) -> None:
    """The writing half of ``wire``: exposed ports get a group of their own."""
    exposed = await security_groups.exposed_group(session, row)
    if exposed:
        row.security_groups = [*(row.security_groups or []), exposed]


def detached_from_all(row: ContainerRow) -> bool:
    """Whether every network of the container was detached: it has loopback only.

    A capsule member shares its sandbox's namespace and has no networks of its own.
    """
    return row.nets == [] and row.capsule_id is None


def refs(row: ContainerRow) -> list[NetworkRef]:
    """The networks of a container as its host sees them."""
    # Only resolved entries (they carry the name): rows stored before networks
    # existed kept the raw request, and stay on the engine's default network.
    return [
        NetworkRef(n["network"], n["name"], row.project_id)
        for n in row.nets or []
        if isinstance(n, dict) and "name" in n and "network" in n
    ]


async def _container(
    env: Env, session: Session, ctx: RequestContext, ident: str, action: str
) -> ContainerRow:
    row = await containers_repo.get(session, lookup_scope(env, ctx), ident, for_update=True)
    env.enforce(ctx, f"container:{action}", row.project_id)
    return row


async def attach(
    env: Env, ctx: RequestContext, ident: str, network: str | None, port: str | None
) -> None:
    """Join the container to another network of its project; its host connects it."""
    if port:
        raise errors.Invalid("Berth has no Neutron ports: give network=<name or uuid>.")
    if not network:
        raise errors.Invalid("A network to attach is required: give network=<name or uuid>.")
    async with env.db.transaction() as session:
        row = await _container(env, session, ctx, ident, "network_attach")
        # Locked for share: a delete of the network waits, then sees this container.
        net = await repo.get_network(session, Scope(row.project_id), network, for_share=True)
        if _uses(row, net.uuid):
            raise errors.Invalid(f"Container {row.name} is already attached to network {net.name}.")
        row.nets = [*(row.nets or []), {"network": net.uuid, "name": net.name}]
        row.updated_at = utcnow()
        await _record(session, ctx, row, "network_attach", net)
    await env.notifier.touch(row.host)


async def detach(
    env: Env, ctx: RequestContext, ident: str, network: str | None, port: str | None
) -> None:
    """Take the container off one of its networks; off its last one it has loopback only.

    As Zun does (``compute.manager._do_network_detach`` has no last-network rule):
    the container keeps running without a network until one is attached.
    """
    if port:
        raise errors.Invalid("Berth has no Neutron ports: give network=<name or uuid>.")
    if not network:
        raise errors.Invalid("A network to detach is required: give network=<name or uuid>.")
    async with env.db.transaction() as session:
        row = await _container(env, session, ctx, ident, "network_detach")
        net = await repo.get_network(session, Scope(row.project_id), network)
        if not _uses(row, net.uuid):
            raise errors.Invalid(f"Container {row.name} is not attached to network {net.name}.")
        row.nets = [n for n in row.nets if n.get("network") != net.uuid]
        row.updated_at = utcnow()
        await _record(session, ctx, row, "network_detach", net)
    await env.notifier.touch(row.host)


async def _record(
    session: Session, ctx: RequestContext, row: ContainerRow, action: str, net: NetworkRow
) -> None:
    # An event, not a container action: a stopped container's host has nothing to
    # report back when it joins a network, so an action would never finish.
    emit(session, row, f"container.{action}", ctx.request_id, network=net.uuid)


def network_list(row: ContainerRow, flat: bool) -> list[dict[str, Any]]:
    """Zun's ``network_list``: one entry per network (1.18+) or per address (``flat``)."""
    result: list[dict[str, Any]] = []
    for net in row.nets or []:
        entries = (row.addresses or {}).get(net["network"]) or []
        ips = [
            {
                "subnet_id": e.get("subnet_id"),
                "version": e.get("version", 4),
                "ip_address": e["addr"],
            }
            for e in entries
            if isinstance(e, dict) and e.get("addr")
        ]
        if flat:
            result += [{"net_id": net["network"], "port_id": None, **ip} for ip in ips]
        else:
            result.append({"net_id": net["network"], "port_id": None, "fixed_ips": ips})
    return result
