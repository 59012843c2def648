"""Separate network hosts on one machine: a network namespace each, on an underlay switch.

A test host made here is apart from the others at the network level: its own
namespace with its own addresses, routes and iptables, one veth to the
underlay. The underlay switch is a Linux bridge inside a namespace of its own
(``bt-sw``), so the machine's iptables (Docker's FORWARD policy DROP on the
real host) never see underlay traffic. The machine itself (the root namespace,
where the tests and berth-api run) is on the switch too, at ``10.251.0.1``;
host *n* is ``10.251.0.1n`` and calls its underlay interface ``eth0``.

Processes enter a host with ``nsenter --net`` only: ``ip netns exec`` would
also unshare the mount namespace and remount ``/sys``, and a dockerd started
that way finds no cgroup hierarchy ("Devices cgroup isn't mounted").

Everything stays on this machine: a private /24 on veth pairs.
"""

from __future__ import annotations

import contextlib
import fcntl
import subprocess
from collections.abc import Iterator
from pathlib import Path

__all__ = ["GATEWAY", "NetHost", "nsenter", "underlay"]

SWITCH = "bt-sw"
_BRIDGE = "br0"
_ROOT_LINK = "bt-root"
GATEWAY = "10.251.0.1"  # the machine (root namespace) on the underlay
_PREFIX = 24
_NETNS = Path("/var/run/netns")
_LOCK = "/tmp/berth-test-underlay.lock"


def _run(*cmd: str, check: bool = True) -> str:
    done = subprocess.run(list(cmd), capture_output=True, text=True, check=False)
    if check and done.returncode:
        raise AssertionError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr}")
    return done.stdout


def nsenter(netns: str) -> list[str]:
    """The command prefix that runs a program in network namespace ``netns`` (only)."""
    return ["nsenter", f"--net={_NETNS / netns}"]


class NetHost:
    """Test host ``bt-h<n>`` at ``10.251.0.1<n>`` on the underlay."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.name = f"bt-h{index}"
        self.address = f"10.251.0.{10 + index}"

    @property
    def prefix(self) -> list[str]:
        """Put this before a command to run it on this host."""
        return nsenter(self.name)

    def sh(self, *cmd: str, check: bool = True) -> str:
        """Run ``cmd`` on this host; its stdout."""
        return _run(*self.prefix, *cmd, check=check)

    def plug(self) -> None:
        _run("ip", "netns", "add", self.name)
        outer, inner = f"{self.name}-sw", f"{self.name}-u"
        _run("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
        _run("ip", "link", "set", outer, "netns", SWITCH)
        _run(*nsenter(SWITCH), "ip", "link", "set", outer, "master", _BRIDGE, "up")
        _run("ip", "link", "set", inner, "netns", self.name)
        self.sh("ip", "link", "set", inner, "name", "eth0")
        self.sh("ip", "addr", "add", f"{self.address}/{_PREFIX}", "dev", "eth0")
        self.sh("ip", "link", "set", "eth0", "up")
        self.sh("ip", "link", "set", "lo", "up")
        self.sh("ip", "route", "add", "default", "via", GATEWAY)

    def unplug(self) -> None:
        """The namespace goes, and with it every interface and bridge made inside it."""
        unplug(self.name)


def unplug(name: str) -> None:
    if (_NETNS / name).exists():
        _run("ip", "netns", "del", name, check=False)
    if (_NETNS / SWITCH).exists():
        _run(*nsenter(SWITCH), "ip", "link", "del", f"{name}-sw", check=False)


def _switch_up() -> None:
    if not (_NETNS / SWITCH).exists():
        _run("ip", "netns", "add", SWITCH)
        sw = nsenter(SWITCH)
        _run(*sw, "ip", "link", "add", _BRIDGE, "type", "bridge")
        _run(*sw, "ip", "link", "set", _BRIDGE, "up")
    if not Path("/sys/class/net", _ROOT_LINK).exists():
        _run("ip", "link", "add", _ROOT_LINK, "type", "veth", "peer", "name", "root-sw")
        _run("ip", "link", "set", "root-sw", "netns", SWITCH)
        _run(*nsenter(SWITCH), "ip", "link", "set", "root-sw", "master", _BRIDGE, "up")
        _run("ip", "addr", "add", f"{GATEWAY}/{_PREFIX}", "dev", _ROOT_LINK)
        _run("ip", "link", "set", _ROOT_LINK, "up")


def _switch_down() -> None:
    _run("ip", "link", "del", _ROOT_LINK, check=False)
    for entry in _NETNS.glob("bt-h*") if _NETNS.exists() else []:
        unplug(entry.name)
    if (_NETNS / SWITCH).exists():
        _run("ip", "netns", "del", SWITCH, check=False)


@contextlib.contextmanager
def underlay(count: int) -> Iterator[list[NetHost]]:
    """``count`` test hosts on a fresh switch (one user at a time); all removed afterwards."""
    with open(_LOCK, "w") as lock:
        # One underlay per machine: test processes running side by side wait here.
        fcntl.flock(lock, fcntl.LOCK_EX)
        _switch_down()  # what a killed earlier run left behind
        _switch_up()
        hosts = [NetHost(i + 1) for i in range(count)]
        try:
            for host in hosts:
                host.plug()
            yield hosts
        finally:
            for host in hosts:
                host.unplug()
            _switch_down()
