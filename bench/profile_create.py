"""Where Berth's create -> Running time goes, step by step, next to raw Docker's calls.

Runs the same interleaved rounds as ``create_to_running.py``, but the
throw-away berth-api is started through ``bench/_trace_server.py``, which
timestamps every step of the path (HTTP request, token check, transaction and
commit, notifier, the agent's long poll, its pass and worker, each Docker
driver call split into thread-pool queueing / engine HTTP / return to the event
loop, the report). The raw side is timed call by call (create, inspect,
start: what ``containers.run(detach=True)`` does). Prints the median of every
step over the rounds. The hooks add a little overhead: use
``create_to_running.py`` for the headline numbers.

``--client zunclient --poll 20`` drives Berth as create_to_running.py's
client-visible mode does; ``--runtime podman`` profiles Berth on a libpod
service (every libpod REST call is an ``engine.call``; the raw side is then
timed as a whole).

    .venv/bin/python bench/profile_create.py --rounds 30 [--json profile.json]
    .venv/bin/python bench/profile_create.py --client zunclient --poll 20 --runtime podman
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import docker
import docker.errors

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import drop_firewall, percentile
from create_to_running import (
    COMMAND,
    CPU,
    EXPERIMENTS,
    MEMORY_MIB,
    ROOT,
    SHIM,
    BenchError,
    BerthSample,
    BerthUnderTest,
    Engine,
    RawDocker,
    RawSide,
    ZunclientBerth,
    cleanup,
    engine,
)


def raw_total(raw_side: RawSide) -> dict[str, float]:
    """Any engine's raw side, timed as a whole (create and start)."""
    return {"total": raw_side.create_to_running()}


def raw_round(client: docker.DockerClient, image: str, raw_side: RawDocker) -> dict[str, float]:
    """containers.run(detach=True) by hand: create, inspect, start; each call timed."""
    api = client.api
    name = f"bench-raw-{uuid.uuid4().hex[:12]}"
    raw_side.live.add(name)
    host_config = api.create_host_config(
        nano_cpus=round(CPU * 1e9),
        mem_limit=MEMORY_MIB * 1024 * 1024,
        memswap_limit=MEMORY_MIB * 1024 * 1024,
    )
    if raw_side.network:
        host_config["NetworkMode"] = raw_side.network
    t0 = time.perf_counter()
    created = api.create_container(image, COMMAND, name=name, host_config=host_config)
    t1 = time.perf_counter()
    api.inspect_container(created["Id"])
    t2 = time.perf_counter()
    api.start(created["Id"])
    t3 = time.perf_counter()
    raw_side.remove(name)
    return {"create": t1 - t0, "inspect": t2 - t1, "start": t3 - t2, "total": t3 - t0}


def _first(events: list[dict[str, Any]], ev: str, after: float, **match: Any) -> dict[str, Any]:
    for e in events:
        if e["ev"] == ev and e["t1"] >= after and all(e.get(k) == v for k, v in match.items()):
            return e
    raise BenchError(f"no {ev} {match or ''} after {after}")


def _inside(win: list[dict[str, Any]], ev: str, outer: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in win if e["ev"] == ev and outer["t0"] <= e["t0"] and e["t1"] <= outer["t1"]]


def _count(win: list[dict[str, Any]], ev: str, outer: dict[str, Any]) -> float:
    return float(len(_inside(win, ev, outer)))


def _sum(win: list[dict[str, Any]], ev: str, outer: dict[str, Any]) -> float:
    return sum(e["t1"] - e["t0"] for e in _inside(win, ev, outer))


def breakdown(sample: BerthSample, owner: str, events: list[dict[str, Any]]) -> dict[str, float]:
    """Durations (s) of one Berth round: the critical path step by step, then details.

    The critical-path steps are differences of consecutive instants, so they add
    up to the total exactly; an unexpected wait shows up as a large step.
    """
    win = sorted(
        (e for e in events if sample.sent <= e["t1"] <= sample.seen + 0.001),
        key=lambda e: e["t0"],
    )
    post = _first(win, "http", sample.sent, method="POST", path="/container/v1/containers")
    create = _first(win, "api.containers.create", post["t0"])
    token = _first(win, "api.validate_token", post["t0"])
    txn = _first(win, "db.transaction", create["t0"])
    touch = _first(win, "notifier.touch", txn["t1"])
    desired_for = _first(win, "api.desired_for", touch["t0"])
    desired = _first(win, "agent.desired", desired_for["t1"])
    converge_start = min(e["t0"] for e in win if e["ev"] == "agent.converge")
    # A pass that only adds containers reuses the last listing: no list_managed then.
    listing = next(
        (
            e for e in win
            if e["ev"] == "driver.list_managed" and desired["t1"] <= e["t0"] <= converge_start
        ),
        None,
    )  # fmt: skip
    # ifnotpresent with the image on the host: no ensure_image, straight to create.
    create_c = _first(win, "driver.create", converge_start)
    start = _first(win, "driver.start", create_c["t1"])
    final_inspect = _first(win, "driver.inspect", start["t1"])
    send = _first(win, "agent.send", final_inspect["t1"])
    report = _first(win, "agent.report", send["t1"])
    # The embedded agent reports in memory (no HTTP request, no token check).
    record = _first(win, "api.record_observations", report["t0"])
    rec_txn = _first(win, "db.transaction", record["t0"])
    path = [
        ("client -> app (uvicorn, middleware)", post["t0"]),
        ("POST: token check (DB)", token["t1"]),
        ("POST: body parse/validate, policy", create["t0"]),
        ("POST: txn lock + begin", txn["tb"]),
        ("POST: txn body (name, quota, insert, action, placement)", txn["tc"]),
        ("POST: commit", txn["t1"]),
        ("agent wake-up: touch, long poll returns, DB read", desired_for["t1"]),
        ("desired state to agent (image refs, in memory)", desired["t1"]),
        *(
            [
                ("agent pass: until list_managed", listing["t0"]),
                ("agent pass: engine list_managed", listing["t1"]),
            ]
            if listing is not None
            else []
        ),
        ("agent pass: plan, spawn worker", converge_start),
        ("worker: until create", create_c["t0"]),
        ("engine: create", create_c["t1"]),
        ("gap before start", start["t0"]),
        ("engine: start", start["t1"]),
        ("engine: inspect after start", final_inspect["t1"]),
        ("firewall chain written, report queued", send["t1"]),
        ("report loop wake-up", report["t0"]),
        ("report: into the control plane", record["t0"]),
        ("report: txn lock + begin", rec_txn["tb"]),
        ("report: txn body (apply observation)", rec_txn["tc"]),
        ("report: commit (Running now visible)", rec_txn["t1"]),
        ("client poll sees Running", sample.seen),
    ]
    steps: dict[str, float] = {}
    before = sample.sent
    for label, instant in path:
        steps[label] = instant - before
        before = instant
    calls = [
        e for e in win
        if e["ev"] == "engine.call" and desired["t1"] <= e["t0"] <= send["t1"]
    ]  # fmt: skip
    create_call = [e for e in calls if create_c["t0"] <= e["t0"] <= create_c["t1"]][-1]
    start_call = _first(calls, "engine.call", start["t0"])
    gets = [
        e for e in win
        if e["ev"] == "http" and e["method"] == "GET" and e["path"].endswith(sample.uuid)
    ]  # fmt: skip
    steps.update(
        {
            "TOTAL (POST sent -> Running seen)": sample.seen - sample.sent,
            "= POST round trip (client)": sample.posted - sample.sent,
            "= agent: touch -> Running committed": rec_txn["t1"] - touch["t0"],
            "= engine HTTP time on the path (sum)": sum(e["te"] - e["ts"] for e in calls),
            "= engine create HTTP": create_call["te"] - create_call["ts"],
            "= engine start HTTP": start_call["te"] - start_call["ts"],
            "= thread-pool queue + loop return (sum)": sum(
                (e["ts"] - e["t0"]) + (e["t1"] - e["te"]) for e in calls
            ),
            "= SQL statements in the POST (count)": _count(win, "sql", post),
            "= SQL statements in the report (count)": _count(win, "sql", record),
            "= SQL time in the POST (sum)": _sum(win, "sql", post),
            "= SQL time in the report (sum)": _sum(win, "sql", record),
            "= firewall settle (own chain)": _sum(win, "agent.firewall_settle", send),
            "= GET polls while waiting (count)": float(len(gets)),
            "= GET poll, app time (mean)": statistics.fmean(e["t1"] - e["t0"] for e in gets)
            if gets
            else 0.0,
            "= GET polls, app time (sum)": sum(e["t1"] - e["t0"] for e in gets),
        }
    )
    return steps


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--poll", type=float, default=50.0, help="status poll interval, ms")
    ap.add_argument(
        "--client",
        choices=("httpx", "zunclient"),
        default="httpx",
        help="a bare httpx client, or the stock python-zunclient (as create_to_running.py)",
    )
    ap.add_argument("--image", default="berth-test/busybox:latest")
    ap.add_argument("--json", metavar="FILE", help="write per-round steps here")
    ap.add_argument("--experiment", action="append", default=[], choices=EXPERIMENTS)
    ap.add_argument("--keep-trace", metavar="FILE", help="copy the raw trace lines here")
    ap.add_argument(
        "--runtime",
        choices=("docker", "podman"),
        default="docker",
        help="the engine (podman: a libpod service as create_to_running.py --runtime podman; "
        "the raw side is then timed as a whole, create + start)",
    )
    ap.add_argument("--podman-url", default=os.environ.get("BERTH_PODMAN_URL"))
    ap.add_argument(
        "--code",
        metavar="DIR",
        help="profile the Berth of another checkout (e.g. a worktree of the code before a "
        "change; the trace hooks are this checkout's)",
    )
    ap.add_argument(
        "--raw-like-berth",
        action="store_true",
        help="the raw side with Berth's pids limit and log cap (on Podman an isolated network)",
    )
    args = ap.parse_args()
    args.timeout, args.raw_network = 60.0, "user"  # what engine() reads
    with (
        tempfile.TemporaryDirectory(prefix="berth-profile-") as tmp,
        engine(args, Path(tmp)) as eng,
    ):
        samples, raw_steps, events, owner = rounds(args, eng, Path(tmp))
    rows = []
    for s in samples:
        try:
            rows.append(breakdown(s, owner, events))
        except BenchError as exc:
            print(f"round {s.uuid}: cannot attribute: {exc}", file=sys.stderr)
    berth_steps: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        for k, v in row.items():
            berth_steps[k].append(v)
    print(f"{len(rows)} Berth rounds, {len(raw_steps['total'])} raw rounds; ms")
    print(f"{'critical path step':58}{'p50':>8}{'p90':>8}{'mean':>8}")
    for k, vs in berth_steps.items():
        if k.startswith("TOTAL"):
            print("-" * 82)
        scale = 1 if "(count)" in k else 1000
        print(
            f"{k:58}{statistics.median(vs) * scale:8.1f}"
            f"{percentile(vs, 90) * scale:8.1f}{statistics.fmean(vs) * scale:8.1f}"
        )
    print(f"raw {args.runtime} (same rounds):")
    for k, vs in raw_steps.items():
        print(
            f"  {k:56}{statistics.median(vs) * 1000:8.1f}"
            f"{percentile(vs, 90) * 1000:8.1f}{statistics.fmean(vs) * 1000:8.1f}"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"berth": rows, "raw": dict(raw_steps)}, indent=2) + "\n"
        )


def rounds(
    args: argparse.Namespace, eng: Engine, tmp: Path
) -> tuple[list[BerthSample], dict[str, list[float]], list[dict[str, Any]], str]:
    """The interleaved rounds against ``eng``: Berth's samples, the raw steps, the trace."""
    client, raw_side = eng.client, eng.raw_side
    raw_steps: dict[str, list[float]] = defaultdict(list)
    (tmp / "berth").mkdir()
    trace = tmp / "trace.jsonl"
    side_class = ZunclientBerth if args.client == "zunclient" else BerthUnderTest
    berth = side_class(
        tmp / "berth",
        args.image,
        60.0,
        server=[SHIM],
        code=Path(args.code).resolve() if args.code else ROOT,
        env={
            "BERTH_BENCH_TRACE": str(trace),
            "BERTH_BENCH_EXPERIMENTS": ",".join(args.experiment),
            **eng.berth_env,
        },
    )
    samples: list[BerthSample] = []
    try:
        berth.start()
        for i in range(args.warmup + args.rounds):
            for side in ("raw", "berth") if i % 2 else ("berth", "raw"):
                time.sleep(0.1)
                if side == "raw":
                    r = (
                        raw_round(client, args.image, raw_side)
                        if isinstance(raw_side, RawDocker)
                        else raw_total(raw_side)
                    )
                    if i >= args.warmup:
                        for k, v in r.items():
                            raw_steps[k].append(v)
                    continue
                sample = berth.create_to_running(args.poll / 1000)
                berth.delete_and_wait(sample.uuid)
                if i >= args.warmup:
                    samples.append(sample)
    finally:
        problems = cleanup(berth, raw_side, client)
        berth.stop()
        if dropped := drop_firewall(berth.owner, eng.url):
            problems.append(f"removed {dropped} firewall chains the stopped agent left")
        if problems:
            print("cleanup: " + "; ".join(problems), file=sys.stderr)
    events = [json.loads(line) for line in trace.read_text().splitlines()]
    if args.keep_trace:
        Path(args.keep_trace).write_text(trace.read_text())
    return samples, raw_steps, events, berth.owner


if __name__ == "__main__":
    main()
