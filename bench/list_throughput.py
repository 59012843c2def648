"""Requests per second of one API worker for an empty container list, with wrk.

What it measures
    ``GET /container/v1/containers`` (the admin's project holds no container)
    with a real token through the whole stack (token check, policy,
    microversion negotiation, body bounds, error handlers, the query, JSON
    rendering), driven by ``wrk -t1 -c4`` (one client thread, four keep-alive
    connections) against one ``berth-api`` process (``BERTH_ALL_IN_ONE=false``)
    on SQLite or a fresh PostgreSQL database. This is issue #19's figure
    (goal: 1,500 requests/s; Zun 18.0.0 serves ~112/s on the same kind of machine).

    Beside requests/s, the server process's own CPU time per request (from
    /proc, all its threads). wrk and PostgreSQL run on the same cores as the
    server, so requests/s moves with everything else the machine runs; the
    CPU per request barely does: compare two versions by it.

A/B
    ``--against DIR`` also starts the API from another checkout (a worktree of
    an older commit) and alternates the rounds between the two, so both meet
    the same load.

    .venv/bin/python bench/list_throughput.py                        # SQLite, 5 rounds of 10 s
    .venv/bin/python bench/list_throughput.py --db postgres --against ../berth-main

Needs ``wrk`` (Debian package ``wrk``; scripts/lib.sh installs it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import ROOT, ZUN, BerthServer, cpu_seconds, fresh_pg_database, machine


def start(stack: ExitStack, checkout: Path, db: str) -> BerthServer:
    """A throw-away berth-api running ``checkout``'s code on a database of its own."""
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="berth-wrk-")))
    if db == "postgres":
        url = stack.enter_context(fresh_pg_database())
    else:
        url = f"sqlite+aiosqlite:///{tmp / 'berth.db'}"
    code = (
        f"import sys; sys.path.insert(0, {str(checkout)!r}); "
        "from berth.cli.serve import api_main; api_main()"
    )
    server = BerthServer(
        tmp / "data", {"BERTH_DATABASE_URL": url, "BERTH_ALL_IN_ONE": "false"}, code=code
    )
    server.env["PYTHONPATH"] = str(checkout)
    stack.callback(server.stop)
    server.start()
    return server


def wrk_round(server: BerthServer, seconds: int, connections: int) -> dict[str, float]:
    """One wrk run: requests/s, and the server's CPU ms per request over it."""
    headers = [
        f"X-Auth-Token: {server.http.headers['X-Auth-Token']}",
        *(f"{k}: {v}" for k, v in ZUN.items()),
    ]
    calls_per_s, cpu_ms, total = wrk(
        server, f"{server.base}/container/v1/containers", headers, seconds, connections
    )
    return {"requests_per_s": calls_per_s, "cpu_ms_per_request": cpu_ms, "requests": total}


def wrk(
    server: BerthServer,
    url: str,
    headers: list[str],
    seconds: int,
    connections: int,
    method: str = "GET",
) -> tuple[float, float, int]:
    """``wrk -t1 -c<connections>`` on ``url``: requests/s, server CPU ms per request, requests."""
    assert server.proc is not None
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(f'wrk.method = "{method}"\n')
        script.flush()
        command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", script.name]
        for h in headers:
            command += ["-H", h]
        command.append(url)
        before = cpu_seconds(server.proc.pid)
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        cpu = cpu_seconds(server.proc.pid) - before
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw answers other than 200:\n{out}")
    total = int(_field(r"(\d+) requests in", out))
    return float(_field(r"Requests/sec:\s+([\d.]+)", out)), round(cpu * 1000 / total, 3), total


def _field(pattern: str, text: str) -> str:
    found = re.search(pattern, text)
    if found is None:
        raise RuntimeError(f"wrk's output lacks {pattern!r}:\n{text}")
    return found.group(1)


def run(args: argparse.Namespace) -> dict[str, Any]:
    sides = {"this": ROOT} | ({"against": Path(args.against).resolve()} if args.against else {})
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in sides}
    with ExitStack() as stack:
        servers = {name: start(stack, path, args.db) for name, path in sides.items()}
        for server in servers.values():  # warm-up: connections, caches, the token
            wrk_round(server, 2, args.connections)
        for i in range(args.rounds):
            for name, server in servers.items():
                rounds[name].append(wrk_round(server, args.seconds, args.connections))
                r = rounds[name][-1]
                print(
                    f"round {i + 1} {name:8} {r['requests_per_s']:8.0f} req/s"
                    f"{r['cpu_ms_per_request']:8.3f} cpu ms/req  (load {os.getloadavg()[0]:.1f})",
                    flush=True,
                )
    return {
        name: {
            "checkout": str(sides[name]),
            "median_requests_per_s": statistics.median(r["requests_per_s"] for r in rs),
            "median_cpu_ms_per_request": statistics.median(r["cpu_ms_per_request"] for r in rs),
            "rounds": rs,
        }
        for name, rs in rounds.items()
    }


def arguments(doc: str, db: str, rounds: int, seconds: int) -> argparse.Namespace:
    """The command line of a wrk bench (``doc``: its docstring); exits without wrk."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--db", choices=("sqlite", "postgres"), default=db)
    ap.add_argument("--rounds", type=int, default=rounds)
    ap.add_argument("--seconds", type=int, default=seconds)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--against", metavar="DIR", help="another checkout, run alternately")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    return args


def record(args: argparse.Namespace, load: tuple[float, ...], sides: Any) -> None:
    """Write to ``--json`` (if given) when, where, the command, the load and ``sides``."""
    if not args.json:
        return
    result = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "command": " ".join(sys.argv),
        "load_average_at_start": [round(x, 2) for x in load],
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "db": args.db,
        "sides": sides,
    }
    Path(args.json).write_text(json.dumps(result, indent=2))


def wrk_main(
    doc: str,
    defaults: tuple[str, int, int],
    run: Callable[[argparse.Namespace], dict[str, Any]],
    line: Callable[[str, Any], str],
) -> None:
    """Run a wrk bench: parse (``defaults``: db, rounds, seconds), ``run``, record, print
    ``line(name, side)`` for each side."""
    args = arguments(doc, *defaults)
    load = os.getloadavg()
    sides = run(args)
    record(args, load, sides)
    for name, side in sides.items():
        print(line(name, side))


def main() -> None:
    wrk_main(
        __doc__,
        ("sqlite", 5, 10),
        run,
        lambda name, side: (
            f"{name:8} median {side['median_requests_per_s']:.0f} req/s, "
            f"{side['median_cpu_ms_per_request']:.3f} server cpu ms/req ({side['checkout']})"
        ),
    )


if __name__ == "__main__":
    main()
