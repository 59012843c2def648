"""A Glance image on a real engine, Docker and Podman: loaded once from a docker save, a
container runs from it, refused when its data is not one or does not match Glance's
checksum; a container committed for Glance saves as a docker save archive that loads again
(berth/agent/glance_images.py)."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from berth import errors
from berth.agent.glance_images import commit_to_glance, ensure_glance_image
from berth.domain.hostsync import DesiredContainer
from berth.runtimes.base import RuntimeDriver
from berth.runtimes.podman import PodmanDriver
from tests.functional.docker_engine import DOCKER_URL, TEST_IMAGE, docker_driver
from tests.functional.podman_engine import load_test_image, podman_service, remove_podman_owned

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def podman_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with podman_service(tmp_path_factory.mktemp("podman")) as url:
        load_test_image(TEST_IMAGE)
        yield url


@pytest.fixture(params=["docker", "podman"])
async def driver(request: pytest.FixtureRequest) -> AsyncIterator[RuntimeDriver]:
    owner = f"glance-{uuid.uuid4().hex[:8]}"
    if request.param == "docker":
        yield docker_driver(owner)
        return
    podman = PodmanDriver(request.getfixturevalue("podman_url"), owner=owner)
    try:
        yield podman
    finally:
        await podman.close()
        remove_podman_owned(owner)


@pytest.fixture
def api() -> Iterator[Any]:
    client = docker.APIClient(base_url=DOCKER_URL)
    yield client
    client.close()


def engine_of(driver: RuntimeDriver) -> str:
    return "podman" if isinstance(driver, PodmanDriver) else "docker"


def image_id(driver: RuntimeDriver, image: str) -> str | None:
    """The engine's id of ``image`` (its CLI, not Berth's driver), or None if absent."""
    done = subprocess.run(
        [engine_of(driver), "image", "inspect", "--format", "{{.Id}}", image],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() if done.returncode == 0 else None


def remove_image(driver: RuntimeDriver, image: str) -> None:
    subprocess.run([engine_of(driver), "rmi", "-f", image], capture_output=True, check=False)


def _desired(data: bytes, checksum: str | None = None) -> DesiredContainer:
    digest = checksum or hashlib.md5(data, usedforsecurity=False).hexdigest()
    return DesiredContainer(
        uuid=str(uuid.uuid4()),
        name="g",
        project_id="p1",
        image=f"berth-glance/{uuid.uuid4()}:{digest}",
        desired_state="running",
        spec_version=1,
        from_glance=True,
    )


class _Source:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.calls = 0

    async def __call__(self, container: str) -> AsyncIterator[bytes]:
        self.calls += 1
        for start in range(0, len(self.data), 1 << 16):
            yield self.data[start : start + (1 << 16)]


def spec(image: str, command: list[str], **extra: Any) -> DesiredContainer:
    """A container of ``image`` running ``command`` (never pulled: it is on the engine)."""
    return DesiredContainer(
        uuid=f"t{uuid.uuid4().hex[:16]}",
        name="glance-test",
        project_id="p1",
        image=image,
        image_pull_policy="never",
        command=command,
        desired_state="running",
        spec_version=1,
        **extra,
    )


async def output_of(driver: RuntimeDriver, box: DesiredContainer) -> str:
    """Run ``box`` until it exits; its output (it is removed after)."""
    await driver.create(box)
    await driver.start(box.uuid)
    try:
        for _ in range(100):
            seen = await driver.inspect(box.uuid)
            if seen is not None and seen.state == "stopped":
                break
            await asyncio.sleep(0.1)
        return await driver.logs(box.uuid)
    finally:
        await driver.remove(box.uuid)


async def test_a_docker_save_loads_once_and_a_container_runs_from_it(
    driver: RuntimeDriver, api: Any
) -> None:
    data = b"".join(api.get_image(TEST_IMAGE))  # Docker's docker save of the test image
    desired = _desired(data)
    source = _Source(data)
    try:
        await ensure_glance_image(driver, desired, source)
        assert image_id(driver, desired.image)
        await ensure_glance_image(driver, desired, source)  # present: no second download
        assert source.calls == 1
        run = spec(desired.image, ["echo", "from glance"], from_glance=True)
        assert await output_of(driver, run) == "from glance\n"
    finally:
        remove_image(driver, desired.image)


async def test_data_that_is_no_docker_save_is_refused(driver: RuntimeDriver) -> None:
    junk = b"this is not a tar archive" * 100
    with pytest.raises(errors.Invalid, match="not a loadable docker save archive"):
        await ensure_glance_image(driver, _desired(junk), _Source(junk))


async def test_data_that_does_not_match_glances_checksum_is_refused(
    driver: RuntimeDriver,
) -> None:
    with pytest.raises(errors.Invalid, match="does not match its checksum"):
        await ensure_glance_image(driver, _desired(b"abc", checksum="0" * 32), _Source(b"abc"))


async def test_a_commit_for_glance_is_a_docker_save_that_loads_again(
    driver: RuntimeDriver, tmp_path: Path
) -> None:
    box = spec(TEST_IMAGE, ["sh", "-c", "echo committed > /marker; sleep 300"])
    reference = f"berth-commit/{box.uuid}:v1"
    uploaded = bytearray()

    async def sink(chunks: AsyncIterator[bytes]) -> None:
        async for chunk in chunks:
            uploaded.extend(chunk)

    await driver.create(box)
    await driver.start(box.uuid)
    loaded = _desired(b"")
    try:
        for _ in range(50):
            if (await driver.execute(box.uuid, ["cat", "/marker"], 10))[1] == 0:
                break
            await asyncio.sleep(0.1)
        info = await commit_to_glance(driver, box.uuid, reference, 1 << 30, sink)
        assert info.image_id and info.size > 0
        assert info.size == len(uploaded)
        # The upload is an archive the engine loads again, with the committed file in it.
        loaded = _desired(bytes(uploaded))
        await ensure_glance_image(driver, loaded, _Source(bytes(uploaded)))
        assert await output_of(driver, spec(loaded.image, ["cat", "/marker"])) == "committed\n"
    finally:
        await driver.remove(box.uuid)
        remove_image(driver, loaded.image)
        remove_image(driver, reference)


async def test_a_commit_larger_than_the_limit_is_refused(driver: RuntimeDriver) -> None:
    box = spec(TEST_IMAGE, ["sleep", "300"])
    reference = f"berth-commit/{box.uuid}:v1"

    async def sink(chunks: AsyncIterator[bytes]) -> None:
        raise AssertionError("nothing may be uploaded")

    await driver.create(box)
    await driver.start(box.uuid)
    try:
        with pytest.raises(errors.Invalid, match="glance_image_max_bytes"):
            await commit_to_glance(driver, box.uuid, reference, 1024, sink)
    finally:
        await driver.remove(box.uuid)
        remove_image(driver, reference)
