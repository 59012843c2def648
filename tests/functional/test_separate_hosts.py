"""Hosts that are apart at the network level: the base the cross-host network tests stand on.

Three test hosts, each its own network namespace with its own dockerd (iptables
on, inside it) and its own berth-agent, on an underlay switch; berth-api on the
machine, listening on the underlay (``tests/functional/underlay.py``). Checks
that such a cloud works at all: every agent registers from its own address,
containers placed on each host run there, on that host's engine, behind a
bridge of that host's namespace that the machine itself does not have.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.functional.docker_engine import engine_or_skip, ensure_test_image
from tests.functional.hosts import Cloud, HostSpec, cloud

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SPECS = [HostSpec("sep-1"), HostSpec("sep-2"), HostSpec("sep-3")]


@pytest.fixture(scope="module")
def sep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    engine = engine_or_skip()
    ensure_test_image(engine)
    try:
        with cloud(
            tmp_path_factory.mktemp("separate"),
            SPECS,
            engine,
            {"BERTH_SERVICE_DOWN_TIME": "30"},
            separate=True,
        ) as c:
            yield c
    finally:
        engine.close()


def _address(c: Cloud, uuid: str) -> str:
    addresses = c.show(uuid)["addresses"]
    return next(a["addr"] for net in addresses.values() for a in net)


def test_each_host_runs_its_containers_in_its_own_namespace(sep: Cloud) -> None:
    uuids = {spec.name: sep.create(host=spec.name)["uuid"] for spec in SPECS}
    sep.wait_status(list(uuids.values()), "Running")
    for name, uuid in uuids.items():
        assert sep.runs_on(uuid) == [name]
        host = sep.engines[name].host
        assert host is not None
        ip = _address(sep, uuid)
        # Its host reaches it over a bridge of its own namespace...
        assert " dev brt-" in host.sh("ip", "route", "get", ip)
        # ...and the machine itself holds none of the hosts' bridges. (Project
        # networks do not span hosts yet: each host has its own segment.)
        assert " dev brt-" not in subprocess.run(
            ["ip", "route", "get", ip], capture_output=True, text=True, check=False
        ).stdout
    hosts = sep.call("GET", "/hosts").json()["hosts"]
    assert {h["hostname"] for h in hosts} >= {s.name for s in SPECS}
    sep.delete_all()
