"""Container queries. Every lookup goes through a Scope: other projects' rows are invisible."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from berth import errors
from berth.store import shapes
from berth.store.lookup import one_by_ident
from berth.store.paging import PageQuery, page
from berth.store.scope import Scope
from berth.store.tables import ActionEventRow, ContainerActionRow, ContainerRow

__all__ = [
    "SORT_KEYS",
    "get",
    "get_action",
    "host_of",
    "image_ref_of",
    "list_actions",
    "list_page",
    "members",
    "members_of",
    "name_taken",
    "project_usage",
    "published_ports",
]


SORT_KEYS = frozenset(
    {
        "id",
        "uuid",
        "name",
        "image",
        "project_id",
        "user_id",
        "memory",
        "cpu",
        "host",
        "status",
        "task_state",
        "created_at",
        "updated_at",
    }
)


def _visible(scope: Scope) -> Select[ContainerRow]:
    """Every container ``scope`` sees (its project bound as shapes.SCOPE_PROJECT)."""
    return shapes.cached(
        ("containers", scope.all_projects),
        lambda: shapes.scoped(select(ContainerRow), ContainerRow, scope.all_projects),
    )


async def get(
    session: AsyncSession, scope: Scope, ident: str, *, for_update: bool = False
) -> ContainerRow:
    """The container named by UUID or name; ContainerNotFound if invisible or absent.

    A UUID-shaped identifier is looked up by UUID only; anything else by name
    (several visible containers with that name is a Conflict, as in Zun).
    """
    return await one_by_ident(
        session,
        _visible(scope),
        ContainerRow,
        ident,
        missing=errors.ContainerNotFound,
        noun="container",
        for_update=for_update,
        params=shapes.scope_params(scope),
        shape=("containers", scope.all_projects),
    )


async def list_page(
    session: AsyncSession, scope: Scope, query: PageQuery, *, filters: dict[str, Any]
) -> Sequence[ContainerRow]:
    """One page of containers, ordered by ``sort_key`` then id, after ``marker``.

    Capsule members are not listed (Zun lists them under their capsule only),
    but the marker is looked up among every visible container, members included.
    ``filters`` are column names (the API's list of filters) and values.
    """
    visible = _visible(scope)
    keys = tuple(sorted(filters))

    def listed() -> Select[ContainerRow]:
        stmt = visible.where(ContainerRow.capsule_id.is_(None))
        for key in keys:
            stmt = stmt.where(getattr(ContainerRow, key) == bindparam(f"filter_{key}"))
        return stmt

    shape = ("containers.list", scope.all_projects, keys)
    params = shapes.scope_params(scope) | {f"filter_{k}": v for k, v in filters.items()}
    return await page(
        session,
        shapes.cached(shape, listed),
        ContainerRow,
        visible=visible,
        limit=query.limit,
        marker=query.marker,
        sort_key=query.sort_key,
        sort_dir=query.sort_dir,
        params=params,
        shape=shape,
    )


async def host_of(session: AsyncSession, uuid: str) -> str | None:
    """The host container ``uuid`` is placed on (None if absent or not placed)."""
    stmt = select(ContainerRow.host).where(ContainerRow.uuid == uuid)
    host: str | None = (await session.execute(stmt)).scalar_one_or_none()
    return host


async def image_ref_of(session: AsyncSession, uuid: str) -> tuple[str | None, str | None]:
    """(host, Glance image_ref) of container ``uuid`` (None, None if absent)."""
    stmt = select(ContainerRow.host, ContainerRow.image_ref).where(ContainerRow.uuid == uuid)
    row = (await session.execute(stmt)).one_or_none()
    return (row[0], row[1]) if row is not None else (None, None)


_MEMBER_ORDER = {"sandbox": 0, "init": 1, "app": 2}


def _ordered(rows: Sequence[ContainerRow]) -> list[ContainerRow]:
    return sorted(rows, key=lambda r: (_MEMBER_ORDER.get(r.container_type, 3), r.id or 0))


async def members(session: AsyncSession, capsule_uuid: str) -> list[ContainerRow]:
    """A capsule's container rows: sandbox first, then init and app ones in order."""
    stmt = select(ContainerRow).where(ContainerRow.capsule_id == capsule_uuid)
    return _ordered((await session.execute(stmt)).scalars().all())


async def members_of(
    session: AsyncSession, capsule_uuids: Sequence[str]
) -> dict[str, list[ContainerRow]]:
    """Every member of these capsules in one query, by capsule UUID, each list ordered."""
    stmt = select(ContainerRow).where(ContainerRow.capsule_id.in_(capsule_uuids))
    found: dict[str, list[ContainerRow]] = {}
    for row in (await session.execute(stmt)).scalars().all():
        found.setdefault(row.capsule_id or "", []).append(row)
    return {uuid: _ordered(rows) for uuid, rows in found.items()}


async def name_taken(
    session: AsyncSession, name: str, project_id: str | None, exclude_uuid: str | None = None
) -> bool:
    """Whether a container called ``name`` exists (in ``project_id``, or anywhere if None)."""
    stmt = select(func.count()).select_from(ContainerRow).where(ContainerRow.name == name)
    if project_id is not None:
        stmt = stmt.where(ContainerRow.project_id == project_id)
    if exclude_uuid:
        stmt = stmt.where(ContainerRow.uuid != exclude_uuid)
    return bool((await session.execute(stmt)).scalar_one())


async def project_usage(session: AsyncSession, project_id: str) -> dict[str, float]:
    """What a project's containers use: count, cpu, memory (MiB) and disk (GiB).

    A capsule's sandbox carries the capsule's whole claim (cpu, memory) but is
    not counted as a container; its members are counted but claim nothing.
    """
    member = ContainerRow.container_type.in_(("init", "app"))
    claims = ContainerRow.container_type.not_in(("init", "app"))
    stmt = select(
        func.count(ContainerRow.id).filter(ContainerRow.container_type != "sandbox"),
        func.coalesce(func.sum(ContainerRow.cpu).filter(claims), 0),
        func.coalesce(func.sum(ContainerRow.memory).filter(claims), 0),
        func.coalesce(func.sum(ContainerRow.disk).filter(~member), 0),
    ).where(ContainerRow.project_id == project_id)
    count, cpu, memory, disk = (await session.execute(stmt)).one()
    return {
        "containers": float(count or 0),
        "cpu": float(cpu or 0),
        "memory": float(memory or 0),
        "disk": float(disk or 0),
    }


async def published_ports(session: AsyncSession, project_id: str) -> int:
    """How many ports the project's containers publish on their hosts (``exposed_ports``),
    those being deleted included: their host ports are taken until they are gone."""
    stmt = select(ContainerRow.exposed_ports).where(
        ContainerRow.project_id == project_id, ContainerRow.exposed_ports.is_not(None)
    )
    return sum(len(ports or {}) for ports in (await session.execute(stmt)).scalars())


async def list_actions(
    session: AsyncSession, container_uuid: str, limit: int
) -> Sequence[ContainerActionRow]:
    """The newest ``limit`` actions recorded for a container, newest first."""
    stmt = (
        select(ContainerActionRow)
        .where(ContainerActionRow.container_uuid == container_uuid)
        .order_by(ContainerActionRow.id.desc())
        .limit(limit)
    )
    return (await session.execute(stmt)).scalars().all()


async def get_action(
    session: AsyncSession, container_uuid: str, request_id: str
) -> tuple[ContainerActionRow, Sequence[ActionEventRow]]:
    """One action and its events; ResourceNotFound if absent."""
    stmt = select(ContainerActionRow).where(
        ContainerActionRow.container_uuid == container_uuid,
        ContainerActionRow.request_id == request_id,
    )
    action = (await session.execute(stmt.limit(1))).scalar_one_or_none()
    if action is None:
        raise errors.ResourceNotFound(
            f"Action {request_id} for container {container_uuid} could not be found."
        )
    events = (
        (
            await session.execute(
                select(ActionEventRow)
                .where(ActionEventRow.action_id == action.id)
                .order_by(ActionEventRow.id)
            )
        )
        .scalars()
        .all()
    )
    return action, events
