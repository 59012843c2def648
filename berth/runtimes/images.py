"""What an agent needs from an engine for images: pull, remove, and commit-and-push.

Kept beside (not inside) ``RuntimeDriver``: the image API (``/v1/images``),
``commit`` and the image store use it; the reconcile loop never does.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from berth import errors
from berth.domain.hostsync import RegistryAuth
from berth.runtimes.base import effective_pull_policy

__all__ = ["ImageEngine", "ImageInfo", "PullPolicyOps", "refused_access"]


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
