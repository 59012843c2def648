"""Shared by the scheduler, API-read and concurrent-create benchmarks: statistics and context.

Nearest-rank percentiles (the p99 of 100 samples is the 99th smallest), a
description of the machine, a fresh PostgreSQL database for a run, and a
throw-away ``berth-api`` process with an admin client.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker.errors
import httpx

__all__ = [
    "PG_ADMIN_DSN",
    "ROOT",
    "BerthServer",
    "cpu_seconds",
    "fresh_pg_database",
    "machine",
    "percentile",
    "summary",
]

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_DSN = os.environ.get("BERTH_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile: the smallest value with at least q% of the samples at or below."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def summary(values: list[float]) -> dict[str, float]:
    """p50/p90/p99/mean/min/max of ``values`` (seconds in, seconds out)."""
    return {
        "p50": statistics.median(values),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "mean": statistics.fmean(values),
        "min": min(values),
        "max": max(values),
    }


def raw_network(client: Any, prefix: str, kind: str) -> str | None:
    """The raw side's network: ``user`` makes a bridge network of the bench's own
    (every Berth container is on its project's network, so the fair comparison);
    ``default`` is Docker's default bridge (None), which starts containers faster
    (~45 ms here) and isolates nothing."""
    if kind != "user":
        return None
    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    client.networks.create(name, driver="bridge", labels={"berth.bench": "raw"})
    return name


def remove_network(client: Any, name: str | None) -> None:
    """Remove a network ``raw_network`` made (after its containers), if any."""
    if name is not None:
        with contextlib.suppress(docker.errors.DockerException):
            client.networks.get(name).remove()


def drop_firewall(owner: str, base_url: str | None = None) -> int:
    """Remove the security-group rules and host guard an agent called ``owner`` left.

    A stopped agent leaves its chains in place on purpose (its containers run
    on); a throw-away benchmark agent stopped right after its last delete can
    stop before its firewall sync removed the last chains, and it keeps the
    host guard of its networks until it prunes them. The agent's own network
    driver finds and removes both (call it once the owner's networks are gone).
    Returns how many security-group chains it removed. ``base_url``: the engine
    the agent's networks were on (default: the local Docker engine; a Podman
    service's URL for an agent on Podman).
    """
    from berth import errors
    from berth.networks.bridge import BridgeNetworks

    async def sweep() -> int:
        networks = (
            BridgeNetworks(owner=owner)
            if base_url is None
            else BridgeNetworks(base_url, owner=owner)
        )
        try:
            left = await networks.firewalled()
            await networks.write_firewalls(dict.fromkeys(left))
            await networks.prune(set())  # no network left: its INPUT guard goes too
            return len(left)
        except errors.BerthError:
            return 0  # no iptables (or no engine) here: nothing was written either
        finally:
            await networks.close()

    return asyncio.run(sweep())


def machine(client: Any = None) -> dict[str, Any]:
    """CPU, memory, kernel, Python and the Berth revision of this run (with
    ``client``, a docker SDK client, the engine's version and storage driver)."""
    mem_kib, cpu_model = 0, ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    rev = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "berth_revision": rev or None,
        "affinity": sorted(os.sched_getaffinity(0)),
    } | (
        {"dockerd": client.version().get("Version"), "storage_driver": client.info().get("Driver")}
        if client is not None
        else {}
    )


@contextlib.contextmanager
def fresh_pg_database(admin_dsn: str = PG_ADMIN_DSN) -> Iterator[str]:
    """A new, empty PostgreSQL database (asyncpg URL), dropped afterwards."""
    import psycopg  # test extra: a sync driver to create and drop databases

    name = f"berth_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    host = admin_dsn.split("@", 1)[1].rsplit("/", 1)[0]
    user = admin_dsn.split("//", 1)[1].split("@", 1)[0]
    try:
        yield f"postgresql+asyncpg://{user}@{host}/{name}"
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


ADMIN_PASSWORD = "bench-admin-pw"
ZUN = {"OpenStack-API-Version": "container 1.40"}


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) a process has used, from /proc/<pid>/stat.

    Unlike wall time, this barely moves with the machine's other load: the
    figure to compare A/B runs by when the machine is not quiet.
    """
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the ")" of the command name: field 3 is index 0, utime (14) and stime (15).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class BerthServer:
    """A throw-away berth-api (``BERTH_*`` settings in ``env``), with an admin client.

    ``code``: the Python the process runs (default: ``berth.cli.serve``'s API entry point).

    ``http`` talks to ``/container/v1`` as the admin; the log goes to
    ``data/berth.log``. ``stop`` ends the process (SIGTERM, then SIGKILL).
    """

    def __init__(self, data: Path, env: dict[str, str], code: str | None = None) -> None:
        self.data = data
        self.code = code or "from berth.cli.serve import api_main; api_main()"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("BERTH_")},
            "BERTH_DATA_DIR": str(data),
            "BERTH_PORT": str(self.port),
            "BERTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "BERTH_AGENT_PASSWORD": "bench-agent-pw",
            **env,
        }
        self.log = data / "berth.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(base_url=f"{self.base}/container/v1", timeout=120)

    def start(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", self.code], env=self.env, cwd=ROOT, stdout=out, stderr=out
            )
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"berth-api exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base}/identity/v3", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"berth-api did not answer: {self.log.read_text()[-2000:]}")
            time.sleep(0.1)
        self.http.headers.update({**ZUN, "X-Auth-Token": self.token()})

    def token(
        self, name: str = "admin", password: str = ADMIN_PASSWORD, project: str = "admin"
    ) -> str:
        """A token of user ``name`` scoped to ``project`` (default: the admin's)."""
        user = {"name": name, "domain": {"name": "Default"}, "password": password}
        body = {
            "auth": {
                "identity": {"methods": ["password"], "password": {"user": user}},
                "scope": {"project": {"name": project, "domain": {"name": "Default"}}},
            }
        }
        r = httpx.post(f"{self.base}/identity/v3/auth/tokens", json=body, timeout=30)
        r.raise_for_status()
        return r.headers["x-subject-token"]

    def stop(self) -> None:
        self.http.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
