"""Extra Docker engines on this machine, for multi-host tests.

``docker_hosts(names)`` starts one extra ``dockerd`` per name, each with its
own ``--data-root``, ``--exec-root``, socket and pidfile in a fresh directory
under /tmp, its own containerd, and its own Linux bridge: created here
(``brth<pid><n>``, a free ``10.213.N.0/24``) and handed over with
``--bridge``, with ``--iptables=false --ip-masq=false --ip-forward=false``,
so the daemon changes no iptables rule and no sysctl. (Not ``--bridge=none``:
a daemon started with it deletes the host's ``docker0``, the main engine's
bridge, as moby's ``removeDefaultBridgeInterface`` does; the fixture checks
that ``docker0`` survives.) The containers get addresses on that bridge and
no route out, which the tests do not need. The test image (and any others
asked for) is copied in from the main engine (``docker save`` | ``docker load``).
On exit every container is removed, each daemon stopped (SIGTERM, then SIGKILL, its containerd too),
mounts left under its directory unmounted, the directory deleted and the
bridge removed.

With ``netns`` (``tests/functional/underlay.py``), each daemon runs inside its
test host's own network namespace instead, as on a real host: iptables, IP
masquerading and its default bridge on (all inside that namespace), and no
bridge made here.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors

from tests.functional.docker_engine import TEST_IMAGE, remove_owned_networking
from tests.functional.underlay import NetHost

__all__ = ["Dockerd", "docker_hosts", "wait_until"]

T = TypeVar("T")
LABEL_UUID = "berth.uuid"
_DOCKERD_FLAGS = ["--iptables=false", "--ip-masq=false", "--ip-forward=false", "--log-level=warn"]


def wait_until(check: Callable[[], T | None], timeout: float, what: str, poll: float = 0.2) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(poll)


@dataclass
class Dockerd:
    """One extra Docker engine: its directory, bridge, process and client."""

    name: str
    root: Path
    bridge: str  # "" on a test host of its own (its bridges live and die in its namespace)
    proc: subprocess.Popen[bytes]
    host: NetHost | None = None
    argv: list[str] = field(default_factory=list)  # how it was started (``resume``)
    _client: Any = None

    @property
    def url(self) -> str:
        return f"unix://{self.root / 'docker.sock'}"

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = docker.APIClient(base_url=self.url, version="auto", timeout=60)
        return self._client

    def berth_containers(self) -> dict[str, list[dict[str, Any]]]:
        """This engine's Berth containers (any state), by Berth UUID."""
        found: dict[str, list[dict[str, Any]]] = {}
        for c in self.client.containers(all=True, filters={"label": LABEL_UUID}):
            found.setdefault(c["Labels"][LABEL_UUID], []).append(c)
        return found

    def answers(self) -> bool:
        with contextlib.suppress(Exception):
            return bool(docker.APIClient(base_url=self.url, timeout=2).ping())
        return False

    def halt(self) -> None:
        """Stop the daemon as a host losing power would: its containers are killed, its
        data stays (``resume`` starts it again on the same directory)."""
        if self.proc.poll() is None:
            with contextlib.suppress(Exception):
                for c in self.client.containers():
                    self.client.kill(c["Id"])
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        _kill_pidfile(self.root / "exec" / "containerd" / "containerd.pid")
        if self._client is not None:
            self._client.close()
            self._client = None

    def resume(self) -> None:
        """Start a halted daemon again, as it was started; wait until it answers."""
        if self.proc.poll() is None:
            return
        self.proc = _popen(self.root, self.argv)
        wait_until(lambda: self.answers() or _dead(self), 60, f"dockerd {self.name} to answer")

    def stop(self) -> None:
        """Remove every container, stop the daemon and its containerd, delete the directory."""
        links: list[str] = []
        if self.proc.poll() is None:
            with contextlib.suppress(Exception):
                for c in self.client.containers(all=True):
                    self.client.remove_container(c["Id"], force=True, v=True)
            links = self._remove_networks()
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self._client is not None:
            self._client.close()
        _kill_pidfile(self.root / "exec" / "containerd" / "containerd.pid")
        _unmount_under(self.root)
        shutil.rmtree(self.root, ignore_errors=True)
        # A stopped dockerd leaves its user-defined networks' bridges in the kernel,
        # each holding one of Docker's default address pools (31 in all): leaked,
        # they starve the main engine ("could not find an available, non-overlapping
        # IPv4 address pool") for the rest of the machine's life.
        if self.host is None:
            for link in [self.bridge, *links]:
                _ip("link", "del", link, check=False)

    def _remove_networks(self) -> list[str]:
        """Remove this engine's own networks; the bridge interfaces they had."""
        links = []
        with contextlib.suppress(Exception):
            for net in self.client.networks():
                if net["Name"] in ("bridge", "host", "none") or net["Driver"] != "bridge":
                    continue
                options = net.get("Options") or {}
                name = options.get("com.docker.network.bridge.name")
                links.append(name or f"br-{net['Id'][:12]}")
                with contextlib.suppress(Exception):
                    self.client.remove_network(net["Id"])
        return links


def _kill_pidfile(path: Path) -> None:
    """End the process named by ``path`` (a containerd this fixture's daemon started).

    Only if its command line names our directory: a stale pidfile's number
    may belong to someone else's process by now.
    """
    with contextlib.suppress(OSError, ValueError):
        pid = int(path.read_text().strip())
        if str(path.parent) not in Path(f"/proc/{pid}/cmdline").read_text(errors="replace"):
            return
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            os.kill(pid, 0)  # raises once it is gone
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)


def _unmount_under(root: Path) -> None:
    prefix = str(root.resolve()) + "/"
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for point in sorted((m for m in mounts if m.startswith(prefix)), reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def _ip(*args: str, check: bool = True) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and done.returncode:
        raise AssertionError(f"ip {' '.join(args)} failed: {done.stderr}")
    return done.stdout


def _make_bridge(index: int) -> str:
    """A new Linux bridge with a free 10.213.N.1/24 address; its name."""
    name = f"brth{os.getpid() % 100000}{index}"[:15]
    # Test processes running side by side (pytest-xdist) pick subnets one at a time.
    with open("/tmp/berth-test-bridges.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        taken = _ip("-4", "addr") + _ip("-4", "route")
        subnet = next(n for n in range(1, 255) if f"10.213.{n}." not in taken)
        _ip("link", "add", "name", name, "type", "bridge")
        _ip("addr", "add", f"10.213.{subnet}.1/24", "dev", name)
    _ip("link", "set", name, "up")
    return name


def _start_dockerd(name: str, root: Path, bridge: str, host: NetHost | None = None) -> Dockerd:
    root.mkdir(parents=True)
    if host is None:
        where: list[str] = []
        network = [f"--bridge={bridge}", *_DOCKERD_FLAGS]
    else:
        where = host.prefix
        network = [
            # Its own containerd namespace: the daemons share the machine's containerd
            # binary and must not see each other's containers.
            f"--containerd-namespace={host.name}",
            f"--containerd-plugins-namespace={host.name}-plugins",
            f"--bip=172.31.{240 + host.index}.1/24",
            "--log-level=warn",
        ]
    argv = [
        *where,
        "dockerd",
        f"--data-root={root / 'data'}",
        f"--exec-root={root / 'exec'}",
        f"--host=unix://{root / 'docker.sock'}",
        f"--pidfile={root / 'docker.pid'}",
        *network,
    ]
    return Dockerd(name, root, bridge, _popen(root, argv), host, argv)


def _popen(root: Path, argv: list[str]) -> subprocess.Popen[bytes]:
    with (root / "dockerd.log").open("ab") as log:
        return subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C of the tests reaches it through stop() only
        )


@contextlib.contextmanager
def docker_hosts(
    names: list[str],
    main_engine: Any,
    netns: dict[str, NetHost] | None = None,
    images: tuple[str, ...] = (),
) -> Iterator[dict[str, Dockerd]]:
    """One extra dockerd per name (started at once), each holding the test image and
    ``images`` (from the main engine); inside ``netns[name]``'s network namespace when given."""
    base = Path(tempfile.mkdtemp(prefix="bmh-", dir="/tmp"))  # short: socket paths
    engines: dict[str, Dockerd] = {}
    had_docker0 = Path("/sys/class/net/docker0").exists()
    # The agents of these hosts write iptables jumps on the one kernel; a jump
    # left behind (an agent stopped before it cleared, an interrupted run) would
    # filter whichever later container gets its address, on any engine.
    for name in names:
        remove_owned_networking(main_engine, name)
    try:
        for i, name in enumerate(names):
            if netns is not None:
                engines[name] = _start_dockerd(name, base / name, "", netns[name])
                continue
            bridge = _make_bridge(i)
            try:
                engines[name] = _start_dockerd(name, base / name, bridge)
            except BaseException:
                _ip("link", "del", bridge, check=False)
                raise
        archives = [b"".join(main_engine.get_image(name)) for name in (TEST_IMAGE, *images)]
        for engine in engines.values():
            wait_until(
                lambda e=engine: e.answers() or _dead(e), 60, f"dockerd {engine.name} to answer"
            )
            for archive in archives:
                engine.client.load_image(archive)
        yield engines
    finally:
        for engine in engines.values():
            engine.stop()
        shutil.rmtree(base, ignore_errors=True)
        for name in names:
            remove_owned_networking(main_engine, name)
    if had_docker0:  # the main engine's bridge must survive its neighbours
        assert Path("/sys/class/net/docker0").exists(), "an extra dockerd removed docker0"


def _dead(engine: Dockerd) -> bool:
    if engine.proc.poll() is not None:
        log = (engine.root / "dockerd.log").read_text(errors="replace")
        raise AssertionError(f"dockerd {engine.name} exited:\n{log[-3000:]}")
    return False
