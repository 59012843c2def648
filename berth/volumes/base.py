"""The volume driver contract (no I/O here).

A driver addresses a volume by its Berth UUID: the engine object is named
``berth-vol-<uuid>`` and labelled with the UUID, the project and, for a volume
that belongs to one container, that container's UUID, so a restarted agent
finds what exists and nothing is created twice.
"""

from __future__ import annotations

from typing import Protocol

from berth.config import Settings
from berth.domain.hostsync import VolumeMount
from berth.plugins import Kind

__all__ = [
    "LABEL_VOLUME",
    "LABEL_VOLUME_OWNER",
    "LABEL_VOLUME_SIZE",
    "VOLUME_DRIVERS",
    "VolumeDriver",
    "VolumeFactory",
    "volume_name",
]

LABEL_VOLUME = "berth.volume"
LABEL_VOLUME_OWNER = "berth.volume.owner"
LABEL_VOLUME_SIZE = "berth.volume.size_gib"


def volume_name(uuid: str) -> str:
    """The engine name of the Berth volume ``uuid``."""
    return f"berth-vol-{uuid}"


class VolumeDriver(Protocol):
    """Creates and removes the host side of Berth volumes."""

    async def ensure(self, mount: VolumeMount, project_id: str) -> str:
        """Make the volume exist (idempotent); return the source to mount."""
        ...

    async def remove(self, volume_uuid: str) -> None:
        """Remove the volume and its data; an absent volume is success.

        A volume some container still uses is ``errors.Conflict``.
        """
        ...

    async def remove_owned_by(self, owner_uuid: str) -> None:
        """Remove every volume that belongs to the container ``owner_uuid``."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class VolumeFactory(Protocol):
    """What a ``berth.volumes`` entry point names: builds the agent's volume driver."""

    def __call__(self, settings: Settings) -> VolumeDriver: ...


VOLUME_DRIVERS: Kind[VolumeFactory] = Kind("berth.volumes", "volume driver", "volume_driver")
"""Where data volumes live on a host (Berth's own: ``local``)."""
