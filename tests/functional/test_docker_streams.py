"""DockerDriver's streaming half against the real engine: sessions, hangup, logs, archives."""

from __future__ import annotations

import asyncio
import io
import tarfile
import time
import uuid as uuidlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from berth import errors
from berth.domain.hostsync import DesiredContainer
from berth.runtimes.base import container_name
from berth.runtimes.docker import DockerDriver
from berth.runtimes.streams import Duplex
from tests.functional.docker_engine import (
    docker_driver,
    engine_or_skip,
    ensure_test_image,
    remove_owned,
)

pytestmark = pytest.mark.docker


class Box:
    def __init__(self, api: Any, driver: DockerDriver, uuid: str) -> None:
        self.api, self.driver, self.uuid = api, driver, uuid

    async def run(self, command: list[str], *, tty: bool = False) -> None:
        spec = DesiredContainer(
            uuid=self.uuid,
            name="s",
            project_id="p",
            image=ensure_test_image(self.api),
            desired_state="running",
            spec_version=1,
            command=command,
            interactive=tty,
            tty=tty,
        )
        await self.driver.create(spec)
        await self.driver.start(self.uuid)


@pytest.fixture
async def box() -> AsyncIterator[Box]:
    api = engine_or_skip()
    uuid = f"s{uuidlib.uuid4().hex[:16]}"
    owner = f"test-{uuid}"
    driver = docker_driver(owner)
    try:
        yield Box(api, driver, uuid)
    finally:
        await driver.close()
        remove_owned(api, owner, container_name(uuid))
        api.close()


async def read_until(session: Duplex, needle: bytes, within: float = 10.0) -> bytes:
    seen = b""
    async with asyncio.timeout(within):
        while needle not in seen:
            chunk = await session.read()
            assert chunk, f"session ended before {needle!r}: {seen!r}"
            seen += chunk
    return seen


def processes(box: Box) -> list[str]:
    top = box.api.top(container_name(box.uuid))
    return [" ".join(p) for p in top["Processes"]]


async def test_exec_session_runs_resizes_and_hangs_up(box: Box) -> None:
    await box.run(["sleep", "300"])
    exec_id = await box.driver.exec_create(box.uuid, ["sh"], tty=True)
    assert len(exec_id) == 64
    session = await box.driver.exec_open(box.uuid, exec_id)
    await box.driver.exec_resize(box.uuid, exec_id, 40, 132)
    await session.write(b"stty size; echo hi-$((1+2))\r")
    seen = await read_until(session, b"hi-3")
    assert b"40 132" in seen
    await session.write(b"sleep 777\r")
    await asyncio.sleep(0.5)
    assert any("sleep 777" in p for p in processes(box))
    await session.close()  # the client left: the shell and its job are hung up
    for _ in range(50):
        if not any("sleep 777" in p for p in processes(box)):
            break
        await asyncio.sleep(0.2)
    assert not any("sleep 777" in p for p in processes(box))
    assert not box.api.exec_inspect(exec_id)["Running"]


class _SlowToRun:
    """The engine's client, marking execs running only ``lag`` s after their start.

    A loaded host does that: in CI an engine took over a second, and the dashboard's
    terminal, which resizes as soon as its session opens, was told to connect first.
    """

    def __init__(self, api: Any, started: list[float], lag: float) -> None:
        self._api, self._started, self._lag = api, started, lag

    def __getattr__(self, name: str) -> Any:
        return getattr(self._api, name)

    def exec_start(self, *args: Any, **kwargs: Any) -> Any:
        self._started.append(time.monotonic())
        return self._api.exec_start(*args, **kwargs)

    def exec_inspect(self, exec_id: str) -> dict[str, Any]:
        info: dict[str, Any] = self._api.exec_inspect(exec_id)
        if self._started and time.monotonic() - self._started[0] < self._lag:
            return {**info, "Running": False, "Pid": 0, "ExitCode": None}
        return info


async def test_a_resize_right_after_the_open_finds_a_slow_engines_session_up(
    box: Box, monkeypatch: pytest.MonkeyPatch
) -> None:
    await box.run(["sleep", "300"])
    exec_id = await box.driver.exec_create(box.uuid, ["sh"], tty=True)
    engine, started = box.driver._engine, list[float]()
    run = engine.run
    slow = lambda call: run(lambda api: call(_SlowToRun(api, started, lag=2.5)))  # noqa: E731
    monkeypatch.setattr(engine, "run", slow)
    session = await box.driver.exec_open(box.uuid, exec_id)
    try:
        await box.driver.exec_resize(box.uuid, exec_id, 33, 111)
        await session.write(b"stty size; echo ok-$((2+2))\r")
        assert b"33 111" in await read_until(session, b"ok-4")
    finally:
        await session.close()


async def test_exec_without_tty_is_demultiplexed(box: Box) -> None:
    await box.run(["sleep", "300"])
    exec_id = await box.driver.exec_create(
        box.uuid, ["sh", "-c", "echo out; echo err >&2"], tty=False
    )
    session = await box.driver.exec_open(box.uuid, exec_id)
    output = b""
    async with asyncio.timeout(10):
        while chunk := await session.read():
            output += chunk
    await session.close()
    assert sorted(output.decode().split()) == ["err", "out"]


async def test_an_exec_that_ends_at_once_opens_without_waiting(box: Box) -> None:
    await box.run(["sleep", "300"])
    exec_id = await box.driver.exec_create(box.uuid, ["echo", "done"], tty=False)
    began = time.monotonic()
    session = await box.driver.exec_open(box.uuid, exec_id)  # waits for running, or the end
    assert time.monotonic() - began < 3  # not the 10 s it allows a loaded engine
    output = b""
    async with asyncio.timeout(10):
        while chunk := await session.read():
            output += chunk
    await session.close()
    assert output == b"done\n"
    # Nor one whose command does not exist (it never runs at all).
    exec_id = await box.driver.exec_create(box.uuid, ["/no/such/command"], tty=True)
    began = time.monotonic()
    session = await box.driver.exec_open(box.uuid, exec_id)
    await session.close()
    assert time.monotonic() - began < 3


async def test_an_exec_of_another_container_is_refused(box: Box) -> None:
    await box.run(["sleep", "300"])
    with pytest.raises(errors.Invalid):
        await box.driver.exec_resize(box.uuid, "0" * 64, 10, 10)
    with pytest.raises(errors.Invalid):
        await box.driver.exec_open(box.uuid, "f" * 64)


async def test_attach_detaches_without_stopping_the_container(box: Box) -> None:
    await box.run(["sh"], tty=True)
    session = await box.driver.attach(box.uuid)
    await box.driver.resize(box.uuid, 30, 100)
    await session.write(b"echo att-$((2+5))\r")
    await read_until(session, b"att-7")
    await session.close()
    await asyncio.sleep(0.5)
    observed = await box.driver.inspect(box.uuid)
    assert observed is not None and observed.state == "running"


async def test_follow_logs_until_exit_or_close(box: Box) -> None:
    await box.run(["sh", "-c", "echo a; sleep 1; echo b"])
    stream = await box.driver.follow_logs(box.uuid)
    got = b""
    async with asyncio.timeout(15):
        async for chunk in stream:
            got += chunk
    assert got == b"a\nb\n"

    box2 = Box(box.api, box.driver, box.uuid)
    await box.driver.remove(box.uuid)
    await box2.run(["sh", "-c", "echo only; exec sleep 300"])
    stream = await box.driver.follow_logs(box.uuid, tail=1)
    assert await anext(stream) == b"only\n"
    await stream.aclose()  # the caller left: nothing keeps the engine stream open
    with pytest.raises(errors.ContainerNotFound):
        await box.driver.follow_logs("nope-" + box.uuid)


def tar_of(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


async def test_archives_both_ways(box: Box) -> None:
    await box.run(["sleep", "300"])
    await box.driver.put_archive(box.uuid, "/tmp", tar_of("hello.txt", b"hello\n"))
    data, stat = await box.driver.get_archive(box.uuid, "/tmp/hello.txt", 1 << 20)
    assert stat["name"] == "hello.txt" and stat["size"] == 6
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.extractfile("hello.txt")
        assert member is not None and member.read() == b"hello\n"
    with pytest.raises(errors.Invalid, match="/nope"):
        await box.driver.put_archive(box.uuid, "/nope", tar_of("x", b"x"))
    with pytest.raises(errors.Invalid, match="/nope"):
        await box.driver.get_archive(box.uuid, "/nope", 1 << 20)
    with pytest.raises(errors.Invalid, match="larger than"):
        await box.driver.get_archive(box.uuid, "/bin", 4096)


async def test_resizing_an_exec_that_never_started_is_refused_at_once(box: Box) -> None:
    await box.run(["sleep", "300"])
    exec_id = await box.driver.exec_create(box.uuid, ["sh"], tty=True)
    started = time.monotonic()
    with pytest.raises(errors.InvalidStateException, match="connect to its session first"):
        await box.driver.exec_resize(box.uuid, exec_id, 40, 132)
    assert time.monotonic() - started < 5  # not the engine's 10 s wait
