"""The overlay driver's pure parts and the agent's hand-over of remote members: no I/O."""

from __future__ import annotations

import pytest

from berth import errors
from berth.agent.firewall import FirewallSync
from berth.domain.hostsync import (
    DesiredContainer,
    DesiredHost,
    IngressRule,
    NetworkRef,
    RemoteMember,
    Segment,
    docker_mac,
)
from berth.networks import FirewallRule
from berth.networks.base import network_name
from berth.networks.overlay import (
    OverlayNetworks,
    entry_commands,
    remote_entries,
    underlay_address,
    untracked_rules,
    vxlan_name,
)
from berth.runtimes import dockermap


def test_device_names_fit_the_kernel_and_differ_per_owner() -> None:
    name = vxlan_name("host-a", "net-1")
    assert name.startswith("vxt-") and len(name) == 15
    assert name == vxlan_name("host-a", "net-1") != vxlan_name("host-b", "net-1")


def test_the_mac_docker_derives_from_an_address() -> None:
    assert docker_mac("10.99.0.5") == "02:42:0a:63:00:05"


def test_members_on_this_host_are_not_tunnelled() -> None:
    members = [
        RemoteMember("10.96.0.2", "02:42:0A:60:00:02", "10.251.0.11"),
        RemoteMember("10.96.0.3", "02:42:0a:60:00:03", "10.251.0.12"),
    ]
    assert remote_entries(members, "10.251.0.12") == {
        ("10.96.0.2", "02:42:0a:60:00:02", "10.251.0.11")
    }


def test_entries_converge_adding_what_is_missing_and_removing_what_is_stale() -> None:
    wanted = frozenset(
        {
            ("10.96.0.2", "02:42:0a:60:00:02", "10.251.0.11"),  # present and right
            ("10.96.0.3", "02:42:0a:60:00:03", "10.251.0.13"),  # moved to another host
            ("10.96.0.4", "02:42:0a:60:00:04", "10.251.0.12"),  # new
        }
    )
    fdb = {
        "02:42:0a:60:00:02": "10.251.0.11",
        "02:42:0a:60:00:03": "10.251.0.12",
        "02:42:0a:60:00:09": "10.251.0.12",  # a member deleted meanwhile
    }
    neigh = {
        "10.96.0.2": "02:42:0a:60:00:02",
        "10.96.0.3": "02:42:0a:60:00:03",
        "10.96.0.9": "02:42:0a:60:00:09",
    }
    bridge, ip = entry_commands("vxt-x", wanted, fdb, neigh)
    assert bridge == [
        "fdb replace 02:42:0a:60:00:03 dev vxt-x dst 10.251.0.13 self permanent",
        "fdb replace 02:42:0a:60:00:04 dev vxt-x dst 10.251.0.12 self permanent",
        "fdb del 02:42:0a:60:00:09 dev vxt-x dst 10.251.0.12 self",
    ]
    assert ip == [
        "neigh replace 10.96.0.4 lladdr 02:42:0a:60:00:04 dev vxt-x nud permanent",
        "neigh del 10.96.0.9 dev vxt-x",
    ]
    assert entry_commands("vxt-x", frozenset(), {}, {}) == ([], [])


def test_the_underlay_address_is_the_source_of_the_route_to_the_control_plane() -> None:
    assert underlay_address("http://127.0.0.1:9517") == "127.0.0.1"


def test_a_leased_address_is_asked_for_at_create() -> None:
    seg = Segment("10.96.3.0/24", "10.96.3.1", 4)
    spec = DesiredContainer(
        uuid="u",
        name="u",
        project_id="p",
        image="i",
        desired_state="running",
        spec_version=1,
        networks=[NetworkRef("n1", "default", "p", address="10.96.3.7", segment=seg)],
    )
    config, host = dockermap.create_params(spec, "owner", dockermap.TenantLimits())
    assert host["network_mode"] == "berth-net-n1"
    assert config["networking_config"] == {
        "EndpointsConfig": {"berth-net-n1": {"IPAMConfig": {"IPv4Address": "10.96.3.7"}}}
    }
    spec.networks[0].address = None  # the bridge driver: the engine picks
    config, _ = dockermap.create_params(spec, "owner", dockermap.TenantLimits())
    assert "networking_config" not in config


def test_inspect_reports_each_address_mac() -> None:
    seen = dockermap.from_inspect(
        {
            "Id": "x",
            "State": {"Status": "running"},
            "Config": {"Labels": {}},
            "NetworkSettings": {
                "Networks": {
                    "berth-net-n1": {"IPAddress": "10.96.3.7", "MacAddress": "02:42:0a:60:03:07"}
                }
            },
        }
    )
    assert seen.macs == {"10.96.3.7": "02:42:0a:60:03:07"}


class _Programs:
    def __init__(self) -> None:
        self.programmed: list[object] = []

    async def write_firewalls(self, changes: object) -> None:
        pass

    async def firewalled(self) -> set[str]:
        return set()

    async def prune(self, keep: set[str]) -> list[str]:
        return []

    async def program(self, remote: object) -> None:
        self.programmed.append(remote)


async def test_remote_members_are_handed_over_once_per_change_and_once_after_a_start() -> None:
    driver = _Programs()
    sync = FirewallSync(driver, idle=0.0)  # type: ignore[arg-type]
    await sync.sync()
    assert driver.programmed == [{}]  # a fresh agent clears what its driver no longer wants
    member = RemoteMember("10.96.0.2", "02:42:0a:60:00:02", "10.251.0.11", ["g-web"])
    sync.remote({"n1": [member]})
    await sync.sync()
    await sync.sync()
    assert driver.programmed == [{}, {"n1": [member]}]


def test_a_remote_groups_members_on_other_hosts_are_admitted_like_local_ones() -> None:
    sync = FirewallSync(networks=None)  # type: ignore[arg-type]  # wanted() does no I/O
    db = DesiredContainer(
        uuid="db",
        name="db",
        project_id="p",
        image="i",
        desired_state="running",
        spec_version=1,
        networks=[NetworkRef("n1", "default", "p")],
        security_groups=["g-db"],
        ingress=[IngressRule("tcp", 80, 80, remote_group="g-web")],
    )
    sync.desired({"db": db})
    sync.addresses("db", {"n1": [{"addr": "10.96.0.3", "version": 4}]}, state="running")
    sync.remote(
        {
            "n1": [
                RemoteMember("10.96.0.2", "02:42:0a:60:00:02", "10.251.0.11", ["g-web"]),
                RemoteMember("10.96.0.4", "02:42:0a:60:00:04", "10.251.0.12", ["g-other"]),
            ]
        }
    )
    assert sync.wanted()["db"] == (
        ("10.96.0.3",),
        (FirewallRule("tcp", 80, 80, ("10.96.0.2/32",)),),
    )


def test_the_wire_format_carries_the_overlay_and_stays_compatible() -> None:
    from pydantic import TypeAdapter

    adapter = TypeAdapter(DesiredHost)
    old = adapter.validate_python({"hostname": "h", "generation": 1, "containers": []})
    assert old.remote_members == {}
    host = DesiredHost(
        "h", 2, remote_members={"n1": [RemoteMember("10.96.0.2", "02:42:0a:60:00:02", "10.0.0.2")]}
    )
    assert adapter.validate_json(adapter.dump_json(host)) == host


class _Kernel(OverlayNetworks):
    """The overlay driver against a recorded kernel: ``ip``/``bridge`` runs are answered here."""

    def __init__(self) -> None:
        super().__init__(owner="h1", local_ip="10.251.0.11")
        self.links: dict[str, dict[str, object]] = {}
        self.fdb: dict[str, dict[str, str]] = {}
        self.neigh: dict[str, dict[str, str]] = {}
        self.runs: list[str] = []
        self.engine: set[str] = set()  # the ids of the networks the engine holds
        self.raw: list[str] = []  # the raw table's rules, as iptables -S lists them
        self.iptables_fails = False
        self._rules._iptables = self._iptables  # type: ignore[method-assign]

    async def _iptables(
        self, *args: str, stdin: str | None = None, check: bool = True, binary: str = ""
    ) -> str:
        self.runs.append(" ".join(["iptables", *args]))
        if self.iptables_fails:
            raise errors.BerthError("iptables-restore: line 2 failed")
        if stdin is None:  # -t raw -S
            return "-P PREROUTING ACCEPT\n-P OUTPUT ACCEPT\n" + "".join(f"{r}\n" for r in self.raw)
        for line in stdin.splitlines():
            if line.startswith("-D "):
                self.raw.remove(f"-A {line[3:]}")
            elif line.startswith("-A "):
                self.raw.append(line)
        return ""

    async def _owned(self) -> list[dict[str, object]]:
        return [{"Name": network_name(n)} for n in sorted(self.engine)]

    async def _tool(self, *args: str, stdin: str | None = None) -> str:
        import json

        self.runs.append(" ".join(args))
        if args[:3] == ("ip", "-d", "-j"):
            link = self.links.get(args[-1])
            if link is None:
                raise errors.BerthError(f'Device "{args[-1]}" does not exist.')
            return json.dumps([link])
        if args[:4] == ("ip", "-j", "link", "show"):
            listing = [{"ifname": n, "ifalias": link["alias"]} for n, link in self.links.items()]
            return json.dumps(listing)
        if args[:3] == ("ip", "link", "add"):
            vni, local = int(args[args.index("id") + 1]), args[args.index("local") + 1]
            self.links[args[3]] = {"linkinfo": {"info_data": {"id": vni, "local": local}}}
        elif args[:3] == ("ip", "link", "set"):
            self.links[args[3]]["alias"] = args[args.index("alias") + 1]
        elif args[:3] == ("ip", "link", "del"):
            del self.links[args[3]]
        elif args[:3] == ("bridge", "-j", "fdb"):
            table = self.fdb.get(args[-1], {})
            return json.dumps([{"mac": m, "dst": d} for m, d in table.items()])
        elif args[:3] == ("ip", "-j", "neigh"):
            table = self.neigh.get(args[-1], {})
            return json.dumps(
                [{"dst": i, "lladdr": m, "state": ["PERMANENT"]} for i, m in table.items()]
            )
        elif args[1:3] == ("-batch", "-"):
            for line in (stdin or "").splitlines():
                words = line.split()
                device = words[words.index("dev") + 1]
                if words[:2] == ["fdb", "replace"]:
                    self.fdb.setdefault(device, {})[words[2]] = words[words.index("dst") + 1]
                elif words[:2] == ["fdb", "del"]:
                    del self.fdb[device][words[2]]
                elif words[:2] == ["neigh", "replace"]:
                    self.neigh.setdefault(device, {})[words[2]] = words[4]
                elif words[:2] == ["neigh", "del"]:
                    del self.neigh[device][words[2]]
        return ""


async def test_the_overlay_driver_makes_programs_and_removes_a_tunnel_endpoint() -> None:
    kernel = _Kernel()
    net = NetworkRef("n1", "default", "p", segment=Segment("10.96.0.0/24", "10.96.0.1", 7))
    peer = RemoteMember("10.96.0.3", "02:42:0a:60:00:03", "10.251.0.12")
    here = RemoteMember("10.96.0.2", "02:42:0a:60:00:02", "10.251.0.11")  # this host's own
    await kernel.program({"n1": [peer, here]})  # before the network exists: remembered
    await kernel._created(net, "brt-x")
    device = vxlan_name("h1", "n1")
    assert kernel.links[device]["alias"] == "berth:h1:n1"
    assert kernel.fdb[device] == {"02:42:0a:60:00:03": "10.251.0.12"}
    assert kernel.neigh[device] == {"10.96.0.3": "02:42:0a:60:00:03"}
    runs = len(kernel.runs)
    await kernel.program({"n1": [peer, here]})  # nothing changed: no tool runs at all
    assert len(kernel.runs) == runs
    # A fresh agent (a restart) finds the device by its alias and converges from the kernel.
    fresh = _Kernel()
    fresh.links, fresh.fdb, fresh.neigh = kernel.links, kernel.fdb, kernel.neigh
    kernel.fdb[device]["02:42:0a:60:00:09"] = "10.251.0.13"  # left behind meanwhile
    await fresh.program({"n1": [peer]})
    assert fresh.fdb[device] == {"02:42:0a:60:00:03": "10.251.0.12"}
    # The network gone from the engine: its device goes too.
    await fresh._pruned(set())
    assert fresh.links == {}


async def test_a_prune_that_listed_before_a_network_came_back_leaves_its_device() -> None:
    # The last member left (a prune lists the engine: the network is gone), a new member
    # arrives (the network and its device are made again) before the prune's removals.
    kernel = _Kernel()
    net = NetworkRef("n1", "default", "p", segment=Segment("10.96.0.0/24", "10.96.0.1", 7))
    kernel.engine.add("n1")
    await kernel._created(net, "brt-x")
    await kernel._pruned(set())  # listed before the network was made
    assert vxlan_name("h1", "n1") in kernel.links
    kernel.engine.clear()  # and once it is gone for good, its device goes
    await kernel._pruned(set())
    assert kernel.links == {}


async def test_the_overlay_driver_needs_a_segment() -> None:
    kernel = _Kernel()
    with pytest.raises(errors.BerthError, match="network_driver = overlay"):
        kernel._network_params(NetworkRef("n1", "default", "p"))


async def test_the_hosts_own_tunnel_packets_skip_conntrack_while_it_has_a_tunnel() -> None:
    """Each inner connection is a new outer UDP flow; tracked, its first packets cost a
    conntrack entry and a nat walk on both hosts (38 against 29 us a connect, measured).
    The raw rules come with the first tunnel, go with the last, and match only the host's
    own address (a container's UDP 4789 stays tracked)."""
    kernel = _Kernel()
    nets = [
        NetworkRef(f"n{i}", "default", "p", segment=Segment(f"10.96.{i}.0/24", f"10.96.{i}.1", i))
        for i in (1, 2)
    ]
    kernel.engine.update({"n1", "n2"})
    await kernel._created(nets[0], "brt-x")
    assert kernel.raw == untracked_rules("h1", "10.251.0.11")
    assert all("-d 10.251.0.11/32" in r or "-s 10.251.0.11/32" in r for r in kernel.raw)
    runs = len(kernel.runs)
    await kernel._created(nets[1], "brt-y")  # written once per agent, not per network
    assert not any(r.startswith("iptables") for r in kernel.runs[runs:])
    kernel.engine.discard("n1")
    await kernel._pruned({"n2"})
    assert kernel.raw  # a tunnel is left
    kernel.engine.clear()
    await kernel._pruned(set())
    assert kernel.raw == []
    # An agent started afresh with rules of an earlier run (another underlay address) and
    # no tunnel: its first prune removes them; another owner's rules are left alone.
    fresh = _Kernel()
    theirs = untracked_rules("h2", "10.251.0.12")
    fresh.raw = [*untracked_rules("h1", "10.251.0.99"), *theirs]
    await fresh._pruned(set())
    assert fresh.raw == theirs
    # iptables failing costs the speed-up only: the tunnel is made all the same.
    broken = _Kernel()
    broken.iptables_fails = True
    await broken._created(nets[0], "brt-x")
    assert vxlan_name("h1", "n1") in broken.links
