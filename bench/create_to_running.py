"""Create -> Running: Berth's API against the engine directly (Docker or Podman), interleaved.

What it measures
    Raw Docker: the wall time of ``docker.from_env().containers.run(...,
    detach=True)``, which returns once the engine has started the container
    (create, inspect, start: the SDK's ``docker run -d``).

    Raw Podman (``--runtime podman``): the wall time of what ``podman run -d``
    asks the service for, through libpod's REST API (httpx, not the docker
    SDK): ``POST /libpod/containers/create`` then ``POST .../start``, which
    answers once the container runs. The same service Berth's agent talks to.

    Berth, "API says Running" (the headline, compared with the target): from
    sending ``POST /container/v1/containers?run=true`` to the instant the API
    records the agent's Running report -- the create action's ``finish_time``
    as ``GET .../container_actions`` shows it (same machine, same wall clock;
    stamped in the transaction that makes ``status`` Running, about a commit
    before a GET can see it). From then on every GET answers Running, so this
    is the time a user waits, without the client's polling added.

    Berth, "client poll sees it": from sending the POST to the first
    ``GET /container/v1/containers/<uuid>`` answering ``"status": "Running"``,
    polling every ``--poll`` ms (default 50). It adds up to one interval plus
    one GET. A tighter poll is not more exact: every GET costs the all-in-one
    server (API and agent in one process) 10-15 ms, about half of it the
    token check; on 2 cores a 5 ms poll made Berth's own ``docker start``
    take 466 ms against raw Docker's 313 ms in the same rounds, and even a
    20 ms poll keeps the server ~40% busy.

    Berth, "as the client sees it" (``--client zunclient``, issue #19's goal):
    the same round driven by the stock python-zunclient, as a user's code or
    ``openstack appcontainer run`` drives it: a keystoneauth password session,
    ``zun.containers.run(image=..., command=..., memory=..., cpu=...)`` (``POST
    /v1/containers?run=true`` with zunclient's own headers and microversion,
    1.40), then ``zun.containers.get(uuid)`` every ``--poll`` ms (20 by default
    in this mode) until it says Running. The client's own CPU (zunclient,
    keystoneauth, requests) runs on the same cores as the server and the
    engine, as it does for a user on the all-in-one's machine. The delete is
    ``zun.containers.delete(uuid, force=True)`` then ``get`` every 20 ms until
    NotFound, awaited before the next measurement. The report then states the
    target verdict for this client-visible ratio too.

    Both sides run the same image and command with the same limits (1 CPU as
    NanoCpus, 64 MiB memory with memswap equal to it, which is what Berth's
    Docker driver sets; on Podman a 100 ms CFS quota per 100 ms period and
    swap equal to memory, what ``--cpus 1 --memory 64m --memory-swap 64m``
    and Berth's Podman driver set), on the same engine, alternating which side goes first
    in each round. Each container is removed, and its removal awaited, outside
    the timed section before the next measurement starts: a Berth container
    through the API (``DELETE ...?force=true``, then polling until 404, which
    the API answers once the agent confirmed the engine removed it), a raw one
    with ``remove(force=True)`` (on Podman
    ``DELETE /libpod/containers/<name>?force=true&timeout=0``).

How it runs
    It starts a throw-away all-in-one ``berth-api`` (SQLite in a temporary
    directory, its embedded agent on the local engine, owner label
    ``bench-<port>``) on a free port, waits for the agent to register, does
    ``--warmup`` discarded rounds, then ``--rounds`` measured ones, and prints
    p50/p90/p99 (nearest rank: with 100 rounds the p99 is the 99th of 100) and
    the ratios of the medians and of the p99s. Everything it created is removed
    at the end, also after a failure or Ctrl-C; leftovers are reported.

    With ``--runtime podman`` it uses the libpod service answering at
    ``--podman-url`` (default ``BERTH_PODMAN_URL``) or, when none answers,
    starts a ``podman system service`` of its own on a socket in its temporary
    directory with scripts/podman/containers.conf (as the functional tests do)
    and stops it at the end. The Berth side is the same all-in-one with
    ``BERTH_RUNTIME_DRIVER=podman`` and ``BERTH_PODMAN_URL`` (and
    ``BERTH_DOCKER_URL``, for its network driver) pointing at that service; the
    raw side's containers are on a Podman bridge network of the bench's own.
    The image is loaded from the Docker engine into Podman when missing.

    .venv/bin/python bench/create_to_running.py                 # 100 rounds, ~3 min
    .venv/bin/python bench/create_to_running.py --runtime podman --rounds 30 --warmup 3
    .venv/bin/python bench/create_to_running.py --client zunclient   # as a client sees it (#19)
    .venv/bin/python bench/create_to_running.py --rounds 20 --json results.json
    .venv/bin/python bench/create_to_running.py --json -        # JSON only, with samples

``--experiment`` adds a second, monkeypatched Berth as a third interleaved side
(a what-if for a proposed optimisation, see bench/_trace_server.py); the
headline numbers and the target verdict are always the unpatched Berth's.
``--compare DIR`` adds, the same way, a Berth run from another checkout (a
worktree of the code before a change): before and after in the same rounds,
under the same load, which two separate runs on a shared machine never are.

Needs the Docker engine (``DOCKER_HOST`` or /var/run/docker.sock; with
``--runtime podman``, podman, run as root as Berth's agent on Podman is) and the test
image (``scripts/lib.sh build_test_images``; or ``--image`` / ``BERTH_TEST_IMAGE``).
Run it on a quiet machine: other load slows Berth's many small steps more than
Docker's few big ones. Target and results: docs/benchmarks.md. Where the time
goes, step by step: bench/profile_create.py.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import docker
import docker.errors
import httpx
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    drop_firewall,
    free_port,
    machine,
    raw_network,
    remove_network,
    summary,
)
from tests.functional.podman_engine import load_test_image

ROOT = Path(__file__).resolve().parent.parent
SHIM = str(Path(__file__).resolve().parent / "_trace_server.py")
# What-if monkeypatches bench/_trace_server.py knows (none now: the first three
# became Berth's own behaviour).
EXPERIMENTS: tuple[str, ...] = ()
PASSWORD = "bench-admin-pw"
API_VERSION = "container 1.40"
COMMAND = ["sleep", "300"]
MEMORY_MIB = 64
CPU = 1.0
MIB = 1024 * 1024
LIBPOD = "v4.0.0/libpod"
CPU_PERIOD = 100_000  # µs: the CFS period ``podman run --cpus`` uses
TARGET_P50, TARGET_P99 = 1.15, 1.30


def tenant_caps() -> tuple[int, int, int]:
    """Berth's default caps on every tenant container: (pids, log MiB per file, log files).

    ``--raw-like-berth`` gives the raw side the same, to tell the engine's cost of
    them from Berth's own work (the headline compares against a plain ``run -d``).
    """
    from berth.config import Settings
    from berth.runtimes.dockermap import TenantLimits

    defaults = Settings.model_fields
    pids = defaults["container_pids_limit"].default
    log_mb = defaults["container_log_max_mb"].default
    return int(pids), int(log_mb), TenantLimits().log_files


class BenchError(Exception):
    """A failure with a message meant for the person running the benchmark."""


@dataclass
class BerthSample:
    polled: float  # seconds from sending the POST to the first GET saying Running
    recorded: float  # ... to the API's stamp of the agent's Running report
    uuid: str
    sent: float  # epoch seconds: POST sent
    posted: float  # epoch seconds: POST answered
    seen: float  # epoch seconds: Running seen
    server_cpu: float = 0.0  # CPU seconds of the all-in-one (API and agent) meanwhile
    client_cpu: float = 0.0  # CPU seconds of this client meanwhile (POST and polls)
    polls: int = 0  # status GETs sent


def _parse_time(value: str | None) -> float | None:
    """Epoch seconds of a Zun time (UTC, no zone, microseconds)."""
    if not value:
        return None
    return dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC).timestamp()


class BerthUnderTest:
    """A throw-away all-in-one berth-api with its embedded agent, and a client for it."""

    def __init__(
        self,
        data: Path,
        image: str,
        timeout: float,
        server: list[str] | None = None,
        env: dict[str, str] | None = None,
        code: Path = ROOT,
    ) -> None:
        """``code``: the checkout whose ``berth`` the server runs (``--compare``)."""
        self.data = data
        self.code = code
        self.image = image
        self.server = server or ["-c", "from berth.cli.serve import api_main; api_main()"]
        self.extra_env = env or {}
        self.port = free_port()
        self.owner = f"bench-{self.port}"
        self.base = f"http://127.0.0.1:{self.port}"
        self.timeout = timeout
        self.log_path = data / "berth.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.http: httpx.Client | None = None
        self.live: set[str] = set()  # created and not yet confirmed deleted

    # -- the server

    def start(self) -> None:
        env = {
            **os.environ,
            "BERTH_DATA_DIR": str(self.data),
            "BERTH_PORT": str(self.port),
            "BERTH_ADMIN_PASSWORD": PASSWORD,
            "BERTH_AGENT_HOST": self.owner,
            "BERTH_AGENT_PASSWORD": "bench-agent-pw",
            **self.extra_env,
        }
        if self.code != ROOT:
            env["PYTHONPATH"] = str(self.code)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, *self.server],
                env=env,
                cwd=self.code,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise BenchError(
                    f"berth-api exited with {self.proc.returncode}: {self._log_tail()}"
                )
            try:
                if httpx.get(f"{self.base}/identity/v3", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise BenchError(f"berth-api did not answer within 60 s: {self._log_tail()}")
            time.sleep(0.1)
        self.http = httpx.Client(
            base_url=self.base,
            headers={"X-Auth-Token": self._token(), "OpenStack-API-Version": API_VERSION},
            timeout=self.timeout,
        )
        deadline = time.monotonic() + 60
        while not self._call("GET", "/container/v1/hosts").json().get("hosts"):
            if time.monotonic() > deadline:
                raise BenchError(f"the embedded agent never registered: {self._log_tail()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.http is not None:
            self.http.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def _log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return "(no log)"
        return "\n  " + "\n  ".join(text)

    def _token(self) -> str:
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "name": "admin",
                            "domain": {"name": "Default"},
                            "password": PASSWORD,
                        }
                    },
                },
                "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}},
            }
        }
        r = httpx.post(f"{self.base}/identity/v3/auth/tokens", json=body, timeout=self.timeout)
        if r.status_code != 201 or "x-subject-token" not in r.headers:
            raise BenchError(f"cannot get an admin token ({r.status_code}): {r.text[:300]}")
        return r.headers["x-subject-token"]

    def _call(
        self, method: str, path: str, ok: tuple[int, ...] = (200,), **kw: Any
    ) -> httpx.Response:
        assert self.http is not None
        r = self.http.request(method, path, **kw)
        if r.status_code not in ok:
            raise BenchError(f"{method} {path} answered {r.status_code}: {r.text[:300]}")
        return r

    # -- one measurement

    def run_container(self) -> str:
        """``POST /containers?run=true``; the new container's UUID."""
        assert self.http is not None
        body = {"image": self.image, "command": COMMAND, "memory": MEMORY_MIB, "cpu": CPU}
        r = self.http.post("/container/v1/containers?run=true", json=body)
        if r.status_code != 202:
            raise BenchError(f"POST /containers answered {r.status_code}: {r.text[:300]}")
        return str(r.json()["uuid"])

    def status(self, uid: str) -> tuple[str, str | None]:
        """``GET /containers/<uuid>``: its status and status_reason."""
        assert self.http is not None
        path = f"/container/v1/containers/{uid}"
        got = self.http.get(path)
        if got.status_code != 200:
            raise BenchError(f"GET {path} answered {got.status_code}: {got.text[:300]}")
        container = got.json()
        return container["status"], container.get("status_reason")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far (all its threads)."""
        assert self.proc is not None
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def create_to_running(self, poll: float) -> BerthSample:
        server_cpu, client_cpu = self.cpu_seconds(), time.process_time()
        polls = 0
        sent_wall = time.time()
        t0 = time.perf_counter()
        uid = self.run_container()
        posted_wall = time.time()
        self.live.add(uid)
        while True:
            status, reason = self.status(uid)
            polls += 1
            if status == "Running":
                polled = time.perf_counter() - t0
                seen_wall = time.time()
                break
            if status == "Error":
                raise BenchError(f"container {uid} failed: {reason}")
            if time.perf_counter() - t0 > self.timeout:
                raise BenchError(f"container {uid} not Running after {self.timeout:g} s")
            time.sleep(poll)
        server_cpu = self.cpu_seconds() - server_cpu
        client_cpu = time.process_time() - client_cpu
        finish = self._recorded(uid)
        return BerthSample(
            polled,
            finish - sent_wall,
            uid,
            sent_wall,
            posted_wall,
            seen_wall,
            server_cpu,
            client_cpu,
            polls,
        )

    def _recorded(self, uid: str) -> float:
        """Epoch seconds the API stamped the create action finished (the Running report)."""
        path = f"/container/v1/containers/{uid}/container_actions"
        actions = self._call("GET", path).json()["containerActions"]
        finish = next(
            (_parse_time(a["finish_time"]) for a in actions if a["action"] == "create"), None
        )
        if finish is None:
            raise BenchError(f"container {uid} is Running but its create action is not finished")
        return finish

    def delete_and_wait(self, uid: str) -> None:
        """Delete through the API and wait until the agent confirmed it (GET answers 404)."""
        path = f"/container/v1/containers/{uid}"
        self._call("DELETE", f"{path}?force=true", ok=(204, 404))
        deadline = time.monotonic() + self.timeout
        while self._call("GET", path, ok=(200, 404)).status_code != 404:
            if time.monotonic() > deadline:
                raise BenchError(f"container {uid} still not deleted after {self.timeout:g} s")
            time.sleep(0.01)
        self.live.discard(uid)


class ZunclientBerth(BerthUnderTest):
    """The same all-in-one, driven by the stock python-zunclient as a user's code drives it.

    ``zun.containers.run(...)`` (``POST /v1/containers?run=true`` through a
    keystoneauth session, with zunclient's headers and microversion), then
    ``zun.containers.get(uuid)`` every ``poll`` until it says Running: the time
    the client sees, its own CPU included (the client competes for the same
    cores as the server and the engine). The delete is ``zun.containers.delete
    (uuid, force=True)`` and ``get`` every ``poll`` until it raises NotFound.
    """

    def start(self) -> None:
        super().start()
        from keystoneauth1 import loading, session
        from zunclient import client as zun_client

        auth = loading.get_plugin_loader("password").load_from_options(
            auth_url=f"{self.base}/identity/v3",
            username="admin",
            password=PASSWORD,
            project_name="admin",
            user_domain_name="Default",
            project_domain_name="Default",
        )
        self.zun = zun_client.Client("1.latest", session=session.Session(auth=auth))

    def run_container(self) -> str:
        from zunclient import exceptions as zun_errors

        try:
            created = self.zun.containers.run(
                image=self.image, command=COMMAND, memory=MEMORY_MIB, cpu=CPU
            )
        except zun_errors.ClientException as exc:
            raise BenchError(f"zunclient containers.run: {exc}") from None
        return str(created.uuid)

    def status(self, uid: str) -> tuple[str, str | None]:
        container = self.zun.containers.get(uid)
        return container.status, getattr(container, "status_reason", None)

    def delete_and_wait(self, uid: str, poll: float = 0.02) -> None:
        from zunclient import exceptions as zun_errors

        with contextlib.suppress(zun_errors.NotFound):
            self.zun.containers.delete(uid, force=True)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                self.zun.containers.get(uid)
            except zun_errors.NotFound:
                break
            if time.monotonic() > deadline:
                raise BenchError(f"container {uid} still not deleted after {self.timeout:g} s")
            time.sleep(poll)
        self.live.discard(uid)


class RawSide(Protocol):
    """The engine on its own, the other side of each round."""

    live: set[str]  # containers created and not yet removed

    def create_to_running(self) -> float:
        """Seconds from asking for a running container to the engine saying it runs
        (the container is removed afterwards, outside the timed section)."""
        ...

    def remove(self, name: str) -> None: ...

    def close(self) -> None:
        """Remove the side's network (after its containers)."""
        ...


class RawDocker:
    """The same container straight through the docker SDK."""

    def __init__(
        self,
        client: docker.DockerClient,
        image: str,
        network: str = "user",
        like_berth: bool = False,
    ) -> None:
        """``network``: ``user`` runs each container on a bridge network of the bench's
        own, as Berth does (every Berth container joins its project's network, the
        isolation Berth gives); ``default`` uses Docker's default bridge, which
        starts containers faster (~45 ms here) and isolates nothing.
        ``like_berth``: with Berth's pids limit and log rotation too.
        """
        self.client = client
        self.image = image
        self.live: set[str] = set()
        self.network = raw_network(client, "bench-raw", network)
        self.extra: dict[str, Any] = {}
        if like_berth:
            pids, log_mb, log_files = tenant_caps()
            log = {"max-size": f"{log_mb}m", "max-file": str(log_files)}
            self.extra = {"pids_limit": pids, "log_config": {"Type": "json-file", "Config": log}}

    def close(self) -> None:
        """Remove the bench's network (after its containers)."""
        remove_network(self.client, self.network)
        self.network = None

    def create_to_running(self) -> float:
        name = f"bench-raw-{uuid.uuid4().hex[:12]}"
        self.live.add(name)
        t0 = time.perf_counter()
        self.client.containers.run(
            self.image,
            COMMAND,
            name=name,
            detach=True,
            nano_cpus=round(CPU * 1e9),
            mem_limit=MEMORY_MIB * 1024 * 1024,
            memswap_limit=MEMORY_MIB * 1024 * 1024,
            **({"network": self.network} if self.network else {}),
            **self.extra,
        )
        elapsed = time.perf_counter() - t0
        self.remove(name)
        return elapsed

    def remove(self, name: str) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            self.client.api.remove_container(name, v=True, force=True)
        self.live.discard(name)


class RawPodman:
    """The same container straight through libpod's REST API: what ``podman run -d``
    does (create, then start), on the service Berth's agent uses."""

    def __init__(
        self,
        url: str,
        image: str,
        network: str = "user",
        timeout: float = 60,
        like_berth: bool = False,
    ) -> None:
        """``network``: ``user`` runs each container on a bridge network of the bench's
        own, as Berth does; ``default`` on Podman's default ``podman`` network.
        ``like_berth``: with Berth's pids limit and log cap, on an isolated network
        (``isolate=true``, as Berth's network driver makes them on Podman)."""
        self.image = image
        self.live: set[str] = set()
        self.http = libpod_client(url, timeout)
        self.network: str | None = None
        self.like_berth = like_berth
        if network == "user":
            name = f"bench-raw-{uuid.uuid4().hex[:12]}"
            body: dict[str, Any] = {
                "name": name,
                "driver": "bridge",
                "labels": {"berth.bench": "raw"},
            }
            if like_berth:
                body["options"] = {"isolate": "true"}
            self._call("POST", "/networks/create", json=body)
            self.network = name

    def _call(
        self, method: str, path: str, ok: tuple[int, ...] = (200, 201, 204), **kw: Any
    ) -> httpx.Response:
        r = self.http.request(method, path, **kw)
        if r.status_code not in ok:
            raise BenchError(f"podman: {method} {path} answered {r.status_code}: {r.text[:300]}")
        return r

    def close(self) -> None:
        if self.network is not None:
            self._call("DELETE", f"/networks/{self.network}", ok=(200, 204, 404))
            self.network = None

    def create_to_running(self) -> float:
        name = f"bench-raw-{uuid.uuid4().hex[:12]}"
        # podman run -d --cpus 1 --memory 64m --memory-swap 64m --network <net> IMAGE sleep 300
        body: dict[str, Any] = {
            "name": name,
            "image": self.image,
            "command": COMMAND,
            "resource_limits": {
                "cpu": {"quota": round(CPU * CPU_PERIOD), "period": CPU_PERIOD},
                "memory": {"limit": MEMORY_MIB * MIB, "swap": MEMORY_MIB * MIB},
            },
        }
        if self.network is not None:
            body.update(netns={"nsmode": "bridge"}, Networks={self.network: {}})
        if self.like_berth:
            pids, log_mb, _ = tenant_caps()
            body["resource_limits"]["pids"] = {"limit": pids}
            body["log_configuration"] = {"driver": "k8s-file", "size": log_mb * MIB}
        self.live.add(name)
        t0 = time.perf_counter()
        self._call("POST", "/containers/create", json=body)
        self._call("POST", f"/containers/{name}/start", ok=(204, 304))
        elapsed = time.perf_counter() - t0
        self.remove(name)
        return elapsed

    def remove(self, name: str) -> None:
        # ``podman rm -f -t 0``: without timeout=0 libpod stops it with SIGTERM first
        # and waits 10 s for ``sleep`` (PID 1, no handler) to die before SIGKILL;
        # Berth's driver passes timeout=0 too.
        params = {"force": "true", "v": "true", "timeout": "0"}
        self._call("DELETE", f"/containers/{name}", ok=(200, 204, 404), params=params)
        self.live.discard(name)


def libpod_client(url: str, timeout: float) -> httpx.Client:
    """An httpx client of the libpod REST API of the service at ``unix://<path>``."""
    transport = httpx.HTTPTransport(uds=url.removeprefix("unix://"))
    return httpx.Client(transport=transport, base_url=f"http://podman/{LIBPOD}", timeout=timeout)


def _answers(url: str) -> bool:
    with libpod_client(url, 2) as http:
        try:
            return http.get("/_ping").status_code == 200
        except httpx.HTTPError:
            return False


@contextlib.contextmanager
def podman_service(url: str | None, workdir: Path) -> Iterator[str]:
    """The libpod service's URL: ``url`` if it answers there, else a ``podman system
    service`` started here on ``workdir/podman.sock`` with Berth's containers.conf (as
    tests/functional/podman_engine.py does), stopped after."""
    if url and _answers(url):
        yield url
        return
    binary = shutil.which("podman")
    if binary is None:
        raise BenchError("podman is not installed (apt-get install podman)")
    own = f"unix://{workdir / 'podman.sock'}"
    log_path = workdir / "podman-service.log"
    env = {**os.environ, "CONTAINERS_CONF": str(ROOT / "scripts" / "podman" / "containers.conf")}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [binary, "system", "service", "--time=0", own],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 20
        while not _answers(own):
            if process.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"podman system service did not answer: {log_path.read_text()}")
            time.sleep(0.1)
        yield own
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def ensure_podman_image(url: str, image: str) -> None:
    """``image`` in Podman's storage: loaded from the Docker engine when missing (no registry)."""
    with libpod_client(url, 60) as http:
        if http.get(f"/images/{image}/exists").status_code == 204:
            return
    try:
        load_test_image(image)
    except RuntimeError as exc:
        raise BenchError(f"image {image} is not in Podman and {exc}") from None


# -- reporting


def report(result: dict[str, Any]) -> str:
    s, r = result["summary"], result["ratios"]
    ms = 1000.0
    lines = [
        f"rounds: {result['rounds']} (+{result['warmup']} warm-up)  image: {result['image']}  "
        f"poll: {result['poll_ms']:g} ms  load average: {result['loadavg_start']:.2f} at start, "
        f"{result['loadavg_end']:.2f} at end",
        f"raw side's network: {result.get('raw_network', 'default')}"
        + ("  (raw side with Berth's pids/log caps)" if result.get("raw_like_berth") else "")
        + (
            f"  runtime: podman {result['machine'].get('podman')}"
            if result["runtime"] == "podman"
            else ""
        ),
        f"{'':32}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}  (ms)",
    ]
    rows = [
        ("raw", "raw podman (libpod API)" if result["runtime"] == "podman" else "raw docker SDK"),
        ("berth_api", "berth: API says Running"),
        ("berth_polled", f"berth: {result.get('client', 'httpx')} poll sees it"),
        ("whatif_api", "what-if: API says Running"),
        ("whatif_polled", "what-if: client poll sees it"),
        ("compare_api", "compared: API says Running"),
        ("compare_polled", "compared: client poll sees it"),
        ("berth_server_cpu", "berth: server CPU (API + agent)"),
        ("berth_client_cpu", f"berth: {result.get('client', 'httpx')} CPU"),
        ("compare_server_cpu", "compared: server CPU"),
        ("compare_client_cpu", "compared: client CPU"),
    ]
    for key, label in rows:
        if key in s:
            v = s[key]
            lines.append(
                f"{label:32}{v['p50'] * ms:8.1f}{v['p90'] * ms:8.1f}"
                f"{v['p99'] * ms:8.1f}{v['max'] * ms:8.1f}"
            )
    if "berth_polls" in s:
        lines.append(f"status GETs per create: p50 {s['berth_polls']['p50']:g}")
    verdict = "met" if result["target_met"] else "MISSED"
    lines += [
        f"ratio berth/raw: p50 {r['p50']:.2f}x  p99 {r['p99']:.2f}x   "
        f"(target p50 <= {TARGET_P50}x, p99 <= {TARGET_P99}x: {verdict})",
        f"as the client sees it ({result.get('client', 'httpx')}, {result['poll_ms']:g} ms "
        f"polling): p50 {r['polled_p50']:.2f}x  p99 {r['polled_p99']:.2f}x   "
        f"({'met' if result['client_target_met'] else 'MISSED'} against the same target)",
    ]
    if "whatif_p50" in r:
        lines.append(
            f"what-if ({', '.join(result['experiments'])}; patched, NOT Berth's code): "
            f"p50 {r['whatif_p50']:.2f}x  p99 {r['whatif_p99']:.2f}x"
        )
    if "compare_p50" in r:
        lines.append(
            f"compared ({result['compare']}): API p50 {r['compare_p50']:.2f}x  p99 "
            f"{r['compare_p99']:.2f}x; as the client sees it p50 {r['compare_polled_p50']:.2f}x  "
            f"p99 {r['compare_polled_p99']:.2f}x"
        )
    return "\n".join(lines)


# -- the run


@dataclass
class Engine:
    """The engine both sides run on: Docker, or a Podman service."""

    client: docker.DockerClient  # Docker's API (a Podman service answers it too): cleanup
    raw_side: RawSide
    berth_env: dict[str, str]  # what points Berth's all-in-one at this engine
    info: dict[str, Any]  # the machine and the engine's version
    url: str | None = None  # a Podman service's URL (None: the local Docker engine)


def _docker_engine(args: argparse.Namespace) -> Engine:
    try:
        client = docker.from_env(timeout=int(args.timeout))
        client.ping()
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise BenchError(f"cannot reach the Docker engine: {exc}") from exc
    try:
        client.images.get(args.image)
    except docker.errors.ImageNotFound:
        raise BenchError(
            f"image {args.image} is not on this engine: build it with "
            "`scripts/lib.sh build_test_images` or pass --image"
        ) from None
    info = machine(client)
    raw_side = RawDocker(client, args.image, args.raw_network, args.raw_like_berth)
    return Engine(client, raw_side, {}, info)


@contextlib.contextmanager
def engine(args: argparse.Namespace, workdir: Path) -> Iterator[Engine]:
    """The engine of ``--runtime``, with the raw side on it (a Podman service the bench
    started is stopped after)."""
    if args.runtime == "docker":
        yield _docker_engine(args)
        return
    with podman_service(args.podman_url, workdir) as url:
        ensure_podman_image(url, args.image)
        client = docker.DockerClient(base_url=url, version="auto", timeout=int(args.timeout))
        info = machine(client)
        info["podman"] = info.pop("dockerd", None)
        raw_side = RawPodman(url, args.image, args.raw_network, args.timeout, args.raw_like_berth)
        env = {
            "BERTH_RUNTIME_DRIVER": "podman",
            "BERTH_PODMAN_URL": url,
            "BERTH_DOCKER_URL": url,  # the network and volume drivers speak Docker's API
        }
        try:
            yield Engine(client, raw_side, env, info, url)
        finally:
            raw_side.http.close()
            client.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="berth-bench-") as tmp,
        engine(args, Path(tmp)) as eng,
    ):
        return _run(args, eng, Path(tmp))


def _run(args: argparse.Namespace, eng: Engine, tmp: Path) -> dict[str, Any]:
    raw_side = eng.raw_side
    samples: dict[str, list[float]] = {"raw": [], "berth_api": [], "berth_polled": []}
    (tmp / "berth").mkdir()
    side_class = ZunclientBerth if args.client == "zunclient" else BerthUnderTest
    servers = {"berth": side_class(tmp / "berth", args.image, args.timeout, env=eng.berth_env)}
    if args.experiment:  # a second, patched Berth (bench/_trace_server.py) interleaved
        (tmp / "whatif").mkdir()
        env = {"BERTH_BENCH_EXPERIMENTS": ",".join(args.experiment), **eng.berth_env}
        servers["whatif"] = side_class(tmp / "whatif", args.image, args.timeout, [SHIM], env)
        samples.update(whatif_api=[], whatif_polled=[])
    if args.compare:  # the code of another checkout, interleaved (before/after)
        (tmp / "compare").mkdir()
        code = Path(args.compare).resolve()
        servers["compare"] = side_class(
            tmp / "compare", args.image, args.timeout, env=eng.berth_env, code=code
        )
        samples.update(compare_api=[], compare_polled=[])
    sides = ["raw", *servers]
    started = dt.datetime.now(dt.UTC)
    load_start = os.getloadavg()[0]
    if load_start > 1.0:
        print(
            f"warning: load average {load_start:.2f}: other work on this machine "
            "will show up in the numbers",
            file=sys.stderr,
        )
    try:
        for server in servers.values():
            server.start()
        for i in range(args.warmup + args.rounds):
            measured = i >= args.warmup
            # Every side goes first, second, ... equally often.
            for side in sides[i % len(sides) :] + sides[: i % len(sides)]:
                time.sleep(args.settle)
                if side == "raw":
                    elapsed = raw_side.create_to_running()
                    if measured:
                        samples["raw"].append(elapsed)
                    continue
                sample = servers[side].create_to_running(args.poll / 1000)
                servers[side].delete_and_wait(sample.uuid)
                if measured:
                    samples[f"{side}_api"].append(sample.recorded)
                    samples[f"{side}_polled"].append(sample.polled)
                    samples.setdefault(f"{side}_server_cpu", []).append(sample.server_cpu)
                    samples.setdefault(f"{side}_client_cpu", []).append(sample.client_cpu)
                    samples.setdefault(f"{side}_polls", []).append(sample.polls)
            done = len(samples["raw"])
            if args.progress and measured and done % 10 == 0:
                print(
                    f"  {done}/{args.rounds}: raw p50 "
                    f"{statistics.median(samples['raw']) * 1000:.0f} ms, berth p50 "
                    f"{statistics.median(samples['berth_api']) * 1000:.0f} ms",
                    file=sys.stderr,
                )
    except KeyboardInterrupt:
        raise BenchError("interrupted; everything it created was removed") from None
    finally:
        _stop_all(servers, eng, args.keep_log)
    summaries = {key: summary(values) for key, values in samples.items()}
    raw = summaries["raw"]
    ratios = {
        "p50": summaries["berth_api"]["p50"] / raw["p50"],
        "p99": summaries["berth_api"]["p99"] / raw["p99"],
        "polled_p50": summaries["berth_polled"]["p50"] / raw["p50"],
        "polled_p99": summaries["berth_polled"]["p99"] / raw["p99"],
    }
    for side in ("whatif", "compare"):
        if f"{side}_api" in summaries:
            for key, kind in (("", "api"), ("polled_", "polled")):
                for p in ("p50", "p99"):
                    ratios[f"{side}_{key}{p}"] = summaries[f"{side}_{kind}"][p] / raw[p]
    return {
        "date": started.isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", "bench/create_to_running.py", *sys.argv[1:]]),
        "runtime": args.runtime,
        "machine": eng.info,
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg()[0],
        "image": args.image,
        "container": {"command": COMMAND, "cpu": CPU, "memory_mib": MEMORY_MIB},
        "rounds": args.rounds,
        "warmup": args.warmup,
        "poll_ms": args.poll,
        "experiments": args.experiment,
        "compare": args.compare,
        "raw_network": args.raw_network,
        "raw_like_berth": args.raw_like_berth,
        "settle_ms": args.settle * 1000,
        "summary": summaries,
        "ratios": ratios,
        "client": args.client,
        "target_met": ratios["p50"] <= TARGET_P50 and ratios["p99"] <= TARGET_P99,
        "client_target_met": (
            ratios["polled_p50"] <= TARGET_P50 and ratios["polled_p99"] <= TARGET_P99
        ),
        "samples": samples,
    }


def _stop_all(servers: dict[str, BerthUnderTest], eng: Engine, keep_log: str | None) -> None:
    """Remove what the run created, stop the servers (keeping their logs if asked)."""
    problems = []
    for name, server in servers.items():
        problems += cleanup(server, eng.raw_side, eng.client)
        server.stop()
        if dropped := drop_firewall(server.owner, eng.url):
            problems.append(f"removed {dropped} firewall chains the stopped agent left")
        if keep_log and server.log_path.exists():
            suffix = "" if name == "berth" else f".{name}"
            Path(keep_log + suffix).write_bytes(server.log_path.read_bytes())
    if problems:
        print("cleanup: " + "; ".join(problems), file=sys.stderr)


def cleanup(berth: BerthUnderTest, raw_side: RawSide, client: docker.DockerClient) -> list[str]:
    """Remove whatever this run created; say what could not be removed."""
    problems: list[str] = []
    for uid in list(berth.live):
        try:
            berth.delete_and_wait(uid)
        except (BenchError, httpx.HTTPError) as exc:
            problems.append(f"berth container {uid}: {exc}")
    for name in list(raw_side.live):
        try:
            raw_side.remove(name)
        except (docker.errors.DockerException, BenchError, httpx.HTTPError) as exc:
            problems.append(f"raw container {name}: {exc}")
    # Last resort: anything still labelled with this run's agent (e.g. the API died).
    with contextlib.suppress(docker.errors.DockerException, requests.RequestException):
        for c in client.containers.list(all=True, filters={"label": f"berth.owner={berth.owner}"}):
            problems.append(f"removed leftover {c.name}")
            with contextlib.suppress(docker.errors.DockerException):
                c.remove(force=True)
        # Project networks outlive their last container on a host (network_idle_seconds).
        for net in client.networks.list(filters={"label": f"berth.owner={berth.owner}"}):
            with contextlib.suppress(docker.errors.DockerException):
                net.remove()
    raw_side.close()
    return problems


def _interrupted(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument(
        "--rounds", type=int, default=100, help="measured rounds (one of each per round)"
    )
    ap.add_argument("--warmup", type=int, default=5, help="discarded rounds first")
    ap.add_argument(
        "--poll",
        type=float,
        default=None,
        help="Berth status poll interval, ms (default 50; 20 with --client zunclient)",
    )
    ap.add_argument(
        "--client",
        choices=("httpx", "zunclient"),
        default="httpx",
        help="how the bench talks to Berth: a bare httpx client with a token, or the stock "
        "python-zunclient (keystoneauth session, containers.run + containers.get), the "
        "client-visible figure of issue #19",
    )
    ap.add_argument("--settle", type=float, default=0.1, help="pause before each measurement, s")
    ap.add_argument("--timeout", type=float, default=60.0, help="give up on one step after, s")
    ap.add_argument(
        "--image", default=os.environ.get("BERTH_TEST_IMAGE", "berth-test/busybox:latest")
    )
    ap.add_argument(
        "--json",
        metavar="FILE",
        help="also write the results (with samples) here; - for stdout only",
    )
    ap.add_argument(
        "--experiment",
        action="append",
        default=[],
        choices=EXPERIMENTS,
        help="what-if: also run a second Berth with this monkeypatch from "
        "bench/_trace_server.py, interleaved (not Berth's behaviour; repeatable)",
    )
    ap.add_argument(
        "--compare",
        metavar="DIR",
        help="also run the Berth of another checkout (e.g. a worktree of main: the code "
        "before a change) as a further interleaved side",
    )
    ap.add_argument(
        "--raw-network",
        choices=("user", "default"),
        default="user",
        help="raw containers on a bridge network of their own, as Berth's are on their "
        "project's (user), or on the engine's default network (default: faster, no isolation)",
    )
    ap.add_argument(
        "--raw-like-berth",
        action="store_true",
        help="give the raw side Berth's caps on tenant containers too (pids limit, log "
        "rotation; on Podman an isolated network): the engine's cost of them, apart",
    )
    ap.add_argument(
        "--runtime",
        choices=("docker", "podman"),
        default="docker",
        help="the engine: Docker, or a Podman service (BERTH_RUNTIME_DRIVER=podman against "
        "libpod's REST API for the raw side)",
    )
    ap.add_argument(
        "--podman-url",
        default=os.environ.get("BERTH_PODMAN_URL"),
        help="with --runtime podman: a running libpod service to use (default: start one)",
    )
    ap.add_argument("--keep-log", metavar="FILE", help="copy the berth-api log here")
    ap.add_argument("--progress", action="store_true", help="running medians on stderr")
    args = ap.parse_args()
    # Ctrl-C and SIGTERM both stop the run through the cleanup (a background job
    # of a non-interactive shell inherits SIGINT ignored: take it back).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupted)
    if args.poll is None:
        args.poll = 20.0 if args.client == "zunclient" else 50.0
    if args.rounds < 1 or args.warmup < 0 or args.poll <= 0:
        ap.error("--rounds must be >= 1, --warmup >= 0, --poll > 0")
    try:
        result = run(args)
    except BenchError as exc:
        raise SystemExit(f"bench: {exc}") from None
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise SystemExit(f"bench: the Docker engine failed mid-run (cleaned up): {exc}") from None
    except httpx.HTTPError as exc:
        raise SystemExit(
            f"bench: talking to berth-api failed mid-run (cleaned up): {exc}"
        ) from None
    if args.json == "-":
        json.dump(result, sys.stdout, indent=2)
        print()
        return
    print(report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
