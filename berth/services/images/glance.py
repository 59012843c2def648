"""``image_driver=glance`` in an OpenStack cloud: the caller's Glance images, run and committed.

Who may use which image is Glance's answer, never Berth's: at create (and
rebuild) the image is looked up with the caller's own token, so private,
shared (accepted), community and public images are exactly what Glance shows
that caller; anything else is Zun's "Image X could not be found." (404). The
container row remembers the image's id and checksum (``image_ref``).

The data never reaches a host with a Glance credential: the host's agent asks
the control plane for the image of a container placed on it
(``stream_for_agent``), and the API streams it from Glance with Berth's
service token, chunk by chunk, cut off past ``glance_image_max_bytes``. The
agent loads it into its engine as ``berth-glance/<id>:<checksum>``, so a
second container of the same image (same checksum) on that host downloads
nothing. Commit goes the other way (``commit_target``/``upload``): an image is
created in Glance with the caller's token (container_format docker,
disk_format raw) and the host's ``docker save`` is streamed into it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from berth import errors
from berth.domain.context import RequestContext
from berth.images.glance import (
    DOCKER_FORMAT,
    GlanceAccess,
    GlanceImage,
    GlanceImageNotFound,
    glance_not_found,
    is_uuid,
)
from berth.images.refs import split_reference
from berth.services.env import Env
from berth.store import containers as containers_repo

__all__ = [
    "GLANCE_REPOSITORY",
    "access",
    "check_template_image",
    "create_for_commit",
    "discard",
    "image_ref",
    "local_reference",
    "node_image_ref",
    "parse_ref",
    "resolve",
    "stream_for_agent",
    "upload_grant",
]

log = logging.getLogger(__name__)

# Where a host's engine keeps a Glance image: berth-glance/<image id>:<checksum>.
GLANCE_REPOSITORY = "berth-glance"


def access(env: Env) -> GlanceAccess | None:
    """The cloud's Glance when this Berth uses one (else glance means the image store)."""
    return env.glance if env.settings.uses_glance else None


async def resolve(env: Env, ctx: RequestContext, image: str) -> GlanceImage:
    """The Glance image ``image`` (name[:tag] or id) names for the caller, ready to run.

    Looked up with the caller's token; it must be active and no larger than
    ``glance_image_max_bytes``.
    """
    glance = access(env)
    if glance is None:
        raise errors.Invalid("This Berth uses no Glance.")
    if not ctx.auth_token:
        raise glance_not_found(image)  # a caller without a token of its own sees nothing
    # name:tag as Zun reads it; no tag given: the name alone decides.
    name, tag = split_reference(image) if ":" in image.rsplit("/", 1)[-1] else (image, None)
    found = await glance.client.find(ctx.auth_token, name, tag)
    _check_runnable(glance, image, found)
    return found


def _check_runnable(glance: GlanceAccess, image: str, found: GlanceImage) -> None:
    """400 unless ``found`` is active and no larger than ``glance_image_max_bytes``."""
    if found.status != "active":
        raise errors.Invalid(
            f"Image {image} is {found.status} in Glance: only an active image can run."
        )
    if found.size is not None and found.size > glance.max_bytes:
        raise errors.Invalid(
            f"Image {image} is {found.size} bytes, more than this Berth runs from Glance "
            f"({glance.max_bytes} bytes, the setting glance_image_max_bytes)."
        )


def image_ref(found: GlanceImage) -> str:
    """What a container row keeps of its Glance image: ``<id>:<checksum>``."""
    return f"{found.id}:{found.cache_key}"


def parse_ref(ref: str) -> tuple[str, str]:
    """(image id, checksum) of an ``image_ref``."""
    image_id, _, checksum = ref.partition(":")
    return image_id, checksum


def local_reference(ref: str) -> str:
    """The reference a host's engine keeps the image of ``image_ref`` under."""
    image_id, checksum = parse_ref(ref)
    return f"{GLANCE_REPOSITORY}/{image_id}:{checksum}"


async def stream_for_agent(
    env: Env, ctx: RequestContext, hostname: str, uuid: str
) -> AsyncIterator[bytes]:
    """The Glance data of container ``uuid``'s image, for the agent of its host only.

    Fetched with Berth's service token; the image was resolved with the
    owner's token when the container was created. More than
    ``glance_image_max_bytes`` ends the stream with an error.
    """
    env.enforce(ctx, "berth:internal")
    glance = access(env)
    async with env.db.read() as session:
        host, ref = await containers_repo.image_ref_of(session, uuid)
    if host is None or host != hostname or not ref or glance is None:
        # Another host's container (or not a Glance one) is none of this agent's business.
        raise errors.ContainerNotFound(f"Container {uuid} could not be found on {hostname}.")
    image_id, _ = parse_ref(ref)
    token = await glance.service_token()
    async for chunk in glance.client.download(token, image_id, glance.max_bytes):
        yield chunk


async def create_for_commit(env: Env, ctx: RequestContext, repository: str, tag: str) -> str:
    """A new (queued) Glance image for a commit, owned by the caller's project; its id.

    As Zun's commit with the glance driver: named ``repository``,
    container_format docker, disk_format raw; the tag is a Glance tag.
    """
    glance = access(env)
    if glance is None or not ctx.auth_token:
        raise errors.Invalid("This Berth uses no Glance.")
    made = await glance.client.create(
        ctx.auth_token, repository, container_format=DOCKER_FORMAT, disk_format="raw", tags=[tag]
    )
    return made.id


def upload_grant(env: Env, ctx: RequestContext, image_id: str) -> dict[str, Any]:
    """What the host needs to upload a commit's data into ``image_id``, for that call only.

    The caller's own token: the host can write that one image of the caller's
    project while the commit request lasts, and nothing the caller could not.
    """
    glance = access(env)
    assert glance is not None
    return {
        "url": glance.client.url,
        "image_id": image_id,
        "token": ctx.auth_token,
        "max_bytes": glance.max_bytes,
        "timeout": env.settings.glance_timeout,
    }


async def discard(env: Env, ctx: RequestContext, image_id: str) -> None:
    """Delete the Glance image a failed commit made (as the caller); failures only logged."""
    glance = access(env)
    if glance is None:
        return
    try:
        await glance.client.delete(ctx.auth_token, image_id)
    except errors.BerthError as exc:
        log.warning("could not delete Glance image %s of a failed commit: %s", image_id, exc)


async def _template_lookup(env: Env, ctx: RequestContext, image: str) -> GlanceImage | None:
    """Magnum's lookup of a cluster template's ``image_id`` in the caller's view of Glance.

    The image when Glance has it (any container format) and it names its
    ``os_distro``. None: Glance shows the caller no image of that name (the
    caller then takes it as a Docker reference). A UUID Glance does not show is
    Magnum's ``ImageNotFound`` (400); an image without ``os_distro`` Magnum's
    ``OSDistroFieldNotFound`` (400).
    """
    glance = access(env)
    if glance is None or not ctx.auth_token:
        return None
    try:
        found = await glance.client.find(ctx.auth_token, image, container_format=None)
    except GlanceImageNotFound:
        if is_uuid(image):
            raise errors.ImageNotFound(f"Image {image} could not be found.") from None
        return None
    if not found.properties.get("os_distro"):
        raise errors.Invalid(f"Image {image} doesn't contain os_distro field.")
    return found


async def check_template_image(env: Env, ctx: RequestContext, image: str) -> bool:
    """Magnum's check of a cluster template's ``image_id`` (see ``_template_lookup``).

    True: a Glance image; False: a Docker reference.
    """
    return await _template_lookup(env, ctx, image) is not None


async def node_image_ref(env: Env, ctx: RequestContext, image: str) -> str | None:
    """The ``image_ref`` a cluster's nodes run for a template's ``image_id``; None: Docker.

    Resolved as the template check resolves it, in the caller's view of Glance
    and at the caller's request (the cluster worker that creates the nodes later
    has no user token): the nodes then run that image id at that checksum, the
    data fetched with Berth's service token as for any container. The image must
    be ready to run: active, container_format ``docker``, no larger than
    ``glance_image_max_bytes`` (400 otherwise).
    """
    found = await _template_lookup(env, ctx, image)
    if found is None:
        return None
    glance = access(env)
    assert glance is not None  # found in it
    if found.container_format != DOCKER_FORMAT:
        raise errors.Invalid(
            f"Image {image} is of container_format {found.container_format}: cluster nodes "
            f"run Glance images of container_format {DOCKER_FORMAT} (a docker save archive)."
        )
    _check_runnable(glance, image, found)
    return image_ref(found)
