"""The agent writes a container's injected files between create and start (Zun's type=bind).

Upstream, zun 18.0.0 ``zun/volume/driver.py`` ``Local.attach`` writes the
decoded ``contents`` before the container is started; here the agent fetches
the content from the control plane and puts it with ``put_archive`` on the
created container, through the fake driver that honours the same protocol.
"""

from __future__ import annotations

import base64

import pytest

from berth import errors
from berth.agent.apply import apply_plan
from berth.agent.diff import Create, Start
from berth.domain.hostsync import DesiredContainer, InjectedFile
from berth.runtimes.fake import FakeDriver

pytestmark = pytest.mark.asyncio

IMAGE = "busybox:1"
CONTENT = b"hello\n"


def desired() -> DesiredContainer:
    return DesiredContainer(
        uuid="c1",
        name="c1",
        project_id="p",
        image=IMAGE,
        desired_state="running",
        spec_version=1,
        files=[InjectedFile("/data/testfile", len(CONTENT))],
    )


async def source(uuid: str) -> list[InjectedFile]:
    assert uuid == "c1"
    return [InjectedFile("/data/testfile", len(CONTENT), base64.b64encode(CONTENT).decode())]


async def test_files_are_written_after_create_and_before_start() -> None:
    runtime = FakeDriver(images={IMAGE})
    spec = desired()
    obs = await apply_plan(runtime, "c1", [Create(spec), Start()], spec, files=source)
    assert obs.state == "running" and obs.error is None
    assert [m for m, _ in runtime.calls] == ["create", "put_archive", "start", "inspect"]
    assert runtime.files["c1"]["/data/testfile"] == CONTENT


async def test_a_failed_write_removes_the_container_and_says_why() -> None:
    runtime = FakeDriver(images={IMAGE})
    runtime.fail_next("put_archive", errors.Invalid("no space left on device"))
    spec = desired()
    obs = await apply_plan(runtime, "c1", [Create(spec), Start()], spec, files=source)
    assert obs.state == "absent" and not runtime.containers  # created again next time
    assert obs.error == (
        "could not create the container: cannot write the injected files: no space left on device"
    )
    assert runtime.count("start") == 0


async def test_no_content_from_the_control_plane_creates_nothing() -> None:
    async def empty(uuid: str) -> list[InjectedFile]:
        return []

    runtime = FakeDriver(images={IMAGE})
    spec = desired()
    obs = await apply_plan(runtime, "c1", [Create(spec), Start()], spec, files=empty)
    assert obs.error is not None and "/data/testfile" in obs.error
    assert runtime.count("create") == 0
