"""Data volumes: a project resource that containers and capsules mount.

A volume is kept by a volume driver on one host (``local``: a Docker named
volume). It gets its host when a container first mounts it, and every later
mount is placed on that host. Volumes created implicitly (``--mount size=N``,
a capsule volume with ``autoRemove``) belong to their container or capsule
and are removed with it; volumes created through ``POST /v1/volumes`` (or
kept capsule volumes) stay until deleted, and cannot be deleted while mounted.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from berth import errors
from berth.domain.context import RequestContext
from berth.domain.hostsync import VolumeMount
from berth.domain.injected_files import in_kernel_fs
from berth.domain.paging import Paging
from berth.services import quotas
from berth.services.containers import files as injected_files
from berth.services.env import Env
from berth.services.scopes import list_scope, lookup_scope
from berth.store import hosts as hosts_repo
from berth.store import volumes as volume_repo
from berth.store.base import new_uuid, utcnow
from berth.store.db import Session
from berth.store.paging import PageQuery
from berth.store.scope import Scope
from berth.store.tables import ContainerRow, VolumeRow

__all__ = [
    "MAX_SIZE",
    "VOLUME_SORT_KEYS",
    "MountRequest",
    "bind_host",
    "create",
    "delete",
    "delete_owned",
    "desired_mounts",
    "get",
    "in_use",
    "list_volumes",
    "lookup",
    "mountable",
    "new_volume",
    "parse_mounts",
    "resolve_mounts",
]

MAX_SIZE = 1024  # GiB
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{1,254}$")


@dataclass
class MountRequest:
    """One ``--mount`` as the API received it."""

    destination: str
    source: str | None = None
    size: int | None = None
    type: str = "volume"
    read_only: bool = False


_MOUNT_KEYS = {"type", "source", "destination", "size", "read_only"}


def parse_mounts(raw: list[Any]) -> list[MountRequest]:
    """Zun's ``mounts`` (``[{source|size, destination, type}]``) checked field by field."""
    result: list[MountRequest] = []
    for item in raw:
        if not isinstance(item, dict):
            raise errors.Invalid("Invalid input for field 'mounts': each mount must be an object.")
        unknown = sorted(set(item) - _MOUNT_KEYS)
        if unknown:
            raise errors.Invalid(
                f"Invalid input for field 'mounts': unknown key(s) {', '.join(unknown)}."
            )
        dest = item.get("destination")
        if not isinstance(dest, str) or not dest:
            raise errors.Invalid("Invalid input for field 'mounts': a destination is required.")
        source = item.get("source")
        if source is not None and not isinstance(source, str):
            raise errors.Invalid("Invalid input for field 'mounts': source must be a string.")
        size = item.get("size")
        result.append(
            MountRequest(
                destination=dest,
                source=source or None,
                size=None if size in (None, "") else check_size(size, "mounts.size"),
                type=str(item.get("type") or "volume"),
                read_only=item.get("read_only") in (True, "true", "True"),
            )
        )
    return result


def check_size(value: Any, field: str = "size") -> int:
    """A volume size in GiB: an integer in [1, MAX_SIZE]."""
    text = str(value).strip()
    if not re.fullmatch(r"\d+", text) or not 1 <= int(text) <= MAX_SIZE:
        raise errors.Invalid(
            f"Invalid input for field '{field}': {value!r} is not a size in GiB "
            f"between 1 and {MAX_SIZE}."
        )
    return int(text)


def check_name(value: Any) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise errors.Invalid(
            "Invalid input for field 'name': must be 2-255 characters of letters, digits, "
            "'_', '.' or '-', starting with a letter or digit."
        )
    return value


def new_volume(
    project_id: str, user_id: str, name: str, size: int, owner: str | None = None
) -> VolumeRow:
    return VolumeRow(
        uuid=new_uuid(),
        name=name,
        project_id=project_id,
        user_id=user_id,
        size=size,
        driver="local",
        owner_uuid=owner,
        created_at=utcnow(),
    )


async def create(env: Env, ctx: RequestContext, name: Any, size: Any) -> VolumeRow:
    """A new (empty) volume of the caller's project; it lands on a host at first mount."""
    env.enforce(ctx, "volume:create")
    if not ctx.project_id:
        raise errors.Forbidden("A project-scoped token is needed to create volumes.")
    name = check_name(name)
    row = new_volume(ctx.project_id, ctx.user_id, name, check_size(size))
    async with env.db.transaction() as session:
        if await volume_repo.exists(session, Scope(ctx.project_id), name):
            raise errors.Conflict(f"A volume with name {name} already exists in this project.")
        await quotas.cap_records(
            env, session, ctx.project_id, VolumeRow, "max_volumes_per_project", "volumes"
        )
        session.add(row)
    return row


async def lookup(
    session: Session, scope: Scope, ident: str, *, for_update: bool = False
) -> VolumeRow:
    """The volume ``ident`` (UUID or name) visible in ``scope``; VolumeNotFound otherwise."""
    return await volume_repo.get(session, scope, ident, for_update=for_update)


VOLUME_SORT_KEYS = volume_repo.SORT_KEYS


async def list_volumes(
    env: Env,
    ctx: RequestContext,
    all_projects: bool,
    *,
    paging: Paging = Paging(),
) -> tuple[Sequence[VolumeRow], int]:
    """A page of the caller's project's volumes (every project's with ``all_projects``)."""
    env.enforce(ctx, "volume:get_all")
    scope = list_scope(env, ctx, all_projects, "volume:get_all_all_projects")
    query = PageQuery.of(VOLUME_SORT_KEYS, env.settings.max_limit, paging)
    async with env.db.read() as session:
        rows = await volume_repo.list_page(session, scope, query)
    return rows, query.limit


async def get(env: Env, ctx: RequestContext, ident: str) -> VolumeRow:
    async with env.db.read() as session:
        row = await lookup(session, lookup_scope(env, ctx), ident)
    env.enforce(ctx, "volume:get", row.project_id)
    return row


async def in_use(session: Session, volume: VolumeRow) -> list[str]:
    """UUIDs of the containers (capsule members included) that mount ``volume``."""
    return await volume_repo.mounted_by(session, volume)


async def delete(env: Env, ctx: RequestContext, ident: str) -> None:
    """Remove the volume and its data; Conflict while a container mounts it.

    The row is locked while its users are counted, and marked ``deleting`` while its
    host removes the data: a create that mounts it either went first (and is counted)
    or is refused, never given a volume whose row and data then go.
    """
    async with env.db.transaction() as session:
        row = await lookup(session, lookup_scope(env, ctx), ident, for_update=True)
        env.enforce(ctx, "volume:delete", row.project_id)
        users = await in_use(session, row)
        if users:
            raise errors.Conflict(
                f"Volume {row.uuid} is in use by container(s) {', '.join(users)}; "
                "delete them first."
            )
        row.deleting = True
        host, uuid = row.host, row.uuid
    if host is not None:  # its data lives there: the host's agent removes it first
        try:
            async with env.db.read() as session:
                found = await hosts_repo.by_hostname(session, host)
            url = found.agent_url if found is not None else None
            await env.agents.call(host, url, "DELETE", f"/v1/volumes/{uuid}")
        except BaseException:
            async with env.db.transaction() as session:  # as it was: mountable, deletable
                await volume_repo.set_deleting(session, uuid, False)
            raise
    async with env.db.transaction() as session:
        await volume_repo.delete_by_uuid(session, uuid)


async def delete_owned(session: Session, owner_uuid: str) -> None:
    """Forget the volumes that belonged to ``owner_uuid`` (its host removed their data)."""
    await volume_repo.delete_owned(session, owner_uuid)


async def resolve_mounts(
    env: Env,
    ctx: RequestContext,
    session: Session,
    mounts: list[MountRequest],
    *,
    owner: str,
    owner_name: str,
) -> tuple[list[dict[str, Any]], str | None]:
    """Check the mounts, create the ``size=N`` volumes, keep injected files; (stored, host).

    The required host is where the mounted existing volumes live (they must all
    live on one); None when no mounted volume has a host yet.
    """
    injected_files.check_count(env, sum(m.type == "bind" for m in mounts))
    stored: list[dict[str, Any]] = []
    hosts_needed: set[str] = set()
    seen: set[str] = set()
    for n, m in enumerate(mounts):
        _check_destination(m.destination, seen)
        if m.type == "bind":
            stored.append(_injected_file(env, session, owner, m))
            continue
        if m.type != "volume":
            raise errors.Invalid(
                f"Invalid mount type {m.type!r}: use 'volume', or 'bind' to inject a file."
            )
        if m.source and m.source.startswith("/"):
            stored.append(_host_path(env, ctx, m))
            continue
        if in_kernel_fs(m.destination):
            # The runtime refuses it at start anyway (with the host's paths in its message).
            raise errors.Invalid(
                f"Invalid mount destination {m.destination!r}: a volume cannot be mounted "
                "under /proc, /sys or /dev."
            )
        volume = await _mounted_volume(ctx, session, m, f"{owner_name}-{n}", owner)
        if volume.host:
            hosts_needed.add(volume.host)
        stored.append(
            {
                "type": "volume",
                "volume_uuid": volume.uuid,
                "source": volume.name,
                "destination": m.destination,
                "size": volume.size,
                "read_only": m.read_only,
                "owned": volume.owner_uuid is not None,
            }
        )
    if len(hosts_needed) > 1:
        raise errors.Invalid(
            "The mounted volumes live on different hosts "
            f"({', '.join(sorted(hosts_needed))}); a container can only mount volumes of one host."
        )
    return stored, next(iter(hosts_needed), None)


def _check_destination(dest: str, seen: set[str]) -> None:
    """An absolute path other than '/', without '..', used by no earlier mount."""
    if not dest.startswith("/") or dest.rstrip("/") == "" or ".." in dest.split("/"):
        raise errors.Invalid(
            f"Invalid mount destination {dest!r}: an absolute path in the container "
            "other than '/' is required."
        )
    if dest in seen:
        raise errors.Invalid(f"Two mounts have the same destination {dest}.")
    seen.add(dest)


def _injected_file(env: Env, session: Session, owner: str, m: MountRequest) -> dict[str, Any]:
    # Zun's file injection: the source is the file's content, never a host path.
    if m.size is not None or m.read_only:
        raise errors.Invalid(
            f"Mount at {m.destination}: a file injection (type bind) takes a source (the "
            "base64 content) and a destination only, not size or read_only."
        )
    return injected_files.accept(env, session, owner, m.destination, m.source)


def _host_path(env: Env, ctx: RequestContext, m: MountRequest) -> dict[str, Any]:
    if not env.allowed(ctx, "container:create:host_path"):
        raise errors.PolicyNotAuthorized("container:create:host_path")
    return {"type": "bind", "source": m.source, "destination": m.destination}


async def _mounted_volume(
    ctx: RequestContext, session: Session, m: MountRequest, name: str, owner: str
) -> VolumeRow:
    """The existing volume ``m.source`` of the caller's project, or a new one of ``m.size``."""
    if m.source and m.size is not None:
        raise errors.Invalid(
            f"Mount at {m.destination}: give either source (an existing volume) or size "
            "(a new volume), not both."
        )
    if m.source:
        return await mountable(session, Scope(ctx.project_id), m.source)
    if m.size is None:
        raise errors.Invalid(f"Mount at {m.destination}: a source volume or a size is required.")
    volume = new_volume(ctx.project_id or "", ctx.user_id, name, m.size, owner=owner)
    session.add(volume)
    return volume


async def mountable(session: Session, scope: Scope, ident: str) -> VolumeRow:
    """The existing volume ``ident`` a new container or capsule mounts: locked for share
    (a delete of it waits, then sees the mount), and not being deleted (409)."""
    found = await volume_repo.get(session, scope, ident, for_share=True)
    if found.deleting:
        raise errors.Conflict(
            f"Volume {found.name} is being deleted: mount another one, or create it again."
        )
    return found


async def bind_host(session: Session, mounts: list[dict[str, Any]], host: str | None) -> None:
    """Record ``host`` on the mounted volumes that had none (they are created there)."""
    uuids = [m["volume_uuid"] for m in mounts if m.get("volume_uuid")]
    if not uuids or host is None:
        return
    await volume_repo.bind_host(session, uuids, host, utcnow())


def desired_mounts(row: ContainerRow) -> list[VolumeMount]:
    """What the agent needs for ``row``'s volume mounts (host paths are not volumes)."""
    result: list[VolumeMount] = []
    for m in row.mounts or []:
        if m.get("type") == "file":
            continue  # an injected file (berth.services.containers.files), not a mount
        if m.get("type") == "bind":
            result.append(VolumeMount("", m["destination"], host_path=m["source"]))
            continue
        owner = m.get("owner") or (row.uuid if m.get("owned") else None)
        result.append(
            VolumeMount(
                volume_uuid=m["volume_uuid"],
                destination=m.get("destination"),
                read_only=bool(m.get("read_only")),
                size=int(m.get("size") or 1),
                owner=owner,
            )
        )
    return result
