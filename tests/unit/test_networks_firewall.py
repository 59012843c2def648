"""Security groups as iptables rules, and the agent's network plan: pure, no I/O."""

from __future__ import annotations

import asyncio

import pytest

from berth import errors
from berth.agent.diff import Connect, Disconnect, plan
from berth.agent.firewall import FirewallSync, ipv4_addresses
from berth.domain.hostsync import DesiredContainer, IngressRule, NetworkRef, PublishedPort
from berth.networks import FirewallRule, chain_name, chain_rules, resolve_ingress
from berth.networks.base import network_id_of, network_name
from berth.runtimes import dockermap
from berth.runtimes.base import RuntimeContainer


def test_remote_groups_resolve_to_their_members_on_this_host() -> None:
    ingress = [
        IngressRule(remote_group="g-default"),
        IngressRule("TCP", 80, None, "0.0.0.0/0"),
        IngressRule("udp", 5000, 5010, "10.1.0.0/16"),
        IngressRule("icmp", 8, 8),  # ports mean nothing to icmp
        IngressRule("tcp", 22, 22, remote_group="g-empty"),  # no member here: allows nothing
    ]
    rules = resolve_ingress(ingress, {"g-default": ["172.20.0.3", "172.20.0.2", "172.20.0.3"]})
    assert rules == [
        FirewallRule(None, None, None, ("172.20.0.2/32", "172.20.0.3/32")),
        FirewallRule("tcp", 80, 80, None),
        FirewallRule("udp", 5000, 5010, ("10.1.0.0/16",)),
        FirewallRule("icmp", None, None, None),
    ]


def test_a_chain_returns_replies_and_allowed_traffic_and_drops_the_rest() -> None:
    chain = chain_name("0b99fa09-ce8c-44e5-8b01-40a30083cd65")
    assert chain == "BRT-0b99fa09ce8c44e58b0140a3" and len(chain) <= 28
    lines = chain_rules(chain, [FirewallRule("tcp", 80, 81, ("10.0.0.0/8", "192.168.0.0/16"))])
    assert lines == [
        ["-A", chain, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "RETURN"],
        ["-A", chain, "-p", "tcp", "--dport", "80:81", "-s", "10.0.0.0/8", "-j", "RETURN"],
        ["-A", chain, "-p", "tcp", "--dport", "80:81", "-s", "192.168.0.0/16", "-j", "RETURN"],
        ["-A", chain, "-j", "DROP"],
    ]
    assert chain_rules(chain, [])[-1] == ["-A", chain, "-j", "DROP"]


def test_network_names_round_trip() -> None:
    assert network_id_of(network_name("abc")) == "abc"
    assert network_id_of("bridge") is None


def _desired(uuid: str, groups: list[str], ingress: list[IngressRule] | None) -> DesiredContainer:
    return DesiredContainer(
        uuid=uuid,
        name=uuid,
        project_id="p",
        image="i",
        desired_state="running",
        spec_version=1,
        networks=[NetworkRef("n1", "default", "p")],
        security_groups=groups,
        ingress=ingress,
    )


def test_the_agent_filters_running_members_and_resolves_groups_from_what_runs() -> None:
    sync = FirewallSync(networks=None)  # type: ignore[arg-type]  # wanted() does no I/O
    web = [IngressRule("tcp", 80, 80, None)]
    sync.desired(
        {
            "a": _desired("a", ["default"], [IngressRule(remote_group="default")]),
            "b": _desired("b", ["default", "web"], web),
            "c": _desired("c", [], None),  # no groups: not filtered at all
            "d": _desired("d", ["default"], []),  # does not run: nothing to filter
        }
    )
    sync.addresses("a", {"n1": [{"addr": "172.20.0.2", "version": 4}]}, state="running")
    sync.addresses("b", {"n1": [{"addr": "172.20.0.3", "version": 4}]}, state="running")
    sync.addresses("c", {"n1": [{"addr": "172.20.0.4", "version": 4}]}, state="running")
    sync.addresses("d", {"n1": [{"addr": "172.20.0.5", "version": 4}]}, state=None)
    wanted = sync.wanted()
    assert set(wanted) == {"a", "b"}
    assert wanted["a"] == (
        ("172.20.0.2",),
        (FirewallRule(None, None, None, ("172.20.0.2/32", "172.20.0.3/32")),),
    )
    assert wanted["b"] == (("172.20.0.3",), (FirewallRule("tcp", 80, 80, None),))
    assert ipv4_addresses({"x": [{"addr": "fe80::1", "version": 6}]}) == []


def test_plan_connects_and_disconnects_berth_networks_only() -> None:
    desired = _desired("a", [], None)
    desired.networks = [NetworkRef("n1", "default", "p"), NetworkRef("n2", "backend", "p")]
    observed = RuntimeContainer(
        uuid="a",
        runtime_id="r",
        state="running",
        status_detail="Up",
        spec_version=1,
        networks=[network_name("n1"), network_name("old"), "bridge"],
        started_at="2026-01-01T00:00:00+00:00",
    )
    steps = plan(desired, observed)
    assert steps == [Connect(NetworkRef("n2", "backend", "p")), Disconnect("old")]
    desired.networks = []  # no network driver on this host: nothing to do
    assert plan(desired, observed) == []


def test_docker_create_joins_the_first_network_and_publishes_ports() -> None:
    spec = _desired("a", ["g"], [])
    spec.published_ports = [PublishedPort(8000), PublishedPort(53, "udp")]
    config, host = dockermap.create_params(spec, "owner")
    assert host["network_mode"] == network_name("n1")
    assert config["ports"] == [(8000, "tcp"), (53, "udp")]
    assert host["port_bindings"] == {"8000/tcp": None, "53/udp": None}
    listing = {
        "Id": "x",
        "State": "running",
        "Labels": {"berth.uuid": "a"},
        "NetworkSettings": {"Networks": {network_name("n1"): {"IPAddress": "172.20.0.2"}}},
        "Ports": [
            {"IP": "0.0.0.0", "PrivatePort": 8000, "PublicPort": 32768, "Type": "tcp"},
            {"IP": "::", "PrivatePort": 8000, "PublicPort": 32768, "Type": "tcp"},
            {"PrivatePort": 9000, "Type": "tcp"},
        ],
    }
    seen = dockermap.from_listing(listing)
    assert seen.published == {"8000/tcp": 32768} and seen.networks == [network_name("n1")]
    inspected = dockermap.from_inspect(
        {
            "Id": "x",
            "State": {"Status": "running", "Running": True},
            "Config": {"Labels": {"berth.uuid": "a"}},
            "NetworkSettings": {
                "Networks": listing["NetworkSettings"]["Networks"],  # type: ignore[index]
                "Ports": {
                    "8000/tcp": [{"HostIp": "0.0.0.0", "HostPort": "32768"}],
                    "9000/tcp": None,
                },
            },
        }
    )
    assert inspected.published == {"8000/tcp": 32768}


class _Pruner:
    """A network driver that only records what ``prune`` was asked to keep."""

    def __init__(self) -> None:
        self.kept: list[set[str]] = []

    async def prune(self, keep: set[str]) -> list[str]:
        self.kept.append(set(keep))
        return []

    async def firewalled(self) -> set[str]:
        return set()

    async def program(self, remote: object) -> None:
        pass


async def test_a_network_outlives_its_last_container_for_the_idle_time() -> None:
    now = [0.0]
    driver = _Pruner()
    sync = FirewallSync(driver, idle=300.0, clock=lambda: now[0])  # type: ignore[arg-type]
    sync.desired({"c1": _desired("c1", [], None)})
    await sync.sync()
    assert driver.kept == [{"n1"}]
    sync.desired({})  # its last container went
    now[0] = 60.0
    await sync.sync()  # too soon to ask the engine again
    now[0] = 100.0
    await sync.sync()
    assert driver.kept == [{"n1"}, {"n1"}]  # kept: a new container may come back
    now[0] = 301.0
    await sync.sync()
    assert driver.kept[-1] == set()  # idle long enough: removed


async def test_a_wanted_network_is_never_pruned_even_without_idle_time() -> None:
    driver = _Pruner()
    sync = FirewallSync(driver, idle=0.0, clock=lambda: 5.0)  # type: ignore[arg-type]
    sync.desired({"c1": _desired("c1", [], None)})
    await sync.sync()
    assert driver.kept == [{"n1"}]
    sync.desired({})
    await sync.sync()
    assert driver.kept[-1] == set()


class _Recorder:
    """A network driver that records each firewall write; ``bad`` uuids make a write fail."""

    def __init__(self, bad: set[str] | None = None) -> None:
        self.writes: list[dict[str, object]] = []
        self.bad = bad or set()
        self.filtered = {"gone"}  # a leftover of an earlier run of this agent
        self.programmed: list[object] = []

    async def write_firewalls(self, changes: dict[str, object]) -> None:
        if self.bad & changes.keys():
            raise errors.BerthError(
                f"iptables-restore failed for {sorted(self.bad & changes.keys())}"
            )
        self.writes.append(dict(changes))
        for uuid, spec in changes.items():
            (self.filtered.discard if spec is None else self.filtered.add)(uuid)

    async def firewalled(self) -> set[str]:
        return set(self.filtered)

    async def prune(self, keep: set[str]) -> list[str]:
        return []

    async def program(self, remote: object) -> None:
        self.programmed.append(remote)


def _running(sync: FirewallSync, *uuids: str) -> None:
    for i, uuid in enumerate(uuids):
        sync.addresses(uuid, {"n1": [{"addr": f"172.20.0.{i + 2}", "version": 4}]}, state="running")


async def test_containers_that_started_together_are_filtered_in_one_write() -> None:
    driver = _Recorder()
    sync = FirewallSync(driver)  # type: ignore[arg-type]
    sync.desired({u: _desired(u, ["default"], []) for u in ("a", "b", "c")})
    _running(sync, "a", "b", "c")
    await sync.sync()
    # The leftover is swept in the same write as the three new chains.
    assert len(driver.writes) == 1 and set(driver.writes[0]) == {"a", "b", "c", "gone"}
    assert driver.writes[0]["gone"] is None
    await sync.sync()
    assert len(driver.writes) == 1  # nothing changed: nothing written
    sync.addresses("b", None, state=None)
    await sync.sync()
    assert driver.writes[-1] == {"b": None}


async def test_a_container_between_its_engine_restarts_keeps_its_chain() -> None:
    """A restart policy's container is listed ``restarting`` without an address between
    two runs, and the engine gives it the same address back: its chain stays through
    the gap (removed, the restarted container ran unfiltered until the next pass).
    Stopped for good (exited), it goes."""
    driver = _Recorder()
    sync = FirewallSync(driver)  # type: ignore[arg-type]
    sync.desired({u: _desired(u, ["default"], []) for u in ("a", "b")})
    _running(sync, "a", "b")
    await sync.sync()
    written = len(driver.writes)
    sync.addresses("a", None, state="restarting")
    sync.addresses("a", {}, state="restarting")
    await sync.sync()
    assert len(driver.writes) == written  # nothing removed
    sync.addresses("a", {"n1": [{"addr": "172.20.0.2", "version": 4}]}, state="running")
    await sync.sync()
    assert len(driver.writes) == written  # back on the same address: nothing to do
    sync.addresses("a", {"n1": [{"addr": "172.20.0.7", "version": 4}]}, state="restarting")
    await sync.sync()
    assert driver.writes[-1] == {"a": (("172.20.0.7",), ())}  # listed with a new one
    sync.addresses("a", {}, state="exited")
    await sync.sync()
    assert driver.writes[-1] == {"a": None}


async def test_one_bad_chain_does_not_hold_up_the_others() -> None:
    driver = _Recorder(bad={"b"})
    sync = FirewallSync(driver)  # type: ignore[arg-type]
    sync.desired({u: _desired(u, ["default"], []) for u in ("a", "b", "c")})
    _running(sync, "a", "b", "c")
    with pytest.raises(errors.BerthError, match=r"\['b'\]"):
        await sync.sync()
    assert sorted(u for w in driver.writes for u in w) == ["a", "c", "gone"]
    driver.bad.clear()
    await sync.sync()  # the retry writes only what is still missing
    assert driver.writes[-1].keys() == {"b"}


async def test_a_worker_settles_its_own_chain_at_once_and_only_once() -> None:
    driver = _Recorder()
    sync = FirewallSync(driver)  # type: ignore[arg-type]
    sync.desired({u: _desired(u, ["default"], []) for u in ("a", "b", "c")})
    address = {"n1": [{"addr": "172.20.0.9", "version": 4}]}
    await sync.settle("a", address, state="running")
    # Only a's chain, without waiting for the background sync (nor its sweep).
    assert driver.writes == [{"a": (("172.20.0.9",), ())}]
    await sync.settle("a", address, state="running")
    await sync.settle("c", None, state=None)  # not running: nothing to write
    await sync.settle("z", address, state="running")  # not desired here: nothing to write
    assert len(driver.writes) == 1
    await sync.sync()  # the background sync does not write it again
    assert [set(w) for w in driver.writes] == [{"a"}, {"gone"}]
    driver.bad.add("b")  # fails every time: tried a few times, then the error
    with pytest.raises(errors.BerthError, match="iptables-restore"):
        await sync.settle("b", {"n1": [{"addr": "172.20.0.10", "version": 4}]}, state="running")

    async def heal() -> None:
        await asyncio.sleep(0.05)
        driver.bad.clear()

    healing = asyncio.create_task(heal())  # fails once, then passes: written all the same
    await sync.settle("b", {"n1": [{"addr": "172.20.0.11", "version": 4}]}, state="running")
    await healing
    assert driver.writes[-1] == {"b": (("172.20.0.11",), ())}


def test_host_ports_parse_and_registries_open_their_port() -> None:
    from berth.networks.hostguard import HostPort, allowed_host_ports, parse_host_port

    assert parse_host_port(5000) == HostPort(5000)
    assert parse_host_port(" 53/UDP") == HostPort(53, "udp")
    for bad in ("0", "65536", "22/sctp", "ssh", ""):
        with pytest.raises(ValueError, match="not a host port"):
            parse_host_port(bad)
    registries = ["172.17.0.1:5000", "registry.local", "[fd00::1]:5001", "fd00::2"]
    assert allowed_host_ports(["53/udp", "5000"], registries) == [
        HostPort(53, "udp"),
        HostPort(443),
        HostPort(5000),
        HostPort(5001),
    ]


def test_the_host_guard_is_written_whole_and_only_what_differs_moves() -> None:
    from berth.networks.hostguard import HostPort, bridge_name, guard_chain, guard_lines

    chain = guard_chain("h1")
    assert len(chain) <= 28 and chain != guard_chain("h2")
    assert len(bridge_name("h1", "n1")) <= 15  # Linux interface names
    assert bridge_name("h1", "n1") != bridge_name("h2", "n1")  # two engines on one kernel
    present = {"brt-a": "n1", "brt-x": "n9"}
    lines = guard_lines("h1", {"brt-a": "n1", "br-old": "n2"}, present, [HostPort(5000)])
    assert lines[0] == f":{chain} - [0:0]"  # emptied and refilled in the same step
    assert [line for line in lines if line.startswith(("-D", "-I"))] == [
        f'-D INPUT -i brt-x -m comment --comment "berth-guard h1 n9" -j {chain}',
        f'-I INPUT -i br-old -m comment --comment "berth-guard h1 n2" -j {chain}',
    ]
    assert f"-A {chain} -p tcp -m tcp --dport 5000 -j RETURN" in lines
    assert lines[-3:-1] == [
        f"-A {chain} -p tcp -j REJECT --reject-with tcp-reset",
        f"-A {chain} -j REJECT --reject-with icmp-port-unreachable",
    ]
    assert guard_lines("h1", {}, {"brt-a": "n1"}, [])[-1] == f"-X {chain}"


# What `iptables -S` lists on a host that runs dockerd and a Podman service (Debian 12).
_LISTING = """-P FORWARD DROP
-N BERTH-FORWARD
-N DOCKER-USER
-N NETAVARK_FORWARD
-A FORWARD -j NETAVARK_ISOLATION_1
-A FORWARD -m comment --comment "netavark firewall plugin rules" -j NETAVARK_FORWARD
-A FORWARD -m comment --comment "berth-forward entry" -j BERTH-FORWARD
-A FORWARD -j DOCKER-USER
-A BERTH-FORWARD -i brt-a ! -o brt-a -m comment --comment "berth-isolate h1 n1" -j BERTH-ISOLATION
-A BERTH-FORWARD -i brt-b ! -o brt-b -m comment --comment "berth-isolate h2 n1" -j BERTH-ISOLATION
-A DOCKER-USER -m comment --comment "berth-forward entry" -j BERTH-FORWARD
-A DOCKER-USER -j RETURN
"""


def test_berths_chain_is_entered_first_where_the_engine_lets_others_accept_before() -> None:
    from berth.networks.forward import entry_lines, entry_parents

    # Podman: netavark accepts its subnets in FORWARD before DOCKER-USER; dockerd keeps
    # DOCKER-USER first among its own rules, so both enter Berth's chain.
    assert entry_parents(_LISTING, podman=True) == ["FORWARD", "DOCKER-USER"]
    assert entry_parents(_LISTING, podman=False) == ["DOCKER-USER"]
    assert entry_parents("-P FORWARD DROP\n", podman=False) == ["FORWARD"]  # no dockerd hook
    spec = '-m comment --comment "berth-forward entry" -j BERTH-FORWARD'
    # netavark put its isolation jump on top: Berth's entry moves back first, in one step.
    assert entry_lines(["FORWARD", "DOCKER-USER"], _LISTING) == [
        f"-D FORWARD {spec}",
        f"-I FORWARD 1 {spec}",
    ]
    assert entry_lines(["FORWARD"], "-P FORWARD DROP\n") == [f"-I FORWARD 1 {spec}"]
    right = f"-A FORWARD {spec}\n-A FORWARD -j DOCKER-USER\n"
    assert entry_lines(["FORWARD"], right) == []  # already first: nothing to write
    twice = f"-A FORWARD {spec}\n-A FORWARD -j X\n-A FORWARD {spec}\n"
    assert entry_lines(["FORWARD"], twice) == [f"-D FORWARD {spec}"] * 2 + [f"-I FORWARD 1 {spec}"]


def test_netavarks_isolation_jump_may_stay_above_berths_entry() -> None:
    """netavark 1.4 inserts a bare jump to its isolation at the top of FORWARD whenever a
    container of an isolated network starts: that chain only drops, so Berth's entry stays
    where it is (moving it deletes a rule: 8-24 ms of a Podman container's start). Anything
    else above it, even with netavark's chain name in it, still moves it back first."""
    from berth.networks.forward import entry_lines

    spec = '-m comment --comment "berth-forward entry" -j BERTH-FORWARD'
    accepts = '-A FORWARD -m comment --comment "netavark firewall plugin rules" -j NETAVARK_FORWARD'
    iso = "-A FORWARD -j NETAVARK_ISOLATION_1\n-A FORWARD -j NETAVARK_ISOLATION_3\n"
    assert entry_lines(["FORWARD"], f"{iso}-A FORWARD {spec}\n{accepts}\n") == []
    moved = [f"-D FORWARD {spec}", f"-I FORWARD 1 {spec}"]
    assert entry_lines(["FORWARD"], f"{iso}{accepts}\n-A FORWARD {spec}\n") == moved
    for other in (
        "-A FORWARD -j NETAVARK_ISOLATION_1 -m comment --comment x",  # not bare
        "-A FORWARD -s 10.0.0.0/8 -j NETAVARK_ISOLATION_1",
        "-A FORWARD -j NETAVARK_FORWARD",
        "-A FORWARD -j ACCEPT",
    ):
        assert entry_lines(["FORWARD"], f"{other}\n-A FORWARD {spec}\n") == moved, other
    # Only netavark's jumps and no entry at all: Berth's goes on top.
    assert entry_lines(["FORWARD"], iso) == [f"-I FORWARD 1 {spec}"]


def test_each_owner_isolates_its_own_bridges_from_every_berth_bridge() -> None:
    from berth.networks.forward import isolated_bridges, isolation_chain_lines, isolation_lines

    assert isolated_bridges("h1", _LISTING) == {"brt-a": "n1"}  # h2's rule is not h1's
    assert isolated_bridges("h2", _LISTING) == {"brt-b": "n1"}
    rule = (
        'BERTH-FORWARD -i {b} ! -o {b} -m comment --comment "berth-isolate h1 {n}" '
        "-j BERTH-ISOLATION"
    )
    lines = isolation_lines("h1", {"brt-c": "n3"}, isolated_bridges("h1", _LISTING))
    assert lines == [
        "-D " + rule.format(b="brt-a", n="n1"),
        "-A " + rule.format(b="brt-c", n="n3"),
    ]
    assert isolation_lines("h1", {"brt-a": "n1"}, {"brt-a": "n1"}) == []
    # The second stage drops what leaves a Berth bridge for any other Berth bridge.
    filled = isolation_chain_lines(_LISTING)
    assert filled == [":BERTH-ISOLATION - [0:0]", "-A BERTH-ISOLATION -o brt-+ -j DROP"]
    assert isolation_chain_lines("\n".join(filled[1:])) == []


def test_the_host_ports_setting_is_checked() -> None:
    from pydantic import ValidationError

    from berth.config import Settings

    given = Settings(container_host_ports_allowlist=[5000, "53/UDP"])
    assert given.container_host_ports_allowlist == ["5000/tcp", "53/udp"]
    with pytest.raises(ValidationError, match="not a host port"):
        Settings(container_host_ports_allowlist=["22/sctp"])


class _SlowRecorder(_Recorder):
    """A driver whose writes take until ``release`` is set (iptables-restore in a thread)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.started = asyncio.Event()

    async def write_firewalls(self, changes: dict[str, object]) -> None:
        self.started.set()
        await self.release.wait()
        await super().write_firewalls(changes)


async def test_a_restart_on_the_same_address_is_filtered_before_it_is_reported() -> None:
    """Stopped, the background pass starts removing the chain; started again on the same
    address meanwhile, the worker must not take the chain as written (CI caught a
    container reported Running while that pass removed its chain)."""
    driver = _SlowRecorder()
    driver.filtered.clear()
    sync = FirewallSync(driver)  # type: ignore[arg-type]
    sync.desired({"a": _desired("a", ["default"], [])})
    address = {"n1": [{"addr": "172.20.0.3", "version": 4}]}
    driver.release.set()
    await sync.settle("a", address, state="running")
    assert driver.filtered == {"a"}
    driver.release.clear()
    driver.started.clear()
    sync.addresses("a", None, state=None)  # stopped: the background pass removes the chain
    removing = asyncio.create_task(sync.sync())
    await driver.started.wait()
    settling = asyncio.create_task(sync.settle("a", address, state="running"))
    await asyncio.sleep(0.01)
    driver.release.set()
    await asyncio.wait_for(asyncio.gather(removing, settling), 5)
    # When settle returns (and the worker reports Running), the chain is in place.
    assert driver.filtered == {"a"}
    assert driver.writes[-2:] == [{"a": None}, {"a": (("172.20.0.3",), ())}]
