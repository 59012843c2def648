"""Time to CREATE_COMPLETE of real swarm-mode clusters: one alone, then several at once.

What it measures
    The wall time from ``POST /container-infra/v1/clusters`` to the cluster's
    ``CREATE_COMPLETE`` (polled every 0.5 s) for a cluster of 1 master and 2
    workers (3 Docker-in-Docker nodes from ``berth/swarm-node:1``), then for
    ``--concurrent`` such clusters created at the same moment (each one's time,
    and the time until the last one completed). Goals: <= 60 s and <= 2 min.

    A throw-away all-in-one ``berth-api`` (SQLite, embedded agent on the local
    engine) runs the clusters; every cluster is deleted (and the deletion awaited)
    between measurements, outside the timing.

How it runs
    .venv/bin/python bench/cluster_create.py                       # 2 single + 1 batch of 5
    .venv/bin/python bench/cluster_create.py --rounds 1 --concurrent 3 --json out.json

Needs the Docker engine and the node image (``scripts/lib.sh build_swarm_node_image``).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import docker
import docker.errors
import httpx

from bench._common import BerthServer, free_port, machine, summary

MAG = {"OpenStack-API-Version": "container-infra latest"}
NODE_IMAGE = "berth/swarm-node:1"


def _client(server: BerthServer) -> httpx.Client:
    return httpx.Client(
        base_url=f"{server.base}/container-infra/v1",
        headers={**MAG, "X-Auth-Token": server.token()},
        timeout=60,
    )


def _wait(http: httpx.Client, uuid_: str, want: str, timeout: float) -> float:
    """Seconds until the cluster shows ``want`` (raises on *_FAILED or timeout)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        r = http.get(f"/clusters/{uuid_}")
        if want == "gone" and r.status_code == 404:
            return time.monotonic() - started
        r.raise_for_status()
        status = r.json()["status"]
        if status == want:
            return time.monotonic() - started
        if status.endswith("_FAILED"):
            raise RuntimeError(f"cluster {uuid_}: {status}: {r.json()['status_reason']}")
        time.sleep(0.5)
    raise RuntimeError(f"cluster {uuid_} did not reach {want} within {timeout:g} s")


def _create(http: httpx.Client, name: str, template: str) -> tuple[str, float]:
    started = time.monotonic()
    body = {"name": name, "cluster_template_id": template, "master_count": 1, "node_count": 2}
    r = http.post("/clusters", json=body)
    r.raise_for_status()
    uid = r.json()["uuid"]
    _wait(http, uid, "CREATE_COMPLETE", 600)
    return uid, time.monotonic() - started


def _delete(http: httpx.Client, uids: list[str]) -> None:
    for uid in uids:
        http.delete(f"/clusters/{uid}").raise_for_status()
    for uid in uids:
        _wait(http, uid, "gone", 300)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="single-cluster measurements")
    parser.add_argument("--concurrent", type=int, default=5, help="clusters created at once")
    parser.add_argument("--flavor", default="m1.small")
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args()

    engine = docker.from_env()
    try:
        engine.images.get(NODE_IMAGE)
    except docker.errors.ImageNotFound:
        sys.exit(f"{NODE_IMAGE} is missing: run scripts/lib.sh build_swarm_node_image")
    host = f"bench-{uuid.uuid4().hex[:8]}"
    results: dict[str, Any] = {"machine": machine(), "flavor": args.flavor}
    with tempfile.TemporaryDirectory(prefix="berth-bench-clusters-") as tmp:
        server = BerthServer(
            Path(tmp) / "data",
            {
                "BERTH_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/berth.db",
                "BERTH_ALL_IN_ONE": "true",
                "BERTH_AGENT_HOST": host,
                "BERTH_AGENT_PORT": str(free_port()),
            },
        )
        server.start()
        try:
            with _client(server) as http:
                tpl = {"name": "bench-swarm", "coe": "swarm-mode", "image_id": NODE_IMAGE,
                       "flavor_id": args.flavor, "master_flavor_id": args.flavor}  # fmt: skip
                http.post("/clustertemplates", json=tpl).raise_for_status()
                singles = []
                for i in range(args.rounds):
                    uid, took = _create(http, f"single-{i}", "bench-swarm")
                    print(f"single cluster {i}: CREATE_COMPLETE in {took:.1f} s", flush=True)
                    singles.append(took)
                    _delete(http, [uid])
                results["single_s"] = summary(singles) | {"samples": singles}
                if args.concurrent:
                    started = time.monotonic()
                    with cf.ThreadPoolExecutor(args.concurrent) as pool:
                        futures = [
                            pool.submit(_create, http, f"batch-{i}", "bench-swarm")
                            for i in range(args.concurrent)
                        ]
                        done = [f.result() for f in futures]
                    wall = time.monotonic() - started
                    each = [took for _, took in done]
                    print(
                        f"{args.concurrent} concurrent clusters: all CREATE_COMPLETE in "
                        f"{wall:.1f} s (each: {', '.join(f'{t:.1f}' for t in each)} s)",
                        flush=True,
                    )
                    results["concurrent"] = {"n": args.concurrent, "wall_s": wall, "each_s": each}
                    _delete(http, [uid for uid, _ in done])
        finally:
            server.stop()
            owned = {"label": f"berth.owner={host}"}
            for c in engine.containers.list(all=True, filters=owned):
                c.remove(force=True, v=True)
            for n in engine.networks.list(filters=owned):  # the project's network
                n.remove()
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
