"""The reference runtime driver: the local Docker Engine through the docker SDK.

Two layers, as in docker-py itself: ``_Engine`` is the thin low-level part (it
owns the SDK client, runs every blocking call in a thread pool and turns SDK
exceptions into Berth errors); ``DockerDriver`` maps Berth's verbs onto it, with
the JSON translations kept pure in ``dockermap``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import select
import shutil
import socket
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
import requests

from berth import errors
from berth.config import Settings
from berth.domain.hostsync import DesiredContainer
from berth.networks.base import NetworkDriver
from berth.runtimes import dockermap
from berth.runtimes.base import (
    EXECUTE_MAX_OUTPUT,
    LABEL_OWNER,
    LABEL_UUID,
    HostFacts,
    RuntimeContainer,
    RuntimeFactory,
    TopResult,
    ZunStats,
    bad_ps_args,
    container_name,
    exec_process_gone,
    kill_refused_exec,
    output_too_large,
)
from berth.runtimes.docker_images import DockerImageOps
from berth.runtimes.docker_streams import DockerStreams
from berth.volumes.base import VolumeDriver

__all__ = ["DockerDriver", "driver"]

log = logging.getLogger(__name__)
T = TypeVar("T")
_MIB = 1024 * 1024
_MAX_TAGS = 1000  # images reported for the scheduler's image locality (the newest)
_GIB = 1024 * _MIB


class _Engine:
    """The docker SDK's APIClient, called off the event loop, with errors translated."""

    def __init__(self, base_url: str, threads: int) -> None:
        self.base_url = base_url
        # A pool of its own: stops, pulls and execs block a thread for seconds, and
        # must not starve asyncio's small default pool (or each other).
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="berth-docker")
        self._api: Any = None
        self._lock = threading.Lock()

    def _client(self) -> Any:
        # Built lazily (in a worker thread): negotiating the API version is I/O.
        with self._lock:
            if self._api is None:
                self._api = docker.APIClient(
                    base_url=self.base_url, version="auto", max_pool_size=32
                )
            return self._api

    async def raw(self, call: Callable[[Any], T]) -> T:
        """Run ``call(api_client)`` in the pool; SDK exceptions pass through untouched."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: call(self._client()))

    async def run(self, call: Callable[[Any], T]) -> T:
        """Run ``call(api_client)`` in the pool, raising Berth errors instead of SDK ones."""
        try:
            return await self.raw(call)
        except docker.errors.NotFound as exc:
            raise errors.ContainerNotFound(_explain(exc)) from exc
        except docker.errors.APIError as exc:
            if exc.status_code == 409:
                raise errors.InvalidStateException(_explain(exc)) from exc
            if exc.status_code == 400:
                raise errors.Invalid(_explain(exc)) from exc
            raise errors.BerthError(f"docker engine error: {_explain(exc)}") from exc
        except (docker.errors.DockerException, requests.RequestException) as exc:
            raise errors.HostUnavailable(
                f"the docker engine at {self.base_url} does not answer: {exc}"
            ) from exc

    def close(self) -> None:
        """Release the connection pool and the threads."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._api is not None:
            self._api.close()


def _explain(exc: docker.errors.APIError) -> str:
    return str(exc.explanation or exc)


class DockerDriver(DockerImageOps, DockerStreams):
    """RuntimeDriver over a Docker Engine (``unix:///var/run/docker.sock`` by default).

    ``owner`` (pass ``settings.agent_host``; default: this machine's host name)
    is written as a label on every container created and restricts
    ``list_managed`` to those, so agents of different Berth deployments (or
    test runs) sharing one engine never garbage-collect each other's work.
    ``limits`` are what every tenant container is held to (processes, log size).
    ``volumes`` and ``networks`` are the drivers of data volumes and of project
    networks and security groups; the composition root (``berth.cli.serve``)
    chooses them, so this driver names no concrete one.
    """

    def __init__(
        self,
        base_url: str = "unix:///var/run/docker.sock",
        *,
        volumes: VolumeDriver,
        networks: NetworkDriver,
        owner: str | None = None,
        threads: int = 64,
        limits: dockermap.TenantLimits = dockermap.TenantLimits(),
    ) -> None:
        self._engine = _Engine(base_url, threads)
        self._limits = limits
        self._owner = owner or socket.gethostname()
        self.volumes = volumes
        self.networks = networks

    async def close(self) -> None:
        """Release the engine connection; the driver is unusable afterwards."""
        self._engine.close()
        await self.volumes.close()
        await self.networks.close()

    # -- the host

    async def host_facts(self) -> HostFacts:
        """Describe the host from the engine's ``info``, plus the size of its data disk."""
        info: dict[str, Any] = await self._engine.run(lambda api: api.info())
        disk_total = await asyncio.to_thread(_disk_total, Path(info.get("DockerRootDir") or "/"))
        # io.containerd.* are the shims behind runc, not runtimes a user can ask for.
        runtimes = sorted(
            r for r in info.get("Runtimes") or {} if not r.startswith("io.containerd")
        )
        images: list[dict[str, Any]] = await self._engine.run(lambda api: api.images())
        return HostFacts(
            cpus=int(info.get("NCPU") or 1),
            mem_total=int(info.get("MemTotal") or 0) // _MIB,
            disk_total=disk_total,
            runtimes=runtimes or ["runc"],
            architecture=info.get("Architecture"),
            os_type=info.get("OSType"),
            os=info.get("OperatingSystem"),
            kernel_version=info.get("KernelVersion"),
            images=_tags(images),
            engine="docker",
            engine_version=info.get("ServerVersion"),
        )

    # -- observing

    async def list_managed(self) -> list[RuntimeContainer]:
        """Every Berth container of this owner, from one sparse listing call."""
        wanted = [LABEL_UUID, f"{LABEL_OWNER}={self._owner}"]
        entries: list[dict[str, Any]] = await self._engine.run(
            lambda api: api.containers(all=True, filters={"label": wanted})
        )
        return [dockermap.from_listing(entry) for entry in entries]

    async def inspect(self, uuid: str) -> RuntimeContainer | None:
        """The detailed view of ``berth-<uuid>``, or None when it does not exist."""
        try:
            data = await self._engine.run(lambda api: api.inspect_container(container_name(uuid)))
        except errors.ContainerNotFound:
            return None
        return dockermap.from_inspect(data)

    # -- images: ensure_image, pull_image, remove_image, commit (DockerImageOps)

    # -- lifecycle

    async def create(self, spec: DesiredContainer) -> str:
        """Create ``berth-<uuid>`` (not started); if it already exists, return its id.

        No inspect first: the engine's 409 for a taken name is the "exists" answer
        (one call saved on every create).
        """
        for mount in spec.volumes:
            if not mount.host_path:
                await self.volumes.ensure(mount, spec.project_id)
        if spec.networks and not spec.network_container:
            await self.networks.ensure(spec.networks[0])  # joined at create
        config, host = dockermap.create_params(spec, self._owner, self._limits)

        def create(api: Any) -> dict[str, Any]:
            host_config = api.create_host_config(**host)
            result: dict[str, Any] = api.create_container(
                host_config=host_config, use_config_proxy=False, **config
            )
            return result

        try:
            try:
                created = await self._engine.run(create)
            except errors.ContainerNotFound as exc:
                first = spec.networks[0] if spec.networks and not spec.network_container else None
                if first is None or "network" not in exc.message.lower():
                    raise
                # The engine lost the network the driver remembered: make it again.
                self.networks.forget(first.id)
                await self.networks.ensure(first)
                created = await self._engine.run(create)
        except errors.ContainerNotFound as exc:  # a 404 on create is about the image
            raise errors.ImageNotFound(
                f"image {spec.image!r} not found on this host: {exc.message}"
            ) from exc
        except errors.InvalidStateException:
            # 409: a concurrent create got there first; its container answers
            # inspect only once the engine finished registering it.
            return await self._await_existing(spec.uuid)
        if not spec.network_container:
            for net in spec.networks[1:]:  # the create joined the first one
                await self.networks.connect(spec.uuid, net)
        return str(created["Id"])

    async def _await_existing(self, uuid: str, within: float = 10.0) -> str:
        deadline = time.monotonic() + within
        while (found := await self.inspect(uuid)) is None:
            if time.monotonic() > deadline:
                raise errors.InvalidStateException(
                    f"the name {container_name(uuid)} is taken but no container answers to it"
                )
            await asyncio.sleep(0.05)
        return found.runtime_id

    async def start(self, uuid: str) -> None:
        """Start it (a running container answers 304, which is success)."""
        await self._engine.run(lambda api: api.start(container_name(uuid)))

    async def stop(self, uuid: str, timeout: int) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds."""
        await self._engine.run(lambda api: api.stop(container_name(uuid), timeout=timeout))

    async def pause(self, uuid: str) -> None:
        """Freeze the container's processes (cgroup freezer)."""
        await self._engine.run(lambda api: api.pause(container_name(uuid)))

    async def unpause(self, uuid: str) -> None:
        """Thaw the container's processes."""
        await self._engine.run(lambda api: api.unpause(container_name(uuid)))

    async def kill(self, uuid: str, signal: str | int | None = None) -> None:
        """Send a signal (Zun's forms accepted: None, 9, "kill", "SIGKILL")."""
        sig = dockermap.signal_name(signal)
        await self._engine.run(lambda api: api.kill(container_name(uuid), signal=sig))

    async def restart(self, uuid: str, timeout: int) -> None:
        """Stop with ``timeout`` then start again (starts a stopped container too)."""
        await self._engine.run(lambda api: api.restart(container_name(uuid), timeout=timeout))

    async def remove(self, uuid: str, force: bool = True) -> None:
        """Remove it with its anonymous volumes; absent, or already being removed, is success."""
        try:
            await self._engine.run(
                lambda api: api.remove_container(container_name(uuid), v=True, force=force)
            )
        except errors.ContainerNotFound:
            return
        except errors.InvalidStateException as exc:
            if "already in progress" not in exc.message:
                raise

    async def update(self, uuid: str, cpu: float | None, memory: int | None) -> None:
        """Apply new CPU/memory limits live (memswap follows memory)."""
        body: dict[str, Any] = {}
        if cpu:
            body["NanoCpus"] = round(cpu * 1_000_000_000)
        if memory:
            body["Memory"] = body["MemorySwap"] = memory * _MIB
        if not body:
            return

        def update(api: Any) -> None:
            # update_container() cannot set NanoCpus, and a container created with
            # NanoCpus refuses CpuQuota: post the engine's own body instead.
            res = api._post_json(
                api._url("/containers/{0}/update", container_name(uuid)), data=body
            )
            api._result(res, True)

        await self._engine.run(update)

    # -- synchronous operations

    async def logs(
        self,
        uuid: str,
        *,
        stdout: bool = True,
        stderr: bool = True,
        timestamps: bool = False,
        tail: int | None = None,
        since: float | None = None,
    ) -> str:
        """The container's output as text (undecodable bytes replaced)."""
        options: dict[str, Any] = {
            "stdout": stdout,
            "stderr": stderr,
            "timestamps": timestamps,
            "tail": "all" if tail is None else tail,
        }
        if since:
            options["since"] = float(since)
        data: bytes = await self._engine.run(lambda api: api.logs(container_name(uuid), **options))
        return data.decode("utf-8", errors="replace")

    async def execute(
        self,
        uuid: str,
        command: list[str],
        timeout: float,
        max_output: int = EXECUTE_MAX_OUTPUT,
    ) -> tuple[str, int | None]:
        """Run ``command`` in the container; Conflict if it outlives ``timeout`` seconds,
        Invalid once it writes more than ``max_output`` bytes. The exit code is None
        when the engine lost it (``exec_process_gone``)."""
        name = container_name(uuid)
        exec_id: str = (
            await self._engine.run(lambda api: api.exec_create(name, command, stdout=True))
        )["Id"]
        try:
            output, exit_lost = await self._engine.run(
                functools.partial(_exec_output, exec_id, timeout, max_output)
            )
        except OverflowError as exc:
            await self._end_exec(exec_id)
            raise output_too_large(command, max_output) from exc
        except TimeoutError as exc:
            raise errors.Conflict(
                f"the command {' '.join(command)!r} did not finish within {timeout:g} seconds"
            ) from exc
        text = output.decode("utf-8", errors="replace")
        if exit_lost:
            log.warning("the engine lost the exit of exec %s; its exit code is unknown", exec_id)
            return text, None
        info: dict[str, Any] = await self._engine.run(lambda api: api.exec_inspect(exec_id))
        return text, int(info.get("ExitCode") or 0)

    async def _end_exec(self, exec_id: str) -> None:
        """Kill a command whose output was refused (``kill_refused_exec``)."""
        info: dict[str, Any] = await self._engine.run(lambda api: api.exec_inspect(exec_id))
        await asyncio.to_thread(kill_refused_exec, exec_id, info)

    async def top(self, uuid: str, ps_args: str | None = None) -> TopResult:
        """The container's processes, as ``ps`` (with ``ps_args``) shows them."""
        args = None if ps_args in (None, "", "None") else ps_args
        try:
            raw: dict[str, Any] = await self._engine.run(
                lambda api: api.top(container_name(uuid), ps_args=args)
            )
        except errors.BerthError as exc:
            raise bad_ps_args(args, exc) from exc
        return {"Titles": raw.get("Titles") or [], "Processes": raw.get("Processes") or []}

    async def stats(self, uuid: str) -> ZunStats:
        """One resource sample (about a second: the engine measures CPU over an interval)."""
        name = container_name(uuid)
        raw: dict[str, Any] = await self._engine.run(lambda api: api.stats(name, stream=False))
        return dockermap.zun_stats(raw, str(raw.get("name") or name).lstrip("/"))


def _tags(images: list[dict[str, Any]]) -> list[str]:
    """``repo:tag`` of every tagged image, newest first, at most ``_MAX_TAGS`` of them."""
    newest = sorted(images, key=lambda i: int(i.get("Created") or 0), reverse=True)
    tags = [t for i in newest for t in i.get("RepoTags") or () if t and t != "<none>:<none>"]
    return sorted(dict.fromkeys(tags[:_MAX_TAGS]))


def _disk_total(root: Path) -> int:
    """GiB of the file system holding the engine's data (the agent runs on that host)."""
    return shutil.disk_usage(root if root.exists() else Path("/")).total // _GIB


_EXIT_CHECK = 1.0
"""Seconds an exec's stream may stay quiet before the engine is asked whether its
process still runs (``exec_process_gone``), and again before the stream is given up."""


def _exec_output(exec_id: str, timeout: float, max_output: int, api: Any) -> tuple[bytes, bool]:
    """Start an exec and read its multiplexed output until EOF, or raise TimeoutError.

    The SDK's own reader waits forever; this one gives up at the deadline and
    closes the connection (the process inside keeps running, as with Zun). It
    raises OverflowError as soon as the output is surely past ``max_output`` bytes
    (a frame's 8-byte header carries at least one byte, so 9 raw bytes per byte).
    The flag says the engine lost the process's exit (``exec_process_gone``): its
    stream would have stayed open until the deadline though all was written.
    """
    deadline = time.monotonic() + timeout
    sock = api.exec_start(exec_id, socket=True)
    raw = bytearray()
    gone_at: float | None = None
    try:
        while (now := time.monotonic()) < deadline:
            if not select.select([sock], [], [], min(deadline - now, _EXIT_CHECK))[0]:
                if gone_at is None:
                    gone_at = now if _exit_lost(api, exec_id) else None
                elif now - gone_at >= _EXIT_CHECK:
                    return _demultiplexed(exec_id, raw, max_output), True
                continue
            chunk = sock.read(65536) if hasattr(sock, "read") else sock.recv(65536)
            if not chunk:
                return _demultiplexed(exec_id, raw, max_output), False
            raw += chunk
            if len(raw) > 9 * max_output + 8:
                raise OverflowError(exec_id)
        raise TimeoutError(exec_id)
    finally:
        sock.close()
        inner = getattr(sock, "_sock", None)
        if inner is not None:
            inner.close()


def _exit_lost(api: Any, exec_id: str) -> bool:
    info: dict[str, Any] = api.exec_inspect(exec_id)
    if not info.get("Running"):
        return False
    state = api.inspect_container(str(info.get("ContainerID") or "")).get("State") or {}
    return exec_process_gone(info, int(state.get("Pid") or 0))


def _demultiplexed(exec_id: str, raw: bytearray, max_output: int) -> bytes:
    output = _demultiplex(bytes(raw))
    if len(output) > max_output:
        raise OverflowError(exec_id)
    return output


def _demultiplex(raw: bytes) -> bytes:
    """Join the payloads of Docker's stdout/stderr frames (8-byte headers) in order."""
    out = bytearray()
    pos = 0
    while pos + 8 <= len(raw):
        (size,) = struct.unpack(">I", raw[pos + 4 : pos + 8])
        out += raw[pos + 8 : pos + 8 + size]
        pos += 8 + size
    return bytes(out)


def driver(settings: Settings, *, networks: NetworkDriver, volumes: VolumeDriver) -> DockerDriver:
    """The ``docker`` entry point: the engine at ``docker_url``, holding tenant containers
    to the operator's limits (processes, log size)."""
    limits = dockermap.TenantLimits(
        pids=settings.container_pids_limit, log_max_mb=settings.container_log_max_mb
    )
    return DockerDriver(
        settings.docker_url,
        owner=settings.agent_host,
        limits=limits,
        networks=networks,
        volumes=volumes,
    )


_ENTRY_POINT: RuntimeFactory = driver  # so mypy checks the entry point against the Protocol
