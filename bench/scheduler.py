"""Scheduler throughput: placements per second and decision latency at 1,000 and 10,000 hosts.

What it measures
    decision   ``Pipeline.place`` over the process's host snapshot (``HostCache``):
               the pure part, the filters and weighers, with the snapshot
               updated after each decision as a won claim would update it.
    placement  ``berth.services.hosts.placement.place`` in a committed transaction,
               one per placement: the snapshot cache (including its periodic
               full re-read), the pipeline, and the claim -- the conditional
               ``UPDATE hosts ... WHERE generation = :seen`` (in a savepoint on
               PostgreSQL) -- then COMMIT. This is what a create pays for
               placement; the container row, its action and event are not
               included (they are the create's, whatever the scheduler).
    baseline   the same ``place`` without the cache and without the candidate
               limit (every host read and filtered for every placement): the
               design before this benchmark, for comparison.
    full read  one ``read_hosts`` of every host (what the cache does every
               ``scheduler_snapshot_ttl`` seconds, and before any "no valid host").
    no fit     a request no host can take: a full read and a scan of every
               host, so that the answer explains each one.

The hosts are rows inserted directly (no agents): three zones, a tenth with
an ``ssd`` label, a quarter with ``runsc``, 2% pinning CPUs, 3% disabled, 2%
down, 0-30% used. Requests: 0.1-2 CPUs, 64-2048 MiB, a tenth with a zone, 5%
with a label hint, 3% asking for ``runsc``, 0.5% dedicated cores. Everything
fits, so the cluster fills up to about a third. ``service_down_time`` is an
hour so that no host turns down during the run.

How it runs
    .venv/bin/python bench/scheduler.py                      # ~10 min, both databases
    .venv/bin/python bench/scheduler.py --hosts 1000 --placements 20000 --db sqlite
    .venv/bin/python bench/scheduler.py --json results.json

The process is pinned to one core (``--core``); PostgreSQL, a separate
server process, is not. SQLite lives in a temporary directory; PostgreSQL in a
fresh database (``BERTH_TEST_PG`` admin DSN), dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert

from bench._common import fresh_pg_database, machine, summary
from berth.scheduler import Pipeline, PlacementRequest, build_pipeline
from berth.services.hosts.cache import AGENT_BINARY, HostCache, read_hosts
from berth.services.hosts.placement import place
from berth.store.db import Database
from berth.store.tables import ContainerRow, HostRow, ServiceRow

DOWN_TIME = 3600.0
TARGET_RATE, TARGET_P99_MS = 2000.0, 5.0
IMAGES = [f"app-{i}:1" for i in range(20)]


def fleet(n: int, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Host and service rows for ``n`` hosts."""
    rng = random.Random(seed)
    now = dt.datetime.now(dt.UTC)
    hosts, services = [], []
    for i in range(n):
        name = f"bench-{i:05d}"
        cpus = rng.choice([16, 32, 64])
        mem = cpus * 4096
        used = rng.uniform(0, 0.3)
        labels = {"disk": "ssd"} if i % 10 == 0 else {}
        hosts.append(
            {
                "uuid": f"00000000-0000-4000-8000-{i:012d}",
                "hostname": name,
                "cpus": cpus,
                "cpu_used": round(cpus * 16 * used, 2),
                "mem_total": mem,
                "mem_used": int(mem * 1.5 * used),
                "disk_total": 500,
                "disk_used": 0,
                "total_containers": int(used * 100),
                "runtimes": ["runc", "runsc"] if i % 4 == 0 else ["runc"],
                "labels": labels,
                "availability_zone": f"az{i % 3 + 1}",
                "enable_cpu_pinning": i % 50 == 7,
                "pinned_cpus": [],
                "images": rng.sample(IMAGES, 3),
                "generation": 1,
                "created_at": now,
            }
        )
        down = i % 50 == 13
        services.append(
            {
                "host": name,
                "binary": AGENT_BINARY,
                "disabled": i % 33 == 5,
                "forced_down": False,
                "last_seen_up": now - dt.timedelta(days=1) if down else now,
                "report_count": 1,
                "availability_zone": f"az{i % 3 + 1}",
                "created_at": now,
            }
        )
    return hosts, services


def requests(count: int, seed: int) -> list[ContainerRow]:
    """Transient container rows, as a create would hand them to ``place``."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        kind = rng.random()
        dedicated = kind < 0.005
        rows.append(
            ContainerRow(
                uuid=f"bench-{i}",
                project_id=f"project-{rng.randrange(50)}",
                image=rng.choice(IMAGES),
                cpu=1.0 if dedicated else rng.choice([0.1, 0.25, 0.5, 1.0, 2.0]),
                cpu_policy="dedicated" if dedicated else "shared",
                memory=rng.choice([64, 128, 256, 512, 1024, 2048]),
                disk=0,
                runtime="runsc" if 0.005 <= kind < 0.035 else None,
                availability_zone=f"az{rng.randrange(3) + 1}" if 0.1 <= kind < 0.2 else None,
                hints={"label:disk": "ssd"} if 0.2 <= kind < 0.25 else {},
                requested_host=None,
            )
        )
    return rows


def as_request(row: ContainerRow) -> PlacementRequest:
    return PlacementRequest(
        cpu=row.cpu,
        memory=row.memory or 0,
        runtime=row.runtime,
        availability_zone=row.availability_zone,
        hints=tuple(sorted((row.hints or {}).items())),
        cpu_policy=row.cpu_policy,
        project_id=row.project_id,
        image=row.image,
    )


def pipeline(candidates: int) -> Pipeline:
    return build_pipeline(
        cpu_ratio=16.0, ram_ratio=1.5, disk_ratio=1.0, default_zone="nova", candidates=candidates
    )


async def seed_hosts(db: Database, n: int, seed: int) -> None:
    hosts, services = fleet(n, seed)
    async with db.transaction() as s:
        for i in range(0, n, 1000):
            await s.execute(insert(HostRow), hosts[i : i + 1000])
            await s.execute(insert(ServiceRow), services[i : i + 1000])


async def measure_decisions(db: Database, rows: list[ContainerRow]) -> dict[str, Any]:
    """The pure pipeline over the cached snapshot, claims applied in memory only."""
    cache, p, rng = HostCache(ttl=1e9), pipeline(16), random.Random(1)
    async with db.read() as s:
        await cache.hosts(s, DOWN_TIME)
    samples, visited, failed = [], 0, 0
    start = time.perf_counter()
    for row in rows:
        req = as_request(row)
        hosts = cache.cached()
        t0 = time.perf_counter()
        d = p.place(req, hosts, rng)
        samples.append(time.perf_counter() - t0)
        visited += d.visited
        if d.host is None:
            failed += 1
            continue
        h = d.host
        cores = h.free_cores()[: req.dedicated_cores]
        cache.claimed(
            h,
            cpu_used=h.cpu_used + req.cpu,
            mem_used=h.mem_used + req.memory,
            pinned_cpus=h.pinned_cpus | set(cores),
            generation=h.generation + 1,
        )
    wall = time.perf_counter() - start
    return _result(samples, wall, failed, visited=visited / len(rows))


async def measure_placements(
    db: Database, rows: list[ContainerRow], candidates: int, ttl: float, concurrency: int = 1
) -> dict[str, Any]:
    """``place`` in a committed transaction per placement, ``concurrency`` at a time."""
    cache, p = HostCache(ttl=ttl, with_projects=False), pipeline(candidates)
    samples, inside, failed = [], [], 0
    todo = iter(rows)

    async def worker() -> None:
        nonlocal failed
        for row in todo:
            t0 = time.perf_counter()
            async with db.transaction() as s:
                t1 = time.perf_counter()
                d = await place(s, p, row, DOWN_TIME, cache)
                inside.append(time.perf_counter() - t1)
            samples.append(time.perf_counter() - t0)
            failed += d.host is None

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    in_tx = {f"{k}_ms": v * 1000 for k, v in summary(inside).items()}
    return _result(
        samples,
        wall,
        failed,
        concurrency=concurrency,
        full_reads=cache.reads,
        checks=cache.checks,
        place_call=in_tx,
    )


async def measure_reads(db: Database, repeat: int = 5) -> dict[str, Any]:
    times = []
    for _ in range(repeat):
        async with db.read() as s:
            t0 = time.perf_counter()
            await read_hosts(s, DOWN_TIME, with_projects=False)
            times.append(time.perf_counter() - t0)
    return {"p50_ms": sorted(times)[len(times) // 2] * 1000}


async def measure_no_fit(db: Database, repeat: int = 5) -> dict[str, Any]:
    cache, p, times, explained = HostCache(ttl=1e9, with_projects=False), pipeline(16), [], ""
    for i in range(repeat):
        row = ContainerRow(uuid=f"huge-{i}", project_id="p", image="x", cpu=1.0, memory=10**7)
        row.cpu_policy, row.disk, row.hints = "shared", 0, {}
        async with db.transaction() as s:
            t0 = time.perf_counter()
            d = await place(s, p, row, DOWN_TIME, cache)
            times.append(time.perf_counter() - t0)
        assert d.host is None
        explained = d.explain()
    return {"p50_ms": sorted(times)[len(times) // 2] * 1000, "explanation": explained[:160]}


def _result(samples: list[float], wall: float, failed: int, **extra: Any) -> dict[str, Any]:
    s = summary(samples)
    return {
        "placements": len(samples),
        "failed": failed,
        "per_second": len(samples) / wall,
        "wall_s": wall,
        **{f"{k}_ms": v * 1000 for k, v in s.items()},
        **extra,
    }


async def run_one(url: str, db_name: str, n: int, args: argparse.Namespace) -> dict[str, Any]:
    db = Database(url)
    await db.migrate()
    try:
        await seed_hosts(db, n, args.seed)
        rows = requests(args.placements, args.seed + 1)
        out: dict[str, Any] = {"db": db_name, "hosts": n}
        out["full_read"] = await measure_reads(db)
        out["baseline"] = await measure_placements(db, rows[: args.baseline], 0, 0.0)
        # The baseline claimed: a fresh fleet for the measured runs.
        await _reset(db, n, args.seed)
        out["decision"] = await measure_decisions(db, rows)
        _progress(out, "decision")
        out["placement"] = await measure_placements(db, rows, 16, args.ttl)
        _progress(out, "placement")
        if db_name == "postgres" and args.concurrency > 1:
            # Durable commits wait for the WAL flush: concurrent placements share
            # them (group commit), as concurrent creates in an API process do.
            await _reset(db, n, args.seed)
            out["concurrent"] = await measure_placements(
                db, rows, 16, args.ttl, concurrency=args.concurrency
            )
            _progress(out, "concurrent")
        out["no_fit"] = await measure_no_fit(db)
        return out
    finally:
        await db.close()


async def _reset(db: Database, n: int, seed: int) -> None:
    async with db.transaction() as s:
        await s.execute(ServiceRow.__table__.delete())
        await s.execute(HostRow.__table__.delete())
    await seed_hosts(db, n, seed)


def _progress(out: dict[str, Any], key: str) -> None:
    r = out[key]
    print(
        f"  {out['db']:8} {out['hosts']:>6} hosts  {key:9}  {r['per_second']:8.0f}/s  "
        f"p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms",
        file=sys.stderr,
    )


def report(result: dict[str, Any]) -> str:
    lines = [
        f"{'db':9}{'hosts':>7}  {'stage':10}{'per s':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
    ]
    for r in result["runs"]:
        for key in ("decision", "placement", "concurrent", "baseline"):
            if key not in r:
                continue
            v = r[key]
            lines.append(
                f"{r['db']:9}{r['hosts']:>7}  {key:10}{v['per_second']:9.0f}"
                f"{v['p50_ms']:9.3f}{v['p99_ms']:9.3f}{v['max_ms']:9.2f}"
            )
        inside = r["placement"]["place_call"]
        lines.append(
            f"{r['db']:9}{r['hosts']:>7}  place() inside the transaction: "
            f"p50 {inside['p50_ms']:.3f} ms, p99 {inside['p99_ms']:.3f} ms"
        )
        lines.append(
            f"{r['db']:9}{r['hosts']:>7}  full read {r['full_read']['p50_ms']:.1f} ms; "
            f"no fit {r['no_fit']['p50_ms']:.1f} ms; "
            f"during placement: {r['placement']['full_reads']} full reads, "
            f"{r['placement']['checks']} checks; "
            f"hosts visited per decision: {r['decision']['visited']:.1f}"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hosts", default="1000,10000", help="comma-separated host counts")
    ap.add_argument("--db", default="sqlite,postgres", help="sqlite and/or postgres")
    ap.add_argument("--placements", type=int, default=100_000)
    ap.add_argument("--baseline", type=int, default=100, help="placements of the old design")
    ap.add_argument("--ttl", type=float, default=5.0, help="scheduler_snapshot_ttl, s")
    ap.add_argument(
        "--concurrency", type=int, default=16, help="PostgreSQL: placements in flight at once"
    )
    ap.add_argument("--core", type=int, default=0, help="pin this process to one core (-1: no)")
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--json", metavar="FILE", help="write the results as JSON ('-': stdout)")
    args = ap.parse_args()
    if args.core >= 0:
        os.sched_setaffinity(0, {args.core})
    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "command": " ".join(sys.argv),
        "runs": [],
    }
    for db_name in args.db.split(","):
        for n in (int(x) for x in args.hosts.split(",")):
            with ExitStack() as stack:
                url = _url(db_name, stack)
                result["runs"].append(asyncio.run(run_one(url, db_name, n, args)))
    _emit(result, args.json, report)


def _url(db_name: str, stack: ExitStack) -> str:
    if db_name == "postgres":
        return stack.enter_context(fresh_pg_database())
    tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="berth-bench-"))
    return f"sqlite+aiosqlite:///{tmp}/berth.db"


def _emit(result: dict[str, Any], where: str | None, text: Callable[[dict[str, Any]], str]) -> None:
    if where == "-":
        print(json.dumps(result, indent=2))
        return
    print(text(result))
    if where:
        Path(where).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
