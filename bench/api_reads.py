"""API reads: GET one container, and a list of 1,000, with 10,000 containers stored.

What it measures
    The wall time of ``GET /container/v1/containers/<uuid>`` (a random one of
    the 10,000 each time) and of ``GET /container/v1/containers?limit=1000``
    (the first page, and pages after a random marker), as the admin, over
    HTTP with a keep-alive client: authentication (token lookup), policy,
    the query, and the Zun view of each container.

    ``get_one_beside_lists``: the same GET of one container while a second
    client (its own connection, a thread) lists 1,000 back to back: what a show
    waits for when it arrives behind a big list on the same event loop.

    Beside the latencies, the server process's own CPU time per request
    (``cpu ms/req``, from /proc: user + system of all its threads; the
    database server's share on PostgreSQL is not in it). Latencies move with
    whatever else the machine runs; the CPU per request barely does, so it is
    the figure to compare two versions by on a machine that is not quiet.

How it runs
    It starts a throw-away ``berth-api`` (``BERTH_ALL_IN_ONE=false``: no agent,
    nothing else running in it) on SQLite in a temporary directory, or on a
    fresh PostgreSQL database, inserts ``--containers`` container rows of the
    admin project directly (as created containers look: image, command,
    limits, labels, environment, a host), warms up, then measures.

    .venv/bin/python bench/api_reads.py                       # both databases, ~2 min
    .venv/bin/python bench/api_reads.py --db sqlite --gets 500 --lists 50
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from sqlalchemy import insert, select

from bench._common import BerthServer, cpu_seconds, fresh_pg_database, machine, summary
from berth.store.db import Database
from berth.store.tables import ContainerRow, ProjectRow, UserRow


async def seed(url: str, count: int) -> list[str]:
    """``count`` containers of the admin project, inserted directly; their UUIDs in id order."""
    db = Database(url)
    try:
        async with db.transaction() as s:
            project = (
                await s.execute(select(ProjectRow.id).where(ProjectRow.name == "admin"))
            ).scalar_one()
            user = (await s.execute(select(UserRow.id).where(UserRow.name == "admin"))).scalar_one()
            now = dt.datetime.now(dt.UTC)
            rows = [_row(i, project, user, now) for i in range(count)]
            for i in range(0, count, 1000):
                await s.execute(insert(ContainerRow), rows[i : i + 1000])
        return [r["uuid"] for r in rows]
    finally:
        await db.close()


def _row(i: int, project: str, user: str, now: dt.datetime) -> dict[str, Any]:
    return {
        "uuid": f"{i:08x}-0000-4000-8000-{i:012x}",
        "name": f"bench-{i}",
        "project_id": project,
        "user_id": user,
        "image": "berth-test/busybox:latest",
        "image_driver": "docker",
        "command": ["sleep", "3600"],
        "cpu": 0.5,
        "memory": 256,
        "labels": {"app": f"app-{i % 50}", "tier": "web"},
        "environment": {"MODE": "bench", "INDEX": str(i)},
        "host": f"host-{i % 100}",
        "claimed": True,
        "desired_state": "running",
        "observed_state": "running",
        "status": "Running",
        "runtime_id": f"{i:064x}",
        "created_at": now,
        "updated_at": now,
        "desired_since": now,
        "started_at": now,
    }


def measure(server: BerthServer, uuids: list[str], gets: int, lists: int) -> dict[str, Any]:
    rng = random.Random(7)
    http = server.http

    def timed(path: str, **params: Any) -> float:
        t0 = time.perf_counter()
        r = http.get(path, params=params)
        elapsed = time.perf_counter() - t0
        if r.status_code != 200:
            raise RuntimeError(f"GET {path} answered {r.status_code}: {r.text[:300]}")
        return elapsed

    assert server.proc is not None
    pid = server.proc.pid

    def phase(n: int, request: Callable[[], tuple[str, dict[str, Any]]]) -> dict[str, float]:
        cpu = cpu_seconds(pid)
        samples = []
        for _ in range(n):
            path, params = request()
            samples.append(timed(path, **params))
        per_request = (cpu_seconds(pid) - cpu) / n
        return {**_ms(summary(samples)), "cpu_ms_per_request": round(per_request * 1000, 3)}

    for _ in range(30):  # warm-up: connections, caches, the token
        timed(f"/containers/{rng.choice(uuids)}")
        timed("/containers", limit=1000)
    markers = uuids[: len(uuids) - 1000]
    one = phase(gets, lambda: (f"/containers/{rng.choice(uuids)}", {}))
    first = phase(lists, lambda: ("/containers", {"limit": 1000}))
    paged = phase(lists, lambda: ("/containers", {"limit": 1000, "marker": rng.choice(markers)}))
    beside = _beside_lists(
        server, lambda: phase(gets, lambda: (f"/containers/{rng.choice(uuids)}", {}))
    )
    body = http.get("/containers", params={"limit": 1000}).json()
    assert len(body["containers"]) == 1000, len(body["containers"])
    return {
        "get_one": one,
        "list_1000_first_page": first,
        "list_1000_after_marker": paged,
        "get_one_beside_lists": beside,
        "list_body_bytes": len(json.dumps(body)),
    }


def _beside_lists(server: BerthServer, measure: Callable[[], dict[str, float]]) -> dict[str, float]:
    """``measure()`` while another client lists 1,000 containers back to back."""
    stop = threading.Event()
    listed = [0]

    def lister() -> None:
        with httpx.Client(base_url=server.http.base_url, headers=server.http.headers) as http:
            while not stop.is_set():
                assert http.get("/containers", params={"limit": 1000}).status_code == 200
                listed[0] += 1

    thread = threading.Thread(target=lister, daemon=True)
    thread.start()
    try:
        result = measure()
    finally:
        stop.set()
        thread.join(timeout=60)
    return {**result, "lists_beside": listed[0]}


def _ms(s: dict[str, float]) -> dict[str, float]:
    return {f"{k}_ms": round(v * 1000, 3) for k, v in s.items()}


def run(db_name: str, args: argparse.Namespace) -> dict[str, Any]:
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="berth-reads-")))
        if db_name == "postgres":
            url = stack.enter_context(fresh_pg_database())
        else:
            url = f"sqlite+aiosqlite:///{tmp / 'berth.db'}"
        server = BerthServer(tmp / "data", {"BERTH_DATABASE_URL": url, "BERTH_ALL_IN_ONE": "false"})
        stack.callback(server.stop)
        server.start()
        uuids = asyncio.run(seed(url, args.containers))
        result = measure(server, uuids, args.gets, args.lists)
        return {"db": db_name, "containers": args.containers, **result}


def report(result: dict[str, Any]) -> str:
    lines = [
        f"{'db':9}{'request':28}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}"
        f"{'cpu ms/req':>12}"
    ]
    for r in result["runs"]:
        for key in (
            "get_one",
            "list_1000_first_page",
            "list_1000_after_marker",
            "get_one_beside_lists",
        ):
            v = r[key]
            lines.append(
                f"{r['db']:9}{key:28}{v['p50_ms']:9.2f}{v['p90_ms']:9.2f}"
                f"{v['p99_ms']:9.2f}{v['max_ms']:9.2f}{v['cpu_ms_per_request']:12.2f}"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", default="sqlite,postgres")
    ap.add_argument("--containers", type=int, default=10_000)
    ap.add_argument("--gets", type=int, default=2000)
    ap.add_argument("--lists", type=int, default=100)
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "command": " ".join(sys.argv),
        "runs": [run(db, args) for db in args.db.split(",")],
    }
    print(report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
