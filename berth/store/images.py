"""Image and registry queries. Lookups go through a Scope: other projects' rows are invisible."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from berth import errors
from berth.store.base import utcnow
from berth.store.lookup import UUID_SHAPE, one_by_ident
from berth.store.paging import PageQuery, page, scoped_page
from berth.store.scope import Scope
from berth.store.tables import ContainerRow, ImageRow, RegistryRow

__all__ = [
    "IMAGE_SORT_KEYS",
    "REGISTRY_SORT_KEYS",
    "fail_unfinished",
    "find_store_image",
    "fresh_image",
    "get_image",
    "get_registry",
    "image_sources_on",
    "list_images",
    "list_registries",
    "public_image",
    "registries_by_uuid",
    "search_store",
    "store_image",
    "stored_bytes",
]

IMAGE_SORT_KEYS = frozenset({"id", "uuid", "repo", "tag", "size", "host", "created_at"})
REGISTRY_SORT_KEYS = frozenset(
    {"id", "uuid", "name", "domain", "username", "project_id", "user_id", "created_at"}
)
Row = TypeVar("Row", ImageRow, RegistryRow)


async def fail_unfinished(session: AsyncSession, started_before: dt.datetime, reason: str) -> int:
    """Mark ``error`` the pulls and commits (``pulling``/``saving``) started before
    ``started_before``: no call can still be waiting for them; how many."""
    result = await session.execute(
        update(ImageRow)
        .where(ImageRow.status.in_(("pulling", "saving")), ImageRow.created_at < started_before)
        .values(status="error", status_reason=reason, updated_at=utcnow()),
        execution_options={"synchronize_session": False},
    )
    return int(getattr(result, "rowcount", 0) or 0)


def _scoped(stmt: Select[Any], model: type[Row], scope: Scope) -> Select[Any]:
    if scope.all_projects:
        return stmt
    return stmt.where(model.project_id == scope.project_id)


async def get_image(
    session: AsyncSession, scope: Scope, ident: str, *, for_update: bool = False
) -> ImageRow:
    """The image with UUID ``ident`` (or its engine id) if visible; 404 otherwise."""
    stmt = _scoped(select(ImageRow), ImageRow, scope)
    if UUID_SHAPE.match(ident):
        stmt = stmt.where(ImageRow.uuid == ident.lower())
    else:
        stmt = stmt.where(ImageRow.image_id == ident)
    if for_update:
        stmt = stmt.with_for_update()
    row: ImageRow | None = (await session.execute(stmt.limit(1))).scalar_one_or_none()
    if row is None:
        raise errors.ResourceNotFound(f"Image {ident} could not be found.")
    return row


async def list_images(session: AsyncSession, scope: Scope, query: PageQuery) -> Sequence[ImageRow]:
    """One page of the images visible in ``scope`` (on hosts and in the store)."""
    return await scoped_page(session, ImageRow, scope, query)


async def fresh_image(session: AsyncSession, image_id: int) -> ImageRow | None:
    """The image row with primary key ``image_id`` as it is now (None once deleted)."""
    return await session.get(ImageRow, image_id)


async def public_image(session: AsyncSession, uuid: str) -> ImageRow | None:
    """The public image with UUID ``uuid`` (any project's: public images are everyone's)."""
    stmt = select(ImageRow).where(ImageRow.uuid == uuid, ImageRow.visibility == "public")
    row: ImageRow | None = (await session.execute(stmt)).scalar_one_or_none()
    return row


async def store_image(
    session: AsyncSession, project_id: str | None, repo: str, tag: str, *, public: bool
) -> ImageRow | None:
    """The store's row of ``repo:tag``: the public one, or ``project_id``'s private one."""
    stmt = select(ImageRow).where(
        ImageRow.host.is_(None),
        ImageRow.repo == repo,
        ImageRow.tag == tag,
        ImageRow.visibility == ("public" if public else "private"),
    )
    if not public:
        stmt = stmt.where(ImageRow.project_id == project_id)
    row: ImageRow | None = (await session.execute(stmt)).scalars().first()
    return row


async def image_sources_on(
    session: AsyncSession, hostname: str, store_driver: str
) -> dict[str, tuple[str, str | None, str | None, str | None]]:
    """The containers on ``hostname`` whose image comes from the store (or Glance) or a
    registry: uuid -> (image driver, registry UUID, observed state, Glance image_ref)."""
    stmt = select(
        ContainerRow.uuid,
        ContainerRow.image_driver,
        ContainerRow.registry_id,
        ContainerRow.observed_state,
        ContainerRow.image_ref,
    ).where(
        ContainerRow.host == hostname,
        or_(ContainerRow.image_driver == store_driver, ContainerRow.registry_id.is_not(None)),
    )
    return {
        uuid: (driver, reg, observed, ref)
        for uuid, driver, reg, observed, ref in (await session.execute(stmt))
    }


async def find_store_image(
    session: AsyncSession, project_id: str, repo: str, tag: str
) -> ImageRow | None:
    """The active store image ``repo:tag`` a project may use: its own first, then public."""
    stmt = select(ImageRow).where(
        ImageRow.host.is_(None),
        ImageRow.status == "active",
        ImageRow.repo == repo,
        ImageRow.tag == tag,
        or_(ImageRow.project_id == project_id, ImageRow.visibility == "public"),
    )
    rows = (await session.execute(stmt)).scalars().all()
    own = [r for r in rows if r.project_id == project_id and r.visibility == "private"]
    ranked = own or list(rows)
    return ranked[0] if ranked else None


async def search_store(
    session: AsyncSession, project_id: str | None, term: str, exact: bool
) -> Sequence[ImageRow]:
    """Store images a project may use whose repository matches ``term``."""
    stmt = select(ImageRow).where(ImageRow.host.is_(None), ImageRow.status == "active")
    if project_id is not None:
        stmt = stmt.where(or_(ImageRow.project_id == project_id, ImageRow.visibility == "public"))
    if exact:
        stmt = stmt.where(ImageRow.repo == term)
    else:
        stmt = stmt.where(ImageRow.repo.contains(term, autoescape=True))
    return (await session.execute(stmt.order_by(ImageRow.repo, ImageRow.tag))).scalars().all()


async def get_registry(
    session: AsyncSession, scope: Scope, ident: str, *, for_update: bool = False
) -> RegistryRow:
    """The registry named by UUID or name, if visible; 404 otherwise, 409 if ambiguous."""
    return await one_by_ident(
        session,
        _scoped(select(RegistryRow), RegistryRow, scope),
        RegistryRow,
        ident,
        missing=errors.RegistryNotFound,
        noun="registry",
        plural="registries",
        for_update=for_update,
    )


async def list_registries(
    session: AsyncSession,
    scope: Scope,
    query: PageQuery,
    *,
    filters: dict[str, Any],
) -> Sequence[RegistryRow]:
    """One page of the registries visible in ``scope``, filtered by exact column values.

    Not ``scoped_page``: the marker is looked up among every visible registry,
    filtered or not, as the listing always did (a marker outside the filter
    still says where the page starts).
    """
    visible = _scoped(select(RegistryRow), RegistryRow, scope)
    stmt = visible
    for key, value in filters.items():
        stmt = stmt.where(getattr(RegistryRow, key) == value)
    return await page(
        session,
        stmt,
        RegistryRow,
        visible=visible,
        limit=query.limit,
        marker=query.marker,
        sort_key=query.sort_key,
        sort_dir=query.sort_dir,
    )


async def registries_by_uuid(session: AsyncSession, uuids: set[str]) -> dict[str, RegistryRow]:
    """The registries with these UUIDs (for the agents' desired state; no scope: internal)."""
    if not uuids:
        return {}
    stmt = select(RegistryRow).where(RegistryRow.uuid.in_(uuids))
    return {r.uuid: r for r in (await session.execute(stmt)).scalars().all()}


async def stored_bytes(session: AsyncSession, project_id: str) -> int:
    """The sizes of the project's images added up (those whose size is known)."""
    stmt = select(func.coalesce(func.sum(ImageRow.size), 0)).where(
        ImageRow.project_id == project_id
    )
    return int((await session.execute(stmt)).scalar_one() or 0)
