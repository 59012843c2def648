"""A simulated pool against a real control plane: the scale goals of issue #19.

What it runs
    A throw-away ``berth-api`` on a fresh PostgreSQL database, without an
    embedded agent (every API process runs the worker loops itself, so this is
    the whole control plane of a scale-out deployment), and ``--agents``
    simulated hosts (``berth sim-pool``: the real agent loop and HTTP client
    over instant in-memory engines) in ``--processes`` processes. Then:

    (a) idle       the agents only long-poll (and heartbeat): the CPU of the API
                   process, of this database's PostgreSQL backends and of the
                   pool over ``--idle`` seconds, and what the agents asked.
    (b) burst      ``--containers`` creates (``POST ?run=true``) from
                   ``--clients`` threads at once: the time until the database
                   shows all of them Running, each container's POST → Running
                   (the client's send time to its create action's finish time,
                   same clock), and meanwhile a prober's ``show`` and
                   ``list`` of 1,000 latencies.
    (s) stored     instead of (b), with ``--stored N``: N containers written
                   straight into the database through Berth's store (its
                   ``Database``: each host's revision and desired-state feed
                   written as a create writes them, the hosts' claims added),
                   spread evenly over the simulated hosts, whose agents are
                   woken and start them: the time until the database shows
                   all of them Running. A size the API's creates would take
                   too long to reach on a small machine.
    (c) steady     everything stored and running: CPU over ``--steady``
                   seconds, ``show`` latencies of random containers and
                   ``list`` of 1,000 latencies.
    (r) restart    one more agent (in this process, the real loop over an
                   instant engine) holds twice ``--restart`` containers; it
                   stops, ``--restart`` of them change (half stopped, half
                   deleted), its service is made 10 minutes silent (its
                   containers turn Unknown), and it starts again: the time
                   from its first desired-state poll until its engine and the
                   database both show every change done.

    It prints goal against result, the load average around each scenario
    (the machine is shared: read the CPU figures, not only the times) and,
    with ``--json``, everything. ``--profile PATH`` runs the API under
    cProfile and writes its stats there when it stops (slower: profile runs
    are for where the time goes, not for the figures).

How it runs
    .venv/bin/python bench/pool.py                                  # the issue's sizes
    .venv/bin/python bench/pool.py --agents 1000 --containers 2000 --clients 50
    .venv/bin/python bench/pool.py --agents 1000 --stored 50000 --restart 0  # 50,000 running
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import psycopg

from bench._common import PG_ADMIN_DSN, ROOT, BerthServer, fresh_pg_database, machine, summary

AGENT_PASSWORD = "bench-agent-pw"
BODY = {"image": "busybox", "command": ["sleep", "1d"], "cpu": 0.1, "memory": 32}
TICK = os.sysconf("SC_CLK_TCK")
# Counts in the pool's stats that are not calls of their own.
_NOT_CALLS = ("desired_containers", "desired_full")
# The API's entry point, not named on the command line: other runs on a shared
# machine stop their servers with ``pkill -f`` on its name.
_API = "import berth.cli.serve as s\nrun = getattr(s, 'api' + '_main')\n"
# SIGUSR1 writes the stats so far (a server that takes long to stop is killed).
_PROFILED = (
    "import cProfile, os, signal\np = cProfile.Profile()\n"
    "def dump(*_):\n    p.disable()\n    p.dump_stats({path!r} + '.part')\n"
    "    os.replace({path!r} + '.part', {path!r})\n    p.enable()\n"
    "signal.signal(signal.SIGUSR1, dump)\np.enable()\nrun()\n"
)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def runqueue_seconds(pid: int) -> float:
    """Seconds the main thread of ``pid`` waited for a CPU while runnable (schedstat)."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9


def backends(database: str) -> list[int]:
    """The PostgreSQL backend processes serving ``database`` (their title names it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                title = (entry / "cmdline").read_bytes().decode(errors="replace")
                if title.startswith("postgres:") and f" {database} " in title:
                    found.append(int(entry.name))
    return found


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


class Pool:
    """``processes`` ``berth sim-pool`` processes; ``stats`` is each one's latest count."""

    def __init__(
        self, base: str, agents: int, processes: int, ramp: float, env: dict[str, str], logs: Path
    ) -> None:
        self.procs: list[subprocess.Popen[str]] = []
        self.stats: list[dict[str, Any]] = [{} for _ in range(processes)]
        share = -(-agents // processes)
        for i in range(processes):
            n = min(share, agents - i * share)
            argv = [sys.executable, "-c", "from berth.cli.main import app; app()", "sim-pool"]
            argv += ["--control-url", base, "--agents", str(n), "--first", str(i * share)]
            argv += ["--prefix", "b", "--ramp", str(ramp)]
            with (logs / f"pool-{i}.log").open("wb") as log:  # the agents' warnings
                proc = subprocess.Popen(
                    argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True
                )
            self.procs.append(proc)
            threading.Thread(target=self._read, args=(i, proc), daemon=True).start()

    def _read(self, i: int, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with contextlib.suppress(ValueError):
                self.stats[i] = json.loads(line)

    def total(self, key: str) -> int:
        return sum(int(s.get(key, 0)) for s in self.stats)

    def calls(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.stats:
            for k, v in {
                **s.get("calls", {}),
                "desired_containers": s.get("desired_containers", 0),
            }.items():
                out[k] = out.get(k, 0) + int(v)
        return out

    def failures(self) -> int:
        return sum(sum(s.get("failures", {}).values()) for s in self.stats)

    def stop(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGINT)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class Meter:
    """CPU of the API, this database's backends and the pool between ``start`` and ``stop``."""

    def __init__(self, api: int, database: str, pool: Pool) -> None:
        self.api, self.database, self.pool = api, database, pool

    def _sample(self) -> dict[str, Any]:
        pg: dict[int, float] = {}
        for pid in backends(self.database):
            with contextlib.suppress(OSError):
                pg[pid] = cpu_seconds(pid)
        pool = sum(cpu_seconds(p.pid) for p in self.pool.procs)
        return {"t": time.monotonic(), "api": cpu_seconds(self.api), "pg": pg, "pool": pool,
                "api_waiting": runqueue_seconds(self.api), "calls": self.pool.calls(),
                "load": loadavg()}  # fmt: skip

    def start(self) -> None:
        self.first = self._sample()

    def stop(self) -> dict[str, Any]:
        last, first = self._sample(), self.first
        span = last["t"] - first["t"]
        # Backends alive at the end, less what each had used at the start: one that
        # ended meanwhile (the pool closes its overflow) is lost, so a lower bound.
        last["pg"] = sum(cpu - first["pg"].get(pid, 0.0) for pid, cpu in last["pg"].items())
        first = {**first, "pg": 0.0}
        pct = {
            k: round(100 * (last[k] - first[k]) / span, 1)
            for k in ("api", "pg", "pool", "api_waiting")
        }
        rates = {
            k: round((v - first["calls"].get(k, 0)) / span, 1) for k, v in last["calls"].items()
        }
        calls = sum(v for k, v in rates.items() if k not in _NOT_CALLS) * span
        api_cpu = last["api"] - first["api"]
        per_call = round(1000 * api_cpu / calls, 2) if calls else None
        return {"seconds": round(span, 1), "cpu_pct": pct, "per_second": rates,
                "api_ms_per_agent_call": per_call,
                "load_before": first["load"], "load_after": last["load"]}  # fmt: skip


class Prober(threading.Thread):
    """Shows one of ``uuids`` at random (and lists 1,000 when ``lists``) every ``interval`` s."""

    def __init__(self, server: BerthServer, uuids: list[str], interval: float, lists: bool) -> None:
        super().__init__(daemon=True)
        self.uuids, self.interval, self.lists = uuids, interval, lists
        self.http = httpx.Client(
            base_url=server.http.base_url, headers=server.http.headers, timeout=60
        )
        self.show: list[float] = []
        self.list: list[float] = []
        self.done = threading.Event()

    def _time(self, path: str, params: dict[str, Any] | None = None) -> float:
        t0 = time.perf_counter()
        r = self.http.get(path, params=params)
        r.raise_for_status()
        return time.perf_counter() - t0

    def run(self) -> None:
        while not self.done.is_set():
            self.show.append(self._time(f"/containers/{random.choice(self.uuids)}"))
            if self.lists:
                self.list.append(self._time("/containers", {"limit": 1000}))
            self.done.wait(self.interval)

    def finish(self) -> dict[str, Any]:
        self.done.set()
        self.join()
        self.http.close()
        return {"show": summary(self.show) if self.show else None,
                "list_1000": summary(self.list) if self.list else None,
                "samples": len(self.show)}  # fmt: skip


def burst(server: BerthServer, db: psycopg.Connection[Any], n: int, clients: int,
          probe: float) -> dict[str, Any]:  # fmt: skip
    """``n`` creates from ``clients`` threads; POST → Running of each, probes meanwhile."""
    first = server.http.post("/containers", params={"run": "true"}, json=BODY).json()["uuid"]
    counter, lock = itertools.count(), threading.Lock()
    sent: dict[str, float] = {}
    refused: list[str] = []

    def client() -> None:
        with httpx.Client(base_url=server.http.base_url, headers=server.http.headers,
                          timeout=120) as http:  # fmt: skip
            while True:
                with lock:
                    i = next(counter)
                if i >= n - 1:
                    return
                t0 = time.time()
                r = http.post("/containers", params={"run": "true"}, json=BODY)
                if r.status_code != 202:
                    refused.append(f"{r.status_code} {r.text[:200]}")
                    continue
                sent[r.json()["uuid"]] = t0

    prober = Prober(server, [first], probe, lists=True)
    prober.start()
    t0 = time.monotonic()
    with cf.ThreadPoolExecutor(clients) as workers:
        for f in [workers.submit(client) for _ in range(clients)]:
            f.result()
    accepted = time.monotonic() - t0
    while True:
        running = db.execute("SELECT count(*) FROM containers WHERE status = 'Running'").fetchone()
        if running is not None and running[0] >= len(sent) + 1:
            break
        if time.monotonic() - t0 > 1800:
            raise RuntimeError(f"only {running} of {len(sent) + 1} Running after 30 min")
        time.sleep(0.5)
    all_running = time.monotonic() - t0
    probes = prober.finish()
    finished = dict(db.execute(
        "SELECT container_uuid, extract(epoch FROM finish_time) FROM container_actions "
        "WHERE action = 'create'"
    ).fetchall())  # fmt: skip
    latencies = [float(finished[u]) - t for u, t in sent.items()]
    return {"containers": len(sent) + 1, "refused": refused[:5], "n_refused": len(refused),
            "accepted_s": round(accepted, 1), "all_running_s": round(all_running, 1),
            "post_to_running": summary(latencies), **probes}  # fmt: skip


class _FirstPoll:
    """A ControlPlane that notes when its first desired-state poll began."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.first, self.answers, self.full = inner, 0.0, 0, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def desired(self, hostname: str, generation: int, wait: float, *rest: Any) -> Any:
        if not self.first:
            self.first = time.monotonic()
        answer = await self.inner.desired(hostname, generation, wait, *rest)
        self.answers += 1
        self.full += getattr(answer, "base", None) is None
        return answer


async def _until(check: Any, pause: float, within: float = 600.0) -> None:
    import asyncio

    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(pause)
    raise RuntimeError(f"not within {within} s: {check}")


async def _restart(server: BerthServer, dsn: str, changed: int) -> dict[str, Any]:
    """Scenario (r): see the module docstring."""
    import asyncio

    from berth.agent.client import ControlClient
    from berth.agent.loop import Agent
    from berth.config import Settings
    from berth.runtimes.fake import InstantDriver
    from berth.services.hosts.liveness import flush_period

    name = "sim-restart-0"
    settings = Settings(agent_host=name, agent_url="http://127.0.0.1:9",
                        agent_password=AGENT_PASSWORD, all_in_one=False)  # fmt: skip
    engine = InstantDriver(cpus=256, mem_total=1 << 20, disk_total=1 << 20)
    db = await psycopg.AsyncConnection.connect(dsn, autocommit=True)

    async def count(sql: str, *args: Any) -> int:
        found = await (await db.execute(sql, args)).fetchone()
        return int(found[0]) if found else 0

    async def run_agent(control: Any) -> asyncio.Task[None]:
        task = asyncio.create_task(Agent(settings, control, engine).run())
        await _until(lambda: count("SELECT count(*) FROM hosts WHERE hostname = %s", name), 0.1)
        return task

    async with (
        httpx.AsyncClient(base_url=server.base, timeout=120) as http,
        httpx.AsyncClient(
            base_url=server.http.base_url, headers=server.http.headers, timeout=120
        ) as api,
    ):
        task = await run_agent(ControlClient(http, password=AGENT_PASSWORD))
        uuids = []
        for _ in range(2 * changed):
            r = await api.post("/containers", params={"run": "true"}, json={**BODY, "host": name})
            r.raise_for_status()
            uuids.append(r.json()["uuid"])
        running = "SELECT count(*) FROM containers WHERE host = %s AND status = %s"

        async def all_running() -> bool:
            return await count(running, name, "Running") == len(uuids)

        await _until(all_running, 0.2)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        stop, gone = uuids[: changed // 2], uuids[changed // 2 : changed]
        for uuid in stop:
            (await api.post(f"/containers/{uuid}/stop")).raise_for_status()
        for uuid in gone:
            (await api.delete(f"/containers/{uuid}", params={"force": "true"})).raise_for_status()
        # The API writes the calls it heard in a batch (services/hosts/liveness.py):
        # the stopped agent's last ones land within one period; backdate after that.
        await asyncio.sleep(flush_period(settings.service_down_time) + 1)
        await db.execute("UPDATE services SET last_seen_up = now() - interval '10 minutes' "
                         "WHERE host = %s", (name,))  # fmt: skip
        # The worker marks the host's containers Unknown.
        with contextlib.suppress(RuntimeError):
            await _until(lambda: count(running, name, "Unknown"), 0.2, 60.0)
        unknown = await count(running, name, "Unknown")
        control = _FirstPoll(ControlClient(http, password=AGENT_PASSWORD))
        task = await run_agent(control)
        keep = len(uuids) - changed

        async def converged() -> bool:
            held = {c.uuid: c.state for c in await engine.list_managed() if c.uuid}
            states = sorted(held.values())
            return (
                states == sorted(["running"] * keep + ["stopped"] * len(stop))
                and await count(running, name, "Running") == keep
                and await count(running, name, "Stopped") == len(stop)
                and await count("SELECT count(*) FROM containers WHERE host = %s", name)
                == keep + len(stop)
            )

        await _until(converged, 0.02)
        done = time.monotonic()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await db.close()
    return {"containers": len(uuids), "changed": changed, "unknown_before": unknown,
            "converged_s": round(done - control.first, 2), "polls": control.answers,
            "full_answers": control.full}  # fmt: skip


def restart(server: BerthServer, dsn: str, changed: int) -> dict[str, Any]:
    import asyncio

    return asyncio.run(_restart(server, dsn, changed))


async def _store_rows(url: str, template: str, n: int, batch: int) -> list[str]:
    """Scenario (s)'s rows: ``n`` copies of container ``template`` spread over every host.

    Written through Berth's own store (its ``Database``, so the after-flush hook
    bumps each host's revision and writes the desired-state feed as a create
    does), the hosts' claims added as ``reclaim`` adds them, each host's long
    poll woken (NOTIFY) after its rows commit. Returns the new uuids.
    """
    from sqlalchemy import select, update

    from berth.store.base import new_uuid
    from berth.store.db import Database
    from berth.store.listen import pg_notify
    from berth.store.tables import ContainerRow, HostRow

    db = Database(url)
    skip = {"id", "uuid", "name", "host", "created_at", "desired_since", "updated_at"}
    async with db.read() as session:
        row = (
            await session.execute(select(ContainerRow).where(ContainerRow.uuid == template))
        ).scalar_one()
        cols = {
            c.key: getattr(row, c.key) for c in ContainerRow.__table__.columns if c.key not in skip
        }
        hosts = list((await session.execute(
            select(HostRow.hostname).where(HostRow.hostname.like("sim-b-%")).order_by(HostRow.id)
        )).scalars())  # fmt: skip
    cols.update(status="Creating", task_state="creating", desired_state="running",
                claimed=True, observed_state=None, observed_spec_version=0, runtime_id=None,
                status_reason=None)  # fmt: skip
    uuids: list[str] = []
    per_tx = max(1, batch // max(1, -(-n // len(hosts))))  # hosts per transaction
    for first in range(0, len(hosts), per_tx):
        chunk = hosts[first : first + per_tx]
        async with db.transaction() as session:
            for i, host in enumerate(chunk, first):
                k = n // len(hosts) + (i < n % len(hosts))
                if not k:
                    continue
                rows = [ContainerRow(uuid=new_uuid(), name=f"stored-{i}-{j}", host=host, **cols)
                        for j in range(k)]  # fmt: skip
                session.add_all(rows)
                uuids += [r.uuid for r in rows]
                await session.execute(
                    update(HostRow).where(HostRow.hostname == host).values(
                        cpu_used=HostRow.cpu_used + k * cols["cpu"],
                        mem_used=HostRow.mem_used + k * (cols["memory"] or 0),
                        disk_used=HostRow.disk_used + k * cols["disk"],
                        total_containers=HostRow.total_containers + k,
                        generation=HostRow.generation + 1,
                    )
                )  # fmt: skip
        for host in chunk:
            await pg_notify(db, host)
    await db.engine.dispose()
    return uuids


def stored(server: BerthServer, url: str, db: psycopg.Connection[Any], n: int) -> dict[str, Any]:
    """Scenario (s): ``n`` containers stored without the API, until the database says Running
    (or 2 minutes without progress: the statuses say what stayed behind)."""
    import asyncio

    template = server.http.post("/containers", params={"run": "true"}, json=BODY).json()["uuid"]
    t0 = time.monotonic()
    uuids = asyncio.run(_store_rows(url, template, n, batch=2000))
    written = time.monotonic() - t0
    total = len(uuids) + 1
    count = "SELECT count(*) FILTER (WHERE status = 'Running'), count(*) FROM containers"
    last, since = -1, time.monotonic()
    while True:
        found = db.execute(count).fetchone()
        running = int(found[0]) if found else 0
        if running >= total:
            break
        if running != last:
            last, since = running, time.monotonic()
        elif time.monotonic() - since > 120:
            break  # no progress for 2 minutes: report what stayed behind (below)
        if time.monotonic() - t0 > 3600:
            raise RuntimeError(f"only {running} of {total} Running after 60 min")
        time.sleep(1)
    statuses = dict(db.execute("SELECT status, count(*) FROM containers GROUP BY 1").fetchall())
    return {"containers": total, "written_s": round(written, 1), "statuses": statuses,
            "all_running_s": round(time.monotonic() - t0, 1) if running >= total else None,
            "load_after": loadavg()}  # fmt: skip


def steady(server: BerthServer, db: psycopg.Connection[Any], meter: Meter,
           seconds: float) -> dict[str, Any]:  # fmt: skip
    """Scenario (c): CPU over ``seconds`` untouched, then over ``seconds`` of probes (shows
    of random containers, lists of 1,000, one after the other every 0.1 s)."""
    uuids = [u for (u,) in db.execute("SELECT uuid FROM containers ORDER BY random() LIMIT 1000")]
    meter.start()
    time.sleep(seconds)
    quiet = meter.stop()
    meter.start()
    prober = Prober(server, uuids, 0.1, lists=True)
    prober.start()
    time.sleep(seconds)
    return quiet | {"probed": meter.stop()} | prober.finish()


def row(measure: str, goal: str, result: str) -> None:
    print(f"| {measure} | {goal} | {result} |")


def report(args: argparse.Namespace, out: dict[str, Any]) -> None:
    idle, b, held = out["idle"], out.get("burst"), out.get("steady")
    st = out.get("stored")
    ms = lambda s: f"{1000 * s:.0f} ms"  # noqa: E731
    print(f"\nmachine: {out['machine']['cpus']} CPUs {out['machine']['cpu_model']}; "
          f"revision {out['machine']['berth_revision']}")  # fmt: skip
    print("| measure | goal | result |\n|---|---|---|")
    c = idle["cpu_pct"]
    row(
        f"{args.agents:,} idle agents: control-plane CPU",
        "≤ 10% of one core",
        f"API {c['api']}% + PostgreSQL {c['pg']}% (pool {c['pool']}%; the API waited for a CPU "
        f"{c['api_waiting']}% of the time; load {idle['load_after']})",
    )
    row(
        "  what they ask, per second",
        "",
        ", ".join(f"{k} {v}" for k, v in idle["per_second"].items()),
    )
    # The protocol's own rate. Before #19: a heartbeat every 10 s per agent and a
    # long poll that times out every reconcile_interval (5 s); with the incremental
    # protocol a poll every agent_poll_wait (30 s), and a heartbeat every 10 s until
    # polls counted as heartbeats (an agent then heartbeats only after
    # heartbeat_interval, 60 s, without any other call). A starved API serves
    # fewer; at its measured cost per call this is what it would need.
    poll = 30.0 if "desired_full" in idle["per_second"] else 5.0
    beats = idle["per_second"].get("heartbeat", 0.0) > 0.05 * args.agents  # the 10 s ones
    due = args.agents / poll + (args.agents / 10.0 if beats else 0.0)
    if idle["api_ms_per_agent_call"]:
        need = due * idle["api_ms_per_agent_call"] / 10
        row(
            "  API CPU per agent call; at the protocol's rate",
            "",
            f"{idle['api_ms_per_agent_call']} ms; {due:.0f} calls/s need {need:.0f}% of a core",
        )
    r = out.get("restart")
    if r:
        row(
            f"agent restart after 10 min away, {r['changed']} of {r['containers']} containers "
            "changed",
            "converges ≤ 2 s of its first poll",
            f"{r['converged_s']} s ({r['polls']} polls, {r['full_answers']} whole; "
            f"{r['unknown_before']} were Unknown)",
        )
    if b:
        p = b["post_to_running"]
        row(
            f"{b['containers']:,} creates, {args.clients} clients: all Running",
            "≤ 60 s",
            f"{b['all_running_s']} s (POSTs answered in {b['accepted_s']} s)",
        )
        row(
            "  POST → Running of one container",
            "p99 ≤ 5 s",
            f"p50 {p['p50']:.2f} s, p99 {p['p99']:.2f} s, max {p['max']:.2f} s",
        )
        row(
            "  show during the burst",
            "p99 ≤ 50 ms",
            f"p50 {ms(b['show']['p50'])}, p99 {ms(b['show']['p99'])}",
        )
        row(
            "  list of 1,000 during the burst",
            "p99 ≤ 300 ms",
            f"p50 {ms(b['list_1000']['p50'])}, p99 {ms(b['list_1000']['p99'])}",
        )
        row(
            "  burst CPU",
            "",
            f"API {b['cpu']['cpu_pct']['api']}% + PostgreSQL {b['cpu']['cpu_pct']['pg']}% "
            f"(the API waited for a CPU {b['cpu']['cpu_pct']['api_waiting']}% of the time; "
            f"{b['cpu']['api_ms_per_agent_call']} ms per agent call; "
            f"load {b['cpu']['load_after']})",
        )
        spent = b["cpu"]["seconds"] * (b["cpu"]["cpu_pct"]["api"] + b["cpu"]["cpu_pct"]["pg"]) / 100
        row(
            "  control-plane CPU per create (API + PostgreSQL)",
            "",
            f"{1000 * spent / b['containers']:.1f} ms: 10,000 in 60 s need "
            f"{spent / b['containers'] * 10000 / 60:.2f} cores",
        )
    if st:
        c = st["cpu"]["cpu_pct"]
        row(
            f"{st['containers']:,} stored without the API: written, all Running",
            "",
            f"written in {st['written_s']} s, all Running {st['all_running_s']} s from the "
            f"start (statuses at the end: {st['statuses']}); "
            f"meanwhile API {c['api']}% + PostgreSQL {c['pg']}% "
            f"(load {st['cpu']['load_after']})",
        )
    if held:
        c = held["cpu_pct"]
        count = (b or st or {}).get("containers", 0)
        row(
            f"{count:,} stored and running: steady CPU",
            "≤ 20% of one core",
            f"API {c['api']}% + PostgreSQL {c['pg']}% (load {held['load_after']}); while "
            f"probed: API {held['probed']['cpu_pct']['api']}% + PostgreSQL "
            f"{held['probed']['cpu_pct']['pg']}%",
        )
        row(
            "  show of a random container",
            "p99 ≤ 10 ms",
            f"p50 {ms(held['show']['p50'])}, p99 {ms(held['show']['p99'])}",
        )
        row(
            "  list of 1,000",
            "p99 ≤ 300 ms",
            f"p50 {ms(held['list_1000']['p50'])}, p99 {ms(held['list_1000']['p99'])}",
        )
        row(
            "  what the agents ask, per second",
            "",
            ", ".join(f"{k} {v}" for k, v in held["per_second"].items()),
        )
    print(f"pool failures (calls that failed, retried): {out['pool_failures']}")


def run(args: argparse.Namespace) -> dict[str, Any]:
    unlimited = {f"BERTH_QUOTA_{k}": "-1" for k in ("CONTAINERS", "CPU", "MEMORY", "DISK")}
    env = {
        "BERTH_ALL_IN_ONE": "false",
        "BERTH_AGENT_PASSWORD": AGENT_PASSWORD,
        # Every simulated host connects from this one address (a long poll each).
        "BERTH_MAX_CONNECTIONS_PER_CLIENT": "0",
        **unlimited,
    }
    code = _API + (_PROFILED.format(path=args.profile) if args.profile else "run()\n")
    out: dict[str, Any] = {"args": vars(args), "machine": machine()}
    with fresh_pg_database() as url, tempfile.TemporaryDirectory(prefix="berth-pool-") as tmp:
        database = url.rsplit("/", 1)[1]
        server = BerthServer(Path(tmp), {**env, "BERTH_DATABASE_URL": url}, code=code)
        server.start()
        pool: Pool | None = None
        try:
            assert server.proc is not None
            pool = Pool(server.base, args.agents, args.processes, args.ramp,
                        {**server.env, "BERTH_CONTROL_URL": server.base}, Path(tmp))  # fmt: skip
            t0 = time.monotonic()
            while pool.total("registered") < args.agents:
                if time.monotonic() - t0 > 600:
                    raise RuntimeError(f"{pool.total('registered')} agents registered in 10 min")
                time.sleep(1)
            out["registered_s"] = round(time.monotonic() - t0, 1)
            print(f"{args.agents} agents registered in {out['registered_s']} s", flush=True)
            time.sleep(args.settle)
            meter = Meter(server.proc.pid, database, pool)
            meter.start()
            time.sleep(args.idle)
            out["idle"] = meter.stop()
            print(f"idle: {out['idle']}", flush=True)
            dsn = PG_ADMIN_DSN.rsplit("/", 1)[0] + "/" + database
            if args.restart:
                out["restart"] = restart(server, dsn, args.restart)
                print(f"restart: {out['restart']}", flush=True)
            with psycopg.connect(dsn, autocommit=True) as db:
                if args.stored:
                    meter.start()
                    out["stored"] = stored(server, url, db, args.stored)
                    out["stored"]["cpu"] = meter.stop()
                    print(f"stored: {out['stored']}", flush=True)
                elif args.containers:
                    meter.start()
                    out["burst"] = burst(server, db, args.containers, args.clients, args.probe)
                    out["burst"]["cpu"] = meter.stop()
                    print(f"burst: {out['burst']}", flush=True)
                if args.stored or args.containers:
                    time.sleep(args.settle)
                    out["steady"] = steady(server, db, meter, args.steady)
                    print(f"steady: {out['steady']}", flush=True)
            out["pool_failures"] = pool.failures()
        except BaseException:
            tail = server.log.read_text(errors="replace").splitlines()[-60:]
            print("berth-api's log, last lines:", *tail, sep="\n", file=sys.stderr)
            raise
        finally:
            if pool is not None:
                pool.stop()
            if args.profile and server.proc is not None and server.proc.poll() is None:
                server.proc.send_signal(signal.SIGUSR1)
                deadline = time.monotonic() + 60
                while not Path(args.profile).exists() and time.monotonic() < deadline:
                    time.sleep(0.5)
            server.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument(
        "--processes", type=int, default=2, help="sim-pool processes (agents split evenly)"
    )
    parser.add_argument("--containers", type=int, default=10000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument(
        "--stored", type=int, default=0,
        help="store this many containers without the API (scenario s) instead of the burst",
    )  # fmt: skip
    parser.add_argument("--ramp", type=float, default=20.0, help="seconds over which agents start")
    parser.add_argument(
        "--settle", type=float, default=15.0, help="seconds before each measurement"
    )
    parser.add_argument("--idle", type=float, default=30.0)
    parser.add_argument("--steady", type=float, default=30.0)
    parser.add_argument(
        "--restart", type=int, default=50, help="containers changed while one agent is away"
    )
    parser.add_argument(
        "--probe", type=float, default=0.1, help="seconds between probes in the burst"
    )
    parser.add_argument("--profile", help="run the API under cProfile, stats to this path")
    parser.add_argument("--json", help="write every figure to this file")
    args = parser.parse_args()
    out = run(args)
    report(args, out)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
