"""Project networks across hosts: the overlay driver on three hosts apart at the network level.

Each test host is a network namespace with its own dockerd and berth-agent
(``tests/functional/overlay_cloud.py``); berth-api and every agent run with
``network_driver = overlay``. The traffic checks run from inside the
containers' network namespaces (``nsenter --net``) with this machine's Python,
so they test what a container's own packets meet: its MTU, its host's bridge,
the VXLAN tunnel, the other host's security-group chains.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.functional.hosts import Cloud, HostSpec, wait_until
from tests.functional.overlay_cloud import overlay_cloud

pytestmark = [pytest.mark.docker, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]

SPECS = [HostSpec("ovl-1"), HostSpec("ovl-2"), HostSpec("ovl-3")]
STALE_MAC = "02:42:0a:60:ff:fe"

# An echo server: TCP echoes the bytes back, UDP answers each datagram with its length.
SERVER = r"""
import socket, sys, threading
def echo(conn):
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)
def tcp(s):
    while True:
        threading.Thread(target=echo, args=(s.accept()[0],), daemon=True).start()
def udp(u):
    while True:
        data, peer = u.recvfrom(65535)
        u.sendto(len(data).to_bytes(4, "big"), peer)
for port in map(int, sys.argv[1:]):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(64)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("0.0.0.0", port))
    threading.Thread(target=udp, args=(u,), daemon=True).start()
    threading.Thread(target=tcp, args=(s,), daemon=True).start()
print("listening", flush=True)  # every socket is bound: the test may connect
threading.Event().wait()
"""

# One exchange; prints "ok ..." or why not, never hangs (gives up after about ``wait`` s).
CLIENT = r"""
import socket, sys
mode, host, port, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
wait = float(sys.argv[5])
try:
    if mode == "tcp":
        s = socket.create_connection((host, port), timeout=wait)
        payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := s.recv(65536):
            got += chunk
        print("ok" if got == payload else f"bad {len(got)}")
    else:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.settimeout(wait / 3)
        if mode == "udp-df":  # IP_MTU_DISCOVER = IP_PMTUDISC_DO: never fragment
            u.setsockopt(socket.IPPROTO_IP, 10, 2)
        for _ in range(3):
            u.sendto(b"u" * size, (host, port))
            try:
                print(f"ok {int.from_bytes(u.recvfrom(16)[0], 'big')}")
                break
            except socket.timeout:
                continue
        else:
            print("timeout")
except OSError as exc:
    print(f"error {exc.errno} {exc}")
"""


@pytest.fixture(scope="module")
def ovl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    with overlay_cloud(tmp_path_factory.mktemp("overlay"), SPECS) as c:
        yield c


class Box:
    """A running container seen from the test: its host, address and network namespace."""

    def __init__(self, c: Cloud, uuid: str) -> None:
        self.c, self.uuid = c, uuid
        self.host = c.runs_on(uuid)[0]
        shown = c.show(uuid)
        self.network = next(iter(shown["addresses"]))
        self.ip = shown["addresses"][self.network][0]["addr"]
        data = c.engines[self.host].client.inspect_container(f"berth-{uuid}")
        self.pid = int(data["State"]["Pid"])
        self.mac = next(iter(data["NetworkSettings"]["Networks"].values()))["MacAddress"]

    def enter(self, *cmd: str) -> list[str]:
        return ["nsenter", f"--net=/proc/{self.pid}/ns/net", *cmd]

    def client(self, mode: str, to: Box, port: int, size: int = 100, wait: float = 3) -> str:
        """One exchange with ``to``; pass a short ``wait`` where it must fail."""
        args = [mode, to.ip, str(port), str(size), str(wait)]
        done = subprocess.run(
            self.enter(sys.executable, "-c", CLIENT, *args),
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        return (done.stdout + done.stderr).strip()

    def ping(self, to: Box, size: int = 56, wait: int = 2) -> bool:
        api = self.c.engines[self.host].client
        run = api.exec_create(
            f"berth-{self.uuid}", ["ping", "-c", "1", "-W", str(wait), "-s", str(size), to.ip]
        )
        api.exec_start(run["Id"])
        return int(api.exec_inspect(run["Id"])["ExitCode"]) == 0

    @contextlib.contextmanager
    def serving(self, *ports: int) -> Iterator[None]:
        proc = subprocess.Popen(
            self.enter(sys.executable, "-c", SERVER, *map(str, ports)),
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        try:
            # Listening once it says so (a fixed pause was too short on a loaded machine).
            assert proc.stdout is not None and proc.stdout.readline() == "listening\n"
            yield
        finally:
            proc.kill()
            proc.wait(timeout=10)

    def mtu(self) -> int:
        # Asked over netlink: /sys would show this machine's own eth0 (nsenter --net only).
        line = subprocess.check_output(self.enter("ip", "-o", "link", "show", "eth0"), text=True)
        return int(line.split(" mtu ")[1].split()[0])


def _run(c: Cloud, token: str | None = None, **body: Any) -> list[Box]:
    """Create containers (one per entry of ``hosts``), wait until they run and every
    other host of theirs has the tunnel entries to them (``Running`` comes first: the
    other hosts hear of a new member with their next desired state)."""
    hosts = body.pop("hosts")
    uuids = [c.create(token, **({"host": h} if h else {}), **body)["uuid"] for h in hosts]
    c.wait_status(uuids, "Running")
    boxes = [Box(c, u) for u in uuids]
    for box in boxes:
        for other in boxes:
            if other.host != box.host and other.network == box.network:
                wait_until(
                    lambda b=box, o=other: o.mac in _entries(c, b.host), 15, "tunnel entries"
                )
    return boxes


def _entries(c: Cloud, host: str) -> str:
    """The tunnel entries on ``host``: forwarding to a remote host, permanent neighbours.

    (Not what the bridges learned from the traffic: that ages out on its own.)
    """
    net = c.engines[host].host
    assert net is not None
    fdb = [line for line in net.sh("bridge", "fdb", "show").splitlines() if " dst " in line]
    neigh = net.sh("ip", "neigh", "show", "nud", "permanent").splitlines()
    return "\n".join(fdb + neigh)


def _devices(c: Cloud, host: str) -> str:
    net = c.engines[host].host
    assert net is not None
    return net.sh("ip", "-o", "link", "show", "type", "vxlan")


def _untracked(c: Cloud, host: str) -> list[str]:
    """The host's rules that keep its own tunnel packets out of conntrack."""
    net = c.engines[host].host
    assert net is not None
    return [
        r for r in net.sh("iptables", "-w", "-t", "raw", "-S").splitlines() if "berth-tunnel" in r
    ]


@pytest.fixture
def boxes(ovl: Cloud) -> Iterator[list[Box]]:
    """One container per host on the admin project's default network."""
    yield _run(ovl, hosts=[s.name for s in SPECS])
    ovl.delete_all()


def test_members_on_three_hosts_reach_each_other_and_the_mtu_is_right(
    ovl: Cloud, boxes: list[Box]
) -> None:
    assert [b.host for b in boxes] == [s.name for s in SPECS]
    assert len({b.ip for b in boxes}) == 3 and len({b.network for b in boxes}) == 1
    with contextlib.ExitStack() as stack:
        for b in boxes:
            stack.enter_context(b.serving(7000, 4789))
        for a in boxes:
            for b in boxes:
                if a is b:
                    continue
                assert a.ping(b), f"{a.host} cannot ping {b.host}"
                assert a.client("tcp", b, 7000) == "ok", (a.host, b.host)
                assert a.client("udp", b, 7000) == "ok 100", (a.host, b.host)
        a, b = boxes[0], boxes[1]
        # VXLAN's port inside a container (a swarm node's own overlay) is the container's:
        # the host's tunnel endpoint holds it only in the host's own namespace, and only
        # the host's own tunnel packets skip conntrack (the container's are tracked).
        assert a.client("udp", b, 4789) == "ok 100"
        for box in boxes:
            address = ovl.engines[box.host].host.address  # type: ignore[union-attr]
            assert [f"-d {address}/32" in r or f"-s {address}/32" in r
                    for r in _untracked(ovl, box.host)] == [True, True]  # fmt: skip
        # The containers' MTU leaves room for VXLAN's 50 bytes on a 1500-byte underlay.
        assert a.mtu() == 1450
        assert a.client("tcp", b, 7000, 65536) == "ok"  # 64 KiB, segments of 1410 bytes
        # A 1,472-byte datagram (a full 1500-byte packet elsewhere) passes, in two fragments;
        # the largest that passes whole is 1,422 bytes, and a bigger one with DF set is
        # refused by the sender's own stack (EMSGSIZE), never lost on the way.
        assert a.client("udp", b, 7000, 1472) == "ok 1472"
        assert a.client("udp-df", b, 7000, 1422) == "ok 1422"
        assert a.client("udp-df", b, 7000, 1472).startswith("error 90")
        assert a.ping(b, 1422)  # a 1450-byte packet, a 1500-byte frame on the underlay


def test_another_projects_network_cannot_reach_the_first(ovl: Cloud, boxes: list[Box]) -> None:
    token = ovl.make_member("ovl-other", "ovl-user")
    others = _run(ovl, token, hosts=[None, None])
    assert others[0].network != boxes[0].network
    with contextlib.ExitStack() as stack:
        for b in [*boxes, *others]:
            stack.enter_context(b.serving(7000))
        if others[0].host != others[1].host:
            assert others[0].client("tcp", others[1], 7000) == "ok"
        for o in others:
            for b in boxes:
                assert o.client("tcp", b, 7000, wait=1) != "ok"
                assert b.client("udp", o, 7000, wait=1) != "ok 100"
        assert not others[0].ping(boxes[0], wait=1)


def test_a_security_group_admits_tcp_80_from_one_group_across_hosts(ovl: Cloud) -> None:
    def group(name: str) -> str:
        r = ovl.call("POST", "/security_groups", json={"security_group": {"name": name}})
        assert r.status_code == 201, r.text
        return str(r.json()["security_group"]["id"])

    web, db = group("ovl-web"), group("ovl-db")
    rule = {"protocol": "tcp", "port_range_min": 80, "port_range_max": 80, "remote_group_id": web}
    r = ovl.call("POST", f"/security_groups/{db}/rules", json={"security_group_rule": rule})
    assert r.status_code == 201, r.text
    try:
        (w,) = _run(ovl, hosts=["ovl-1"], security_groups=["ovl-web"])
        (d,) = _run(ovl, hosts=["ovl-2"], security_groups=["ovl-db"])
        (x,) = _run(ovl, hosts=["ovl-3"])  # the default group only
        wait_until(lambda: w.mac in _entries(ovl, d.host), 15, "d's host to know w")
        with d.serving(80, 81):
            assert w.client("tcp", d, 80) == "ok"
            assert w.client("tcp", d, 81, wait=1) != "ok"
            assert x.client("tcp", d, 80, wait=1) != "ok"
            assert not w.ping(d, wait=1)
    finally:
        ovl.delete_all()
        for name in ("ovl-web", "ovl-db"):
            ovl.call("DELETE", f"/security_groups/{name}")


def test_an_agent_killed_and_restarted_while_a_stream_flows(ovl: Cloud, boxes: list[Box]) -> None:
    a, b = boxes[0], boxes[1]
    stream = r"""
import socket, sys, time
s = socket.create_connection((sys.argv[1], 7000), timeout=5)
end = time.monotonic() + float(sys.argv[2])
sent = 0
while time.monotonic() < end:
    s.sendall(b"s" * 1000)
    got = 0
    while got < 1000:
        got += len(s.recv(1000 - got))
    sent += 1
    time.sleep(0.02)
print("ok", sent)
"""
    with b.serving(7000):
        flow = subprocess.Popen(
            a.enter(sys.executable, "-c", stream, b.ip, "8"), stdout=subprocess.PIPE, text=True
        )
        time.sleep(1)
        before = _entries(ovl, b.host)
        ovl.agents[b.host].kill()
        # Meanwhile someone leaves a stale member behind: the restarted agent removes it.
        host = ovl.engines[b.host].host
        assert host is not None
        device = host.sh("ip", "-o", "link", "show", "type", "vxlan").split(": ")[1]
        host.sh("bridge", "fdb", "append", STALE_MAC, "dev", device, "dst", "10.251.0.99")
        host.sh("ip", "neigh", "replace", "10.96.255.254", "lladdr", STALE_MAC, "dev", device,
                "nud", "permanent")  # fmt: skip
        time.sleep(2)  # the kernel forwards on without the agent
        ovl.agents[b.host].start()
        out, _ = flow.communicate(timeout=30)
        assert flow.returncode == 0 and out.startswith("ok"), out
        assert int(out.split()[1]) > 100
        # The restarted agent found its device, kept what is right, removed the stale entry.
        assert a.mac in before
        wait_until(lambda: STALE_MAC not in _entries(ovl, b.host), 10, "the stale entry to go")
        assert a.mac in _entries(ovl, b.host)
        assert a.client("tcp", b, 7000) == "ok"


def test_a_deleted_container_and_a_removed_host_leave_no_entries(
    ovl: Cloud, boxes: list[Box]
) -> None:
    first, _, third = boxes
    assert third.mac in _entries(ovl, first.host)
    r = ovl.call("DELETE", f"/containers/{third.uuid}", params={"force": "true"})
    assert r.status_code == 204, r.text
    wait_until(lambda: third.mac not in _entries(ovl, first.host), 20, "the entries to go")
    # It was the network's last member on its host: the host's tunnel endpoint went too.
    wait_until(lambda: not _devices(ovl, third.host), 20, "the VXLAN device to go")
    # With its last tunnel (removed right after the device, in the same prune).
    wait_until(lambda: _untracked(ovl, third.host) == [], 10, "the untracked rules to go")
    # A host removed from the cloud: its agent gone and its service deleted.
    (again,) = _run(ovl, hosts=["ovl-3"])
    wait_until(lambda: again.mac in _entries(ovl, first.host), 20, "the new member's entries")
    ovl.agents["ovl-3"].stop()
    try:
        r = ovl.call("DELETE", "/services", params={"host": "ovl-3", "binary": "berth-agent"})
        assert r.status_code == 200, r.text
        for host in ("ovl-1", "ovl-2"):
            wait_until(lambda h=host: again.mac not in _entries(ovl, h), 20, "entries to go")
    finally:
        ovl.agents["ovl-3"].start()
        ovl.wait_up("ovl-3")


def test_a_published_port_keeps_working_on_the_overlay(ovl: Cloud) -> None:
    (srv,) = _run(ovl, hosts=["ovl-2"], exposed_ports={"7000/tcp": {}})
    try:
        wait_until(lambda: bool(ovl.show(srv.uuid)["ports"]), 15, "the published port")
        (port,) = ovl.show(srv.uuid)["ports"]
        host = ovl.engines["ovl-2"].host
        assert host is not None
        # From this machine, over the underlay, to the host the container runs on.
        with srv.serving(7000), socket.create_connection((host.address, port), timeout=5) as conn:
            conn.sendall(b"published")
            conn.shutdown(socket.SHUT_WR)
            assert conn.recv(64) == b"published"
    finally:
        ovl.delete_all()


def _forwards(c: Cloud, host: str, mac: str) -> str | None:
    """The underlay address ``host`` forwards ``mac`` to (None: no tunnel entry for it)."""
    for line in _entries(c, host).splitlines():
        if line.startswith(f"{mac} ") and " dst " in line:
            return line.split(" dst ")[1].split()[0]
    return None


def test_an_evacuated_container_keeps_its_address_and_its_neighbours_follow(ovl: Cloud) -> None:
    gone, *stay = _run(ovl, hosts=[s.name for s in SPECS], auto_heal=True)
    assert gone.host == "ovl-1"
    dead, engine = ovl.agents["ovl-1"], ovl.engines["ovl-1"]
    try:
        # The host goes down: its agent and its engine (and so its containers) stop.
        dead.stop()
        engine.halt()
        ovl.force_down("ovl-1")
        r = ovl.call("POST", "/hosts/ovl-1/evacuate")
        assert r.status_code == 202, r.text
        target = r.json()["moved"][gone.uuid]
        assert target in ("ovl-2", "ovl-3"), r.json()
        ovl.wait_status([gone.uuid], "Running")
        moved = Box(ovl, gone.uuid)
        assert (moved.host, moved.ip, moved.network) == (target, gone.ip, gone.network)
        # The neighbour on the third host now tunnels to the new host; the new host's
        # own entry for it went (it is local there now).
        (far,) = [b for b in stay if b.host != target]
        new_ip = ovl.engines[target].host.address  # type: ignore[union-attr]
        wait_until(lambda: _forwards(ovl, far.host, moved.mac) == new_ip, 15, "far to follow")
        wait_until(lambda: _forwards(ovl, target, moved.mac) is None, 15, "no tunnel to itself")
        with moved.serving(7000):
            for b in stay:
                assert b.ping(moved), f"{b.host} cannot ping the moved container"
                assert b.client("tcp", moved, 7000) == "ok", b.host
                assert b.client("udp", moved, 7000) == "ok 100", b.host
    finally:
        engine.resume()
        dead.start()
        ovl.force_down("ovl-1", down=False)
        ovl.wait_up("ovl-1")
    # The returning host removes its stale copy: the container runs on its new host only.
    wait_until(lambda: ovl.runs_on(gone.uuid) == [target], 30, "ovl-1 to drop its stale copy")
    ovl.delete_all()
