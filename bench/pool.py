"""A simulated pool against a real control plane: the scale goals of issue #19.

What it runs
    A throw-away ``berth-api`` on a fresh PostgreSQL database, without an
    embedded agent (every API process runs the worker loops itself, so this is
    the whole control plane of a scale-out deployment), and ``--agents``
    simulated hosts (``berth sim-pool``: the real agent loop and HTTP client
    over instant in-memory engines) in ``--processes`` processes. Then:

    (a) idle       the agents only heartbeat and long-poll: the CPU of the API
                   process, of this database's PostgreSQL backends and of the
                   pool over ``--idle`` seconds, and what the agents asked.
    (b) burst      ``--containers`` creates (``POST ?run=true``) from
                   ``--clients`` threads at once: the time until the database
                   shows all of them Running, each container's POST → Running
                   (the client's send time to its create action's finish time,
                   same clock), and meanwhile a prober's ``show`` and
                   ``list`` of 1,000 latencies.
    (c) steady     everything stored and running: CPU over ``--steady``
                   seconds and ``show`` latencies.

    It prints goal against result, the load average around each scenario
    (the machine is shared: read the CPU figures, not only the times) and,
    with ``--json``, everything. ``--profile PATH`` runs the API under
    cProfile and writes its stats there when it stops (slower: profile runs
    are for where the time goes, not for the figures).

How it runs
    .venv/bin/python bench/pool.py                                  # the issue's sizes
    .venv/bin/python bench/pool.py --agents 1000 --containers 2000 --clients 50
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import itertools
import json
import os
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
        calls = sum(v for k, v in rates.items() if k != "desired_containers") * span
        api_cpu = last["api"] - first["api"]
        per_call = round(1000 * api_cpu / calls, 2) if calls else None
        return {"seconds": round(span, 1), "cpu_pct": pct, "per_second": rates,
                "api_ms_per_agent_call": per_call,
                "load_before": first["load"], "load_after": last["load"]}  # fmt: skip


class Prober(threading.Thread):
    """Shows one container (and lists 1,000 when ``lists``) every ``interval`` s until stopped."""

    def __init__(self, server: BerthServer, uuid: str, interval: float, lists: bool) -> None:
        super().__init__(daemon=True)
        self.uuid, self.interval, self.lists = uuid, interval, lists
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
            self.show.append(self._time(f"/containers/{self.uuid}"))
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

    prober = Prober(server, first, probe, lists=True)
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


def row(measure: str, goal: str, result: str) -> None:
    print(f"| {measure} | {goal} | {result} |")


def report(args: argparse.Namespace, out: dict[str, Any]) -> None:
    idle, b, steady = out["idle"], out.get("burst"), out.get("steady")
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
    # The protocol's own rate: a long poll that times out every reconcile_interval
    # (5 s) and a heartbeat every heartbeat_interval (10 s) per agent. A starved
    # API serves fewer; at its measured cost per call this is what it would need.
    due = args.agents / 5.0 + args.agents / 10.0
    if idle["api_ms_per_agent_call"]:
        need = due * idle["api_ms_per_agent_call"] / 10
        row(
            "  API CPU per agent call; at the protocol's rate",
            "",
            f"{idle['api_ms_per_agent_call']} ms; {due:.0f} calls/s need {need:.0f}% of a core",
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
    if steady:
        c = steady["cpu_pct"]
        row(
            f"{b['containers'] if b else 0:,} stored and running: steady CPU",
            "≤ 20% of one core",
            f"API {c['api']}% + PostgreSQL {c['pg']}% (load {steady['load_after']})",
        )
        row(
            "  show",
            "p99 ≤ 10 ms",
            f"p50 {ms(steady['show']['p50'])}, p99 {ms(steady['show']['p99'])}",
        )
        row(
            "  what the agents ask, per second",
            "",
            ", ".join(f"{k} {v}" for k, v in steady["per_second"].items()),
        )
    print(f"pool failures (calls that failed, retried): {out['pool_failures']}")


def run(args: argparse.Namespace) -> dict[str, Any]:
    unlimited = {f"BERTH_QUOTA_{k}": "-1" for k in ("CONTAINERS", "CPU", "MEMORY", "DISK")}
    env = {"BERTH_ALL_IN_ONE": "false", "BERTH_AGENT_PASSWORD": AGENT_PASSWORD, **unlimited}
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
            with psycopg.connect(dsn, autocommit=True) as db:
                if args.containers:
                    meter.start()
                    out["burst"] = burst(server, db, args.containers, args.clients, args.probe)
                    out["burst"]["cpu"] = meter.stop()
                    print(f"burst: {out['burst']}", flush=True)
                    time.sleep(args.settle)
                    meter.start()
                    uuid = db.execute("SELECT uuid FROM containers LIMIT 1").fetchone()
                    assert uuid is not None
                    prober = Prober(server, uuid[0], 0.1, lists=False)
                    prober.start()
                    time.sleep(args.steady)
                    out["steady"] = meter.stop() | prober.finish()
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
    parser.add_argument("--ramp", type=float, default=20.0, help="seconds over which agents start")
    parser.add_argument(
        "--settle", type=float, default=15.0, help="seconds before each measurement"
    )
    parser.add_argument("--idle", type=float, default=30.0)
    parser.add_argument("--steady", type=float, default=30.0)
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
