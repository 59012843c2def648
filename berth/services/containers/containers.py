"""Container use cases: create, list, show, update, delete. One public function per verb."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from berth import errors
from berth.domain.containers import Status, TaskState, action_allowed
from berth.domain.context import RequestContext
from berth.domain.paging import Paging
from berth.events.actions import emit, start_action
from berth.services import quotas, volumes
from berth.services.containers import files as injected_files
from berth.services.containers.admission import Admission, Cost, admit, check_name
from berth.services.env import Env
from berth.services.hosts.placement import reclaim, release
from berth.services.names import generate_name
from berth.services.networks import security_groups
from berth.services.scopes import list_scope, lookup_scope
from berth.store import containers as repo
from berth.store.base import new_uuid, utcnow
from berth.store.db import Session
from berth.store.paging import PageQuery
from berth.store.tables import ActionEventRow, ContainerActionRow, ContainerRow

__all__ = [
    "NewContainer",
    "create",
    "delete",
    "get",
    "get_action",
    "guard_node",
    "list_actions",
    "list_containers",
    "update",
]


@dataclass
class NewContainer:
    """A validated create request. ``given`` names the fields the caller set."""

    image: str
    name: str | None = None
    command: list[str] = field(default_factory=list)
    entrypoint: list[str] | None = None
    cpu: float | None = None
    cpu_policy: str = "shared"
    memory: int | None = None
    disk: int | None = None
    workdir: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    restart_policy: dict[str, str] | None = None
    interactive: bool = False
    tty: bool = False
    image_driver: str | None = None
    image_pull_policy: str | None = None
    security_groups: list[str] = field(default_factory=list)
    hints: dict[str, Any] = field(default_factory=dict)
    nets: list[dict[str, Any]] = field(default_factory=list)
    mounts: list[dict[str, Any]] = field(default_factory=list)
    runtime: str | None = None
    hostname: str | None = None
    auto_remove: bool = False
    auto_heal: bool = False
    availability_zone: str | None = None
    privileged: bool = False
    # Internal only: set by the cluster node provisioner, never by the Zun API.
    node_profile: str | None = None
    # Internal only: a cluster node's Glance image, resolved when its owner asked
    # for the cluster (``<id>:<checksum>``; the worker creating the node has no token).
    image_ref: str | None = None
    healthcheck: dict[str, Any] | None = None
    exposed_ports: dict[str, Any] | None = None
    registry: str | None = None
    host: str | None = None
    given: frozenset[str] = frozenset()


def _create_rules(req: NewContainer) -> list[str]:
    """The policy rules a create checks: ``container:create`` and one per guarded field given."""
    guarded = (
        ("runtime", "container:create:runtime"),
        ("privileged", "container:create:privileged"),
        ("host", "container:create:requested_destination"),
        ("image_pull_policy", "container:create:image_pull_policy"),
    )
    return ["container:create", *(rule for fld, rule in guarded if fld in req.given)]


def _new_row(
    env: Env, ctx: RequestContext, project_id: str, req: NewContainer, run: bool
) -> ContainerRow:
    s = env.settings
    row = ContainerRow(
        uuid=new_uuid(),
        name=req.name or generate_name(),
        project_id=project_id,
        user_id=ctx.user_id,
        image=req.image,
        image_driver=req.image_driver or s.default_image_driver,
        image_pull_policy=req.image_pull_policy,
        command=req.command,
        entrypoint=req.entrypoint,
        cpu=req.cpu if req.cpu is not None else s.default_cpu,
        cpu_policy=req.cpu_policy,
        memory=req.memory if req.memory is not None else s.default_memory,
        disk=req.disk or 0,
        workdir=req.workdir,
        labels=req.labels,
        environment=req.environment,
        restart_policy=req.restart_policy,
        interactive=req.interactive,
        tty=req.tty,
        security_groups=req.security_groups,
        hints=req.hints,
        nets=req.nets,
        mounts=req.mounts,
        runtime=req.runtime,
        hostname=req.hostname,
        auto_remove=req.auto_remove,
        auto_heal=req.auto_heal,
        availability_zone=req.availability_zone or s.default_schedule_zone,
        privileged=req.privileged,
        node_profile=req.node_profile,
        image_ref=req.image_ref,
        healthcheck=req.healthcheck,
        exposed_ports=req.exposed_ports,
        registry_id=req.registry,
        requested_host=req.host,
        status=Status.CREATING,
        task_state=TaskState.CREATING,
        desired_state="running" if run else "created",
        desired_since=utcnow(),
        created_at=utcnow(),
    )
    row.exposed_ports = security_groups.parse_exposed_ports(req.exposed_ports) or None
    return row


def _admission(
    env: Env, ctx: RequestContext, project_id: str, req: NewContainer, run: bool
) -> Admission:
    """What a container's create admits: the one row, every check applying to it."""
    row = _new_row(env, ctx, project_id, req, run)

    async def mounts(session: Session) -> None:
        await _resolve_mounts(env, ctx, session, row, req.mounts)

    return Admission(
        placed=row,
        cost=Cost(row.cpu, row.memory or 0, row.disk),
        event="container.create",
        images=[row.image],
        names=[row.name],
        sourced=[row],
        nets=req.nets,
        groups=req.security_groups,
        volumes=mounts,
    )


async def create(env: Env, ctx: RequestContext, req: NewContainer, run: bool) -> ContainerRow:
    """Store the container, place it and claim its host; the agent does the rest."""
    adm = await admit(
        env,
        ctx,
        rules=_create_rules(req),
        noun="containers",
        build=lambda project_id: _admission(env, ctx, project_id, req, run),
    )
    return adm.placed


async def _resolve_mounts(
    env: Env, ctx: RequestContext, session: Session, row: ContainerRow, raw: list[Any]
) -> None:
    """Volumes for ``--mount``: existing ones pin the container to their host."""
    row.mounts = []
    if not raw:
        return
    row.mounts, host = await volumes.resolve_mounts(
        env, ctx, session, volumes.parse_mounts(raw), owner=row.uuid, owner_name=row.name
    )
    if host is not None:
        if row.requested_host not in (None, host):
            raise errors.Invalid(
                f"The mounted volumes live on host {host}, not on the requested host "
                f"{row.requested_host}."
            )
        row.requested_host = host


async def list_containers(
    env: Env,
    ctx: RequestContext,
    *,
    all_projects: bool,
    filters: dict[str, Any],
    paging: Paging = Paging(),
) -> tuple[Sequence[ContainerRow], int]:
    """A page of the caller's containers (every project's with ``all_projects``)."""
    env.enforce(ctx, "container:get_all")
    scope = list_scope(env, ctx, all_projects, "container:get_all_all_projects")
    if "host" in filters:
        env.enforce(ctx, "container:get_one:host")
    query = PageQuery.of(repo.SORT_KEYS, env.settings.max_limit, paging)
    async with env.db.read() as session:
        rows = await repo.list_page(session, scope, query, filters=filters)
    return rows, query.limit


async def get(
    env: Env,
    ctx: RequestContext,
    ident: str,
    all_projects: bool = False,
    rule: str = "container:get_one",
) -> ContainerRow:
    """The container ``ident`` (UUID or name) if the caller may see it."""
    scope = lookup_scope(env, ctx, all_projects, "container:get_one_all_projects")
    async with env.db.read() as session:
        row = await repo.get(session, scope, ident)
    env.enforce(ctx, rule, row.project_id)
    guard_node(ctx, row, rule)
    return row


# What a project may not do to its own cluster nodes (node_profile set): a shell or
# files in a Docker-in-Docker node would be root on a near-privileged container, and
# a renamed or rebuilt node is lost to its cluster. Admins still may.
_NODE_GUARDED: frozenset[str] = frozenset(
    f"container:{a}"
    for a in ("execute", "attach", "get_archive", "put_archive", "commit", "rebuild",
              "update", "resize_container")
)  # fmt: skip


def guard_node(ctx: RequestContext, row: ContainerRow, rule: str) -> None:
    """Forbidden (403) when ``rule`` is one a project may not apply to its cluster nodes."""
    if row.node_profile and rule in _NODE_GUARDED and not ctx.is_admin:
        raise errors.Forbidden(
            f"Container {row.uuid} is a node of cluster {row.labels.get('berth.cluster', '?')}: "
            f"it is managed by its cluster ({rule.split(':', 1)[1]} is not allowed)."
        )


async def update(
    env: Env, ctx: RequestContext, ident: str, patch: dict[str, Any], action: str = "update"
) -> ContainerRow:
    """Rename, resize (cpu/memory, applied live by the agent) or toggle auto_heal.

    ``action`` names the policy rule and state-table row: ``update`` (PATCH) or
    ``resize_container`` (the 1.19 action, the same live resize).
    """
    scope = lookup_scope(env, ctx, False, "container:get_one_all_projects")
    async with env.db.transaction() as session:
        row = await repo.get(session, scope, ident, for_update=True)
        env.enforce(ctx, f"container:{action}", row.project_id)
        guard_node(ctx, row, f"container:{action}")
        if row.capsule_id is not None and ("cpu" in patch or "memory" in patch):
            raise errors.InvalidStateException(
                f"Container {row.uuid} belongs to capsule {row.capsule_id}: its resources "
                "are the capsule's."
            )
        if not action_allowed(action, row.status):
            raise errors.InvalidStateException(
                f"Cannot {action} container {row.uuid} in {row.status} state."
            )
        if "name" in patch and patch["name"] != row.name:
            await check_name(env, session, patch["name"], row.project_id, row.uuid)
            row.name = patch["name"]
        if "auto_heal" in patch:
            row.auto_heal = bool(patch["auto_heal"])
        resized: dict[str, Any] = {
            k: patch[k] for k in ("cpu", "memory") if k in patch and patch[k] is not None
        }
        if resized:
            await _resize(env, session, row, resized)
            await start_action(
                session, ctx, row, action, keep=env.settings.max_actions_per_container
            )
        row.updated_at = utcnow()
        emit(
            session,
            row,
            "container.update",
            ctx.request_id,
            **{k: str(v) for k, v in patch.items()},
        )
    await env.notifier.touch(row.host)
    return row


async def _resize(env: Env, session: Session, row: ContainerRow, resized: dict[str, Any]) -> None:
    if row.cpu_policy == "dedicated" and "cpu" in resized:
        raise errors.Invalid(
            "The cpu of a cpu_policy=dedicated container is pinned to whole cores and cannot "
            "change live; create a new container with the cpu you need."
        )
    cpu = float(resized.get("cpu", row.cpu))
    memory = int(resized.get("memory", row.memory or 0))
    await quotas.check_container(
        env, session, row.project_id, cpu - row.cpu, memory - (row.memory or 0), 0, count=0
    )
    was_claimed = row.claimed
    await release(session, row)
    row.cpu, row.memory = cpu, memory
    if was_claimed:
        await reclaim(session, row)
    row.spec_version += 1


async def delete(
    env: Env, ctx: RequestContext, ident: str, *, force: bool, stop: bool, all_projects: bool
) -> None:
    """Ask for the container to be removed; it disappears once its host confirms."""
    scope = lookup_scope(env, ctx, all_projects, "container:delete_all_projects")
    async with env.db.transaction() as session:
        row = await repo.get(session, scope, ident, for_update=True)
        env.enforce(ctx, "container:delete", row.project_id)
        if row.capsule_id is not None:
            raise errors.InvalidStateException(
                f"Container {row.uuid} belongs to capsule {row.capsule_id}: delete the capsule."
            )
        if stop:
            check = "delete_stop"
            if row.status == Status.RUNNING:
                env.enforce(ctx, "container:stop", row.project_id)
        elif force:
            env.enforce(ctx, "container:delete_force", row.project_id)
            check = "delete_force"
        else:
            check = "delete"
        if not action_allowed(check, row.status):
            hint = " Stop it first or use --stop." if row.status == Status.RUNNING else ""
            raise errors.InvalidStateException(
                f"Cannot delete container {row.uuid} in {row.status} state.{hint}"
            )
        await start_action(session, ctx, row, "delete")
        if row.host is None:
            await session.delete(row)
            await security_groups.drop_container_group(session, row.uuid)
            await volumes.delete_owned(session, row.uuid)
            await injected_files.forget(session, row.uuid)
            emit(session, row, "container.delete.end", ctx.request_id)
            return
        row.desired_state = "deleted"
        row.desired_since = utcnow()
        row.held = False
        row.status = Status.DELETING
        row.task_state = TaskState.DELETING
        emit(session, row, "container.delete", ctx.request_id)
    await env.notifier.touch(row.host)


async def list_actions(env: Env, ctx: RequestContext, ident: str) -> Sequence[ContainerActionRow]:
    """The container's recorded actions, newest first (the newest
    ``max_actions_per_container``: older ones are dropped as new ones are recorded)."""
    row = await get(env, ctx, ident, rule="container:actions")
    async with env.db.read() as session:
        return await repo.list_actions(session, row.uuid, env.settings.max_actions_per_container)


async def get_action(
    env: Env, ctx: RequestContext, ident: str, request_id: str
) -> tuple[ContainerActionRow, Sequence[ActionEventRow], bool]:
    """One action with its events, and whether the caller may see event tracebacks."""
    row = await get(env, ctx, ident, rule="container:actions")
    async with env.db.read() as session:
        action, events = await repo.get_action(session, row.uuid, request_id)
    return action, events, env.allowed(ctx, "container:action:events", row.project_id)
