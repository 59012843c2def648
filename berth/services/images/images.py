"""Image use cases: pull onto a host, list, show, delete, search, and commit a container.

Pulls, deletes on a host and commits are synchronous calls to that host's
agent, bounded by ``image_pull_timeout``: the image row says ``pulling`` or
``saving`` meanwhile, then ``active``, or ``error`` with the reason, so its
status is always what the host last said.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

from berth import errors
from berth.domain.containers import action_allowed
from berth.domain.context import RequestContext
from berth.domain.paging import Paging
from berth.images.refs import split_reference, valid_repository
from berth.services.containers.containers import get as get_container
from berth.services.env import Env
from berth.services.images import address_check, glance
from berth.services.images import store as image_store
from berth.services.images.store import room_for_an_image
from berth.services.scopes import lookup_scope
from berth.services.slots import Slots
from berth.store import hosts as hosts_repo
from berth.store import images as repo
from berth.store.base import new_uuid, utcnow
from berth.store.events import prune_actions
from berth.store.paging import PageQuery
from berth.store.scope import Scope
from berth.store.tables import ActionEventRow, ContainerActionRow, ContainerRow, HostRow, ImageRow

__all__ = ["commit", "delete", "fail_interrupted", "get", "list_images", "pull"]

log = logging.getLogger(__name__)
_commits = Slots()  # commits running in this process


async def _host(env: Env, ident: str) -> HostRow:
    async with env.db.read() as session:
        host = await hosts_repo.by_uuid_or_hostname(session, ident)
    if host is None:
        raise errors.Invalid(f"Host {ident} could not be found: give a host name or UUID.")
    return host


async def _agent(env: Env, host: HostRow, path: str, body: dict[str, Any]) -> Any:
    timeout = env.settings.image_pull_timeout
    try:
        async with asyncio.timeout(timeout):
            return await env.agents.call(
                host.hostname, host.agent_url, "POST", path, json=body, timeout=timeout
            )
    except TimeoutError:
        raise errors.HostUnavailable(
            f"The agent on host {host.hostname} did not finish within {timeout:g} s; "
            "it may still complete: check again later."
        ) from None


async def fail_interrupted(env: Env) -> int:
    """Mark ``error`` the pulls and commits whose API process stopped before they ended
    (a worker job): they would stay ``pulling``/``saving``, and count, for ever."""
    started_before = utcnow() - dt.timedelta(seconds=env.settings.image_pull_timeout + 60)
    async with env.db.transaction() as session:
        return await repo.fail_unfinished(
            session,
            started_before,
            "Interrupted: the API process that ran this stopped before it finished. Delete "
            "the image and pull or commit it again.",
        )


async def _finish(env: Env, row: ImageRow, result: Any, error: str | None) -> ImageRow:
    async with env.db.transaction() as session:
        fresh = await repo.fresh_image(session, row.id)
        if fresh is None:
            return row
        if error is None and isinstance(result, dict):
            fresh.image_id = str(result.get("digest") or result.get("image_id") or "") or None
            fresh.size = int(result.get("size") or 0)
            fresh.status, fresh.status_reason = "active", None
        else:
            fresh.status, fresh.status_reason = "error", error
        fresh.updated_at = utcnow()
    return fresh


async def pull(
    env: Env, ctx: RequestContext, image: str, host_ident: str, tag: str | None
) -> ImageRow:
    """Pull ``image`` onto the host now; the row tells how it went (never raises for the pull)."""
    env.enforce(ctx, "image:pull")
    await address_check.check_image(env, ctx, image)
    host = await _host(env, host_ident)
    name, parsed = split_reference(image)
    row = ImageRow(
        uuid=new_uuid(),
        project_id=ctx.project_id or "",
        user_id=ctx.user_id,
        repo=name,
        tag=tag or parsed,
        host=host.hostname,
        status="pulling",
        created_at=utcnow(),
    )
    async with env.db.transaction() as session:
        session.add(row)
    ref = f"{row.repo}@{row.tag}" if row.tag.startswith("sha256:") else f"{row.repo}:{row.tag}"
    try:
        result = await _agent(env, host, "/v1/images/pull", {"image": ref})
    except errors.BerthError as exc:
        return await _finish(env, row, None, exc.message)
    return await _finish(env, row, result, None)


async def list_images(
    env: Env,
    ctx: RequestContext,
    *,
    paging: Paging = Paging(),
) -> tuple[Sequence[ImageRow], int]:
    """A page of the caller's project's images (on hosts and in the store)."""
    env.enforce(ctx, "image:get_all")
    query = PageQuery.of(repo.IMAGE_SORT_KEYS, env.settings.max_limit, paging)
    async with env.db.read() as session:
        rows = await repo.list_images(session, Scope(ctx.project_id), query)
    return rows, query.limit


async def get(env: Env, ctx: RequestContext, ident: str, rule: str = "image:get_one") -> ImageRow:
    """The image ``ident`` (UUID) if the caller may see it."""
    async with env.db.read() as session:
        row = await repo.get_image(session, lookup_scope(env, ctx), ident)
    env.enforce(ctx, rule, row.project_id)
    return row


async def delete(env: Env, ctx: RequestContext, ident: str) -> None:
    """Remove the image from its host (or from the store), then forget it."""
    row = await get(env, ctx, ident, "image:delete")
    if row.host is not None:
        host = await _host(env, row.host)
        if row.status == "active":
            await _agent(env, host, "/v1/images/remove", {"image": f"{row.repo}:{row.tag}"})
    elif row.status == "active":
        async with image_store.client(env) as store:
            await store.delete(f"{image_store.namespace(row)}/{row.repo}", row.tag)
    async with env.db.transaction() as session:
        fresh = await repo.fresh_image(session, row.id)
        if fresh is not None:
            await session.delete(fresh)


async def commit(
    env: Env, ctx: RequestContext, ident: str, repository: str, tag: str | None
) -> ImageRow:
    """Snapshot the container into the image store as a private image of the caller's project.

    The host pauses the container while committing, then pushes the image.
    The returned row is ``active``, or ``error`` with the reason.
    """
    container = await get_container(env, ctx, ident, rule="container:commit")
    if not action_allowed("commit", container.status):
        raise errors.InvalidStateException(
            f"Cannot commit container {container.uuid} in {container.status} state."
        )
    if container.host is None or not ctx.project_id:
        raise errors.InvalidStateException(f"Container {container.uuid} has no host.")
    name, parsed = split_reference(repository)
    tag = tag or parsed
    if not valid_repository(name) or "/" in tag or not 1 <= len(tag) <= 128:
        raise errors.Invalid(
            f"Invalid repository {repository!r}: lower-case letters, digits and . _ - "
            "separated by /, with an optional :tag"
        )
    await room_for_an_image(env, ctx.project_id)  # a quick look before the host's work
    await image_store.room_for_bytes(env, ctx.project_id)
    bounds = env.settings.max_commits_per_project, env.settings.max_commits
    # Counted before anything is made (Glance's image, the row, the host's work).
    with _commits.count(ctx.project_id, bounds, "container commits", "max_commits"):
        return await _commit(env, ctx, container, container.host, name, tag)


async def _commit(
    env: Env, ctx: RequestContext, container: ContainerRow, host_name: str, name: str, tag: str
) -> ImageRow:
    in_glance = glance.access(env) is not None
    address = "" if in_glance else image_store.address(env)
    host = await _host(env, host_name)
    # With the cloud's Glance the image is made there first, as the caller (Zun's
    # response names it by its Glance id), and the host streams its docker save into it.
    glance_id = await glance.create_for_commit(env, ctx, name, tag) if in_glance else None
    row = ImageRow(
        uuid=glance_id or new_uuid(),
        project_id=ctx.project_id,
        user_id=ctx.user_id,
        repo=name,
        tag=tag,
        host=None,
        status="saving",
        container_uuid=container.uuid,
        created_at=utcnow(),
    )
    async with env.db.transaction() as session:
        await room_for_an_image(env, row.project_id, session=session)
        session.add(row)
    body: dict[str, Any] = {
        "reference": f"{address}/{ctx.project_id}/{name}:{tag}",
        "auth": _auth_body(env),
    }
    if glance_id is not None:
        body = {"reference": f"{name}:{tag}", "glance": glance.upload_grant(env, ctx, glance_id)}
    started = utcnow()
    try:
        result = await _agent(env, host, f"/v1/containers/{container.uuid}/commit", body)
        row = await _finish(env, row, result, None)
    except errors.BerthError as exc:
        row = await _finish(env, row, None, exc.message)
        if glance_id is not None:  # a queued image with no data helps nobody
            await glance.discard(env, ctx, glance_id)
    await _record_action(env, ctx, container.uuid, container.project_id, started, row)
    return row


def _auth_body(env: Env) -> dict[str, str] | None:
    auth = image_store.auth(env)
    if auth is None:
        return None
    return {"registry": auth.registry, "username": auth.username, "password": auth.password}


async def _record_action(
    env: Env,
    ctx: RequestContext,
    container_uuid: str,
    project_id: str,
    started: Any,
    image: ImageRow,
) -> None:
    failed = image.status != "active"
    async with env.db.transaction() as session:
        await prune_actions(session, container_uuid, env.settings.max_actions_per_container - 1)
        act = ContainerActionRow(
            request_id=ctx.request_id,
            container_uuid=container_uuid,
            action="commit",
            project_id=project_id,
            user_id=ctx.user_id,
            start_time=started,
            finish_time=utcnow(),
            message="Error" if failed else None,
        )
        session.add(act)
        await session.flush()
        session.add(
            ActionEventRow(
                action_id=act.id,
                event="compute__do_container_commit",
                start_time=started,
                finish_time=utcnow(),
                result="Error" if failed else "Success",
                traceback=image.status_reason if failed else None,
            )
        )
