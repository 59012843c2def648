"""image_pull_policy against a real registry the engine reaches (a local docker-registry)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import docker.errors
import pytest

from berth import errors
from tests.functional.docker_engine import docker_driver, engine_or_skip, ensure_test_image
from tests.functional.registry import local_registry

pytestmark = pytest.mark.docker


@pytest.fixture
def pushed() -> Iterator[tuple[Any, str]]:
    """An image that exists in the registry but not on the engine."""
    api = engine_or_skip()
    source = ensure_test_image(api)
    with local_registry() as registry:
        ref = f"{registry}/berth/busybox:{uuid.uuid4().hex[:8]}"
        repo, tag = ref.rsplit(":", 1)
        api.tag(source, repo, tag)
        for line in api.push(repo, tag=tag, stream=True, decode=True):
            assert "error" not in line, line
        api.remove_image(ref)
        try:
            yield api, ref
        finally:
            with contextlib.suppress(docker.errors.NotFound):
                api.remove_image(ref)


async def present(api: Any, ref: str) -> bool:
    try:
        api.inspect_image(ref)
    except docker.errors.NotFound:
        return False
    return True


async def test_never_refuses_an_absent_image(pushed: tuple[Any, str]) -> None:
    api, ref = pushed
    driver = docker_driver("pull-test")
    with pytest.raises(errors.ImageNotFound, match="pull policy is 'never'"):
        await driver.ensure_image(ref, "never")
    await driver.ensure_image(ref, "ifnotpresent")
    assert await present(api, ref)
    await driver.ensure_image(ref, "never")  # present now: fine
    await driver.ensure_image(ref, "always")  # pulls again from the registry
    api.remove_image(ref)
    await driver.ensure_image(ref, "always")
    assert await present(api, ref)
    api.remove_image(ref)
    await driver.ensure_image(ref, None)  # default: if not present
    assert await present(api, ref)
    await driver.close()


async def test_missing_tag_in_registry_is_a_clear_error(pushed: tuple[Any, str]) -> None:
    api, ref = pushed
    driver = docker_driver("pull-test")
    with pytest.raises(errors.ImageNotFound, match="check the name or the registry"):
        await driver.ensure_image(ref + "-nope", "always")
    assert not await present(api, ref)
    await driver.close()
