"""Rebuild: recreate a container's runtime container from its (new) image.

The Berth UUID, name, resources and claim stay; the runtime container is
replaced. Like reboot it is a pending op in the desired state, keyed by the
request id: the agent pulls the image, removes the old runtime container,
creates the new one labelled with the op's id, starts it if the container
was running, and reports the op done. The label makes the op level-triggered
against what exists, so a crash at any step converges (see ``agent.diff``).
Status: ``Rebuilding`` until the agent reports, then ``Running`` if it was
running, else ``Created``.
"""

from __future__ import annotations

from berth import errors
from berth.domain.containers import Status, TaskState, action_allowed
from berth.domain.context import RequestContext
from berth.events.actions import emit, start_action
from berth.services.containers.containers import guard_node
from berth.services.env import Env
from berth.services.images import address_check, glance
from berth.services.images import refs as image_refs
from berth.store import containers as repo
from berth.store.base import utcnow
from berth.store.scope import Scope
from berth.store.tables import ContainerRow

__all__ = ["rebuild"]


async def rebuild(
    env: Env, ctx: RequestContext, ident: str, image: str | None, image_driver: str | None
) -> ContainerRow:
    """Ask for the container to be recreated from ``image`` (default: its current one)."""
    scope = Scope(ctx.project_id, all_projects=ctx.is_admin)
    if image:  # before the transaction: it may wait for DNS (or Glance)
        await address_check.check_image(env, ctx, image)
    glance_ref = await _glance_ref(env, ctx, scope, ident, image, image_driver)
    async with env.db.transaction() as session:
        row = await repo.get(session, scope, ident, for_update=True)
        env.enforce(ctx, "container:rebuild", row.project_id)
        guard_node(ctx, row, "container:rebuild")
        if not action_allowed("rebuild", row.status):
            raise errors.InvalidStateException(
                f"Cannot rebuild container {row.uuid} in {row.status} state."
            )
        if row.host is None:
            raise errors.InvalidStateException(
                f"Cannot rebuild container {row.uuid}: it has no host. Delete it and create "
                "it again."
            )
        if image:
            row.image = image
        if image_driver:
            row.image_driver = image_driver
        if image and row.image_driver == "glance":
            row.image_ref = glance_ref
        await image_refs.check(env, session, row)
        await start_action(
            session, ctx, row, "rebuild", keep=env.settings.max_actions_per_container
        )
        # Running again if it runs and is meant to (not while stopping, say); an
        # Error from a failed rebuild left the old container running: it counts.
        running = row.desired_state == "running" and (
            row.status == Status.RUNNING or row.observed_state == "running"
        )
        row.desired_state = "running" if running else "created"
        row.desired_since = utcnow()
        # One rebuild at a time: a newer request replaces one not yet applied.
        row.pending_ops = [
            *(op for op in row.pending_ops or [] if op.get("op") != "rebuild"),
            {"id": ctx.request_id, "op": "rebuild", "args": {"image": row.image}},
        ]
        row.status = Status.REBUILDING
        row.status_reason = None
        row.task_state = TaskState.REBUILDING
        row.held = False
        row.updated_at = utcnow()
        emit(session, row, "container.rebuild", ctx.request_id, image=row.image)
    await env.notifier.touch(row.host)
    return row


async def _glance_ref(
    env: Env,
    ctx: RequestContext,
    scope: Scope,
    ident: str,
    image: str | None,
    image_driver: str | None,
) -> str | None:
    """A new image's ``image_ref`` in the cloud's Glance, looked up before the transaction.

    None without Glance, without a new image, for a container that will not use
    the glance driver (Glance is not asked at all), or when the caller sees no
    such Glance image (``check`` then refuses it).
    """
    if not image or glance.access(env) is None:
        return None
    if image_driver is None:
        async with env.db.read() as session:
            image_driver = (await repo.get(session, scope, ident)).image_driver
    if image_driver != "glance":
        return None
    try:
        return glance.image_ref(await glance.resolve(env, ctx, image))
    except errors.NotFound:
        return None
