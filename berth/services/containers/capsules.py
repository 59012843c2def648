"""Capsules (Zun's pods): create, list, show, delete, and stepping a capsule forward.

A capsule is a ``capsules`` row plus container rows with ``capsule_id`` set:

* the **sandbox** (``container_type`` ``sandbox``, the capsule's own UUID): a
  small always-running container whose network namespace every member joins,
  which holds the capsule's volumes and carries the capsule's whole resource
  claim on its host;
* the **init** containers, run one after the other to completion;
* the **app** containers, started once every init container exited 0.

Only the sandbox is placed by the scheduler; a member gets the sandbox's host
(and so becomes visible to that host's agent) only when its turn comes:
``advance`` does that from the agent's observations, so the sequence is
level-triggered and survives agent and API restarts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from berth import errors
from berth.domain.capsules import CapsuleSpec, MemberSpec, capsule_status, parse_template
from berth.domain.containers import Status, TaskState
from berth.domain.context import RequestContext
from berth.domain.hostsync import Observation
from berth.domain.paging import Paging
from berth.events.actions import emit
from berth.services import volumes
from berth.services.containers.admission import Admission, Cost, admit
from berth.services.env import Env
from berth.services.names import generate_name
from berth.services.scopes import list_scope, lookup_scope
from berth.store import capsules as repo
from berth.store import containers as containers_repo
from berth.store.base import new_uuid, utcnow
from berth.store.db import Session
from berth.store.paging import PageQuery
from berth.store.scope import Scope
from berth.store.tables import CapsuleRow, ContainerRow, VolumeRow

__all__ = [
    "advance",
    "create",
    "delete",
    "get",
    "list_capsules",
    "members",
    "note_exit",
    "status_of",
]


async def members(session: Session, capsule_uuid: str) -> list[ContainerRow]:
    """The capsule's container rows: sandbox first, then init and app ones in order."""
    return await containers_repo.members(session, capsule_uuid)


def status_of(capsule: CapsuleRow, rows: Sequence[ContainerRow]) -> tuple[str, str | None]:
    """(status, status_reason) derived from the members."""
    sandbox = next((r.status for r in rows if r.container_type == "sandbox"), None)
    inits = [r.status for r in rows if r.container_type == "init"]
    apps = [r.status for r in rows if r.container_type == "app"]
    status = capsule_status(capsule.deleting, sandbox, inits, apps)
    reason = capsule.status_reason
    if status == "Error" and reason is None:
        failed = next((r for r in rows if r.status == Status.ERROR), None)
        if failed is not None:
            reason = f"container {failed.name}: {failed.status_reason}"
    return status, reason if status == "Error" else None


def _check_ranges(env: Env, spec: CapsuleSpec) -> None:
    s = env.settings
    for member in (*spec.containers, *spec.init_containers):
        for value, name, low, high in (
            (member.cpu, "cpu", s.minimum_cpus, s.maximum_cpus),
            (member.memory, "memory", s.minimum_memory, s.maximum_memory),
        ):
            if value is not None and not low <= value <= high:
                raise errors.Invalid(
                    f"Invalid capsule template: a container's {name} {value} is out of "
                    f"range [{low:g}, {high:g}]."
                )


def _new_capsule(ctx: RequestContext, project_id: str, spec: CapsuleSpec) -> CapsuleRow:
    return CapsuleRow(
        uuid=new_uuid(),
        name=spec.name or generate_name().replace("-container", "-capsule"),
        project_id=project_id,
        user_id=ctx.user_id,
        labels=spec.labels,
        annotations=spec.annotations,
        restart_policy={"Name": spec.restart_policy, "MaximumRetryCount": "0"},
        volumes=[],
        deleting=False,
        created_at=utcnow(),
    )


def _member_row(
    env: Env,
    ctx: RequestContext,
    capsule: CapsuleRow,
    spec: MemberSpec,
    kind: str,
    index: int,
    restart: dict[str, str] | None,
) -> ContainerRow:
    """A member's row; its mounts come with the capsule's volumes (``_Volumes``)."""
    s = env.settings
    policy = (
        spec.image_pull_policy if env.allowed(ctx, "container:create:image_pull_policy") else None
    )
    return ContainerRow(
        uuid=new_uuid(),
        name=f"capsule-{capsule.name}-{spec.name or kind}-{index}",
        project_id=capsule.project_id,
        user_id=capsule.user_id,
        image=spec.image,
        image_driver=s.default_image_driver,
        image_pull_policy=policy,
        command=spec.command,
        cpu=spec.cpu if spec.cpu is not None else s.default_cpu,
        memory=spec.memory if spec.memory is not None else s.default_memory,
        disk=0,
        workdir=spec.workdir,
        labels={},
        environment=spec.environment,
        restart_policy=restart,
        interactive=spec.interactive,
        tty=spec.tty,
        exposed_ports=None,  # published by the sandbox, which owns the network namespace
        mounts=[],
        availability_zone=None,
        capsule_id=capsule.uuid,
        container_type=kind,
        status=Status.CREATING,
        task_state=TaskState.CREATING,
        desired_state="running",
        desired_since=utcnow(),
        created_at=utcnow(),
    )


def _claim(rows: Sequence[ContainerRow]) -> tuple[float, int]:
    """The capsule's claim: the app containers together, or the largest init one."""
    cpu = max(
        sum(r.cpu for r in rows if r.container_type == "app"),
        max((r.cpu for r in rows if r.container_type == "init"), default=0.0),
    )
    memory = max(
        sum(r.memory or 0 for r in rows if r.container_type == "app"),
        max((r.memory or 0 for r in rows if r.container_type == "init"), default=0),
    )
    return cpu, memory


def _sandbox(env: Env, capsule: CapsuleRow, spec: CapsuleSpec) -> ContainerRow:
    """The row that holds the capsule's network namespace, volumes and whole claim."""
    s = env.settings
    return ContainerRow(
        uuid=capsule.uuid,
        name=f"capsule-{capsule.name}-sandbox",
        project_id=capsule.project_id,
        user_id=capsule.user_id,
        image=s.sandbox_image,
        image_driver="docker",
        image_pull_policy="ifnotpresent",
        command=list(s.sandbox_command),
        cpu=capsule.cpu,
        memory=capsule.memory,
        disk=0,
        labels={"berth.capsule": capsule.uuid},
        environment={},
        hostname=capsule.name[:63],
        # Back with the engine after a host or dockerd restart, before its members need it.
        restart_policy={"Name": "always", "MaximumRetryCount": "0"},
        mounts=[],
        exposed_ports={p: {} for m in (*spec.containers, *spec.init_containers) for p in m.ports}
        or None,
        availability_zone=spec.availability_zone or s.default_schedule_zone,
        capsule_id=capsule.uuid,
        container_type="sandbox",
        status=Status.CREATING,
        task_state=TaskState.CREATING,
        desired_state="running",
        desired_since=utcnow(),
        created_at=utcnow(),
    )


@dataclass
class _Volumes:
    """The capsule's volume step: created or looked up, mounted by the sandbox and members."""

    ctx: RequestContext
    capsule: CapsuleRow
    spec: CapsuleSpec
    sandbox: ContainerRow
    members: list[tuple[ContainerRow, MemberSpec]]

    async def __call__(self, session: Session) -> None:
        mounts, hosts = await _volumes(self.ctx, session, self.capsule, self.spec)
        if len(hosts) > 1:
            raise errors.Invalid(
                "The capsule's volumes live on different hosts "
                f"({', '.join(sorted(hosts))}); a capsule runs on one host."
            )
        self.sandbox.mounts = mounts
        self.sandbox.requested_host = next(iter(hosts), None)
        for row, member in self.members:
            row.mounts = [
                {**mounts[n], "destination": m.path, "read_only": m.read_only, "owned": False}
                for m in member.mounts
                for n, v in enumerate(self.capsule.volumes)
                if v["name"] == m.volume
            ]


async def _volumes(
    ctx: RequestContext, session: Session, capsule: CapsuleRow, spec: CapsuleSpec
) -> tuple[list[dict[str, Any]], set[str]]:
    """The sandbox's mounts (one per capsule volume, created or looked up) and their hosts."""
    mounts: list[dict[str, Any]] = []
    hosts: set[str] = set()
    scope = Scope(ctx.project_id)
    for v in spec.volumes:
        if v.volume_id is not None:
            row: VolumeRow = await volumes.mountable(session, scope, v.volume_id)
            if row.host:
                hosts.add(row.host)
        else:
            row = volumes.new_volume(
                capsule.project_id,
                capsule.user_id,
                f"{capsule.name}-{v.name}",
                volumes.check_size(v.size, f"{v.name}.cinder.size"),
                owner=capsule.uuid if v.auto_remove else None,
            )
            session.add(row)
        capsule.volumes = [*capsule.volumes, {"name": v.name, "volume_uuid": row.uuid}]
        mounts.append(
            {
                "type": "volume",
                "volume_uuid": row.uuid,
                "source": row.name,
                "destination": None,
                "size": row.size,
                "read_only": False,
                "owned": row.owner_uuid is not None,
            }
        )
    return mounts, hosts


def _admission(env: Env, ctx: RequestContext, project_id: str, template: Any) -> Admission:
    """What a capsule's create admits: its sandbox, placed, and its members behind it."""
    spec = parse_template(template)
    _check_ranges(env, spec)
    capsule = _new_capsule(ctx, project_id, spec)
    init_restart = None
    restart = {"Name": spec.restart_policy, "MaximumRetryCount": "0"}
    members = [
        (_member_row(env, ctx, capsule, m, "init", n, init_restart), m)
        for n, m in enumerate(spec.init_containers)
    ] + [
        (_member_row(env, ctx, capsule, m, "app", n, restart), m)
        for n, m in enumerate(spec.containers)
    ]
    rows = [row for row, _ in members]
    capsule.cpu, capsule.memory = _claim(rows)
    sandbox = _sandbox(env, capsule, spec)
    return Admission(
        placed=sandbox,
        # The sandbox carries the claim; the members are what the count counts.
        cost=Cost(capsule.cpu, capsule.memory, 0, count=len(rows)),
        event="capsule.create",
        members=rows,
        owner=capsule,
        images=[m.image for m in (*spec.containers, *spec.init_containers)],
        # Zun checks a capsule's name in the containers' namespace (they share a
        # table); Berth keeps capsules apart and names members after their capsule.
        names=[],
        sourced=rows,
        volumes=_Volumes(ctx, capsule, spec, sandbox, members),
    )


async def create(env: Env, ctx: RequestContext, template: Any) -> CapsuleRow:
    """Store the capsule and its containers, place its sandbox; the agent does the rest."""
    adm = await admit(
        env,
        ctx,
        rules=["capsule:create"],
        noun="capsules",
        build=lambda project_id: _admission(env, ctx, project_id, template),
    )
    assert adm.owner is not None  # _admission always sets it
    return adm.owner


async def list_capsules(
    env: Env,
    ctx: RequestContext,
    all_projects: bool,
    *,
    paging: Paging = Paging(),
) -> tuple[list[tuple[CapsuleRow, list[ContainerRow]]], int]:
    """A page of capsules with their members, and the page size used (Zun's pagination)."""
    env.enforce(ctx, "capsule:get_all")
    scope = list_scope(env, ctx, all_projects, "capsule:get_all_all_projects")
    query = PageQuery.of(repo.SORT_KEYS, env.settings.max_limit, paging)
    async with env.db.read() as session:
        capsules = await repo.list_page(session, scope, query)
        # Every member of the page in one query, not one per capsule.
        rows = await containers_repo.members_of(session, [c.uuid for c in capsules])
    return [(c, rows.get(c.uuid, [])) for c in capsules], query.limit


async def get(
    env: Env, ctx: RequestContext, ident: str, all_projects: bool = False
) -> tuple[CapsuleRow, list[ContainerRow]]:
    scope = lookup_scope(env, ctx, all_projects, "capsule:get_one_all_projects")
    async with env.db.read() as session:
        capsule = await repo.get(session, scope, ident)
        env.enforce(ctx, "capsule:get", capsule.project_id)
        return capsule, await members(session, capsule.uuid)


async def delete(env: Env, ctx: RequestContext, ident: str, all_projects: bool) -> None:
    """Remove the members, then the sandbox (it holds the volumes), then the capsule."""
    scope = lookup_scope(env, ctx, all_projects, "capsule:delete_all_projects")
    async with env.db.transaction() as session:
        capsule = await repo.get(session, scope, ident)
        env.enforce(ctx, "capsule:delete", capsule.project_id)
        capsule.deleting = True
        capsule.updated_at = utcnow()
        rows = await members(session, capsule.uuid)
        for row in rows:
            if row.container_type != "sandbox":
                _delete_member(row)
        emit(session, rows[0] if rows else _ghost(capsule), "capsule.delete", ctx.request_id)
        await session.flush()
        host = await _settle_deletion(session, capsule)
    await env.notifier.touch(host)


def _ghost(capsule: CapsuleRow) -> ContainerRow:
    return ContainerRow(uuid=capsule.uuid, project_id=capsule.project_id, name=capsule.name)


def _delete_member(row: ContainerRow) -> None:
    row.desired_state = "deleted"
    row.desired_since = utcnow()
    row.held = False
    row.status, row.task_state = Status.DELETING, TaskState.DELETING


async def _settle_deletion(session: Session, capsule: CapsuleRow) -> str | None:
    """Drop what never reached a host; delete the sandbox once the members are gone.

    Returns the host to wake (None when nothing runs anywhere).
    """
    rows = await members(session, capsule.uuid)
    host = next((r.host for r in rows if r.host), None)
    for row in rows:
        if row.container_type != "sandbox" and row.host is None:
            await session.delete(row)
    live = [r for r in rows if r.container_type != "sandbox" and r.host is not None]
    sandbox = next((r for r in rows if r.container_type == "sandbox"), None)
    if sandbox is not None and not live:
        if sandbox.host is None:
            await session.delete(sandbox)
            sandbox = None
        elif sandbox.desired_state != "deleted":
            _delete_member(sandbox)
    if sandbox is None and not live:
        await volumes.delete_owned(session, capsule.uuid)
        await session.delete(capsule)
    return host


def note_exit(row: ContainerRow, obs: Observation) -> None:
    """An init container that exited non-zero is an error (the capsule stops there)."""
    if (
        row.container_type == "init"
        and row.desired_state != "deleted"
        and obs.state in ("stopped", "dead")
        and obs.exit_code not in (None, 0)
        and row.status != Status.ERROR
    ):
        row.status = Status.ERROR
        row.status_reason = f"init container exited with code {obs.exit_code}"
        row.task_state = None
        row.held = True


async def advance(session: Session, capsule_uuid: str) -> bool:
    """Take the capsule's next step; True when a host has something new to do."""
    capsule = await repo.by_uuid(session, capsule_uuid)
    if capsule is None:
        return False
    if capsule.deleting:
        await session.flush()
        before = len(await members(session, capsule.uuid))
        await _settle_deletion(session, capsule)
        return before > 0
    rows = await members(session, capsule.uuid)
    sandbox = next((r for r in rows if r.container_type == "sandbox"), None)
    if sandbox is None or sandbox.host is None or sandbox.observed_state != "running":
        return False
    for init in (r for r in rows if r.container_type == "init"):
        if init.status == Status.ERROR:
            if capsule.status_reason is None:
                capsule.status_reason = f"init container {init.name} failed: {init.status_reason}"
            return False
        if init.host is None:
            _assign(init, sandbox)
            return True
        if init.status != Status.STOPPED:
            return False  # still running: its exit decides
    woke = False
    for app in (r for r in rows if r.container_type == "app"):
        if app.host is None:
            _assign(app, sandbox)
            woke = True
    return woke


def _assign(row: ContainerRow, sandbox: ContainerRow) -> None:
    row.host = sandbox.host
    row.desired_since = utcnow()
    row.updated_at = utcnow()
