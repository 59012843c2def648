"""PodmanDriver against a real ``podman system service``: the verbs, streams and capsule pods.

Each test works on its own ``berth-<uuid>`` containers (an owner label unique
to the test) and removes them and their pods, whatever happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import time
import uuid as uuidlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import pytest

from berth import errors
from berth.domain.hostsync import DesiredContainer, NetworkRef, PublishedPort, VolumeMount
from berth.networks.base import FirewallRule
from berth.networks.bridge import BridgeNetworks
from berth.networks.hostguard import bridge_name
from berth.runtimes.base import RuntimeDriver, container_name
from berth.runtimes.podman import PodmanDriver
from berth.volumes.local import LocalVolumeDriver
from tests.functional.docker_engine import TEST_IMAGE
from tests.functional.podman_engine import (
    isolated_podman_container,
    load_test_image,
    pod_member_states,
    podman_service,
    remove_podman_owned,
)

pytestmark = pytest.mark.docker

MIB = 1024 * 1024
RUNSC_WRAPPER = "/usr/local/lib/berth/runsc-podman"
T = TypeVar("T")


@pytest.fixture(scope="module")
def podman_url(api: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Podman service (started here if none runs) holding the test image."""
    with podman_service(tmp_path_factory.mktemp("podman")) as url:
        load_test_image(TEST_IMAGE)
        yield url


def podman(*args: str) -> str:
    """The podman CLI's output (it shares the service's storage)."""
    done = subprocess.run(["podman", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: {done.stderr}")
    return done.stdout


def podman_json(*args: str) -> Any:
    return json.loads(podman(*args))


@dataclass
class Box:
    driver: PodmanDriver
    uuid: str
    owner: str

    def spec(self, **kw: Any) -> DesiredContainer:
        base = DesiredContainer(
            uuid=self.uuid,
            name="web",
            project_id="proj-1",
            image=TEST_IMAGE,
            desired_state="running",
            spec_version=1,
            command=["sleep", "300"],
        )
        return replace(base, **kw)

    def inspect(self, uuid: str | None = None) -> dict[str, Any]:
        data: dict[str, Any] = podman_json(
            "container", "inspect", container_name(uuid or self.uuid)
        )[0]
        return data


@pytest.fixture
async def box(podman_url: str) -> AsyncIterator[Box]:
    uuid = f"t{uuidlib.uuid4().hex[:16]}"
    owner = f"test-{uuid}"
    driver = PodmanDriver(podman_url, owner=owner)
    try:
        yield Box(driver, uuid, owner)
    finally:
        await driver.close()
        await asyncio.to_thread(remove_podman_owned, owner)


async def until(
    check: Callable[[], Awaitable[T]], ok: Callable[[T], bool], within: float = 10
) -> T:
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if ok(value) or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.05)


async def test_driver_honours_the_protocol(box: Box) -> None:
    assert isinstance(box.driver, RuntimeDriver)


async def test_host_facts(box: Box) -> None:
    facts = await box.driver.host_facts()
    assert facts.cpus >= 1 and facts.mem_total > 0 and facts.disk_total > 0
    assert "runc" in facts.runtimes
    assert facts.os_type == "linux" and facts.kernel_version
    assert TEST_IMAGE in facts.images  # Podman's "localhost/" prefix off


async def test_create_applies_the_spec(box: Box) -> None:
    spec = box.spec(
        entrypoint=["/bin/sh", "-c"],
        command=["echo hi; sleep 300"],
        cpu=0.5,
        memory=64,
        workdir="/tmp",
        environment={"GREETING": "hello"},
        labels={"tier": "web"},
        hostname="webhost",
        restart_policy={"Name": "on-failure", "MaximumRetryCount": "3"},
        healthcheck={"test": "true", "interval": 5, "retries": 2, "timeout": 3},
        interactive=True,
        tty=True,
        spec_version=7,
    )
    runtime_id = await box.driver.create(spec)
    data = box.inspect()
    host, config = data["HostConfig"], data["Config"]
    assert data["Id"] == runtime_id and data["Name"] == f"berth-{box.uuid}"
    assert host["NanoCpus"] == 500_000_000
    assert host["Memory"] == host["MemorySwap"] == 64 * MIB
    assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert "GREETING=hello" in config["Env"]
    assert (config["WorkingDir"], config["Hostname"]) == ("/tmp", "webhost")
    assert config["Entrypoint"] == "/bin/sh -c"
    assert config["Cmd"] == ["echo hi; sleep 300"]
    assert (config["Tty"], config["OpenStdin"]) == (True, True)
    assert config["Healthcheck"]["Test"] == ["CMD-SHELL", "true"]
    labels = config["Labels"]
    assert labels["tier"] == "web" and labels["berth.uuid"] == box.uuid
    assert (labels["berth.project"], labels["berth.spec_version"]) == ("proj-1", "7")
    assert labels["berth.owner"] == box.owner
    observed = await box.driver.inspect(box.uuid)
    assert observed is not None
    assert (observed.state, observed.status_detail, observed.spec_version) == (
        "created",
        "Created",
        7,
    )
    assert observed.started_at is None


async def test_create_is_idempotent_and_listing_is_per_owner(box: Box) -> None:
    first = await box.driver.create(box.spec())
    again = await box.driver.create(box.spec(command=["sleep", "1"]))
    assert again == first
    (listed,) = [c for c in await box.driver.list_managed() if c.uuid == box.uuid]
    assert (listed.runtime_id, listed.state, listed.detailed) == (first, "created", False)
    stranger = PodmanDriver(box.driver._api.base_url, owner=f"someone-else-{box.uuid}")
    try:
        assert box.uuid not in {c.uuid for c in await stranger.list_managed()}
    finally:
        await stranger.close()


async def test_lifecycle(box: Box) -> None:
    d, u = box.driver, box.uuid
    await d.create(box.spec())
    await d.start(u)
    await d.start(u)  # already running: fine
    running = await d.inspect(u)
    assert running is not None and running.state == "running"
    assert running.started_at is not None and running.status_detail.startswith("Up ")
    assert running.addresses  # on Podman's default network

    await d.pause(u)
    paused = await d.inspect(u)
    assert paused is not None and paused.state == "paused"
    assert paused.status_detail.endswith("(Paused)")
    with pytest.raises(errors.InvalidStateException):
        await d.pause(u)
    await d.unpause(u)
    assert box.inspect()["State"]["Status"] == "running"

    await d.stop(u, 1)
    stopped = await d.inspect(u)
    assert stopped is not None and stopped.state == "stopped" and stopped.exit_code == 137
    assert stopped.status_detail.startswith("Exited (137)")
    (listed,) = [c for c in await d.list_managed() if c.uuid == u]
    assert (listed.state, listed.exit_code) == ("stopped", 137)
    assert listed.status_detail.startswith("Exited (137)")

    await d.restart(u, 1)
    assert box.inspect()["State"]["Status"] == "running"

    await d.kill(u, "SIGKILL")
    await until(lambda: d.inspect(u), lambda c: c is not None and c.state == "stopped")
    assert box.inspect()["State"]["ExitCode"] == 137

    await d.remove(u)
    assert await d.inspect(u) is None
    await d.remove(u)  # absent is success


async def test_missing_container_errors(box: Box) -> None:
    with pytest.raises(errors.ContainerNotFound):
        await box.driver.start(box.uuid)
    with pytest.raises(errors.ContainerNotFound):
        await box.driver.logs(box.uuid)
    assert await box.driver.inspect(box.uuid) is None


async def test_update_and_stats(box: Box) -> None:
    await box.driver.create(box.spec(cpu=0.5, memory=64))
    await box.driver.start(box.uuid)
    stats = await box.driver.stats(box.uuid)
    assert stats["CONTAINER"] == f"berth-{box.uuid}" and stats["MEM LIMIT(MiB)"] == 64.0
    await box.driver.update(box.uuid, 1.0, 128)
    # Podman 4.3 changes the cgroup live; its inspect and stats keep the created values.
    limit, _ = await box.driver.execute(box.uuid, ["sh", "-c", _MEMORY_LIMIT], 5)
    assert int(limit) == 128 * MIB
    assert stats["MEM USAGE(MiB)"] > 0
    assert set(stats) == {
        "CONTAINER", "CPU %", "MEM USAGE(MiB)", "MEM LIMIT(MiB)", "MEM %", "BLOCK I/O(B)",
        "NET I/O(B)",
    }  # fmt: skip


_MEMORY_LIMIT = (
    "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max"
)


async def test_logs(box: Box) -> None:
    script = "echo err1 >&2; sleep 0.3; echo out1; echo out2; sleep 300"
    await box.driver.create(box.spec(command=["sh", "-c", script]))
    before = time.time() - 1
    await box.driver.start(box.uuid)
    d, u = box.driver, box.uuid
    await until(lambda: d.logs(u), lambda text: "out2" in text)
    assert await d.logs(u, stderr=False) == "out1\nout2\n"
    assert await d.logs(u, stdout=False) == "err1\n"
    assert await d.logs(u, stderr=False, tail=1) == "out2\n"
    stamped = (await d.logs(u, stderr=False, timestamps=True)).splitlines()
    assert len(stamped) == 2 and stamped[0].split(" ", 1)[1] == "out1"
    assert "out1" in await d.logs(u, since=before)
    assert await d.logs(u, since=time.time() + 3600) == ""


async def test_execute_and_top(box: Box) -> None:
    await box.driver.create(box.spec())
    await box.driver.start(box.uuid)
    output, code = await box.driver.execute(
        box.uuid, ["sh", "-c", "echo a; sleep 0.2; echo b >&2; exit 4"], 5
    )
    assert (output, code) == ("a\nb\n", 4)
    started = time.monotonic()
    with pytest.raises(errors.Conflict):
        await box.driver.execute(box.uuid, ["sleep", "30"], 0.5)
    assert time.monotonic() - started < 5
    limit = 64 * 1024  # more output is refused at once, not read on
    with pytest.raises(errors.Invalid, match=f"more than {limit} bytes"):
        await box.driver.execute(box.uuid, ["yes"], 30, limit)
    # Refused, it is killed (conmon kept it writing for ever), as on Docker.
    running = await box.driver.top(box.uuid)
    assert not any(p[-1] == "yes" for p in running["Processes"]), running
    output, _ = await box.driver.execute(
        box.uuid, ["head", "-c", str(limit), "/dev/zero"], 30, limit
    )
    assert len(output) == limit
    top = await box.driver.top(box.uuid)
    assert "PID" in top["Titles"]
    assert any("sleep 300" in " ".join(p) for p in top["Processes"])
    with pytest.raises(errors.Invalid, match="Invalid ps_args"):
        await box.driver.top(box.uuid, "-o nosuchdescriptor")


async def test_every_refused_command_is_ended(box: Box) -> None:
    # CI once listed a refused `yes` in a `top` right after its refusal. The driver now
    # kills it while its session is still attached, and waits (a second at most) until
    # Podman has reaped it.
    await box.driver.create(box.spec())
    await box.driver.start(box.uuid)
    for _ in range(3):
        with pytest.raises(errors.Invalid, match="more than 4096 bytes"):
            await box.driver.execute(box.uuid, ["yes"], 30, 4096)
        running = await box.driver.top(box.uuid)
        assert not any(p[-1] == "yes" for p in running["Processes"]), running


async def test_image_pull_policies(box: Box) -> None:
    await box.driver.ensure_image(TEST_IMAGE, "never")
    await box.driver.ensure_image(TEST_IMAGE, None)
    with pytest.raises(errors.ImageNotFound, match="'never'"):
        await box.driver.ensure_image("berth-test/absent:1", "never")
    # A registry on this host that does not answer: the pull fails at once.
    with pytest.raises(errors.ImageNotFound, match="pull failed"):
        await box.driver.ensure_image("localhost:1/absent:1", "ifnotpresent")
    with pytest.raises(errors.ImageNotFound):
        await box.driver.create(box.spec(image="localhost:1/absent:1"))


async def test_published_port(box: Box) -> None:
    await box.driver.create(box.spec(published_ports=[PublishedPort(8080)]))
    await box.driver.start(box.uuid)
    seen = await box.driver.inspect(box.uuid)
    assert seen is not None and set(seen.published) == {"8080/tcp"}
    (listed,) = [c for c in await box.driver.list_managed() if c.uuid == box.uuid]
    assert listed.published == seen.published


# -- capsules as pods


async def test_capsule_is_a_pod(box: Box) -> None:
    """Sandbox → pod infra; init member runs to completion, then the app member starts."""
    d, capsule = box.driver, box.uuid
    init, app = f"{capsule}i", f"{capsule}a"
    sandbox = box.spec(
        labels={"berth.capsule": capsule},
        command=["sleep", "2147483647"],
        hostname="pod-web",
        cpu=1.0,
        memory=96,
        restart_policy={"Name": "always", "MaximumRetryCount": "0"},
        published_ports=[PublishedPort(8080)],
    )
    await d.create(sandbox)
    await d.create(sandbox)  # idempotent
    await d.start(capsule)
    pod = podman_json("pod", "inspect", f"berth-pod-{capsule}")
    assert pod["InfraContainerID"] == box.inspect()["Id"]
    assert {"net", "uts", "ipc"} <= set(pod["SharedNamespaces"])
    assert (pod["cpu_quota"], pod["memory_limit"]) == (100_000, 96 * MIB)
    seen = await d.inspect(capsule)
    assert seen is not None and seen.state == "running" and set(seen.published) == {"8080/tcp"}
    assert capsule in {c.uuid for c in await d.list_managed()}

    # The control plane hands the init container over once the sandbox runs...
    await d.create(
        box.spec(
            uuid=init,
            name="init",
            network_container=capsule,
            command=["sh", "-c", "hostname > /dev/shm/init; echo init ran"],
        )
    )
    await d.start(init)
    done = await until(lambda: d.inspect(init), lambda c: c is not None and c.state == "stopped")
    assert done is not None and done.exit_code == 0
    # ...and the app containers once it exited 0.
    await d.create(
        box.spec(
            uuid=app,
            name="app",
            network_container=capsule,
            command=["sh", "-c", "cat /dev/shm/init; hostname; sleep 300"],
        )
    )
    await d.start(app)
    await until(lambda: d.logs(app), lambda text: text.count("pod-web") == 2)
    assert await d.logs(app) == "pod-web\npod-web\n"  # shared UTS and IPC (/dev/shm)

    pod = podman_json("pod", "inspect", f"berth-pod-{capsule}")
    members = pod_member_states(pod)
    assert members == {
        f"berth-{capsule}": "running",
        f"berth-{init}": "exited",
        f"berth-{app}": "running",
    }
    assert pod["State"] == "Degraded"  # one member exited (the init container)
    infra, first, second = box.inspect(capsule), box.inspect(init), box.inspect(app)
    assert first["Pod"] == second["Pod"] == pod["Id"]
    # One network namespace: the members' is the infra's.
    netns = {os.readlink(f"/proc/{c['State']['Pid']}/ns/net") for c in (infra, second)}
    assert len(netns) == 1
    assert second["HostConfig"]["NetworkMode"] == f"container:{infra['Id']}"
    # The init container finished before the app container started.
    assert first["State"]["FinishedAt"] < second["State"]["StartedAt"]

    # Delete: members first, then the sandbox (and with it the pod).
    await d.remove(app)
    await d.remove(init)
    await d.remove(capsule)
    assert await d.inspect(capsule) is None
    assert podman_json(
        "pod", "ps", "--filter", f"name=berth-pod-{capsule}", "--format", "json"
    ) in (
        [],
        None,
    )
    await d.remove(capsule)  # absent is success


async def test_member_of_a_missing_pod(box: Box) -> None:
    with pytest.raises(errors.InvalidStateException, match="pod"):
        await box.driver.create(box.spec(network_container=f"{box.uuid}x"))


# -- streams


async def test_exec_session_and_attach(box: Box) -> None:
    d, u = box.driver, box.uuid
    await d.create(box.spec(command=["sh"], interactive=True))
    await d.start(u)
    exec_id = await d.exec_create(u, ["sh"], tty=False)
    session = await d.exec_open(u, exec_id)
    await session.write(b"echo from-exec; exit 3\n")
    out = b""
    while chunk := await session.read():
        out += chunk
    await session.close()
    assert out == b"from-exec\n"
    with pytest.raises(errors.Invalid):
        await d.exec_open(u, "0" * 64)

    attached = await d.attach(u)
    await attached.write(b"echo from-attach\n")
    got = await asyncio.wait_for(attached.read(), 5)
    assert got == b"from-attach\n"
    await attached.close()


async def test_an_exec_that_ends_at_once_opens_without_waiting(box: Box) -> None:
    d, u = box.driver, box.uuid
    await d.create(box.spec())
    await d.start(u)
    exec_id = await d.exec_create(u, ["echo", "done"], tty=False)
    began = time.monotonic()
    session = await d.exec_open(u, exec_id)  # waits for running, or for the end
    assert time.monotonic() - began < 3  # not the 10 s it allows a loaded engine
    out = b""
    while chunk := await asyncio.wait_for(session.read(), 5):
        out += chunk
    await session.close()
    assert out == b"done\n"
    # Nor one whose command does not exist (it never runs at all).
    exec_id = await d.exec_create(u, ["/no/such/command"], tty=True)
    began = time.monotonic()
    session = await d.exec_open(u, exec_id)
    await session.close()
    assert time.monotonic() - began < 3


async def test_tty_exec_resize(box: Box) -> None:
    d, u = box.driver, box.uuid
    await d.create(box.spec())
    await d.start(u)
    exec_id = await d.exec_create(u, ["sh"], tty=True)
    session = await d.exec_open(u, exec_id)
    await d.exec_resize(u, exec_id, 40, 100)
    await session.write(b"stty size; exit\n")
    out = b""
    while chunk := await asyncio.wait_for(session.read(), 5):
        out += chunk
    await session.close()
    assert b"40 100" in out


async def test_follow_logs(box: Box) -> None:
    d, u = box.driver, box.uuid
    await d.create(box.spec(command=["sh", "-c", "echo one; sleep 0.5; echo two"]))
    with pytest.raises(errors.ContainerNotFound):
        await d.follow_logs(f"{u}x")
    await d.start(u)
    stream = await d.follow_logs(u)
    got = b"".join([chunk async for chunk in stream])
    assert got == b"one\ntwo\n"


async def test_follow_logs_of_a_quiet_container_answers_at_once(box: Box) -> None:
    """libpod holds a follow's headers back until the first line; the stream is open
    before that, and then carries what the container writes."""
    d, u = box.driver, box.uuid
    await d.create(box.spec(command=["sh", "-c", "sleep 3; echo late"]))
    await d.start(u)
    stream = await asyncio.wait_for(d.follow_logs(u), 2)
    started = time.monotonic()
    first = await asyncio.wait_for(anext(stream), 15)
    assert first == b"late\n" and time.monotonic() - started > 1.5
    await stream.aclose()


async def test_archives(box: Box) -> None:
    d, u = box.driver, box.uuid
    await d.create(box.spec())
    await d.start(u)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    await d.put_archive(u, "/tmp", buffer.getvalue())
    output, _ = await d.execute(u, ["cat", "/tmp/hello.txt"], 5)
    assert output == "hello"
    data, stat = await d.get_archive(u, "/tmp/hello.txt", 1 << 20)
    assert stat["name"] == "hello.txt" and stat["size"] == 5
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.extractfile("hello.txt")
        assert member is not None and member.read() == b"hello"
    with pytest.raises(errors.Invalid):
        await d.get_archive(u, "/nonexistent", 1 << 20)
    with pytest.raises(errors.Invalid):
        await d.get_archive(u, "/bin", 1024)
    # Refused as Docker refuses them (libpod would create the one, answer 500 to the other).
    with pytest.raises(errors.Invalid, match="Could not find the file /no/such/dir"):
        await d.put_archive(u, "/no/such/dir", buffer.getvalue())
    with pytest.raises(errors.Invalid, match="not a directory"):
        await d.put_archive(u, "/tmp/hello.txt", buffer.getvalue())
    output, code = await d.execute(u, ["ls", "/no/such/dir"], 5)
    assert code != 0, output


async def test_runtime_is_the_services(box: Box) -> None:
    """libpod 4.3 ignores a per-container runtime: the service's is the only one offered."""
    facts = await box.driver.host_facts()
    (runtime,) = facts.runtimes
    await box.driver.create(box.spec(runtime=runtime))
    assert box.inspect()["OCIRuntime"] == runtime
    other = "runsc" if runtime != "runsc" else "runc"
    with pytest.raises(errors.Invalid, match="not available"):
        await box.driver.create(box.spec(uuid=f"{box.uuid}x", runtime=other))


async def test_gvisor_service_runs_containers_sandboxed(podman_url: str, tmp_path: Path) -> None:
    """A Podman host for gVisor: a service started with ``--runtime runsc`` (the wrapper
    scripts/podman/containers.conf names) offers runsc, runs a ``runtime=runsc`` container
    under gVisor's kernel with loopback only (as Docker's runsc entry does), and refuses
    runc, which it would silently replace."""
    if shutil.which("runsc") is None or not os.access(RUNSC_WRAPPER, os.X_OK):
        pytest.skip("runsc or its Podman wrapper is missing (scripts/lib.sh ensure_runsc)")
    uuid = f"t{uuidlib.uuid4().hex[:16]}"
    owner = f"test-{uuid}"
    with podman_service(tmp_path, runtime="runsc") as url:
        driver = PodmanDriver(url, owner=owner)
        box = Box(driver, uuid, owner)
        try:
            facts = await driver.host_facts()
            assert facts.runtimes == ["runsc"]
            script = "dmesg | head -1; ip addr | grep -c inet; sleep 300"
            await driver.create(box.spec(runtime="runsc", command=["sh", "-c", script]))
            await driver.start(uuid)
            assert box.inspect()["OCIRuntime"] == "runsc"
            logs = await until(lambda: driver.logs(uuid), lambda text: "\n2" in text, 30)
            assert "gVisor" in logs, logs
            # loopback only: one IPv4 and one IPv6 address, both lo's
            assert logs.rstrip().endswith("2"), logs
            with pytest.raises(errors.Invalid, match="not available"):
                await driver.create(box.spec(uuid=f"{uuid}x", runtime="runc"))
        finally:
            await driver.close()
            await asyncio.to_thread(remove_podman_owned, owner)


# -- volumes


async def test_volumes_through_the_local_volume_driver(box: Box) -> None:
    """Berth's volume driver works unchanged on Podman's socket (its Docker-compatible
    volume endpoints); the volume's data outlives the container, and is removed with
    the container that owns it."""
    volumes = LocalVolumeDriver(box.driver._api.base_url, owner=box.owner)
    driver = PodmanDriver(box.driver._api.base_url, owner=box.owner, volumes=volumes)
    vol = f"v{box.uuid}"
    mount = VolumeMount(vol, "/data", owner=box.uuid)
    try:
        spec = box.spec(command=["sh", "-c", "echo kept > /data/file; sleep 300"], volumes=[mount])
        await driver.create(spec)
        await driver.start(box.uuid)
        assert podman_json("volume", "inspect", f"berth-vol-{vol}")[0]["Labels"]["berth.owner"] == (
            box.owner
        )
        await until(
            lambda: driver.execute(box.uuid, ["cat", "/data/file"], 5), lambda r: r[0] != ""
        )
        await driver.remove(box.uuid)
        again = box.spec(uuid=f"{box.uuid}b", command=["cat", "/data/file"], volumes=[mount])
        await driver.create(again)
        await driver.start(again.uuid)
        await until(lambda: driver.logs(again.uuid), lambda text: text != "")
        assert await driver.logs(again.uuid) == "kept\n"
        await driver.remove(again.uuid)
        await volumes.remove_owned_by(box.uuid)
        assert not podman_json(
            "volume", "ls", "--filter", f"name=berth-vol-{vol}", "--format", "json"
        )
    finally:
        await driver.close()
        await asyncio.to_thread(
            subprocess.run,
            ["podman", "volume", "rm", "-f", f"berth-vol-{vol}"],
            capture_output=True,
        )


# -- networks


async def test_project_networks_through_the_bridge_driver(box: Box) -> None:
    """Berth's bridge network driver on Podman's socket: a project network is a Podman
    network on its own bridge; its containers reach each other, others' do not, and a
    security group filters what reaches a container from its own network."""
    owner = box.owner
    nets = BridgeNetworks(box.driver._api.base_url, owner=owner)
    driver = PodmanDriver(box.driver._api.base_url, owner=owner, networks=nets)
    mine, theirs = (
        NetworkRef(f"n{box.uuid}", "net", "proj-1"),
        NetworkRef(f"o{box.uuid}", "x", "p2"),
    )
    a, b, c = box.uuid, f"{box.uuid}b", f"{box.uuid}c"
    try:
        for uuid, net in ((a, mine), (b, mine), (c, theirs)):
            await driver.create(box.spec(uuid=uuid, networks=[net]))
            await driver.start(uuid)
        seen_b = await driver.inspect(b)
        seen_c = await driver.inspect(c)
        assert seen_b is not None and seen_c is not None
        assert list(seen_b.addresses) == [f"berth-net-{mine.id}"]
        # The listing the agent reads each pass has them too (its security-group chains
        # follow the listed addresses: none listed would remove them).
        listed = {c.uuid: c for c in await driver.list_managed()}
        assert listed[b].addresses == seen_b.addresses and listed[c].addresses == seen_c.addresses
        ip_b = seen_b.addresses[f"berth-net-{mine.id}"][0]["addr"]
        ip_c = seen_c.addresses[f"berth-net-{theirs.id}"][0]["addr"]
        _, reached = await driver.execute(a, ["ping", "-c", "1", "-W", "2", ip_b], 10)
        _, isolated = await driver.execute(a, ["ping", "-c", "1", "-W", "1", ip_c], 10)
        assert reached == 0 and isolated != 0
        # Berth names the bridge (the host guard and isolation key on it); Podman honours it.
        (inspected,) = podman_json("network", "inspect", f"berth-net-{mine.id}")
        assert inspected["network_interface"] == bridge_name(owner, mine.id)
        # Security groups: b's chain first lets nothing in, then ICMP.
        await nets.write_firewalls({b: ((ip_b,), ())})
        _, blocked = await driver.execute(a, ["ping", "-c", "1", "-W", "1", ip_b], 10)
        await nets.write_firewalls({b: ((ip_b,), (FirewallRule(protocol="icmp"),))})
        _, allowed = await driver.execute(a, ["ping", "-c", "1", "-W", "2", ip_b], 10)
        await nets.write_firewalls({b: None})
        assert (blocked, allowed) == (1, 0)
        # A second network attached live, then detached.
        await nets.connect(a, theirs)
        _, reached = await driver.execute(a, ["ping", "-c", "1", "-W", "2", ip_c], 10)
        assert reached == 0
        await nets.disconnect(a, theirs.id)
        seen_a = await driver.inspect(a)
        assert seen_a is not None and seen_a.networks == [f"berth-net-{mine.id}"]
    finally:
        await nets.write_firewalls(dict.fromkeys(await nets.firewalled()))
        for uuid in (a, b, c):
            await driver.remove(uuid)
        await nets.prune(set())
        await driver.close()


@contextlib.contextmanager
def _accepted_first(address: str) -> Iterator[None]:
    """An ACCEPT of everything to ``address`` at the top of ``FORWARD``, inside the ``with``."""
    rule = ["FORWARD", "-d", f"{address}/32", "-m", "comment", "--comment", "berth-test-probe"]
    subprocess.run(["iptables", "-w", "-I", *rule[:1], "1", *rule[1:], "-j", "ACCEPT"], check=True)
    try:
        yield
    finally:
        subprocess.run(["iptables", "-w", "-D", *rule, "-j", "ACCEPT"], check=False)


async def test_projects_stay_apart_while_other_podman_containers_come_and_go(box: Box) -> None:
    """Berth isolates its networks itself: a container of another isolated network exiting
    (which makes netavark 1.4 drop its own isolation) leaves two projects apart, and a
    security group still filters."""
    nets = BridgeNetworks(box.driver._api.base_url, owner=box.owner)
    driver = PodmanDriver(box.driver._api.base_url, owner=box.owner, networks=nets)
    mine, theirs = NetworkRef(f"n{box.uuid}", "n", "p1"), NetworkRef(f"o{box.uuid}", "x", "p2")
    a, b, c = box.uuid, f"{box.uuid}b", f"{box.uuid}c"
    serve = ["sh", "-c", "echo hi > /tmp/index.html; exec httpd -f -p 8000 -h /tmp"]
    try:
        for uuid, net in ((a, mine), (b, mine), (c, theirs)):
            await driver.create(box.spec(uuid=uuid, networks=[net], command=serve))
            await driver.start(uuid)
        ips = {}
        for uuid in (a, b, c):
            seen = await driver.inspect(uuid)
            assert seen is not None
            ips[uuid] = next(iter(seen.addresses.values()))[0]["addr"]

        async def reaches(src: str, dst: str) -> bool:
            # TCP, not ping: a new source port each time, so no earlier flow's
            # conntrack entry (a test before reusing the addresses) lets it in.
            ask = f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {ips[dst]} 8000"
            out, _ = await driver.execute(src, ["sh", "-c", ask], 10)
            return "hi" in out

        # One project network (once b's httpd listens).
        assert await until(lambda: reaches(a, b), bool)
        # The agent's look for unused networks re-checks the isolation from the engine's
        # listing (where Podman leaves out the bridge's name): it keeps it.
        await nets.prune({mine.id, theirs.id})
        assert not await reaches(a, c)
        # netavark puts its isolation jump first in FORWARD while the probe runs, and
        # (1.4) deletes it when the probe exits.
        with isolated_podman_container(f"berth-probe-{box.uuid}"):
            # (Berth's entry may stay below that jump: it only drops.)
            await nets.write_firewalls({b: ((ips[b],), ())})
            assert not await reaches(a, b)  # the group lets nothing in
        assert not await reaches(a, c) and not await reaches(c, a)
        assert not await reaches(a, b)
        # Another agent on this kernel sweeping its own (it has none) leaves these be.
        other = BridgeNetworks(box.driver._api.base_url, owner=f"{box.owner}-other")
        await other.write_firewalls(dict.fromkeys(await other.firewalled()))
        await other.prune(set())
        await other.close()
        assert not await reaches(a, c) and not await reaches(a, b)
        await nets.write_firewalls({b: ((ips[b],), (FirewallRule("tcp", 8000, 8000, None),))})
        assert await reaches(a, b)
        # Something puts an ACCEPT above Berth's entry (netavark re-adding its jump, a
        # firewall reload): the agent's next look at its networks puts Berth's first again.
        await nets.write_firewalls({b: ((ips[b],), ())})
        with _accepted_first(ips[b]):
            await nets.prune({mine.id, theirs.id})
            assert not await reaches(a, b)
        await nets.write_firewalls({b: None})
    finally:
        await nets.write_firewalls(dict.fromkeys(await nets.firewalled()))
        for uuid in (a, b, c):
            await driver.remove(uuid)
        await nets.prune(set())
        await driver.close()
