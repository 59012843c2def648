"""Create -> Running through Berth's API versus the docker SDK directly, interleaved.

Starts a throw-away all-in-one Berth (SQLite, local engine) on a free port, then
runs N rounds; each round times one container both ways, in alternating order,
and removes it. Prints the medians, p99s and their ratios.

    .venv/bin/python bench/create_to_running.py --rounds 40
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import docker
import httpx

IMAGE = os.environ.get("BERTH_TEST_IMAGE", "berth-test/busybox:latest")
PASSWORD = "bench-admin-pw"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_berth(data: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "BERTH_DATA_DIR": str(data),
        "BERTH_PORT": str(port),
        "BERTH_ADMIN_PASSWORD": PASSWORD,
        "BERTH_AGENT_HOST": f"bench-{port}",
        "BERTH_AGENT_PASSWORD": "bench-agent-pw",
    }
    log = open(data / "berth.log", "wb")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen(
        [sys.executable, "-c", "from berth.cli.serve import api_main; api_main()"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/identity/v3", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"Berth did not start; see {data / 'berth.log'}")


def token(base: str) -> str:
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": "admin", "domain": {"name": "Default"}, "password": PASSWORD}
                },
            },
            "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}},
        }
    }
    r = httpx.post(f"{base}/identity/v3/auth/tokens", json=body)
    r.raise_for_status()
    return r.headers["x-subject-token"]


def wait_host(http: httpx.Client) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if http.get("/container/v1/hosts").json().get("hosts"):
            return
        time.sleep(0.2)
    raise SystemExit("the embedded agent never registered its host")


def via_berth(http: httpx.Client) -> float:
    t0 = time.perf_counter()
    r = http.post(
        "/container/v1/containers?run=true",
        json={"image": IMAGE, "command": ["sleep", "300"], "memory": 64},
    )
    r.raise_for_status()
    uid = r.json()["uuid"]
    while True:
        status = http.get(f"/container/v1/containers/{uid}").json()["status"]
        if status == "Running":
            elapsed = time.perf_counter() - t0
            break
        if status == "Error":
            raise SystemExit(f"container {uid} failed")
        time.sleep(0.005)
    http.delete(f"/container/v1/containers/{uid}?stop=true")
    return elapsed


def via_docker(client: docker.DockerClient) -> float:
    t0 = time.perf_counter()
    c = client.containers.run(
        IMAGE,
        ["sleep", "300"],
        detach=True,
        mem_limit="64m",
        name=f"bench-raw-{uuid.uuid4().hex[:12]}",
    )
    elapsed = time.perf_counter() - t0
    c.remove(force=True)
    return elapsed


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=40)
    args = ap.parse_args()
    client = docker.from_env()
    with tempfile.TemporaryDirectory(prefix="berth-bench-") as tmp:
        port = free_port()
        proc = start_berth(Path(tmp), port)
        base = f"http://127.0.0.1:{port}"
        try:
            headers = {"X-Auth-Token": token(base), "OpenStack-API-Version": "container 1.40"}
            with httpx.Client(base_url=base, headers=headers, timeout=60) as http:
                wait_host(http)
                via_berth(http)  # warm-up: image cache, connections
                via_docker(client)
                berth, raw = [], []
                for i in range(args.rounds):
                    if i % 2:
                        raw.append(via_docker(client))
                        berth.append(via_berth(http))
                    else:
                        berth.append(via_berth(http))
                        raw.append(via_docker(client))
                time.sleep(2)  # let the agent finish the deletes before we stop it
        finally:
            proc.terminate()
            proc.wait(30)
    bm, rm = statistics.median(berth), statistics.median(raw)
    b99, r99 = p99(berth), p99(raw)
    print(f"rounds: {args.rounds}  image: {IMAGE}")
    print(f"raw docker  p50 {rm * 1000:7.1f} ms   p99 {r99 * 1000:7.1f} ms")
    print(f"berth API   p50 {bm * 1000:7.1f} ms   p99 {b99 * 1000:7.1f} ms")
    print(f"ratio       p50 {bm / rm:7.2f}x     p99 {b99 / r99:7.2f}x")


if __name__ == "__main__":
    main()
