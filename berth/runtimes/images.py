"""What an agent needs from an engine for images: pull, remove, and commit-and-push.

Kept beside (not inside) ``RuntimeDriver``: the image API (``/v1/images``),
``commit`` and the image store use it; the reconcile loop never does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from berth.domain.hostsync import RegistryAuth

__all__ = ["ImageEngine", "ImageInfo", "refused_access"]


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


_REFUSED = ("unauthorized", "authentication required", "no basic auth credentials", "denied")


def refused_access(reason: str) -> bool:
    """Whether a registry's error text means "who are you?" rather than "no such image"."""
    text = reason.lower()
    return any(word in text for word in _REFUSED)
