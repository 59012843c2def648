"""20 concurrent creates on one host: Berth's API against raw Docker, in the same run.

What it measures
    The wall time from the first request to the last container running, for
    ``--n`` containers created at once (one thread each):

    raw docker   ``docker.from_env().containers.run(..., detach=True)`` per
                 thread (create and start, the SDK's ``docker run -d``); the
                 batch ends when the last call returned.
    berth        ``POST /container/v1/containers?run=true`` per thread, to an
                 all-in-one ``berth-api`` (its embedded agent on the same
                 engine); the batch ends when the API recorded the last
                 container Running: the latest ``finish_time`` of the create
                 actions (same machine, same clock). "polled" is when a client
                 listing every ``--poll`` seconds first saw all of them Running
                 (so it is that coarse). The poller is load on the API the raw
                 side does not have: at 20 ms it was 50 lists a second, about a
                 fifth of a core, so the default is 0.25 s.

    Same image, command and limits on both sides (1 CPU as NanoCpus, 64 MiB
    with memswap equal); the sides alternate which goes first; everything is
    removed (and the removal awaited) between batches, outside the timing.

How it runs
    .venv/bin/python bench/concurrent_creates.py                  # 1 + 7 rounds, ~2 min
    .venv/bin/python bench/concurrent_creates.py --rounds 3 --n 10

Needs the Docker engine and the test image (``berth-test/busybox:latest``).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import datetime as dt
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import docker
import docker.errors

from bench._common import (
    BerthServer,
    drop_firewall,
    free_port,
    machine,
    raw_network,
    remove_network,
    summary,
)

IMAGE = "berth-test/busybox:latest"
COMMAND = ["sleep", "300"]
CPU, MEMORY_MIB = 1.0, 64
TARGET = 1.1


def _epoch(value: str | None) -> float:
    assert value, "a create action without finish_time"
    return dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC).timestamp()


class Berth:
    def __init__(self, server: BerthServer, n: int, poll: float) -> None:
        self.server, self.n, self.poll = server, n, poll

    def batch(self, pool: cf.ThreadPoolExecutor) -> dict[str, float]:
        http = self.server.http
        body = {"image": IMAGE, "command": COMMAND, "cpu": CPU, "memory": MEMORY_MIB}

        def create(_: int) -> str:
            r = http.post("/containers", params={"run": "true"}, json=body)
            if r.status_code != 202:
                raise RuntimeError(f"create answered {r.status_code}: {r.text[:300]}")
            return str(r.json()["uuid"])

        t0_wall, t0 = time.time(), time.perf_counter()
        uuids = list(pool.map(create, range(self.n)))
        accepted = time.perf_counter() - t0
        while True:
            shown = {c["uuid"]: c for c in http.get("/containers", params={"limit": 1000}).json()[
                "containers"
            ]}  # fmt: skip
            if any(shown[u]["status"] == "Error" for u in uuids):
                raise RuntimeError(f"a create failed: {[shown[u]['status_reason'] for u in uuids]}")
            if all(shown[u]["status"] == "Running" for u in uuids):
                polled = time.perf_counter() - t0
                break
            if time.perf_counter() - t0 > 120:
                raise RuntimeError("containers not Running after 120 s")
            time.sleep(self.poll)
        finished = []
        for u in uuids:
            actions = http.get(f"/containers/{u}/container_actions").json()["containerActions"]
            finished.append(
                max(_epoch(a["finish_time"]) for a in actions if a["action"] == "create")
            )
        self.delete(uuids)
        return {"api_says_running": max(finished) - t0_wall, "polled": polled, "accepted": accepted}

    def delete(self, uuids: list[str]) -> None:
        http = self.server.http
        for u in uuids:
            http.delete(f"/containers/{u}", params={"force": "true"})
        deadline = time.monotonic() + 120
        while http.get("/containers", params={"limit": 1000}).json()["containers"]:
            if time.monotonic() > deadline:
                raise RuntimeError("containers not deleted after 120 s")
            time.sleep(0.05)


class Raw:
    def __init__(self, client: docker.DockerClient, n: int, network: str = "user") -> None:
        """``network="user"``: on a bridge network of the bench's own, as Berth's
        containers are on their project's (see bench/create_to_running.py)."""
        self.client, self.n = client, n
        self.names: set[str] = set()
        self.network = raw_network(client, "bench-cc", network)

    def close(self) -> None:
        remove_network(self.client, self.network)

    def batch(self, pool: cf.ThreadPoolExecutor) -> dict[str, float]:
        names = [f"bench-cc-raw-{uuid.uuid4().hex[:12]}" for _ in range(self.n)]
        self.names.update(names)

        def run(name: str) -> None:
            self.client.containers.run(
                IMAGE,
                COMMAND,
                name=name,
                detach=True,
                nano_cpus=round(CPU * 1e9),
                mem_limit=MEMORY_MIB * 1024 * 1024,
                memswap_limit=MEMORY_MIB * 1024 * 1024,
                **({"network": self.network} if self.network else {}),
            )

        t0 = time.perf_counter()
        list(pool.map(run, names))
        wall = time.perf_counter() - t0
        self.remove(names)
        return {"wall": wall}

    def remove(self, names: list[str] | set[str]) -> None:
        for name in list(names):
            with contextlib.suppress(docker.errors.NotFound):
                self.client.api.remove_container(name, v=True, force=True)
            self.names.discard(name)


def run(args: argparse.Namespace) -> dict[str, Any]:
    client = docker.from_env()
    client.images.get(IMAGE)  # fails early without the test image
    tmp = Path(tempfile.mkdtemp(prefix="berth-cc-"))
    owner = f"bench-cc-{free_port()}"
    embedded = args.agent == "embedded"
    agent_port = free_port()
    server = BerthServer(
        tmp / "data",
        {
            "BERTH_ALL_IN_ONE": "true" if embedded else "false",
            "BERTH_AGENT_HOST": owner,
            "BERTH_AGENT_PORT": str(agent_port),
            "BERTH_QUOTA_CPU": "1000",
        },
    )
    agent: subprocess.Popen[bytes] | None = None
    raw = Raw(client, args.n, args.raw_network)
    samples: dict[str, list[float]] = {
        "raw": [],
        "berth_api": [],
        "berth_polled": [],
        "berth_accepted": [],
    }
    try:
        server.start()
        if not embedded:  # berth-agent as its own process, over HTTP
            agent_env = {
                **server.env,
                "BERTH_CONTROL_URL": server.base,
                "BERTH_AGENT_URL": f"http://127.0.0.1:{agent_port}",
                "BERTH_DATA_DIR": str(tmp / "agent"),
            }
            with (tmp / "agent.log").open("wb") as out:
                agent = subprocess.Popen(
                    [sys.executable, "-c", "from berth.cli.serve import agent_main; agent_main()"],
                    env=agent_env,
                    stdout=out,
                    stderr=out,
                )
        deadline = time.monotonic() + 60
        while not server.http.get("/hosts").json().get("hosts"):
            if time.monotonic() > deadline:
                raise RuntimeError("the embedded agent did not register")
            time.sleep(0.1)
        berth = Berth(server, args.n, args.poll)
        with cf.ThreadPoolExecutor(max_workers=args.n) as pool:
            for i in range(args.warmup + args.rounds):
                sides = [("raw", raw), ("berth", berth)]
                for name, side in sides if i % 2 == 0 else reversed(sides):
                    result = side.batch(pool)
                    if i < args.warmup:
                        continue
                    if name == "raw":
                        samples["raw"].append(result["wall"])
                    else:
                        samples["berth_api"].append(result["api_says_running"])
                        samples["berth_polled"].append(result["polled"])
                        samples["berth_accepted"].append(result["accepted"])
                    print(f"round {i} {name}: {result}", file=sys.stderr)
    finally:
        raw.remove(raw.names)
        raw.close()
        leftovers = client.containers.list(all=True, filters={"label": f"berth.owner={owner}"})
        for c in leftovers:
            c.remove(force=True, v=True)
        if agent is not None:
            agent.terminate()
            agent.wait(30)
        server.stop()
        drop_firewall(owner)
        # Project networks outlive their last container on a host (network_idle_seconds).
        for net in client.networks.list(filters={"label": f"berth.owner={owner}"}):
            with contextlib.suppress(docker.errors.DockerException):
                net.remove()
    med = {k: statistics.median(v) for k, v in samples.items()}
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "command": " ".join(sys.argv),
        "n": args.n,
        "rounds": args.rounds,
        "raw_network": args.raw_network,
        "poll": args.poll,
        "agent": args.agent,
        "summary": {k: summary(v) for k, v in samples.items()},
        "ratio_median": med["berth_api"] / med["raw"],
        "ratio_median_polled": med["berth_polled"] / med["raw"],
        "target": TARGET,
        "samples": samples,
    }


def report(r: dict[str, Any]) -> str:
    lines = [f"{r['n']} concurrent creates, {r['rounds']} rounds (wall time of a batch, s)"]
    lines.append(f"{'':28}{'p50':>8}{'min':>8}{'max':>8}")
    for key, label in [
        ("raw", "raw docker"),
        ("berth_api", "berth: API says Running"),
        ("berth_polled", "berth: client poll sees it"),
        ("berth_accepted", "berth: every POST answered"),
    ]:
        s = r["summary"][key]
        lines.append(f"{label:28}{s['p50']:8.2f}{min(r['samples'][key]):8.2f}{s['max']:8.2f}")
    met = "met" if r["ratio_median"] <= TARGET else "MISSED"
    lines.append(
        f"ratio berth/raw (medians): {r['ratio_median']:.2f}x (target <= {TARGET}x: {met}); "
        f"polled {r['ratio_median_polled']:.2f}x"
    )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20, help="containers per batch")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument(
        "--raw-network",
        choices=("user", "default"),
        default="user",
        help="raw containers on a bridge network of their own (as Berth's) or Docker's default",
    )
    ap.add_argument(
        "--poll", type=float, default=0.25, help="seconds between the client's status lists"
    )
    ap.add_argument(
        "--agent",
        choices=("embedded", "process"),
        default="embedded",
        help="the all-in-one berth-api's own agent, or a berth-agent process of its own",
    )
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    result = run(args)
    print(report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
