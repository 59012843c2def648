"""Docker JSON ⇄ Berth objects, without an engine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from berth.domain.hostsync import DesiredContainer
from berth.runtimes import dockermap

NOW = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)


def ago(seconds: float) -> str:
    return (NOW - timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.5, "Less than a second"), (1, "1 second"), (59, "59 seconds"), (60, "About a minute"),
     (180, "3 minutes"), (3600, "About an hour"), (5 * 3600, "5 hours"), (3 * 86400, "3 days"),
     (20 * 86400, "2 weeks"), (90 * 86400, "3 months"), (800 * 86400, "2 years")],
)  # fmt: skip
def test_human_duration(seconds: float, text: str) -> None:
    assert dockermap.human_duration(seconds) == text


ZERO = "0001-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("state", "text"),
    [
        ({"Status": "created", "StartedAt": ZERO, "FinishedAt": ZERO}, "Created"),
        ({"Status": "running", "Running": True, "StartedAt": ago(180)}, "Up 3 minutes"),
        (
            {"Status": "paused", "Running": True, "Paused": True, "StartedAt": ago(120)},
            "Up 2 minutes (Paused)",
        ),
        (
            {"Status": "exited", "ExitCode": 0, "StartedAt": ago(60), "FinishedAt": ago(5)},
            "Exited (0) 5 seconds ago",
        ),
        (
            {
                "Status": "running",
                "Running": True,
                "StartedAt": ago(9),
                "Health": {"Status": "healthy"},
            },
            "Up 9 seconds (healthy)",
        ),
        ({"Status": "dead", "Dead": True, "StartedAt": ago(9), "FinishedAt": ago(1)}, "Dead"),
    ],
)
def test_status_text(state: dict[str, Any], text: str) -> None:
    assert dockermap.status_text(state, now=NOW) == text


def test_create_params_map_every_field() -> None:
    spec = DesiredContainer(
        uuid="u1", name="web", project_id="p1", image="busybox:1", desired_state="running",
        spec_version=4, command=["sleep", "1"], entrypoint=["/bin/sh", "-c"], cpu=1.5,
        cpuset=[0, 1], memory=64, workdir="/tmp", environment={"A": "1"}, labels={"x": "y"},
        hostname="h", restart_policy={"Name": "on-failure", "MaximumRetryCount": "3"},
        healthcheck={"test": "true", "interval": 5, "retries": 2, "timeout": 3},
        interactive=True, tty=True, runtime="runsc", privileged=True,
    )  # fmt: skip
    config, host = dockermap.create_params(spec, owner="host-1")
    assert config["name"] == "berth-u1"
    assert config["labels"] == {
        "x": "y", "berth.uuid": "u1", "berth.project": "p1", "berth.spec_version": "4",
        "berth.owner": "host-1",
    }  # fmt: skip
    assert config["environment"] == ["A=1"]
    assert config["healthcheck"] == {
        "test": ["CMD-SHELL", "true"], "interval": 5_000_000_000, "timeout": 3_000_000_000,
        "retries": 2,
    }  # fmt: skip
    assert (config["stdin_open"], config["tty"], config["working_dir"]) == (True, True, "/tmp")
    assert host["nano_cpus"] == 1_500_000_000
    assert host["mem_limit"] == host["memswap_limit"] == 64 * 1024 * 1024
    assert host["cpuset_cpus"] == "0,1"
    assert host["restart_policy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert (host["runtime"], host["privileged"]) == ("runsc", True)


def test_runc_is_the_engine_default() -> None:
    spec = DesiredContainer("u1", "n", "p", "i", "running", 1, runtime="runc")
    assert "runtime" not in dockermap.create_params(spec, None)[1]


def test_tenant_containers_get_the_caps_and_cluster_nodes_no_pids_cap() -> None:
    tenant = DesiredContainer("u1", "n", "p", "i", "running", 1)
    node = DesiredContainer("u2", "n", "p", "i", "running", 1, node_profile="dind")
    limits = dockermap.TenantLimits(pids=512, log_max_mb=10)
    host = dockermap.create_params(tenant, None, limits)[1]
    assert host["pids_limit"] == 512
    assert host["log_config"]["Config"] == {"max-size": "10m", "max-file": "3"}
    assert "pids_limit" not in dockermap.create_params(tenant, None)[1]
    assert "log_config" not in dockermap.create_params(tenant, None)[1]
    assert "pids_limit" not in dockermap.create_params(node, None, limits)[1]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [(None, None), ({"Name": "always", "MaximumRetryCount": "0"}, {"Name": "always"}),
     ({"Name": "no"}, {"Name": "no"}),
     ({"Name": "on-failure"}, {"Name": "on-failure", "MaximumRetryCount": 0})],
)  # fmt: skip
def test_restart_policy(policy: dict[str, Any] | None, expected: dict[str, Any] | None) -> None:
    assert dockermap.restart_policy(policy) == expected


@pytest.mark.parametrize(
    ("signal", "expected"),
    [(None, "SIGKILL"), ("None", "SIGKILL"), (9, 9), ("15", 15), ("term", "SIGTERM"),
     ("SIGHUP", "SIGHUP")],
)  # fmt: skip
def test_signal_name(signal: str | int | None, expected: str | int) -> None:
    assert dockermap.signal_name(signal) == expected


def test_listing_and_inspect_agree_on_what_is_reported() -> None:
    listing = {
        "Id": "abc", "State": "exited", "Status": "Exited (137) 2 minutes ago",
        "Labels": {"berth.uuid": "u1", "berth.spec_version": "2"},
        "NetworkSettings": {"Networks": {"bridge": {"IPAddress": "172.17.0.2"}}},
    }  # fmt: skip
    inspected = {
        "Id": "abc",
        "State": {
            "Status": "exited",
            "ExitCode": 137,
            "StartedAt": ago(300),
            "FinishedAt": ago(120),
        },
        "Config": {"Labels": {"berth.uuid": "u1", "berth.spec_version": "2"}},
        "NetworkSettings": {"Networks": {"bridge": {"IPAddress": "172.17.0.2"}}},
    }
    sparse, full = dockermap.from_listing(listing), dockermap.from_inspect(inspected)
    fields = ("uuid", "runtime_id", "state", "exit_code", "spec_version", "addresses")
    assert [getattr(sparse, f) for f in fields] == [getattr(full, f) for f in fields]
    assert sparse.state == "stopped" and sparse.exit_code == 137
    assert not sparse.detailed and sparse.started_at is None
    assert full.detailed and full.started_at is not None and full.started_at.endswith("+00:00")


def test_zun_stats() -> None:
    raw = {
        "cpu_stats": {"cpu_usage": {"total_usage": 300}, "system_cpu_usage": 2000,
                      "online_cpus": 2},
        "precpu_stats": {"cpu_usage": {"total_usage": 100}, "system_cpu_usage": 1000},
        "memory_stats": {"usage": 3 * 1024 * 1024, "limit": 64 * 1024 * 1024,
                         "stats": {"total_inactive_file": 1024 * 1024}},
        "blkio_stats": {"io_service_bytes_recursive": [{"op": "Read", "value": 10},
                                                       {"op": "Write", "value": 4}]},
        "networks": {"eth0": {"rx_bytes": 7, "tx_bytes": 3}},
    }  # fmt: skip
    assert dockermap.zun_stats(raw, "berth-u1") == {
        "CONTAINER": "berth-u1", "CPU %": 40.0, "MEM USAGE(MiB)": 2.0, "MEM LIMIT(MiB)": 64.0,
        "MEM %": 3.12, "BLOCK I/O(B)": "10/4", "NET I/O(B)": "7/3",
    }  # fmt: skip


def test_network_mode_follows_the_sandbox_then_the_first_network_then_none() -> None:
    detached = DesiredContainer("u1", "n", "p", "i", "running", 1, no_network=True)
    assert dockermap.create_params(detached, None)[1]["network_mode"] == "none"
    default = DesiredContainer("u1", "n", "p", "i", "running", 1)
    assert "network_mode" not in dockermap.create_params(default, None)[1]


def test_zun_stats_of_an_empty_sample_is_all_zero() -> None:
    assert dockermap.zun_stats({}, "c") == {
        "CONTAINER": "c", "CPU %": 0.0, "MEM USAGE(MiB)": 0.0, "MEM LIMIT(MiB)": 0.0,
        "MEM %": 0.0, "BLOCK I/O(B)": "0/0", "NET I/O(B)": "0/0",
    }  # fmt: skip
