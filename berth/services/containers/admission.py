"""One admission path for everything that becomes runtime containers.

A container and a capsule (its sandbox plus init and app members) are admitted
by the same steps, in the same order:

    policy -> build -> image addresses -> networks -> (transaction:) quota lock
    -> names -> networks still there -> image sources -> quota -> volumes
    -> placement -> rows -> create action -> volume binding -> event

What differs between the two is data on the ``Admission`` the caller builds:
which row the scheduler places, which rows follow it, the quota cost, which
names and image sources are checked, and the event's name. The one step whose
*how* differs, the volumes (a container's ``--mount`` list, a capsule's
template volumes shared by its members), is the ``volumes`` callable.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from berth import errors
from berth.domain.containers import Status
from berth.domain.context import RequestContext
from berth.events.actions import emit, finish_open_actions, start_action
from berth.services import quotas, volumes
from berth.services.env import Env
from berth.services.hosts.placement import check_hints, place
from berth.services.images import address_check
from berth.services.images import refs as image_refs
from berth.services.networks import networks
from berth.store import containers as repo
from berth.store.db import Session
from berth.store.tables import CapsuleRow, ContainerRow

__all__ = ["Admission", "Cost", "admit", "check_name"]


@dataclass(frozen=True, slots=True)
class Cost:
    """What the admission counts against the project's quota."""

    cpu: float
    memory: int
    disk: int = 0
    count: int = 1


async def _no_volumes(session: Session) -> None:
    return None


@dataclass
class Admission:
    """What is admitted, and which of the pipeline's checks apply to it.

    ``placed`` is the row the scheduler places and the create action and event
    are recorded on: the container itself, or a capsule's sandbox (whose UUID is
    the capsule's). ``members`` follow it onto its host later (a capsule's init
    and app containers); they are stored with it, and fail with it.
    """

    placed: ContainerRow
    cost: Cost
    event: str
    members: list[ContainerRow] = field(default_factory=list)
    # The capsule row the containers belong to, stored first; it carries a failure's reason.
    owner: CapsuleRow | None = None
    # Images whose registry address is checked (before any transaction: it may wait for DNS).
    images: list[str] = field(default_factory=list)
    # Names checked against ``unique_container_name_scope``.
    names: list[str] = field(default_factory=list)
    # Rows whose image source (registry, image store) is checked and resolved.
    sourced: list[ContainerRow] = field(default_factory=list)
    # The networks and security groups asked for (none: the project's defaults).
    nets: list[dict[str, Any]] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    action: str = "create"
    # Resolves (or creates) the volumes; may pin ``placed`` to the host they live on.
    volumes: Callable[[Session], Awaitable[None]] = _no_volumes


async def check_name(
    env: Env, session: Session, name: str, project_id: str, exclude: str | None = None
) -> None:
    """Conflict (409) when ``name`` is taken within ``unique_container_name_scope``."""
    scope = env.settings.unique_container_name_scope
    if not scope:
        return
    if await repo.name_taken(session, name, project_id if scope == "project" else None, exclude):
        raise errors.Conflict(f"A container with name {name} already exists in {scope}.")


async def admit(
    env: Env,
    ctx: RequestContext,
    *,
    rules: Sequence[str],
    noun: str,
    build: Callable[[str], Admission],
) -> Admission:
    """Admit what ``build`` describes: stored, placed and claimed; the agent does the rest.

    ``rules`` are enforced first, before ``build`` looks at the request (a
    forbidden caller learns nothing about its request's mistakes); ``build``
    gets the caller's project. ``noun`` names what is created, in messages.
    """
    for rule in rules:
        env.enforce(ctx, rule)
    if not ctx.project_id:
        raise errors.Forbidden(f"A project-scoped token is needed to create {noun}.")
    project_id = ctx.project_id
    adm = build(project_id)
    _check_sizes(adm, env.settings.max_container_spec_bytes)
    for image in adm.images:
        await address_check.check_image(env, ctx, image)
    for row in adm.sourced:
        await image_refs.prepare(env, ctx, row)
    defaults = await networks.ensure_defaults(env, project_id, ctx.user_id)
    # What only needs reading is read before the write transaction: on SQLite
    # every create holds the one write lock, and each statement in it makes the
    # next create wait (20 creates at once queue on it).
    async with env.db.read() as session:
        await networks.resolve(session, adm.placed, adm.nets, adm.groups, defaults)
        await check_hints(session, adm.placed)
        limits = await quotas.limits_of(env, session, project_id)
    async with env.db.transaction() as session:
        # First, before any row lock (a volume's included): the quota count below
        # is exact only while no other create of this project runs (another API
        # process included), and two creates never wait on each other crosswise.
        await quotas.lock_usage(session, project_id, "containers")
        await _check(env, session, adm, project_id, limits)
        await adm.volumes(session)
        because = await _place(env, session, adm)
        _store(session, adm)
        await start_action(session, ctx, adm.placed, adm.action)
        if adm.placed.host is not None:
            await volumes.bind_host(session, adm.placed.mounts, adm.placed.host)
        emit(
            session, adm.placed, adm.event, ctx.request_id, host=adm.placed.host,
            **({"placement": because} if because else {}),
        )  # fmt: skip
    if adm.placed.status == Status.ERROR:
        async with env.db.transaction() as session:
            await finish_open_actions(session, adm.placed.uuid, error=adm.placed.status_reason)
    await env.notifier.touch(adm.placed.host)
    return adm


# What a tenant fills freely; every other column is a name, a number or a flag of
# bounded length. Mounts are apart: at this point they still carry the content of
# injected files (inject_file_max_bytes, inject_max_files), which is stored on its
# own and in no view; what replaces them is at most 64 volume references.
_SPEC_COLUMNS = (
    "command", "entrypoint", "environment", "labels", "hints", "healthcheck",
    "exposed_ports", "nets", "restart_policy", "security_groups",
)  # fmt: skip
_CAPSULE_COLUMNS = ("labels", "annotations", "volumes")


def _spec_bytes(row: object, columns: Sequence[str]) -> int:
    """The bytes ``columns`` of ``row`` take as compact JSON (UTF-8), as they are stored."""
    values = {c: getattr(row, c) for c in columns}
    return len(json.dumps(values, separators=(",", ":"), ensure_ascii=False).encode())


def _check_sizes(adm: Admission, limit: int) -> None:
    """Invalid (400) when a container's, or the capsule's, stored settings pass ``limit``."""
    sized: list[tuple[str, object, Sequence[str]]] = [
        (f"container {row.name}", row, _SPEC_COLUMNS) for row in (adm.placed, *adm.members)
    ]
    if adm.owner is not None:
        sized.append((f"capsule {adm.owner.name}", adm.owner, _CAPSULE_COLUMNS))
    for what, row, columns in sized:
        size = _spec_bytes(row, columns)
        if size > limit:
            raise errors.Invalid(
                f"The settings of {what} ({', '.join(columns)}) take {size} bytes as JSON; "
                f"at most {limit} are stored (max_container_spec_bytes): keep large data in "
                "the image, a volume or an injected file."
            )


async def _check(env: Env, session: Session, adm: Admission, project_id: str, limits: Any) -> None:
    """The checks inside the transaction: names, networks, image sources, quota, ports."""
    for name in adm.names:
        await check_name(env, session, name, project_id)
    await networks.still_there(session, adm.placed, adm.nets, adm.groups)
    await networks.add_exposed_group(session, adm.placed)
    for row in adm.sourced:
        await image_refs.check(env, session, row)
    cost = adm.cost
    await quotas.check_container(
        env, session, project_id, cost.cpu, cost.memory, cost.disk, count=cost.count,
        limits=limits, locked=True,  # admit took the lock first thing in the transaction
    )  # fmt: skip
    await _check_published(env, session, adm, project_id)


async def _check_published(env: Env, session: Session, adm: Admission, project_id: str) -> None:
    """OverQuota (403) when the project would publish more host ports than its bound
    (counted under the quota lock ``admit`` holds: exact under concurrent creates)."""
    limit = env.settings.max_published_ports_per_project
    asked = sum(len(row.exposed_ports or {}) for row in (adm.placed, *adm.members))
    if not limit or not asked:
        return
    used = await repo.published_ports(session, project_id)
    if used + asked > limit:
        raise errors.OverQuota(
            f"Project {project_id} publishes {used} ports on its hosts and this asks for "
            f"{asked} more; at most {limit} are allowed (max_published_ports_per_project): "
            "each takes a host port and a proxy process on its host. Expose fewer ports, "
            "delete a container that publishes some, or ask an admin to raise the limit."
        )


async def _place(env: Env, session: Session, adm: Admission) -> str:
    """Place and claim; why the host won ("" when none fits: the rows carry why not)."""
    # Placed before it is added: host, claim and cpuset go into its INSERT.
    decision = await place(
        session, env.pipeline, adm.placed, env.settings.service_down_time, env.host_cache
    )
    if decision.host is None:
        _fail(adm, decision.explain())
    return decision.because


def _fail(adm: Admission, reason: str) -> None:
    """No host: every row is stored in error, held (nothing retries it)."""
    if adm.owner is not None:
        adm.owner.status_reason = reason
    for row in (adm.placed, *adm.members):
        row.status, row.status_reason, row.task_state = Status.ERROR, reason, None
        row.held = True


def _store(session: Session, adm: Admission) -> None:
    if adm.owner is not None:
        session.add(adm.owner)
    session.add(adm.placed)
    session.add_all(adm.members)
