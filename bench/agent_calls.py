"""The API's CPU per call of an idle agent: a long poll that times out, and a heartbeat.

What it measures
    An idle agent's calls, one host registered on a throw-away ``berth-api``
    (``BERTH_ALL_IN_ONE=false``, SQLite or a fresh PostgreSQL database), driven
    by ``wrk -t1 -c<N>`` with the agent's token:

    poll       ``GET /internal/v1/hosts/<h>/desired?since=<current>&wait=0.01``:
               the incremental protocol's long poll when nothing changed, with
               a wait short enough to serve many (it times out like an idle
               agent's 30 s one, and costs the same after it);
    heartbeat  ``POST /internal/v1/hosts/<h>/heartbeat``.

    It reports the server process's CPU ms per call (from /proc, all threads)
    and calls/s. ``bench/pool.py`` measures the same thing with a thousand
    simulated agents, where the pool and its HTTP client take most of the
    machine; this isolates the API's own cost per call, the figure that decides
    what 1,000 idle agents cost (issue #19's goal: ≤ 10% of one core).

A/B
    ``--against DIR`` also starts the API from another checkout (a worktree of
    an older commit) and alternates the rounds between the two.

    .venv/bin/python bench/agent_calls.py --db postgres --against ../berth-main

Needs ``wrk`` (Debian package ``wrk``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bench._common import ROOT, BerthServer
from bench.list_throughput import start, wrk, wrk_main

HOST = "bench-host"


def register(server: BerthServer, token: str) -> str:
    """Register HOST; the ``since`` of its current desired state."""
    report = {
        "hostname": HOST, "cpus": 4, "mem_total": 8192, "disk_total": 100,
        "runtimes": ["runc"], "agent_url": "http://127.0.0.1:9",
    }  # fmt: skip
    headers = {"X-Auth-Token": token}
    r = httpx.post(f"{server.base}/internal/v1/hosts", json=report, headers=headers, timeout=30)
    r.raise_for_status()
    r = httpx.get(
        f"{server.base}/internal/v1/hosts/{HOST}/desired",
        params={"since": ""},
        headers=headers,
        timeout=30,
    )
    r.raise_for_status()
    return f"{r.json()['epoch']}:{r.json()['revision']}"


def wrk_round(
    server: BerthServer, token: str, since: str, kind: str, seconds: int, connections: int
) -> dict[str, float]:
    path = f"/internal/v1/hosts/{HOST}/"
    path += f"desired?since={since}&wait=0.01" if kind == "poll" else "heartbeat"
    calls_per_s, cpu_ms, total = wrk(
        server,
        f"{server.base}{path}",
        [f"X-Auth-Token: {token}"],
        seconds,
        connections,
        method="GET" if kind == "poll" else "POST",
    )
    return {"calls_per_s": calls_per_s, "cpu_ms_per_call": cpu_ms, "calls": total}


def run(args: argparse.Namespace) -> dict[str, Any]:
    sides = {"this": ROOT} | ({"against": Path(args.against).resolve()} if args.against else {})
    rounds: dict[str, dict[str, list[dict[str, float]]]] = {
        name: {"poll": [], "heartbeat": []} for name in sides
    }
    with ExitStack() as stack:
        servers = {name: start(stack, path, args.db) for name, path in sides.items()}
        agents = {}
        for name, server in servers.items():
            token = server.token("berth-agent", "bench-agent-pw", "service")
            agents[name] = (token, register(server, token))
            for kind in ("poll", "heartbeat"):  # warm-up
                wrk_round(server, *agents[name], kind, 2, args.connections)
        for i in range(args.rounds):
            for kind in ("poll", "heartbeat"):
                for name, server in servers.items():
                    r = wrk_round(server, *agents[name], kind, args.seconds, args.connections)
                    rounds[name][kind].append(r)
                    print(
                        f"round {i + 1} {name:8} {kind:9} {r['calls_per_s']:7.0f} calls/s"
                        f"{r['cpu_ms_per_call']:8.3f} cpu ms/call  "
                        f"(load {os.getloadavg()[0]:.1f})",
                        flush=True,
                    )
    return {
        name: {
            "checkout": str(sides[name]),
            **{
                kind: {
                    "median_cpu_ms_per_call": statistics.median(r["cpu_ms_per_call"] for r in rs),
                    "median_calls_per_s": statistics.median(r["calls_per_s"] for r in rs),
                    "rounds": rs,
                }
                for kind, rs in kinds.items()
            },
        }
        for name, kinds in rounds.items()
    }


def main() -> None:
    wrk_main(
        __doc__,
        ("postgres", 3, 8),
        run,
        lambda name, side: (
            f"{name}: poll {side['poll']['median_cpu_ms_per_call']} ms, "
            f"heartbeat {side['heartbeat']['median_cpu_ms_per_call']} ms of API CPU per call"
        ),
    )


if __name__ == "__main__":
    main()
