"""Networks and security groups: the stock ``openstack`` CLI, a live Berth, the real engine.

Two projects on one host. Real traffic between real containers (busybox
``httpd`` answering, ``nc`` asking): containers of a project reach each other
over their project network, another project's cannot; a security group lets
in only what its rules allow; ``--expose-port`` publishes a port on the host
without dropping the container's other groups. One set of containers serves
the whole module, once per runtime (tests/compat/conftest.py).
"""

from __future__ import annotations

import functools
import json
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.compat.oscli import ADMIN_PASSWORD, Cli
from tests.compat.runtimes import EngineView
from tests.functional.podman_engine import isolated_podman_container
from tests.live import all_in_one_env, live_server

pytestmark = [pytest.mark.compat, pytest.mark.docker, pytest.mark.slow]

PW = "member-pw-123"
SERVE = "echo hi > /tmp/index.html; httpd -p 9000 -h /tmp; exec httpd -f -p 8000 -h /tmp"


class World:
    def __init__(self, cli: Cli, engine: EngineView, host: str) -> None:
        self.cli, self.engine, self.host = cli, engine, host
        self.uuids: dict[str, str] = {}

    def show(self, name: str) -> Any:
        """The container as the API shows it (quicker than the CLI, for polling)."""
        return self.api("GET", f"/containers/{self.uuids[name]}").json()

    def alice(self, *args: str, **kw: Any) -> Any:
        return self.cli.run(*args, user="alice", password=PW, project="team-a", **kw)

    def alice_json(self, *args: str) -> Any:
        return self.cli.json(*args, user="alice", password=PW, project="team-a")

    def bob(self, *args: str, **kw: Any) -> Any:
        return self.cli.run(*args, user="bob", password=PW, project="team-b", **kw)

    def api(self, method: str, path: str, user: str = "alice", **kw: Any) -> httpx.Response:
        """``method path`` on the container API as ``user``, direct (a token kept per user,
        taken from the identity API: a CLI ``token issue`` cost a second or more each)."""
        project = "team-a" if user == "alice" else "team-b"
        return self.cli.rest(
            method, f"/container/v1{path}", user=user, password=PW, project=project, **kw
        )

    def run(self, who: Callable[..., Any], name: str, *args: str) -> str:
        """``openstack appcontainer run`` (not waiting: ``running`` waits for them all)."""
        out = who("appcontainer", "run", "-f", "json", "--name", name, *args)
        uid: str = json.loads(out.stdout)["uuid"]
        self.uuids[name] = uid
        return uid

    def run_api(self, user: str, name: str, command: list[str]) -> None:
        body = {"name": name, "image": "berth-test/busybox", "command": command}
        r = self.api("POST", "/containers?run=true", user=user, json=body)
        assert r.status_code == 202, r.text
        self.uuids[name] = r.json()["uuid"]

    def running(self) -> None:
        for name in self.uuids:
            user = "bob" if name.startswith("b-") else "alice"
            get = functools.partial(self.api, "GET", f"/containers/{self.uuids[name]}", user)
            wait_for(lambda get=get: get().json()["status"], lambda s: s == "Running", 60)

    def ip(self, name: str) -> str:
        shown = wait_for(lambda: self.show(name), lambda s: bool(s["addresses"]))
        return str(next(iter(shown["addresses"].values()))[0]["addr"])

    def fetch(self, client: str, address: str, port: int, wait: int = 2) -> str:
        """What ``client`` gets from ``address:port`` over HTTP ('' when it cannot connect
        within ``wait`` seconds: a filtered port drops the SYN, so nc waits it out)."""
        request = f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w {wait} {address} {port}"
        return self.engine.exec(f"berth-{self.uuids[client]}", ["sh", "-c", request])


def wait_for(get: Callable[[], Any], ok: Callable[[Any], bool], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    value = get()
    while not ok(value) and time.monotonic() < deadline:
        time.sleep(0.3)
        value = get()
    assert ok(value), value
    return value


def answers(w: World, client: str, address: str, port: int, expected: bool) -> None:
    """Wait until ``client`` can (or cannot) fetch from ``address:port``, then check once more.

    Where it must not answer, each look gives up after 1 s instead of 2: the filter drops
    the SYN, so every such look waits its whole timeout, while on this host's bridge an
    allowed connection is answered within milliseconds.
    """
    wait = 2 if expected else 1
    wait_for(lambda: "hi" in w.fetch(client, address, port, wait), lambda got: got == expected)
    assert ("hi" in w.fetch(client, address, port, wait)) == expected


def network_list(w: World, name: str) -> Any:
    """``containers.network_list`` of an unmodified zunclient logged in as alice."""
    return w.cli.zun_library(
        f"[n.to_dict() for n in zun.containers.network_list({name!r})]",
        user="alice",
        password=PW,
        project="team-a",
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, engine: EngineView) -> Iterator[World]:
    work = tmp_path_factory.mktemp("compat-networks")
    host = f"compat-net-{uuid.uuid4().hex[:8]}"
    env = all_in_one_env(
        work,
        host,
        ADMIN_PASSWORD,
        BERTH_NETWORK_IDLE_SECONDS="0",  # the bridge goes with its last container
        **engine.settings,
    )
    try:
        with live_server(env) as base_url:
            cli = Cli(base_url, work)
            for project, user in (("team-a", "alice"), ("team-b", "bob")):
                cli.add_member(project, user, PW)
            w = World(cli, engine, host)
            web = w.api("POST", "/security_groups", json={"security_group": {"name": "web"}})
            assert web.status_code == 201, web.text
            gid = web.json()["security_group"]["id"]
            body = {"security_group_rule": {"protocol": "tcp", "port_range_min": 8000}}
            assert w.api("POST", f"/security_groups/{gid}/rules", json=body).status_code == 201
            image = "berth-test/busybox"
            w.run(w.alice, "a-srv", "--security-group", "web", image, "sh", "-c", SERVE)
            w.run(w.alice, "a-pub", "--expose-port", "8000", image, "sh", "-c", SERVE)
            w.run_api("alice", "a-cli", ["sleep", "600"])
            w.run_api("bob", "b-cli", ["sleep", "600"])
            w.running()
            yield w
    finally:
        engine.remove_owned(host)


def test_addresses_and_network_list(world: World) -> None:
    w = world
    nets = w.api("GET", "/networks").json()["networks"]
    (default,) = nets
    shown = w.alice_json("appcontainer", "show", "a-srv")
    assert shown["networks"] == default["uuid"]
    address = w.ip("a-srv")
    info = w.engine.inspect(f"berth-{w.uuids['a-srv']}")
    engine_nets = info["NetworkSettings"]["Networks"]
    assert list(engine_nets) == [f"berth-net-{default['uuid']}"]
    assert engine_nets[f"berth-net-{default['uuid']}"]["IPAddress"] == address
    # `openstack appcontainer network list` itself fails on any non-empty list with
    # this osc-lib ("Invalid formatter provided": zunclient passes a plain function),
    # so the listing goes through the stock client library.
    listed = network_list(w, "a-srv")
    assert [(n["net_id"], n["fixed_ips"][0]["ip_address"]) for n in listed] == [
        (default["uuid"], address)
    ]
    # the other project has a network of its own, and cannot look at alice's
    bob_net = w.api("GET", "/networks", user="bob").json()["networks"][0]["uuid"]
    bob_info = w.engine.inspect(f"berth-{w.uuids['b-cli']}")
    assert list(bob_info["NetworkSettings"]["Networks"]) == [f"berth-net-{bob_net}"]
    assert w.bob("appcontainer", "network", "list", "a-srv", check=False).returncode != 0


def test_projects_are_isolated_from_each_other(world: World) -> None:
    w = world
    srv = w.ip("a-srv")
    answers(w, "a-cli", srv, 8000, True)  # same project: over the project network
    answers(w, "b-cli", srv, 8000, False)  # another project: no route in
    answers(w, "b-cli", w.ip("a-cli"), 8000, False)
    if w.engine.runtime == "podman":
        # Another Podman user's container on an isolated network of its own starts and
        # exits: netavark 1.4 then drops its own isolation; Berth's holds.
        with isolated_podman_container(f"berth-probe-{w.host}"):
            pass
        answers(w, "b-cli", srv, 8000, False)
        answers(w, "a-cli", srv, 8000, True)


def test_security_groups_let_in_only_what_they_allow(world: World) -> None:
    w = world
    srv = w.ip("a-srv")
    answers(w, "a-cli", srv, 8000, True)  # group web allows tcp/8000
    answers(w, "a-cli", srv, 9000, False)  # nothing allows 9000
    out = w.alice("appcontainer", "add", "security", "group", "a-srv", "default").stdout
    assert "accepted" in out
    answers(w, "a-cli", srv, 9000, True)  # default: members reach each other
    assert len(w.show("a-srv")["security_groups"]) == 2
    w.alice("appcontainer", "remove", "security", "group", "a-srv", "default")
    answers(w, "a-cli", srv, 9000, False)
    answers(w, "a-cli", srv, 8000, True)
    # another project can neither change alice's container nor use her group
    out = w.bob("appcontainer", "add", "security", "group", "a-srv", "default").stdout
    assert "failed" in out
    out = w.bob("appcontainer", "add", "security", "group", "b-cli", "web").stdout
    assert "failed" in out and "web" in out


def test_expose_port_publishes_and_keeps_the_other_groups(world: World) -> None:
    w = world
    shown = wait_for(lambda: w.show("a-pub"), lambda s: bool(s["ports"]))
    (host_port,) = shown["ports"]
    groups = shown["security_groups"]
    # As Zun's _process_exposed_ports: the exposed-port group alone (no default group).
    assert len(groups) == 1
    with socket.create_connection(("127.0.0.1", host_port), timeout=5) as conn:
        conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
        reply = b""
        while chunk := conn.recv(4096):  # HTTP/1.0: the server closes when done
            reply += chunk
    assert reply.endswith(b"hi\n")
    pub = w.ip("a-pub")
    answers(w, "a-cli", pub, 8000, True)
    answers(w, "a-cli", pub, 9000, False)  # only the exposed ports, members included
    answers(w, "b-cli", pub, 8000, False)  # another project: not even to an exposed port
    w.alice("appcontainer", "add", "security", "group", "a-pub", "web")
    after = w.show("a-pub")["security_groups"]
    assert after[:1] == groups and len(after) == 2


def test_network_attach_and_detach(world: World) -> None:
    w = world
    r = w.api("POST", "/networks", json={"name": "backend"})
    assert r.status_code == 200, r.text
    backend = r.json()["uuid"]
    out = w.alice("appcontainer", "network", "attach", "--network", "backend", "a-cli").stdout
    assert "accepted" in out
    shown = wait_for(lambda: w.show("a-cli"), lambda s: backend in s["addresses"])
    assert len(shown["addresses"]) == 2
    assert backend in [n["net_id"] for n in network_list(w, "a-cli")]
    info = w.engine.inspect(f"berth-{w.uuids['a-cli']}")
    assert f"berth-net-{backend}" in info["NetworkSettings"]["Networks"]
    # bob can neither attach to alice's network nor touch her container
    out = w.bob("appcontainer", "network", "attach", "--network", "backend", "b-cli").stdout
    assert "failed" in out and "could not be found" in out
    out = w.bob("appcontainer", "network", "attach", "--network", "default", "a-cli").stdout
    assert "failed" in out

    # --net network=<name> at create; an unknown one is refused with the reason
    w.run(w.alice, "a-net", "--net", "network=backend", "berth-test/busybox", "sh", "-c", SERVE)
    shown = wait_for(lambda: w.show("a-net"), lambda s: bool(s["addresses"]))
    assert list(shown["addresses"]) == [backend]
    answers(w, "a-cli", w.ip("a-net"), 9000, True)  # over backend, as a default-group member
    bad = w.alice("appcontainer", "run", "--net", "network=nope", "berth-test/busybox",
                  check=False)  # fmt: skip
    assert bad.returncode != 0 and "Network nope could not be found" in bad.stderr
    w.alice("appcontainer", "delete", "--stop", "a-net")

    w.alice("appcontainer", "network", "detach", "--network", "backend", "a-cli")
    wait_for(lambda: w.show("a-cli"), lambda s: backend not in s["addresses"])
    # nobody uses the network any more: the host removes its bridge
    wait_for(lambda: w.engine.network_exists(f"berth-net-{backend}"), lambda there: not there)
    # a-net holds the network until its host reports it gone (the bridge can go first)
    gone = f"/containers/{w.uuids['a-net']}"
    wait_for(lambda: w.api("GET", gone).status_code, lambda status: status == 404)
    r = w.api("DELETE", f"/networks/{backend}")
    assert r.status_code == 204, r.text


def test_delete_removes_the_chain_and_the_exposed_group(world: World) -> None:
    w = world
    uid = w.uuids["a-pub"]
    chain = "BRT-" + uid.replace("-", "")[:24]
    assert chain in iptables_rules()  # filtered while it runs
    groups_before = w.show("a-pub")["security_groups"]
    w.alice("appcontainer", "delete", "--stop", "a-pub")
    wait_for(lambda: w.api("GET", f"/containers/{uid}").status_code, lambda s: s == 404, 60)
    wait_for(iptables_rules, lambda rules: chain not in rules)
    groups = w.api("GET", "/security_groups").json()["security_groups"]
    # the exposed-port group went with the container; the group added by name stays
    assert [g["name"] for g in groups if g["id"] in groups_before] == ["web"]


def iptables_rules() -> str:
    return subprocess.run(["iptables", "-w", "-S"], capture_output=True, text=True).stdout
