"""The ``local`` volume driver: Docker named volumes (driver ``local``) on the host.

The volume lives on the host that first mounted it; the control plane places
every later mount there. Its size is recorded as a label but not enforced:
Docker's ``local`` driver has no size limit on an ordinary file system (see
docs/volumes.md).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import docker
import docker.errors
import requests

from berth import errors
from berth.config import Settings
from berth.domain.hostsync import VolumeMount
from berth.volumes.base import (
    LABEL_VOLUME,
    LABEL_VOLUME_OWNER,
    LABEL_VOLUME_SIZE,
    VolumeFactory,
    volume_name,
)

__all__ = ["LocalVolumeDriver", "driver"]

log = logging.getLogger(__name__)
T = TypeVar("T")
_LABEL_PROJECT = "berth.project"
_LABEL_OWNER = "berth.owner"


class LocalVolumeDriver:
    """Berth volumes as Docker named volumes on the engine at ``base_url``."""

    def __init__(self, base_url: str = "unix:///var/run/docker.sock", *, owner: str = "") -> None:
        self.base_url = base_url
        self.owner = owner
        self._api: Any = None
        self._lock = threading.Lock()

    def _client(self) -> Any:
        with self._lock:
            if self._api is None:
                self._api = docker.APIClient(base_url=self.base_url, version="auto")
            return self._api

    async def _run(self, call: Callable[[Any], T]) -> T:
        try:
            return await asyncio.to_thread(lambda: call(self._client()))
        except docker.errors.APIError as exc:
            text = str(exc.explanation or exc)
            if exc.status_code == 409:
                raise errors.Conflict(f"the volume is in use: {text}") from exc
            raise errors.BerthError(f"docker engine error on a volume: {text}") from exc
        except (docker.errors.DockerException, requests.RequestException) as exc:
            raise errors.HostUnavailable(
                f"the docker engine at {self.base_url} does not answer: {exc}"
            ) from exc

    async def ensure(self, mount: VolumeMount, project_id: str) -> str:
        """Create ``berth-vol-<uuid>`` with Berth's labels unless it exists."""
        name = volume_name(mount.volume_uuid)
        labels = {
            LABEL_VOLUME: mount.volume_uuid,
            _LABEL_PROJECT: project_id,
            LABEL_VOLUME_SIZE: str(mount.size),
        }
        if self.owner:
            labels[_LABEL_OWNER] = self.owner
        if mount.owner:
            labels[LABEL_VOLUME_OWNER] = mount.owner

        def ensure(api: Any) -> None:
            try:
                api.inspect_volume(name)
            except docker.errors.NotFound:
                api.create_volume(name=name, driver="local", labels=labels)

        await self._run(ensure)
        return name

    async def remove(self, volume_uuid: str) -> None:
        """Remove ``berth-vol-<uuid>``; absent is success, in use is Conflict."""
        name = volume_name(volume_uuid)

        def remove(api: Any) -> None:
            try:
                api.remove_volume(name)
            except docker.errors.NotFound:
                return

        await self._run(remove)

    async def remove_owned_by(self, owner_uuid: str) -> None:
        """Remove the volumes labelled as belonging to ``owner_uuid`` (best effort if in use)."""
        found: dict[str, Any] = await self._run(
            lambda api: api.volumes(filters={"label": f"{LABEL_VOLUME_OWNER}={owner_uuid}"})
        )
        for vol in found.get("Volumes") or []:
            uuid = (vol.get("Labels") or {}).get(LABEL_VOLUME)
            if not uuid:
                continue
            try:
                await self.remove(uuid)
            except errors.Conflict as exc:
                log.warning("volume %s of %s kept: %s", uuid, owner_uuid, exc.message)

    async def close(self) -> None:
        if self._api is not None:
            self._api.close()


def driver(settings: Settings) -> LocalVolumeDriver:
    """The ``local`` entry point: Docker named volumes on the engine at ``docker_url``."""
    return LocalVolumeDriver(settings.docker_url, owner=settings.agent_host)


_ENTRY_POINT: VolumeFactory = driver  # so mypy checks the entry point against the Protocol
