"""A native Podman runtime driver: libpod's REST API (``podman system service``).

Not the Docker driver pointed at Podman's Docker-compatible endpoints: every
call goes to ``/v4.0.0/libpod/...``, so a capsule becomes a real Podman pod
(see ``podmanmap``: the sandbox is the pod's infra container, members join the
pod). Two layers, as in ``docker.py``: ``_Libpod`` owns the HTTP client (httpx
over the service's unix socket, fully async) and turns libpod's error answers
into Berth errors; ``PodmanDriver`` maps Berth's verbs onto it, with the JSON
translations kept pure in ``podmanmap``. Image verbs are the
``podman_images.PodmanImageOps`` mixin, sessions, log following and archives
the ``podman_streams.PodmanStreams`` mixin.

The service must run with a ``containers.conf`` whose ``default_ulimits`` the
host allows (Podman raises nofile/nproc by default, which needs
CAP_SYS_RESOURCE); see scripts/lib.sh ``ensure_podman``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from berth import errors
from berth.config import Settings
from berth.domain.hostsync import DesiredContainer
from berth.networks.base import NetworkDriver
from berth.runtimes import podmanmap
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
    kill_refused_exec,
    output_too_large,
)
from berth.runtimes.dockermap import TenantLimits, signal_name
from berth.runtimes.podman_images import PodmanImageOps
from berth.runtimes.podman_streams import PodmanStreams
from berth.runtimes.streams import FrameDemuxer
from berth.volumes.base import VolumeDriver

__all__ = ["API_VERSION", "DEFAULT_URL", "PodmanDriver", "driver"]

API_VERSION = "v4.0.0"
COMPAT_VERSION = "v1.40"  # the Docker API version of Podman's compatible endpoints
DEFAULT_URL = "unix:///run/podman/podman.sock"
_MIB = 1024 * 1024
_GIB = 1024 * _MIB


def socket_path(base_url: str) -> str:
    """The file system path of a ``unix://`` service URL."""
    if not base_url.startswith("unix://"):
        raise ValueError(f"the Podman service URL must be unix:///path, not {base_url!r}")
    return base_url.removeprefix("unix://")


class _Libpod:
    """An httpx client of libpod's REST API, with libpod's errors translated."""

    def __init__(self, base_url: str, timeout: float) -> None:
        self.base_url = base_url
        self.socket = socket_path(base_url)
        self.prefix = f"/{API_VERSION}/libpod"
        self.client = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=self.socket),
            # The host part is ignored on a unix socket; "d" keeps URLs short in logs.
            base_url=f"http://d{self.prefix}",
            timeout=httpx.Timeout(timeout, connect=10.0),
        )

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        timeout: float | None = None,
        headers: dict[str, str] | None = None,
        content: Any = None,
    ) -> httpx.Response:
        """One request (a JSON ``body``, or raw ``content``: bytes or an async iterator of them);
        a 4xx/5xx answer raises the matching Berth error."""
        extra: dict[str, Any] = {}
        if timeout is not None:
            extra["timeout"] = httpx.Timeout(timeout, connect=10.0)
        if content is not None:
            extra["content"] = content
        try:
            response = await self.client.request(
                method, path, params=params, json=body, headers=headers, **extra
            )
        except httpx.TransportError as exc:
            raise self.unavailable(exc) from exc
        if response.status_code >= 400:
            raise podmanmap.error_for(response.status_code, response.content)
        return response

    async def json(self, method: str, path: str, **kw: Any) -> Any:
        """``call`` and decode the JSON answer."""
        return (await self.call(method, path, **kw)).json()

    def unavailable(self, exc: BaseException) -> errors.HostUnavailable:
        return errors.HostUnavailable(
            f"the Podman service at {self.base_url} does not answer: {exc or type(exc).__name__}"
        )

    async def close(self) -> None:
        await self.client.aclose()


class PodmanDriver(PodmanImageOps, PodmanStreams):
    """RuntimeDriver over a Podman service (``podman system service``) on a unix socket.

    ``owner`` (pass ``settings.agent_host``; default: this machine's host name)
    is written on every container created and restricts ``list_managed`` to
    those, as with the Docker driver. ``volumes`` and ``networks`` are the
    host's volume and network drivers; without a network driver the agent
    ignores project networks and security groups on this host, and named
    volumes are made by Podman itself on first use.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        owner: str | None = None,
        volumes: VolumeDriver | None = None,
        networks: NetworkDriver | None = None,
        limits: TenantLimits = TenantLimits(),
        timeout: float = 120.0,
    ) -> None:
        self._api = _Libpod(base_url, timeout)
        self._limits = limits
        self._owner = owner or socket.gethostname()
        self.volumes: VolumeDriver | None = volumes
        self.networks: NetworkDriver | None = networks
        self._runtime: str | None = None  # the service's OCI runtime, once asked

    async def close(self) -> None:
        """Release the service connection; the driver is unusable afterwards."""
        await self._api.close()
        if self.volumes is not None:
            await self.volumes.close()
        if self.networks is not None:
            await self.networks.close()

    # -- the host

    async def host_facts(self) -> HostFacts:
        """Describe the host from libpod's ``info``, plus the size of its storage disk."""
        info: dict[str, Any] = await self._api.json("GET", "/info")
        host, store = info.get("host") or {}, info.get("store") or {}
        disk_total = await asyncio.to_thread(_disk_total, Path(store.get("graphRoot") or "/"))
        self._runtime = str((host.get("ociRuntime") or {}).get("name") or "runc")
        images: list[dict[str, Any]] = await self._api.json("GET", "/images/json")
        distro = host.get("distribution") or {}
        os_name = " ".join(str(p) for p in (distro.get("distribution"), distro.get("version")) if p)
        return HostFacts(
            cpus=int(host.get("cpus") or 1),
            mem_total=int(host.get("memTotal") or 0) // _MIB,
            disk_total=disk_total,
            # libpod 4.3 ignores a container's ``oci_runtime``: the service's is the only one.
            runtimes=[self._runtime],
            architecture=_architecture(str(host.get("arch") or "")) or None,
            os_type=host.get("os"),
            os=os_name or None,
            kernel_version=host.get("kernel"),
            engine="podman",
            engine_version=str((info.get("version") or {}).get("Version") or "") or None,
            images=podmanmap.image_tags(images),
        )

    # -- observing

    async def list_managed(self) -> list[RuntimeContainer]:
        """Every Berth container of this owner (pod infra ones included), with the addresses
        of those on networks: one listing call, two when any container runs on a network."""
        filters = json.dumps({"label": [LABEL_UUID, f"{LABEL_OWNER}={self._owner}"]})
        params = {"all": "true", "filters": filters}
        entries: list[dict[str, Any]] = await self._api.json(
            "GET", "/containers/json", params=params
        )
        listed = [podmanmap.from_listing(entry) for entry in entries or []]
        if not any(c.networks and c.state in ("running", "paused") for c in listed):
            return listed
        # libpod's listing names the networks but not the addresses, and the agent takes
        # a listing's (none) as the truth: it would drop the security-group chains of
        # every container at each pass. The Docker-compatible listing has them.
        compat: list[dict[str, Any]] = await self._api.json(
            "GET", f"http://d/{COMPAT_VERSION}/containers/json", params=params
        )
        found = {str(e.get("Id")): podmanmap.listed_addresses(e) for e in compat or []}
        return [replace(c, addresses=found.get(c.runtime_id, c.addresses)) for c in listed]

    async def inspect(self, uuid: str) -> RuntimeContainer | None:
        """The detailed view of ``berth-<uuid>``, or None when it does not exist."""
        try:
            data = await self._api.json("GET", f"/containers/{container_name(uuid)}/json")
        except errors.ContainerNotFound:
            return None
        return podmanmap.from_inspect(data)

    # -- images: ensure_image, pull_image, remove_image, commit (PodmanImageOps)

    # -- lifecycle

    async def create(self, spec: DesiredContainer) -> str:
        """Create ``berth-<uuid>`` (not started); if it already exists, return its id.

        A capsule's sandbox becomes a pod whose infra container is
        ``berth-<uuid>``; a member is created inside its sandbox's pod.
        """
        await self._check_runtime(spec)
        if self.volumes is not None:
            for mount in spec.volumes:
                if not mount.host_path:
                    await self.volumes.ensure(mount, spec.project_id)
        joins_network = spec.networks and not spec.network_container
        if joins_network and self.networks is not None:
            await self.networks.ensure(spec.networks[0])  # joined at create
        runtime_id: str | None = None  # a pod's create answers the pod's id, not the infra's
        try:
            if podmanmap.is_sandbox(spec):
                await self._api.call(
                    "POST", "/pods/create", body=podmanmap.pod_spec(spec, self._owner)
                )
            else:
                body = podmanmap.container_spec(spec, self._owner, self._limits)
                created = await self._api.json("POST", "/containers/create", body=body)
                runtime_id = str(created["Id"])
        except errors.InvalidStateException:
            # 409: it exists (a concurrent create, or a crash after the create).
            return await self._await_existing(spec.uuid)
        except errors.ContainerNotFound as exc:
            text = exc.message.lower()
            if "pod" in text and spec.network_container:
                raise errors.InvalidStateException(
                    f"the capsule's pod {podmanmap.pod_name(spec.network_container)} does not "
                    f"exist on this host: {exc.message}"
                ) from exc
            raise errors.ImageNotFound(
                f"image {spec.image!r} not found on this host: {exc.message}"
            ) from exc
        except errors.BerthError as exc:
            if "image not known" in exc.message or "no such image" in exc.message.lower():
                raise errors.ImageNotFound(
                    f"image {spec.image!r} not found on this host: {exc.message}"
                ) from exc
            raise
        if joins_network and self.networks is not None:
            for net in spec.networks[1:]:  # the create joined the first one
                await self.networks.connect(spec.uuid, net)
        return runtime_id or await self._await_existing(spec.uuid)

    async def _check_runtime(self, spec: DesiredContainer) -> None:
        """Refuse a runtime other than the service's: libpod 4.3 would silently ignore it."""
        if not spec.runtime or (spec.runtime == "runc" and self._runtime in (None, "runc")):
            return
        if self._runtime is None:
            info = await self._api.json("GET", "/info")
            self._runtime = str(((info.get("host") or {}).get("ociRuntime") or {}).get("name"))
        if spec.runtime != self._runtime:
            raise errors.Invalid(
                f"runtime {spec.runtime} is not available on this Podman host: its service "
                f"runs every container with {self._runtime} (run a service with "
                f"'podman --runtime {spec.runtime} system service' for another runtime)"
            )

    async def _await_existing(self, uuid: str, within: float = 10.0) -> str:
        deadline = time.monotonic() + within
        while (found := await self.inspect(uuid)) is None:
            if time.monotonic() > deadline:
                raise errors.InvalidStateException(
                    f"the name {container_name(uuid)} is taken but no container answers to it"
                )
            await asyncio.sleep(0.05)
        return found.runtime_id

    async def _verb(self, uuid: str, verb: str, **params: Any) -> None:
        timeout = params.pop("_timeout", None)
        await self._api.call(
            "POST",
            f"/containers/{container_name(uuid)}/{verb}",
            params=params or None,
            timeout=timeout,
        )

    async def start(self, uuid: str) -> None:
        """Start it (a running container answers 304, which is success)."""
        await self._verb(uuid, "start")

    async def stop(self, uuid: str, timeout: int) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; stopping a stopped one is a no-op."""
        await self._verb(uuid, "stop", timeout=timeout, _timeout=timeout + 60)

    async def pause(self, uuid: str) -> None:
        """Freeze the container's processes (cgroup freezer)."""
        await self._verb(uuid, "pause")

    async def unpause(self, uuid: str) -> None:
        """Thaw the container's processes."""
        await self._verb(uuid, "unpause")

    async def kill(self, uuid: str, signal: str | int | None = None) -> None:
        """Send a signal (Zun's forms accepted: None, 9, "kill", "SIGKILL")."""
        await self._verb(uuid, "kill", signal=str(signal_name(signal)))

    async def restart(self, uuid: str, timeout: int) -> None:
        """Stop with ``timeout`` then start again (starts a stopped container too)."""
        await self._verb(uuid, "restart", t=timeout, _timeout=timeout + 60)

    async def remove(self, uuid: str, force: bool = True) -> None:
        """Remove it with its anonymous volumes; absent is success.

        A pod's infra container (a capsule's sandbox) goes with its pod.
        """
        # A forced removal kills at once (as Docker's), not after the 10 s stop timeout.
        params = {"force": str(force).lower(), "v": "true", "timeout": "0"}
        try:
            await self._api.call("DELETE", f"/containers/{container_name(uuid)}", params=params)
        except errors.ContainerNotFound:
            return
        except errors.BerthError as exc:
            if "infra container" in exc.message:
                await self._remove_pod(uuid, force)
            elif "already being removed" not in exc.message:
                raise

    async def _remove_pod(self, uuid: str, force: bool) -> None:
        try:
            await self._api.call(
                "DELETE",
                f"/pods/{podmanmap.pod_name(uuid)}",
                params={"force": str(force).lower(), "timeout": "0"},
            )
        except errors.ContainerNotFound:
            return

    async def update(self, uuid: str, cpu: float | None, memory: int | None) -> None:
        """Apply new CPU/memory limits live (memswap follows memory).

        Podman 4.3 changes the cgroup but not what ``inspect`` reports; a
        capsule's limit is its pod's and stays as created (no pod update in 4.3).
        """
        body = podmanmap.resources(cpu, memory)
        if body:
            await self._api.call("POST", f"/containers/{container_name(uuid)}/update", body=body)

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
        params = podmanmap.log_params(stdout, stderr, timestamps, tail, since, follow=False)
        response = await self._api.call(
            "GET", f"/containers/{container_name(uuid)}/logs", params=params
        )
        return FrameDemuxer().feed(response.content).decode("utf-8", errors="replace")

    async def execute(
        self,
        uuid: str,
        command: list[str],
        timeout: float,
        max_output: int = EXECUTE_MAX_OUTPUT,
    ) -> tuple[str, int]:
        """Run ``command`` in the container; Conflict if it outlives ``timeout`` seconds,
        Invalid once it writes more than ``max_output`` bytes."""
        created = await self._api.json(
            "POST",
            f"/containers/{container_name(uuid)}/exec",
            body={"AttachStdout": True, "AttachStderr": True, "Cmd": list(command)},
        )
        exec_id = str(created["Id"])
        demux, output, overflowed = FrameDemuxer(), bytearray(), False
        refused: dict[str, Any] = {}
        try:
            async with asyncio.timeout(timeout):
                request = self._api.client.build_request(
                    "POST",
                    f"/exec/{exec_id}/start",
                    json={"Detach": False, "Tty": False},
                    timeout=httpx.Timeout(None, connect=10.0),
                )
                response = await self._api.client.send(request, stream=True)
                try:
                    if response.status_code >= 400:
                        raise podmanmap.error_for(response.status_code, await response.aread())
                    async for chunk in response.aiter_raw():
                        output += demux.feed(chunk)
                        if len(output) > max_output:
                            overflowed = True
                            break
                    if overflowed:  # read while its session is attached and running
                        refused = await self._api.json("GET", f"/exec/{exec_id}/json")
                finally:
                    await response.aclose()
        except TimeoutError as exc:
            # The process inside keeps running, as with Docker and Zun.
            raise errors.Conflict(
                f"the command {' '.join(command)!r} did not finish within {timeout:g} seconds"
            ) from exc
        except httpx.TransportError as exc:
            raise self._api.unavailable(exc) from exc
        if overflowed:
            # Killed (``kill_refused_exec``): conmon kept it writing for ever.
            await asyncio.to_thread(kill_refused_exec, exec_id, refused)
            raise output_too_large(command, max_output)
        info = await self._api.json("GET", f"/exec/{exec_id}/json")
        return output.decode("utf-8", errors="replace"), int(info.get("ExitCode") or 0)

    async def top(self, uuid: str, ps_args: str | None = None) -> TopResult:
        """The container's processes, as ``ps`` (with ``ps_args``) shows them."""
        args = None if ps_args in (None, "", "None") else ps_args
        try:
            response = await self._api.call(
                "GET",
                f"/containers/{container_name(uuid)}/top",
                params={"ps_args": args} if args else None,
            )
            # A descriptor libpod does not know is a 200 whose body is no JSON.
            raw = response.json()
        except errors.BerthError as exc:
            raise bad_ps_args(args, exc) from exc
        except ValueError as exc:
            text = response.text.strip()[:200] or "no answer"
            raise bad_ps_args(args, errors.BerthError(f"podman error: {text}")) from exc
        return {"Titles": raw.get("Titles") or [], "Processes": raw.get("Processes") or []}

    async def stats(self, uuid: str) -> ZunStats:
        """One resource sample (libpod's CPU percentage, byte counters)."""
        name = container_name(uuid)
        raw = await self._api.json(
            "GET", "/containers/stats", params={"containers": name, "stream": "false"}
        )
        if raw.get("Error"):
            raise errors.InvalidStateException(f"no stats for {name}: {raw['Error']}")
        samples = raw.get("Stats") or [{}]
        return podmanmap.zun_stats(samples[0], str(samples[0].get("Name") or name))


def _architecture(arch: str) -> str:
    """Docker's spelling of the architecture (``x86_64``), which the scheduler compares."""
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(arch, arch)


def _disk_total(root: Path) -> int:
    """GiB of the file system holding Podman's storage (the agent runs on that host)."""
    return shutil.disk_usage(root if root.exists() else Path("/")).total // _GIB


def driver(settings: Settings, *, networks: NetworkDriver, volumes: VolumeDriver) -> PodmanDriver:
    """The ``podman`` entry point: the libpod service at ``podman_url``, holding tenant
    containers to the operator's limits (processes, log size).

    The network and volume drivers it is handed speak the Docker API: on a Podman
    host point ``docker_url`` at the same service (``podman system service``
    answers both APIs on one socket), see docs/operators.md.
    """
    limits = TenantLimits(
        pids=settings.container_pids_limit, log_max_mb=settings.container_log_max_mb
    )
    return PodmanDriver(
        settings.podman_url,
        owner=settings.agent_host,
        limits=limits,
        networks=networks,
        volumes=volumes,
    )


_ENTRY_POINT: RuntimeFactory = driver  # so mypy checks the entry point against the Protocol
