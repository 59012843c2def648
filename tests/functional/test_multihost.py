"""Several hosts on real engines: placement, failures, evacuation.

Four extra dockerd engines on this machine, one berth-agent each, one
berth-api (see ``tests/functional/hosts.py``):

| host   | zone | labels   | CPU pinning |
|--------|------|----------|-------------|
| mh-a   | az-1 | disk=ssd | no          |
| mh-b   | az-1 |          | no          |
| mh-c   | az-2 | disk=ssd | no          |
| mh-pin | az-2 |          | yes         |

Every engine reports the machine's CPUs (2 here) and the API runs with a CPU
allocation ratio of 1, so a shared host holds two containers of 1 CPU.
``service_down_time`` is 3 s. Each test deletes what it created (and checks
that the claims went with it); the module removes the engines afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from berth.cli.main import app as cli
from tests.functional.docker_engine import engine_or_skip, ensure_test_image
from tests.functional.hosts import ADMIN_PASSWORD, Cloud, HostSpec, cloud, wait_until

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SHARED = ["mh-a", "mh-b", "mh-c"]
SPECS = [
    HostSpec("mh-a", zone="az-1", labels={"disk": "ssd"}),
    HostSpec("mh-b", zone="az-1"),
    HostSpec("mh-c", zone="az-2", labels={"disk": "ssd"}),
    HostSpec("mh-pin", zone="az-2", cpu_pinning=True),
]
DOWN_TIME = 3.0


@pytest.fixture(scope="module")
def mh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    engine = engine_or_skip()
    ensure_test_image(engine)
    before = {c["Id"] for c in engine.containers(all=True)}
    settings = {
        "BERTH_SERVICE_DOWN_TIME": str(DOWN_TIME),
        "BERTH_CPU_ALLOCATION_RATIO": "1.0",
    }
    try:
        with cloud(tmp_path_factory.mktemp("multihost"), SPECS, engine, settings) as c:
            yield c
        leftovers = {c["Id"] for c in engine.containers(all=True)} - before
        ours = {spec.name for spec in SPECS}  # other tests may run beside this module
        owned = [
            c for c in engine.containers(all=True, filters={"label": "berth.owner"})
            if c["Id"] in leftovers and c["Labels"]["berth.owner"] in ours
        ]  # fmt: skip
        assert not owned, f"the main engine got Berth containers: {owned}"
    finally:
        engine.close()


# API settings beyond the base ones, by test (the API restarts when they change).
# Placement tests that do not test liveness take a longer down time: with 3 s, a
# heartbeat held up on a loaded machine briefly takes a host out of the running
# and a placement lands elsewhere (seen under CI load: a, b, a, b for binpack).
_STEADY = {"BERTH_SERVICE_DOWN_TIME": "30"}
API_SETTINGS = {
    "test_binpack_fills_a_host_before_the_next": {"BERTH_WEIGHER": "binpack", **_STEADY},
    "test_tenant_exclusive_hosts_never_share": {
        "BERTH_TENANT_EXCLUSIVE_HOSTS": "true",
        **_STEADY,
    },
}


@pytest.fixture
def c(mh: Cloud, request: pytest.FixtureRequest) -> Iterator[Cloud]:
    """The cloud with the test's API settings; whatever a test leaves is deleted afterwards."""
    mh.configure(**API_SETTINGS.get(request.node.name, {}))
    yield mh
    for name, agent in mh.agents.items():
        if not agent.alive:
            agent.start()
        mh.set_service(name, "enable")
    mh.wait_up(*mh.agents)
    mh.delete_all()


def hosts_of(c: Cloud, created: list[dict[str, Any]]) -> list[str]:
    shown = c.containers()
    return [shown[x["uuid"]]["host"] for x in created]


def test_agents_register_what_their_hosts_are(c: Cloud) -> None:
    hosts = {h["hostname"]: h for h in c.call("GET", "/hosts").json()["hosts"]}
    assert set(hosts) == {s.name for s in SPECS}
    services = c.services()
    for spec in SPECS:
        h = hosts[spec.name]
        assert services[spec.name]["availability_zone"] == spec.zone
        info = c.engines[spec.name].client.info()
        # The agent adds which engine it drives to the operator's labels (mixed pools).
        engine = {"berth.engine": "docker", "berth.engine_version": info["ServerVersion"]}
        assert h["labels"] == {**spec.labels, **engine}
        assert h["enable_cpu_pinning"] is spec.cpu_pinning
        assert h["cpus"] == info["NCPU"]


def test_spread_lands_on_different_hosts(c: Cloud) -> None:
    created = [c.create(name=f"spread-{i}") for i in range(3)]
    c.wait_status([x["uuid"] for x in created], "Running")
    hosts = hosts_of(c, created)
    assert sorted(hosts) == SHARED
    for x, host in zip(created, hosts, strict=True):
        assert c.runs_on(x["uuid"]) == [host], "the runtime container is not on its host"


def test_an_image_on_one_host_draws_its_containers_there(c: Cloud) -> None:
    engine, image = c.engines["mh-c"], "berth-test/only-on-c:1"
    seen = c.agents["mh-c"].log_text().count("changed: registered again")
    engine.client.tag("berth-test/busybox:latest", "berth-test/only-on-c", tag="1")
    try:
        wait_until(
            lambda: c.agents["mh-c"].log_text().count("changed: registered again") > seen,
            15,
            "mh-c to report its new image",
        )
        # Spread alone would pick mh-a (a tie, the smaller name), which cannot pull it.
        created = c.create(image=image, image_pull_policy="never")
        assert created["host"] == "mh-c"
        c.wait_status([created["uuid"]], "Running")
        c.delete_all()
    finally:
        engine.client.remove_image(image, force=True)


def test_host_zone_and_label_requests(c: Cloud) -> None:
    pinned = c.create(host="mh-b")
    west = c.create(availability_zone="az-2")
    ssd_east = c.create(availability_zone="az-1", hints={"label:disk": "ssd"})
    created = [pinned, west, ssd_east]
    assert hosts_of(c, created) == ["mh-b", "mh-c", "mh-a"]
    c.wait_status([x["uuid"] for x in created], "Running")
    assert c.runs_on(pinned["uuid"]) == ["mh-b"]
    nowhere = c.create(availability_zone="az-9")
    assert nowhere["status"] == "Error"
    assert "4 hosts: not in availability zone az-9" in nowhere["status_reason"]


def test_dedicated_cores_are_exclusive(c: Cloud) -> None:
    created = [c.create(cpu=1, cpu_policy="dedicated") for _ in range(2)]
    assert hosts_of(c, created) == ["mh-pin", "mh-pin"]
    c.wait_status([x["uuid"] for x in created], "Running")
    engine = c.engines["mh-pin"]
    cpusets = [
        engine.client.inspect_container(engine.berth_containers()[x["uuid"]][0]["Id"])[
            "HostConfig"
        ]["CpusetCpus"]
        for x in created
    ]
    assert sorted(cpusets) == ["0", "1"], cpusets
    third = c.create(cpu=1, cpu_policy="dedicated")
    assert third["status"] == "Error"
    assert third["status_reason"] == (
        "There are not enough hosts available. 3 hosts: no CPU pinning on host; "
        "1 host: not enough free cores (need 1, 0 free)."
    )


def test_full_hosts_say_why_with_host_counts(c: Cloud) -> None:
    created = [c.create(cpu=1) for _ in range(6)]
    assert sorted(hosts_of(c, created)) == sorted(SHARED * 2)
    extra = c.create(cpu=1)
    assert extra["status"] == "Error"
    assert extra["status_reason"] == (
        "There are not enough hosts available. 3 hosts: not enough CPU (need 1, 0 free); "
        "1 host: host reserved for dedicated CPUs."
    )
    c.wait_status([x["uuid"] for x in created], "Running")


def test_disabled_service_gets_no_new_placements(c: Cloud) -> None:
    c.set_service("mh-a", "disable")
    created = [c.create() for _ in range(4)]
    assert "mh-a" not in hosts_of(c, created)
    pinned = c.create(host="mh-a")
    assert pinned["status"] == "Error" and "service disabled" in pinned["status_reason"]
    c.wait_status([x["uuid"] for x in created], "Running")


def test_lost_agent_shows_unknown_then_converges_back(c: Cloud) -> None:
    created = [c.create(host="mh-c") for _ in range(2)]
    uuids = [x["uuid"] for x in created]
    c.wait_status(uuids, "Running")
    runtime_ids = {u: c.engines["mh-c"].berth_containers()[u][0]["Id"] for u in uuids}
    c.agents["mh-c"].stop()
    t0 = time.monotonic()
    wait_until(lambda: c.services()["mh-c"]["state"] == "down", 15, "mh-c to show down")
    c.wait_status(uuids, "Unknown", timeout=15)
    assert time.monotonic() - t0 < DOWN_TIME + 6
    reason = c.show(uuids[0])["status_reason"]
    assert reason.startswith("Host mh-c is down: no heartbeat since"), reason
    assert all(c.services()[h]["state"] == "up" for h in ("mh-a", "mh-b", "mh-pin"))
    c.agents["mh-c"].start()
    c.wait_status(uuids, "Running")
    now = {u: c.engines["mh-c"].berth_containers()[u] for u in uuids}
    assert {u: [x["Id"] for x in v] for u, v in now.items()} == {
        u: [i] for u, i in runtime_ids.items()
    }, "the returning agent recreated containers that were fine"


def test_auto_heal_recreates_a_container_removed_behind_berths_back(c: Cloud) -> None:
    healer = c.create(host="mh-b", auto_heal=True)
    c.wait_status([healer["uuid"]], "Running")
    engine = c.engines["mh-b"]
    (old,) = engine.berth_containers()[healer["uuid"]]
    engine.client.remove_container(old["Id"], force=True)

    def recreated() -> bool:
        found = engine.berth_containers().get(healer["uuid"], [])
        return len(found) == 1 and found[0]["Id"] != old["Id"] and found[0]["State"] == "running"

    wait_until(recreated, 30, "the auto_heal container to be recreated")
    c.wait_status([healer["uuid"]], "Running")


def test_evacuate_a_dead_host_and_its_agent_cleans_up_on_return(c: Cloud) -> None:
    healer, plain = c.create(host="mh-a", auto_heal=True), c.create(host="mh-a")
    c.wait_status([healer["uuid"], plain["uuid"]], "Running")
    c.agents["mh-a"].stop()
    wait_until(lambda: c.services()["mh-a"]["state"] == "down", 15, "mh-a to show down")
    env = {
        "OS_AUTH_URL": f"{c.api.base_url}/identity/v3",
        "OS_USERNAME": "admin",
        "OS_PASSWORD": ADMIN_PASSWORD,
        "OS_PROJECT_NAME": "admin",
        "OS_USER_DOMAIN_NAME": "Default",
        "OS_PROJECT_DOMAIN_NAME": "Default",
        "OS_CLOUD": "",
        "COLUMNS": "200",
    }
    r = CliRunner().invoke(cli, ["host", "evacuate", "mh-a"], env=env)
    assert r.exit_code == 0, r.output
    moved_to = c.show(healer["uuid"])["host"]
    assert moved_to in ("mh-b", "mh-c") and f"{healer['uuid']} -> {moved_to}" in r.output
    assert "1 container(s) without auto_heal stay on mh-a" in r.output
    c.wait_status([healer["uuid"]], "Running")
    assert moved_to in c.runs_on(healer["uuid"])
    assert "mh-a" in c.runs_on(healer["uuid"])  # the dead host's copy, for now

    c.agents["mh-a"].start()
    wait_until(lambda: c.runs_on(healer["uuid"]) == [moved_to], 30, "mh-a to remove its stale copy")
    c.wait_status([plain["uuid"], healer["uuid"]], "Running")
    assert c.runs_on(plain["uuid"]) == ["mh-a"]


def test_engines_are_separate(c: Cloud, tmp_path: Path) -> None:
    created = c.create(host="mh-pin", cpu=1, cpu_policy="dedicated")
    c.wait_status([created["uuid"]], "Running")
    assert c.runs_on(created["uuid"]) == ["mh-pin"]
    for name, engine in c.engines.items():
        assert engine.url.startswith("unix:///tmp/bmh-") and name in engine.url


def test_binpack_fills_a_host_before_the_next(c: Cloud) -> None:
    created = [c.create(name=f"pack-{i}", cpu=1) for i in range(4)]
    assert hosts_of(c, created) == ["mh-a", "mh-a", "mh-b", "mh-b"]
    c.wait_status([x["uuid"] for x in created], "Running")
    assert [c.runs_on(x["uuid"]) for x in created] == [["mh-a"], ["mh-a"], ["mh-b"], ["mh-b"]]


def test_tenant_exclusive_hosts_never_share(c: Cloud) -> None:
    alice = c.make_member(f"mh-excl-a-{time.time_ns()}", f"mh-alice-{time.time_ns()}")
    bob = c.make_member(f"mh-excl-b-{time.time_ns()}", f"mh-bob-{time.time_ns()}")
    carol = c.make_member(f"mh-excl-c-{time.time_ns()}", f"mh-carol-{time.time_ns()}")
    mine = [c.create(alice), c.create(alice)]
    theirs = [c.create(bob), c.create(bob)]
    a_hosts, b_hosts = set(hosts_of(c, mine)), set(hosts_of(c, theirs))
    assert a_hosts and b_hosts and not a_hosts & b_hosts, (a_hosts, b_hosts)
    c.wait_status([x["uuid"] for x in mine + theirs], "Running")
    third = c.create(carol)
    if len(a_hosts | b_hosts) == 3:  # spread put them on three hosts: none left for carol
        assert third["status"] == "Error"
        assert "3 hosts: host serves another project" in third["status_reason"]
    else:
        assert third["host"] not in a_hosts | b_hosts
