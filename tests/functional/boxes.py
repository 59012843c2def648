"""One test's own container on the real engine: a DockerDriver with an owner of its own."""

from __future__ import annotations

import contextlib
import uuid as uuidlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from berth.domain.hostsync import DesiredContainer
from berth.runtimes.base import container_name
from berth.runtimes.docker import DockerDriver
from tests.functional.docker_engine import docker_driver, ensure_test_image, remove_owned

__all__ = ["Box", "owned_box"]


@dataclass
class Box:
    """One test's engine handle, driver, container UUID and test image."""

    api: Any
    driver: DockerDriver
    uuid: str
    image: str

    def spec(self, **kw: Any) -> DesiredContainer:
        """A running ``web`` container of the test image sleeping, ``kw`` replaced."""
        base = DesiredContainer(
            uuid=self.uuid,
            name="web",
            project_id="proj-1",
            image=self.image,
            desired_state="running",
            spec_version=1,
            command=["sleep", "300"],
        )
        return replace(base, **kw)

    def inspect(self) -> dict[str, Any]:
        """The engine's view of the container."""
        data: dict[str, Any] = self.api.inspect_container(container_name(self.uuid))
        return data


B = TypeVar("B", bound=Box)


@contextlib.asynccontextmanager
async def owned_box(api: Any, kind: type[B]) -> AsyncIterator[B]:
    """A ``kind`` of Box with a fresh UUID and owner; all it made removed on exit."""
    uuid = f"t{uuidlib.uuid4().hex[:16]}"
    owner = f"test-{uuid}"
    driver = docker_driver(owner)
    try:
        yield kind(api, driver, uuid, ensure_test_image(api))
    finally:
        await driver.close()
        remove_owned(api, owner, container_name(uuid))
