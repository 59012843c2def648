"""The overlay across two hosts: Berth's VXLAN overlay against the two hosts linked directly.

What it measures
    Two test hosts apart at the network level (``tests/functional/underlay.py``:
    a network namespace each on an underlay switch, each with its own dockerd
    and berth-agent, one berth-api on this machine; ``network_driver =
    overlay`` everywhere), the same fixture as tests/functional/test_overlay.py.

    berth   a container on each host, on the admin project's default network
            (one VXLAN segment); the traffic runs between the two containers'
            network namespaces, by their private addresses: container veth,
            the host's bridge and security-group chains, the VXLAN device,
            the underlay, and the same again on the other host.
    raw     the same two host namespaces linked directly without Berth: the
            same programs between the hosts' underlay addresses (host veth,
            the underlay switch, host veth), no tunnel, no bridge, no chains.
    vxlan   a reference, to tell the tunnel's cost from Berth's: a VXLAN
            device made by hand in each host namespace (``ip link add ...
            type vxlan id 4242 remote <other host> dstport 4790``, MTU 1450,
            10.252.0.1 and .2), the programs between those addresses: the
            kernel's encapsulation alone, no bridge, no container veth, no
            security-group chains; its outer packets skip conntrack as Berth's
            do (``--no-vxlan`` leaves it out).
    routed  a reference, the floor of any container network here: a namespace
            made by hand inside each host (``bt-h<n>f``, 10.253.<n>.2/24), a
            veth pair to its host, the hosts routing each other's /24 over the
            underlay (two ``FORWARD`` accept rules at the top): the hops a
            container's packet takes at least when it has a namespace of its
            own, with no tunnel, no bridge and no security-group chains
            (``--no-routed`` leaves it out).

    The programs run in those namespaces with ``nsenter --net`` (the host's
    own binaries, so no image needs iperf3; the packets take the same path as
    a container's own):

    throughput       ``iperf3 -c <server> -t 5 -J`` (Debian's iperf3), the
                     receiver's bits per second; ``--rounds`` each, the sides
                     interleaved and alternating which goes first.
    connect latency  ``--connects`` TCP connects per side and round from a
                     small Python client to a listening server: the time of
                     ``connect()`` (SYN to SYN-ACK), and the first 1-byte
                     request and answer on the new connection; p50/p99 over
                     every round.
    run to first packet
                     with one member of the network on host 1, ``POST
                     /containers?run=true`` of a container pinned to host 2,
                     which has no member of the network (so its agent makes
                     the network, its VXLAN device and entries, and host 1's
                     agent learns the new member): the time from sending the
                     POST to the first ICMP echo answered from host 1's
                     member to the new one (a raw-socket prober sending every
                     10 ms from before the POST, to the address the container
                     will get: the lowest free lease, which the network's last
                     member on host 2 freed; checked against the engine, and a
                     sample where it differs is marked late). Also the API's
                     Running stamp (the create action's ``finish_time``).
                     The container is then deleted and the run waits until
                     host 2's VXLAN device and host 1's entries are gone
                     (agents run with ``network_idle_seconds = 0``).

    Goals (issue #15): throughput >= 0.8x raw (ratio of medians), connect
    latency <= 1.2x raw (ratio of the p50s; the p99 ratio is shown too).

How it runs
    .venv/bin/python bench/overlay.py                      # 5 rounds, 10 joins, ~3 min
    .venv/bin/python bench/overlay.py --rounds 3 --joins 5 --json out.json

Root, the Docker engine, the test image (``scripts/lib.sh build_test_images``),
``iperf3`` (``apt-get install iperf3``) and ``nsenter``. It holds the
machine's one underlay (a lock file) while it runs, so it waits for a running
test_overlay.py and the other way round. Everything (namespaces, dockerds,
agents, berth-api) is removed afterwards, also after a failure or Ctrl-C.
Results: docs/benchmarks.md, "Overlay across hosts".
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import docker
import docker.errors

from bench._common import machine, summary
from berth.networks.base import NETWORK_DRIVERS
from tests.functional.docker_engine import ensure_test_image
from tests.functional.hosts import Cloud, HostSpec, cloud, wait_until

__all__ = ["main"]

GOAL_THROUGHPUT, GOAL_LATENCY = 0.8, 1.2
SPECS = [HostSpec("obench-1"), HostSpec("obench-2")]
OVERLAY = {"BERTH_NETWORK_DRIVER": "overlay"}
# The agents: overlay, a network's last member leaving a host takes the network (and its
# VXLAN device) at once (so every join is a new host's), and the default reconcile
# interval (the fixture's 1 s is for tests).
AGENTS = {**OVERLAY, "BERTH_NETWORK_IDLE_SECONDS": "0", "BERTH_RECONCILE_INTERVAL": "5"}
IPERF_PORT, LATENCY_PORT = 5201, 7001
REF_VNI, REF_PORT, REF_NET = "4242", "4790", "10.252.0"
FLOOR_NET = "10.253"
PY = [sys.executable, "-I", "-c"]

# Accepts, answers one byte with one byte, closes.
LATENCY_SERVER = r"""
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(128)
while True:
    conn, _ = s.accept()
    with conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if conn.recv(1):
            conn.sendall(b"y")
"""

# n connects; prints [[connect ns, first request/answer ns], ...] as JSON.
LATENCY_CLIENT = r"""
import json, socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
out = []
clock = time.perf_counter_ns
for _ in range(n):
    s = socket.socket()
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.settimeout(5)
    t0 = clock()
    s.connect((host, port))
    t1 = clock()
    s.sendall(b"x")
    if s.recv(1) != b"y":
        sys.exit("no answer")
    t2 = clock()
    s.close()
    out.append([t1 - t0, t2 - t1])
print(json.dumps(out))
"""

# ICMP echo to argv[1] every argv[2] s for at most argv[3] s; prints "ready" once it is about
# to send, then "ok <epoch of the first answer> <requests sent>" or "timeout". A raw
# socket: this runs as root.
PROBE = r"""
import os, select, socket, struct, sys, time
ip, every, limit = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
def checksum(b):
    total = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
print("ready", flush=True)
ident, seq, end = os.getpid() & 0xFFFF, 0, time.monotonic() + limit
while time.monotonic() < end:
    seq += 1
    body = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"berth-bench"
    body = body[:2] + struct.pack("!H", checksum(body + b"\0")) + body[4:]
    try:
        s.sendto(body, (ip, 0))
    except OSError:
        pass  # no neighbour yet
    due = time.monotonic() + every
    while (left := due - time.monotonic()) > 0:
        if not select.select([s], [], [], left)[0]:
            break
        data, peer = s.recvfrom(2048)
        head = (data[0] & 15) * 4
        kind, _, _, rid, _ = struct.unpack("!BBHHH", data[head : head + 8])
        if kind == 0 and rid == ident and peer[0] == ip:
            print("ok", f"{time.time():.6f}", seq)
            sys.exit(0)
print("timeout")
"""


class BenchError(Exception):
    """A failure with a message meant for the person running the benchmark."""


def _run(cmd: list[str], timeout: float) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode:
        raise BenchError(f"{' '.join(cmd[:6])}... failed ({done.returncode}): {done.stderr}")
    return done.stdout


@dataclass
class Side:
    """Where one side's client runs (its nsenter prefix), and the server's address."""

    name: str
    client: list[str]
    address: str

    def throughput(self, seconds: int) -> dict[str, float]:
        cmd = [*self.client, "iperf3", "-c", self.address, "-p", str(IPERF_PORT)]
        out = json.loads(_run([*cmd, "-t", str(seconds), "-J"], seconds + 60))
        if "error" in out:
            raise BenchError(f"iperf3 ({self.name}): {out['error']}")
        end = out["end"]
        return {
            "bits_per_second": float(end["sum_received"]["bits_per_second"]),
            "retransmits": float(end["sum_sent"].get("retransmits", 0)),
        }

    def latency(self, connects: int) -> list[list[int]]:
        cmd = [*self.client, *PY, LATENCY_CLIENT, self.address, str(LATENCY_PORT), str(connects)]
        samples: list[list[int]] = json.loads(_run(cmd, 120))
        return samples


@dataclass
class Member:
    """A running Berth container: host, address, MAC and network namespace."""

    uuid: str
    host: str
    ip: str
    mac: str
    pid: int

    @property
    def netns(self) -> list[str]:
        return ["nsenter", f"--net=/proc/{self.pid}/ns/net"]


def _member(c: Cloud, uuid: str, host: str) -> Member:
    data = c.engines[host].client.inspect_container(f"berth-{uuid}")
    net = next(iter(data["NetworkSettings"]["Networks"].values()))
    return Member(uuid, host, net["IPAddress"], net["MacAddress"], int(data["State"]["Pid"]))


def _entries(c: Cloud, host: str) -> str:
    """``host``'s tunnel entries: forwarding to other hosts and permanent neighbours."""
    net = c.engines[host].host
    assert net is not None
    fdb = [line for line in net.sh("bridge", "fdb", "show").splitlines() if " dst " in line]
    return "\n".join([*fdb, net.sh("ip", "neigh", "show", "nud", "permanent")])


def _devices(c: Cloud, host: str) -> str:
    net = c.engines[host].host
    assert net is not None
    return net.sh("ip", "-o", "link", "show", "type", "vxlan")


def _create(c: Cloud, host: str) -> str:
    return str(c.create(host=host, command=["sleep", "3600"])["uuid"])


def _delete(c: Cloud, uuid: str) -> None:
    r = c.call("DELETE", f"/containers/{uuid}", params={"force": "true"})
    if r.status_code not in (204, 404):
        raise BenchError(f"DELETE {uuid} answered {r.status_code}: {r.text[:300]}")
    wait_until(lambda: c.call("GET", f"/containers/{uuid}").status_code == 404, 60, "deleted")


def _running_stamp(c: Cloud, uuid: str) -> float:
    """Epoch seconds of the API's record of the Running report (the create action's end)."""
    actions = c.call("GET", f"/containers/{uuid}/container_actions").json()["containerActions"]
    stamp = next((a["finish_time"] for a in actions if a["action"] == "create"), None)
    if not stamp:
        raise BenchError(f"{uuid} is Running but its create action is not finished")
    return dt.datetime.fromisoformat(stamp).replace(tzinfo=dt.UTC).timestamp()


@contextlib.contextmanager
def _serving(prefix: list[str]) -> Iterator[None]:
    """iperf3's server and the latency server in the namespace of ``prefix``."""
    procs = [
        subprocess.Popen([*prefix, "iperf3", "-s", "-p", str(IPERF_PORT)], **_quiet()),
        subprocess.Popen([*prefix, *PY, LATENCY_SERVER, str(LATENCY_PORT)], **_quiet()),
    ]
    try:
        time.sleep(0.5)
        for p in procs:
            if p.poll() is not None:
                raise BenchError(f"a server exited at once: {p.args}")
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait(timeout=10)


def _quiet() -> dict[str, Any]:
    return {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}


@contextlib.contextmanager
def _reference_vxlan(c: Cloud) -> Iterator[str]:
    """A VXLAN link made by hand between the two host namespaces; the far end's address."""
    hosts = [c.engines[s.name].host for s in SPECS]
    made: list[Any] = []
    try:
        for i, (me, other) in enumerate([(hosts[0], hosts[1]), (hosts[1], hosts[0])]):
            assert me is not None and other is not None
            ends = ["remote", other.address, "local", me.address, "dstport", REF_PORT]
            link = ["vxref", "type", "vxlan", "id", REF_VNI, *ends, "dev", "eth0"]
            me.sh("ip", "link", "add", *link)
            made.append(me)
            me.sh("ip", "link", "set", "vxref", "mtu", "1450")
            me.sh("ip", "addr", "add", f"{REF_NET}.{i + 1}/24", "dev", "vxref")
            me.sh("ip", "link", "set", "vxref", "up")
            for rule in _ref_untracked(me.address):  # as Berth's own tunnel packets
                me.sh("iptables", "-w", "-t", "raw", "-A", *rule)
        yield f"{REF_NET}.2"
    finally:
        for host in made:
            host.sh("ip", "link", "del", "vxref", check=False)
            for rule in _ref_untracked(host.address):
                host.sh("iptables", "-w", "-t", "raw", "-D", *rule, check=False)


def _ref_untracked(address: str) -> list[list[str]]:
    match = ["-p", "udp", "--dport", REF_PORT, "-j", "CT", "--notrack"]
    return [["PREROUTING", "-d", address, *match], ["OUTPUT", "-s", address, *match]]


@contextlib.contextmanager
def _reference_routed(c: Cloud) -> Iterator[tuple[list[str], list[str], str]]:
    """A namespace inside each host, routed over the underlay: (client, server, address)."""
    hosts = [c.engines[s.name].host for s in SPECS]
    made: list[tuple[Any, str]] = []
    accept = [["-s", f"{FLOOR_NET}.0.0/16"], ["-d", f"{FLOOR_NET}.0.0/16"]]
    try:
        for i, (me, other) in enumerate([(hosts[0], hosts[1]), (hosts[1], hosts[0])], 1):
            assert me is not None and other is not None
            ns, j = f"{me.name}f", 3 - i
            _run(["ip", "netns", "add", ns], 10)
            made.append((me, ns))
            _run(["ip", "link", "add", f"fl{i}-h", "type", "veth", "peer", "name", f"fl{i}-c"], 10)
            _run(["ip", "link", "set", f"fl{i}-h", "netns", me.name], 10)
            _run(["ip", "link", "set", f"fl{i}-c", "netns", ns], 10)
            inner = ["nsenter", f"--net=/var/run/netns/{ns}"]
            for cmd in (
                ["ip", "addr", "add", f"{FLOOR_NET}.{i}.2/24", "dev", f"fl{i}-c"],
                ["ip", "link", "set", f"fl{i}-c", "up"],
                ["ip", "link", "set", "lo", "up"],
                ["ip", "route", "add", "default", "via", f"{FLOOR_NET}.{i}.1"],
            ):
                _run([*inner, *cmd], 10)
            me.sh("ip", "addr", "add", f"{FLOOR_NET}.{i}.1/24", "dev", f"fl{i}-h")
            me.sh("ip", "link", "set", f"fl{i}-h", "up")
            me.sh("ip", "route", "add", f"{FLOOR_NET}.{j}.0/24", "via", other.address)
            for match in accept:
                me.sh("iptables", "-I", "FORWARD", "1", *match, "-j", "ACCEPT")
        floors = [["nsenter", f"--net=/var/run/netns/{ns}"] for _, ns in made]
        yield floors[0], floors[1], f"{FLOOR_NET}.2.2"
    finally:
        for me, ns in made:
            for match in accept:
                me.sh("iptables", "-D", "FORWARD", *match, "-j", "ACCEPT", check=False)
            _run(["ip", "netns", "del", ns], 10)  # its veth goes with it, both ends


def _pair(c: Cloud) -> tuple[Member, Member]:
    """A container on each host, on one network, each host knowing the other's member."""
    uuids = [_create(c, s.name) for s in SPECS]
    c.wait_status(uuids, "Running", timeout=120)
    a, b = (_member(c, u, s.name) for u, s in zip(uuids, SPECS, strict=True))
    wait_until(lambda: a.mac in _entries(c, b.host) and b.mac in _entries(c, a.host), 30, "tunnel")
    return a, b


def measure_paths(c: Cloud, args: argparse.Namespace) -> dict[str, Any]:
    """Throughput and connect latency, Berth's overlay and the direct link interleaved."""
    a, b = _pair(c)
    host1, host2 = (c.engines[s.name].host for s in SPECS)
    assert host1 is not None and host2 is not None
    sides = [
        Side("berth", a.netns, b.ip),
        Side("raw", host1.prefix, host2.address),
    ]
    with contextlib.ExitStack() as stack:
        if args.vxlan:
            far = stack.enter_context(_reference_vxlan(c))
            sides.append(Side("vxlan", host1.prefix, far))
        if args.routed:
            floor1, floor2, address = stack.enter_context(_reference_routed(c))
            sides.append(Side("routed", floor1, address))
            stack.enter_context(_serving(floor2))
        # host 2's servers listen on every address: the raw and the vxlan side's
        stack.enter_context(_serving(b.netns))
        stack.enter_context(_serving(host2.prefix))
        samples = _interleaved(sides, args)
    mtu = _run([*a.netns, "ip", "-o", "link", "show", "eth0"], 10).split(" mtu ")[1].split()[0]
    _delete(c, b.uuid)  # host 2 leaves the network: the joins start from here
    wait_until(lambda: not _devices(c, b.host), 30, "host 2's VXLAN device to go")
    return {"samples": samples, "member": a, "left": b.ip, "mtu": int(mtu)}


def _interleaved(sides: list[Side], args: argparse.Namespace) -> dict[str, dict[str, list[Any]]]:
    """Every side once a round, each going first, second, ... equally often."""
    samples: dict[str, dict[str, list[Any]]] = {
        s.name: {"throughput": [], "retransmits": [], "connect": [], "first_answer": []}
        for s in sides
    }
    for side in sides:  # warm-up: paths, neighbours, conntrack, page cache
        side.throughput(1)
        side.latency(20)
    for i in range(args.rounds):
        order = sides[i % len(sides) :] + sides[: i % len(sides)]
        for side in order:
            got = side.throughput(args.seconds)
            samples[side.name]["throughput"].append(got["bits_per_second"])
            samples[side.name]["retransmits"].append(got["retransmits"])
        for side in order:
            for connect, answer in side.latency(args.connects):
                samples[side.name]["connect"].append(connect / 1e9)
                samples[side.name]["first_answer"].append(answer / 1e9)
        if args.progress:
            print(f"  round {i + 1}/{args.rounds} done", file=sys.stderr)
    return samples


class _Prober:
    """The ICMP prober in ``member``'s namespace, sending to ``ip`` from now on."""

    def __init__(self, member: Member, ip: str) -> None:
        self.ip = ip
        self.proc = subprocess.Popen(
            [*member.netns, *PY, PROBE, ip, "0.01", "60"], stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            self.close()
            raise BenchError(f"the prober did not start: {self.proc.args}")

    def first_answer(self) -> tuple[float, int]:
        """Epoch seconds of the first answer, and how many requests it took."""
        out, _ = self.proc.communicate(timeout=90)
        words = out.split()
        if not words or words[0] != "ok":
            raise BenchError(f"{self.ip} never answered: {out!r}")
        return float(words[1]), int(words[2])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


def measure_join(c: Cloud, a: Member, host: str, expected: str) -> dict[str, Any]:
    """POST a container pinned to ``host`` (no member of the network there yet) and time
    its first answer to ``a``; then delete it and wait until ``host`` left the network.

    The prober starts before the POST, sending to ``expected`` (the address the network's
    last member had: the lease freed then is the lowest free one, so the next one gets
    it). If the container gets another address, the prober starts again once the engine
    shows it, and the sample is marked ``late`` (its first packet is an upper bound).
    """
    engine = c.engines[host].client
    prober = _Prober(a, expected)
    try:
        sent = time.time()
        uuid = _create(c, host)

        def address() -> str | None:
            with contextlib.suppress(docker.errors.NotFound):
                data = engine.inspect_container(f"berth-{uuid}")
                for net in data["NetworkSettings"]["Networks"].values():
                    ip = (net.get("IPAMConfig") or {}).get("IPv4Address") or net.get("IPAddress")
                    if ip:
                        return str(ip)
            return None

        ip = wait_until(address, 60, "the new container's address on its engine", poll=0.02)
        if ip != expected:
            prober.close()
            prober = _Prober(a, ip)
        answered, probes = prober.first_answer()
    finally:
        prober.close()
    c.wait_status([uuid], "Running", timeout=60)
    running = _running_stamp(c, uuid)
    mac = _member(c, uuid, host).mac
    _delete(c, uuid)
    wait_until(lambda: not _devices(c, host), 30, f"{host}'s VXLAN device to go")
    wait_until(lambda: mac not in _entries(c, a.host), 30, "the member's entries to go")
    return {
        "address": ip,
        "late": ip != expected,
        "running": running - sent,
        "first_packet": answered - sent,
        "probes": probes,
    }


# -- the run


def _check_tools() -> None:
    if os.geteuid() != 0:
        raise BenchError("needs root (network namespaces, dockerds, a raw ICMP socket)")
    for tool in ("iperf3", "nsenter", "ip", "bridge", "dockerd"):
        if shutil.which(tool) is None:
            raise BenchError(f"{tool} is not installed (iperf3: apt-get install iperf3)")
    if "overlay" not in NETWORK_DRIVERS.names():
        raise BenchError("the overlay network driver is not installed: pip install -e .")


def run(args: argparse.Namespace) -> dict[str, Any]:
    _check_tools()
    client = docker.from_env()
    engine = docker.APIClient(version="auto", timeout=60)
    ensure_test_image(engine)
    info = machine(client)
    info["iperf3"] = _run(["iperf3", "--version"], 10).split("\n")[0]
    started = dt.datetime.now(dt.UTC)
    load_start = os.getloadavg()
    if load_start[0] > 1.0:
        print(f"warning: load average {load_start[0]:.2f}: other work will show", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="berth-bench-ovl-") as tmp:
        settings = {"BERTH_SERVICE_DOWN_TIME": "30", **OVERLAY}
        with cloud(Path(tmp), SPECS, engine, settings, separate=True, agent_settings=AGENTS) as c:
            paths = measure_paths(c, args)
            joins: list[dict[str, Any]] = []
            expected = paths["left"]
            for _ in range(args.joins):
                joins.append(measure_join(c, paths["member"], SPECS[1].name, expected))
                expected = joins[-1]["address"]
    engine.close()
    return _result(args, info, started, load_start, paths, joins)


def _result(
    args: argparse.Namespace,
    info: dict[str, Any],
    started: dt.datetime,
    load_start: tuple[float, float, float],
    paths: dict[str, Any],
    joins: list[dict[str, Any]],
) -> dict[str, Any]:
    s = paths["samples"]
    summaries = {
        side: {
            "throughput_bps": summary(v["throughput"]),
            "connect": summary(v["connect"]),
            "first_answer": summary(v["first_answer"]),
        }
        for side, v in s.items()
    }
    per_round = [
        b / w for b, w in zip(s["berth"]["throughput"], s["raw"]["throughput"], strict=True)
    ]
    ratio = {
        "throughput": summaries["berth"]["throughput_bps"]["p50"]
        / summaries["raw"]["throughput_bps"]["p50"],
        # Each round's berth/raw: the two ran back to back, so this follows the machine less.
        "throughput_per_round_p50": statistics.median(per_round),
        **{
            f"{kind}_{q}": summaries["berth"][kind][q] / summaries["raw"][kind][q]
            for kind in ("connect", "first_answer")
            for q in ("p50", "p99")
        },
    }
    join = {k: summary([j[k] for j in joins]) for k in ("running", "first_packet")} if joins else {}
    return {
        "date": started.isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", "bench/overlay.py", *sys.argv[1:]]),
        "machine": info,
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(),
        "rounds": args.rounds,
        "seconds": args.seconds,
        "connects": args.connects,
        "container_mtu": paths["mtu"],
        "summary": summaries,
        "ratios": ratio,
        "goals": {
            "throughput": ratio["throughput"] >= GOAL_THROUGHPUT,
            "latency": ratio["connect_p50"] <= GOAL_LATENCY,
        },
        "join": join,
        "samples": s,
        "join_samples": joins,
    }


def report(r: dict[str, Any]) -> str:
    s = r["summary"]
    load = " ".join(f"{x:.2f}" for x in r["loadavg_start"])
    names = list(s)  # berth, raw[, vxlan][, routed]
    lines = [
        f"{r['date']}  load average at start {load}  {r['rounds']} rounds: iperf3 -t "
        f"{r['seconds']}, {r['connects']} TCP connects a side; container MTU {r['container_mtu']}",
        f"{'':28}" + "".join(f"{n:>10}" for n in names) + f"{'berth/raw':>11}  goal",
    ]
    ok = {True: "met", False: "MISSED"}
    rows: list[tuple[str, str, str, float, str]] = [
        ("throughput p50, Gbit/s", "throughput_bps", "p50", 1e-9,
         f">= {GOAL_THROUGHPUT}x: {ok[r['goals']['throughput']]}"),
        ("throughput min, Gbit/s", "throughput_bps", "min", 1e-9, ""),
        ("connect p50, us", "connect", "p50", 1e6,
         f"<= {GOAL_LATENCY}x: {ok[r['goals']['latency']]}"),
        ("connect p99, us", "connect", "p99", 1e6, ""),
        ("first 1-byte answer p50, us", "first_answer", "p50", 1e6, ""),
        ("first 1-byte answer p99, us", "first_answer", "p99", 1e6, ""),
    ]  # fmt: skip
    for label, kind, stat, scale, goal in rows:
        values = "".join(f"{s[n][kind][stat] * scale:10.2f}" for n in names)
        ratio = s["berth"][kind][stat] / s["raw"][kind][stat]
        lines.append(f"{label:28}{values}{ratio:10.2f}x  {goal}")
    for ref in names[2:]:
        tp, cp = (s[ref][k]["p50"] / s["raw"][k]["p50"] for k in ("throughput_bps", "connect"))
        label = f"reference {ref} / raw"
        lines.append(f"{label:28}throughput p50 {tp:.2f}x, connect p50 {cp:.2f}x")
    lines.append(
        f"{'throughput, per-round ratio':28}{'':{10 * len(names)}}"
        f"{r['ratios']['throughput_per_round_p50']:10.2f}x  (median of each round's berth/raw)"
    )
    if r["join"]:
        late = sum(1 for j in r["join_samples"] if j["late"])
        lines.append(
            f"run -> first packet, new host ({len(r['join_samples'])} joins, {late} with an "
            "address not foreseen: their first packet is an upper bound), ms:"
        )
        for key, label in (("running", "API says Running"), ("first_packet", "first ICMP answer")):
            v = r["join"][key]
            lines.append(
                f"  {label:26}p50 {v['p50'] * 1000:7.0f}  p90 {v['p90'] * 1000:7.0f}  "
                f"max {v['max'] * 1000:7.0f}"
            )
    return "\n".join(lines)


def _interrupted(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds of each side")
    ap.add_argument("--seconds", type=int, default=5, help="iperf3 -t of each round")
    ap.add_argument("--connects", type=int, default=200, help="TCP connects a side and round")
    ap.add_argument("--joins", type=int, default=10, help="run -> first packet measurements")
    ap.add_argument(
        "--no-vxlan",
        dest="vxlan",
        action="store_false",
        help="leave out the hand-made VXLAN reference side",
    )
    ap.add_argument(
        "--no-routed",
        dest="routed",
        action="store_false",
        help="leave out the routed (no tunnel) reference side",
    )
    ap.add_argument("--json", metavar="FILE", help="also write the results (with samples) here")
    ap.add_argument("--progress", action="store_true", help="say each finished round on stderr")
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.seconds < 1 or args.connects < 1 or args.joins < 0:
        ap.error("--rounds, --seconds and --connects must be >= 1, --joins >= 0")
    return args


def main() -> None:
    args = parse()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupted)
    try:
        result = run(args)
    except KeyboardInterrupt:
        raise SystemExit("bench: interrupted (cleaned up)") from None
    except (BenchError, AssertionError, subprocess.TimeoutExpired) as exc:
        raise SystemExit(f"bench: {exc}") from None
    print(report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
