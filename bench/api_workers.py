"""API workers 1 → 2 on PostgreSQL: the throughput of a list of 0 containers.

What it measures
    ``GET /container/v1/containers`` of a project with no containers (token
    check, policy, one query, an empty Zun list), driven by ``wrk`` with a
    fixed number of keep-alive connections, against one ``berth-api`` with
    ``api_workers = 1`` and then ``api_workers = 2`` on the same fresh
    PostgreSQL database, interleaved round by round (1, 2, 1, 2, ...) in the
    same run so that the machine's other load falls on both alike.

    For each run: requests/s (wrk), the server's CPU per request (user +
    system of the berth-api process tree, from /proc), the client's (wrk's, from
    its rusage), how the server CPU split over the workers (a connection stays
    on the worker that accepted it), the load average before the run.
    PostgreSQL's own CPU is not counted: its backends are shared with whatever
    else the machine runs.

    Goal (issue #19): 2 workers >= 1.7x the throughput of 1.

How it runs
    Needs ``wrk`` (Debian's package) and PostgreSQL (BERTH_TEST_PG, default
    postgresql://postgres@127.0.0.1:5432/postgres).

    .venv/bin/python bench/api_workers.py                          # c = 4 and 16, 3 rounds, ~2 min
    .venv/bin/python bench/api_workers.py --connections 4 --rounds 5 --seconds 10
    .venv/bin/python bench/api_workers.py --nice -15   # as root, on a machine that is not quiet
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    PG_ADMIN_DSN,
    ZUN,
    BerthServer,
    cpu_seconds,
    fresh_pg_database,
    machine,
)

PATH = "/container/v1/containers"
GOAL = 1.7


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants (from /proc/<pid>/task/*/children)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                todo += [
                    int(c)
                    for c in Path(f"/proc/{current}/task/{task}/children").read_text().split()
                ]
        except OSError:
            continue
    return found


def cpu_by_process(pid: int) -> dict[int, float]:
    """CPU seconds of each process of ``pid``'s tree."""
    found = {}
    for p in tree(pid):
        try:
            found[p] = cpu_seconds(p)
        except OSError:
            continue
    return found


def pg_cpu(db_url: str) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend serving ``db_url``'s database (this run's own)."""
    import psycopg  # test extra: a sync driver

    name = db_url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        ).fetchall()
    found = {}
    for (pid,) in rows:
        try:
            found[pid] = cpu_seconds(pid)
        except OSError:  # not on this machine, or gone
            continue
    return found


def prioritise(nice: int) -> None:
    """Give this run's scheduling group the priority ``nice``.

    With the kernel's autogroups (``/proc/sys/kernel/sched_autogroup_enabled``)
    each session is one group and the groups share the CPUs fairly, whatever
    the nice values inside them: a process's own nice then only counts against
    its session's other processes. So the session's group (this script, the
    server, wrk) is given ``nice``; PostgreSQL's backends are reniced in theirs.
    """
    autogroup = Path("/proc/self/autogroup")
    if autogroup.exists():
        try:
            autogroup.write_text(str(nice))
        except OSError as exc:
            print(f"could not set the autogroup's nice ({exc}): not root?", file=sys.stderr)
    os.setpriority(os.PRIO_PROCESS, 0, nice)


def renice(pids: Any, nice: int) -> None:
    """Give ``pids`` the scheduling priority ``nice`` (lowering it needs root)."""
    for pid in pids:
        try:
            os.setpriority(os.PRIO_PROCESS, pid, nice)
        except OSError:  # gone, or not ours to change
            continue


def wrk(url: str, token: str, connections: int, seconds: float, nice: int = 0) -> dict[str, float]:
    """One wrk run: requests/s, requests, errors, and wrk's own CPU seconds."""
    headers = ["-H", f"X-Auth-Token: {token}"]
    for name, value in ZUN.items():
        headers += ["-H", f"{name}: {value}"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        [
            "nice",
            "-n",
            str(nice),
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{round(seconds)}s",
            *headers,
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    client = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "rps": rps,
        "requests": total,
        "non_2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": errors.group(1) if errors else "",
        "client_cpu_s": client,
    }  # type: ignore[dict-item]


def one_run(
    db_url: str, workers: int, args: argparse.Namespace, work: Path
) -> list[dict[str, Any]]:
    """Start berth-api with ``workers`` workers; a wrk run per connection count; stop it."""
    env = {
        "BERTH_DATABASE_URL": db_url,
        "BERTH_API_WORKERS": str(workers),
        "BERTH_ALL_IN_ONE": "false",
    }
    server = BerthServer(work / f"w{workers}-{time.monotonic_ns()}", env)
    server.start()
    try:
        assert server.proc is not None
        token = server.http.headers["X-Auth-Token"]
        url = f"{server.base}{PATH}"
        assert server.http.get("/containers").json()["containers"] == []
        wrk(url, token, max(args.connections), args.warmup, args.nice)
        results = []
        for c in args.connections:
            load = os.getloadavg()[0]
            before, pg_before = cpu_by_process(server.proc.pid), pg_cpu(db_url)
            if args.nice:
                renice([*before, *pg_before], args.nice)
            figures = wrk(url, token, c, args.seconds, args.nice)
            after, pg_after = cpu_by_process(server.proc.pid), pg_cpu(db_url)
            pg = sum(v - pg_before.get(p, 0.0) for p, v in pg_after.items())
            spent = {p: after[p] - before.get(p, 0.0) for p in after}
            server_cpu = sum(spent.values())
            busiest = sorted((v for v in spent.values() if v > 0.01), reverse=True)
            n = max(1, int(figures["requests"]))
            results.append(
                {
                    "workers": workers,
                    "connections": c,
                    "load_1m": round(load, 2),
                    **figures,
                    "server_cpu_ms_per_req": round(server_cpu * 1000 / n, 3),
                    "client_cpu_ms_per_req": round(figures["client_cpu_s"] * 1000 / n, 3),
                    "postgres_cpu_ms_per_req": round(pg * 1000 / n, 3),
                    "server_cores_busy": round(server_cpu / args.seconds, 2),
                    "client_cores_busy": round(figures["client_cpu_s"] / args.seconds, 2),
                    "cpu_split_s": [round(v, 2) for v in busiest],
                }
            )
        return results
    finally:
        server.stop()


def report(runs: list[dict[str, Any]], connections: list[int]) -> str:
    lines = [
        "conns workers   req/s (median, each round)      CPU ms/req: server  postgres  client"
        "  server cores  split (s)",
    ]
    ratios = {}
    for c in connections:
        medians = {}
        for w in (1, 2):
            mine = [r for r in runs if r["connections"] == c and r["workers"] == w]
            rps = [r["rps"] for r in mine]
            medians[w] = statistics.median(rps)
            lines.append(
                f"{c:5d} {w:7d} {medians[w]:8.0f}  {' '.join(f'{x:.0f}' for x in rps):30s}"
                f" {statistics.median(r['server_cpu_ms_per_req'] for r in mine):16.2f}"
                f" {statistics.median(r['postgres_cpu_ms_per_req'] for r in mine):9.2f}"
                f" {statistics.median(r['client_cpu_ms_per_req'] for r in mine):7.2f}"
                f" {statistics.median(r['server_cores_busy'] for r in mine):13.2f}"
                f"  {mine[-1]['cpu_split_s']}"
            )
        ratios[c] = medians[2] / medians[1]
        verdict = "met" if ratios[c] >= GOAL else "missed"
        lines.append(
            f"      2 workers / 1 worker at {c} connections: {ratios[c]:.2f}x"
            f" (goal >= {GOAL}x: {verdict})"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--connections", type=lambda s: [int(x) for x in s.split(",")], default=[4, 16]
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="run the server, its PostgreSQL backends and wrk at this priority (e.g. -15, "
        "as root: the machine's other load then waits for them instead of interleaving)",
    )
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("bench/api_workers.py needs wrk: apt-get install -y wrk")
    if args.nice:
        prioritise(args.nice)
    runs: list[dict[str, Any]] = []
    with fresh_pg_database() as db_url, tempfile.TemporaryDirectory(prefix="berth-workers-") as tmp:
        for _ in range(args.rounds):
            for workers in (1, 2):
                runs += one_run(db_url, workers, args, Path(tmp))
    print(json.dumps({"machine": machine(), "load_avg_end": os.getloadavg()}, indent=1))
    print(report(runs, args.connections))
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
