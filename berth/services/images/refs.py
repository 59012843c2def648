"""Which image a container's host pulls, and with which credentials.

At create: ``check`` resolves the ``registry`` field to one of the caller's
own registries (any other project's is not found), and makes sure a
``glance`` image exists in the image store for the project. For the agents:
``for_agent`` rewrites each desired container's image to the reference its
host pulls (``<domain>/<image>`` for a registry, ``<store>/<namespace>/…``
for the store) and attaches the decrypted credentials while the container
has no runtime container yet, i.e. while a pull may be ahead, and never after.
"""

from __future__ import annotations

from berth import errors
from berth.domain.context import RequestContext
from berth.domain.hostsync import DesiredContainer, DesiredHost, RegistryAuth
from berth.images.glance import glance_not_found
from berth.images.refs import registry_of, split_reference, store_reference
from berth.services.env import Env
from berth.services.images import glance, registries
from berth.services.images import store as image_store
from berth.store import images as repo
from berth.store.db import Session
from berth.store.tables import ContainerRow, RegistryRow

__all__ = ["check", "for_agent", "prepare"]

STORE_DRIVER = "glance"


async def prepare(env: Env, ctx: RequestContext, row: ContainerRow) -> None:
    """Before the transaction: a Glance image resolved with the caller's token (``image_ref``).

    Only with the cloud's Glance (``glance_url``); it may wait on Glance, so
    never inside a transaction. A cluster node arrives with its ``image_ref``
    already resolved (with the owner's token, at the cluster request).
    """
    if row.image_driver == STORE_DRIVER and glance.access(env) is not None and not row.image_ref:
        row.image_ref = glance.image_ref(await glance.resolve(env, ctx, row.image))


async def check(env: Env, session: Session, row: ContainerRow) -> None:
    """Validate a new container's image source; store its registry's UUID (not the name)."""
    if row.registry_id:
        registry = await registries.resolve_for_project(session, row.project_id, row.registry_id)
        row.registry_id = registry.uuid
    if row.image_driver == STORE_DRIVER and glance.access(env) is not None:
        if not row.image_ref:  # prepare() resolves it; without it nothing can run
            raise glance_not_found(row.image)
        return
    if split_reference(row.image)[0].startswith(glance.GLANCE_REPOSITORY + "/"):
        # A host's copy of someone's Glance image: only Glance may say who runs it.
        raise errors.Invalid(
            f"Image {row.image} names a host's copy of a Glance image: use "
            "image_driver=glance with the Glance image's name or id instead."
        )
    if row.image_driver == STORE_DRIVER:
        await image_store.resolve(env, session, row.project_id, row.image)
        return
    store = env.settings.image_store
    if store and registry_of(split_reference(row.image)[0]) == image_store.address(env):
        raise errors.Invalid(
            f"Image {row.image} names the image store directly: use image_driver=glance "
            "with the image's name instead."
        )


async def for_agent(env: Env, host: DesiredHost) -> DesiredHost:
    """``host`` with store and registry images resolved, and credentials where a pull is ahead."""
    if not host.containers:
        return host  # an idle agent's poll: nothing to resolve, no query
    async with env.db.read() as session:
        special = await repo.image_sources_on(session, host.hostname, STORE_DRIVER)
        if not special:
            return host
        regs = await repo.registries_by_uuid(session, {r for _, r, _, _ in special.values() if r})
        for desired in host.containers:
            if desired.uuid in special:
                driver, reg, observed, ref = special[desired.uuid]
                if ref and driver == STORE_DRIVER and glance.access(env) is not None:
                    # The host's engine keeps it by checksum; the data comes through us.
                    desired.image = glance.local_reference(ref)
                    desired.from_glance = True
                    continue
                auth = await _resolve(env, session, desired, driver, regs.get(reg or ""))
                if _pull_ahead(desired, observed):
                    desired.registry_auth = auth
    return host


def _pull_ahead(desired: DesiredContainer, observed: str | None) -> bool:
    """Whether the agent may pull for ``desired`` now: only then does it get credentials.

    Before the first create, for a rebuild onto a (new) image, and for a
    container whose runtime container vanished (auto_heal recreates it).
    """
    if desired.desired_state == "deleted":
        return False
    return (
        desired.runtime_id is None
        or observed == "absent"
        or any(op.op == "rebuild" for op in desired.pending_ops)
    )


async def _resolve(
    env: Env,
    session: Session,
    desired: DesiredContainer,
    driver: str,
    registry: RegistryRow | None,
) -> RegistryAuth | None:
    """Rewrite ``desired.image`` to what its host pulls; the credentials for that pull."""
    if driver == STORE_DRIVER:
        if not env.settings.image_store:
            return None
        try:
            desired.image = await image_store.resolve(
                env, session, desired.project_id, desired.image
            )
        except errors.ImageNotFound:
            # Deleted from the store since: the pull fails with the store's own words.
            name, tag = split_reference(desired.image)
            desired.image = store_reference(image_store.address(env), desired.project_id, name, tag)
        return image_store.auth(env)
    if registry is None:
        return None  # deleted since: pull without credentials
    desired.image = registries.qualify(desired.image, registry)
    return registries.auth_for(env, registry)
