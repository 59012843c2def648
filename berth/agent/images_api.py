"""The agent's image routes: pull, remove and commit-and-push, for the image API and commit.

Credentials arrive in the request body for the one operation that needs
them and are not kept. Mounted by ``server.create_agent_app`` behind the
same bearer key as every other route.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from berth import errors
from berth.agent.glance_images import commit_to_glance, glance_sink
from berth.domain.hostsync import RegistryAuth
from berth.images.glance import GlanceClient
from berth.runtimes.base import RuntimeDriver
from berth.runtimes.images import ImageEngine

__all__ = ["CommitRequest", "GlanceUpload", "PullRequest", "RemoveRequest", "image_router"]


class PullRequest(BaseModel):
    """Pull ``image`` now, with ``auth`` for its registry if given."""

    image: str = Field(min_length=1, max_length=512)
    auth: RegistryAuth | None = None


class RemoveRequest(BaseModel):
    """Remove ``image`` from the host."""

    image: str = Field(min_length=1, max_length=512)


class GlanceUpload(BaseModel):
    """Where a commit's ``docker save`` goes: a queued image in the cloud's Glance.

    ``token`` is the committing user's own, for this one call.
    """

    url: str = Field(min_length=1, max_length=512)
    image_id: str = Field(min_length=1, max_length=64)
    token: str = Field(min_length=1, max_length=8192, repr=False)
    max_bytes: int = Field(ge=1)
    timeout: float = Field(gt=0)


class CommitRequest(BaseModel):
    """Commit the container as ``reference`` and push it there with ``auth`` (or to ``glance``)."""

    reference: str = Field(min_length=1, max_length=512)
    auth: RegistryAuth | None = None
    glance: GlanceUpload | None = None


def _engine(runtime: RuntimeDriver) -> ImageEngine:
    if not isinstance(runtime, ImageEngine):
        raise errors.Invalid("this host's runtime driver cannot manage images")
    return runtime


def image_router(runtime: RuntimeDriver) -> APIRouter:
    """The image routes over ``runtime`` (which must also be an ImageEngine)."""
    router = APIRouter()

    @router.post("/v1/images/pull")
    async def pull(body: PullRequest) -> dict[str, Any]:
        info = await _engine(runtime).pull_image(body.image, body.auth)
        return dataclasses.asdict(info)

    @router.post("/v1/images/remove")
    async def remove(body: RemoveRequest) -> dict[str, Any]:
        await _engine(runtime).remove_image(body.image)
        return {"removed": body.image}

    @router.post("/v1/containers/{uuid}/commit")
    async def commit(uuid: str, body: CommitRequest) -> dict[str, Any]:
        if body.glance is not None:
            g = body.glance
            client = GlanceClient(g.url, g.timeout, g.timeout)
            try:
                info = await commit_to_glance(
                    runtime,
                    uuid,
                    body.reference,
                    g.max_bytes,
                    glance_sink(client, g.token, g.image_id),
                )
            finally:
                await client.aclose()
            return dataclasses.asdict(info)
        info = await _engine(runtime).commit(uuid, body.reference, body.auth)
        return dataclasses.asdict(info)

    return router
