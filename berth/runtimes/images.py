"""What an agent needs from an engine for images: pull, remove, and commit-and-push.

Kept beside (not inside) ``RuntimeDriver``: the image API (``/v1/images``),
``commit`` and the image store use it; the reconcile loop never does.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from berth import errors
from berth.domain.hostsync import RegistryAuth
from berth.runtimes.base import effective_pull_policy

__all__ = [
    "ArchiveLoader",
    "ImageEngine",
    "ImageInfo",
    "PullPolicyOps",
    "file_chunks",
    "refused_access",
]


_CHUNK = 1 << 20


async def file_chunks(path: str, chunk: int = _CHUNK) -> AsyncIterator[bytes]:
    """The file at ``path`` in pieces of ``chunk`` bytes, each read off the event loop."""
    data = await asyncio.to_thread(open, path, "rb")
    try:
        while piece := await asyncio.to_thread(data.read, chunk):
            yield piece
    finally:
        data.close()


@dataclass(slots=True)
class ImageInfo:
    """An image on the host: the engine's id, its size in bytes, the registry digest if pushed."""

    image_id: str
    size: int
    digest: str | None = None


@runtime_checkable
class ImageEngine(Protocol):
    """Image operations of a container engine. Every method is async."""

    async def pull_image(self, image: str, auth: RegistryAuth | None = None) -> ImageInfo:
        """Pull ``image`` now (with ``auth`` if given) or raise ``errors.ImageNotFound``."""
        ...

    async def remove_image(self, image: str) -> None:
        """Remove ``image`` from the host; absent is success, in use is ``errors.Conflict``."""
        ...

    async def commit(
        self, uuid: str, reference: str, auth: RegistryAuth | None = None
    ) -> ImageInfo:
        """Snapshot the container (paused meanwhile) as ``reference`` and push it there."""
        ...


class PullPolicyOps(ABC):
    """The pull policies and ``pull_image``, over an engine's three image primitives.

    An engine's image mixin (``DockerImageOps``, ``PodmanImageOps``) subclasses
    this and says how to tell an image is present, pull it and describe it.
    """

    @abstractmethod
    async def _image_present(self, image: str) -> bool: ...

    @abstractmethod
    async def _pull(self, image: str, auth: RegistryAuth | None) -> None: ...

    @abstractmethod
    async def _describe(self, image: str) -> ImageInfo: ...

    async def ensure_image(
        self, image: str, pull_policy: str | None, auth: RegistryAuth | None = None
    ) -> None:
        """Make ``image`` present per its policy (None: ``ifnotpresent``) or raise ImageNotFound."""
        policy = effective_pull_policy(pull_policy)
        present = await self._image_present(image)
        if policy == "never" and not present:
            raise errors.ImageNotFound(
                f"image {image!r} not found on this host, and its pull policy is 'never': "
                "load it on the host or allow pulling"
            )
        if policy == "always" or not present:
            await self._pull(image, auth)

    async def pull_image(self, image: str, auth: RegistryAuth | None = None) -> ImageInfo:
        """Pull ``image`` now and describe it."""
        await self._pull(image, auth)
        return await self._describe(image)


_REFUSED = ("unauthorized", "authentication required", "no basic auth credentials", "denied")


def refused_access(reason: str) -> bool:
    """Whether a registry's error text means "who are you?" rather than "no such image"."""
    text = reason.lower()
    return any(word in text for word in _REFUSED)


@runtime_checkable
class ArchiveLoader(Protocol):
    """An engine that loads and writes ``docker save`` archives (Glance's docker images)."""

    async def load_archive(self, path: str, reference: str) -> None:
        """Load the archive at ``path`` and tag its image ``reference``; ``Invalid`` if unusable."""
        ...

    async def commit_local(self, uuid: str, reference: str) -> ImageInfo:
        """Snapshot the container (paused meanwhile) as ``reference`` on this host only."""
        ...

    async def save_archive(self, reference: str, path: str, limit: int) -> int:
        """Write ``reference``'s docker save archive to ``path``; its size (at most ``limit``)."""
        ...
