"""libpod JSON ⇄ Berth objects, without an engine."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from berth import errors
from berth.domain.hostsync import (
    DesiredContainer,
    NetworkRef,
    PublishedPort,
    RegistryAuth,
    VolumeMount,
)
from berth.runtimes import podmanmap
from berth.runtimes.dockermap import TenantLimits
from berth.runtimes.podman_images import auth_header, insecure_registry

NOW = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
MIB = 1024 * 1024


def spec(**kw: Any) -> DesiredContainer:
    base: dict[str, Any] = {
        "uuid": "u1",
        "name": "web",
        "project_id": "p1",
        "image": "busybox:latest",
        "desired_state": "running",
        "spec_version": 3,
    }
    return DesiredContainer(**{**base, **kw})


def test_minimal_container_spec() -> None:
    body = podmanmap.container_spec(spec(), "agent-a")
    assert body == {
        "name": "berth-u1",
        "image": "busybox:latest",
        "labels": {
            "berth.uuid": "u1",
            "berth.project": "p1",
            "berth.spec_version": "3",
            "berth.owner": "agent-a",
        },
        "stdin": False,
        "terminal": False,
        "remove": False,
        "privileged": False,
    }


def test_full_container_spec() -> None:
    body = podmanmap.container_spec(
        spec(
            command=["echo hi"],
            entrypoint=["/bin/sh", "-c"],
            cpu=0.5,
            cpuset=[0, 1],
            memory=64,
            workdir="/tmp",
            environment={"A": "b"},
            labels={"tier": "web"},
            hostname="webhost",
            restart_policy={"Name": "on-failure", "MaximumRetryCount": "3"},
            healthcheck={"test": "true", "interval": 5, "timeout": 3, "retries": 2},
            interactive=True,
            tty=True,
            runtime="runsc",
            auto_remove=True,
            volumes=[
                VolumeMount("v1", "/data", read_only=True),
                VolumeMount("", "/host", host_path="/srv/x"),
                VolumeMount("v2"),  # only ensured: no mount
            ],
            networks=[NetworkRef("n1", "net", "p1")],
            published_ports=[PublishedPort(80), PublishedPort(53, "udp")],
        ),
        None,
        TenantLimits(pids=100, log_max_mb=10),
    )
    assert body["command"] == ["echo hi"] and body["entrypoint"] == ["/bin/sh", "-c"]
    assert body["labels"]["tier"] == "web" and "berth.owner" not in body["labels"]
    assert body["resource_limits"] == {
        "cpu": {"quota": 50_000, "period": 100_000, "cpus": "0,1"},
        "memory": {"limit": 64 * MIB, "swap": 64 * MIB},
        "pids": {"limit": 100},
    }
    assert (body["restart_policy"], body["restart_tries"]) == ("on-failure", 3)
    assert body["healthconfig"] == {
        "Test": ["CMD-SHELL", "true"],
        "Interval": 5_000_000_000,
        "Timeout": 3_000_000_000,
        "Retries": 2,
    }
    assert (body["work_dir"], body["env"], body["hostname"]) == ("/tmp", {"A": "b"}, "webhost")
    assert (body["stdin"], body["terminal"], body["remove"]) == (True, True, True)
    assert body["oci_runtime"] == "runsc"
    assert body["log_configuration"] == {"driver": "k8s-file", "size": 10 * MIB}
    assert body["volumes"] == [{"Name": "berth-vol-v1", "Dest": "/data", "Options": ["ro"]}]
    assert body["mounts"] == [
        {"destination": "/host", "source": "/srv/x", "type": "bind", "options": ["rbind", "rw"]}
    ]
    assert body["netns"] == {"nsmode": "bridge"}
    assert body["Networks"] == {"berth-net-n1": {}}
    assert body["portmappings"] == [
        {"container_port": 80, "protocol": "tcp"},
        {"container_port": 53, "protocol": "udp"},
    ]


def test_restart_policies() -> None:
    assert "restart_policy" not in podmanmap.container_spec(spec(), None)
    always = podmanmap.container_spec(spec(restart_policy={"Name": "always"}), None)
    assert always["restart_policy"] == "always" and "restart_tries" not in always


def test_runc_is_the_default_runtime() -> None:
    assert "oci_runtime" not in podmanmap.container_spec(spec(runtime="runc"), None)


def test_detached_container_has_loopback_only() -> None:
    body = podmanmap.container_spec(spec(no_network=True), None)
    assert body["netns"] == {"nsmode": "none"} and "Networks" not in body


def test_member_joins_its_sandbox_pod() -> None:
    body = podmanmap.container_spec(
        spec(
            uuid="m1",
            network_container="sb1",
            hostname="ignored",
            networks=[NetworkRef("n1", "net", "p1")],
            published_ports=[PublishedPort(80)],
        ),
        None,
    )
    assert body["pod"] == "berth-pod-sb1"
    for key in ("hostname", "netns", "Networks", "portmappings"):
        assert key not in body


def test_sandbox_becomes_the_pod_infra() -> None:
    sandbox = spec(
        uuid="sb1",
        labels={"berth.capsule": "sb1"},
        command=["sleep", "2147483647"],
        hostname="pod-web",
        cpu=1.5,
        memory=128,
        networks=[NetworkRef("n1", "net", "p1")],
        published_ports=[PublishedPort(8080)],
    )
    assert podmanmap.is_sandbox(sandbox)
    assert not podmanmap.is_sandbox(spec(labels={"berth.capsule": "other"}))
    body = podmanmap.pod_spec(sandbox, "agent-a")
    assert body == {
        "name": "berth-pod-sb1",
        "labels": {
            "berth.capsule": "sb1",
            "berth.uuid": "sb1",
            "berth.project": "p1",
            "berth.spec_version": "3",
            "berth.owner": "agent-a",
        },
        "infra_name": "berth-sb1",
        "infra_image": "busybox:latest",
        "infra_command": ["sleep", "2147483647"],
        "hostname": "pod-web",
        "netns": {"nsmode": "bridge"},
        "Networks": {"berth-net-n1": {}},
        "portmappings": [{"container_port": 8080, "protocol": "tcp"}],
        "resource_limits": {
            "cpu": {"quota": 150_000, "period": 100_000},
            "memory": {"limit": 128 * MIB, "swap": 128 * MIB},
        },
    }


def test_dind_profile() -> None:
    body = podmanmap.container_spec(spec(node_profile="dind"), None, TenantLimits(pids=100))
    assert body["cap_add"] == ["ALL"] and body["cgroupns"] == {"nsmode": "host"}
    assert "resource_limits" not in body  # no pids cap for a cluster node
    targets = {m["destination"] for m in body["mounts"]}
    assert targets == {"/sys/fs/cgroup", "/var/lib/docker", "/run"}


def test_resources_empty_when_unlimited() -> None:
    assert podmanmap.resources(None, None) == {}
    assert podmanmap.resources(2, None) == {"cpu": {"quota": 200_000, "period": 100_000}}


def ts(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).isoformat().replace("+00:00", "123Z")


def test_from_inspect_running() -> None:
    data = {
        "Id": "abc",
        "Name": "berth-u1",
        "State": {
            "Status": "running",
            "Running": True,
            "StartedAt": "2026-12-05T23:16:09.99716266Z",
            "FinishedAt": "0001-01-01T00:00:00Z",
            "ExitCode": 0,
        },
        "Config": {
            "Labels": {"berth.uuid": "u1", "berth.spec_version": "4", "berth.rebuild": "op"}
        },
        "NetworkSettings": {
            "Networks": {"podman": {"IPAddress": "10.88.0.2", "GlobalIPv6Address": ""}},
            "Ports": {"8080/tcp": [{"HostIp": "", "HostPort": "42933"}]},
        },
    }
    seen = podmanmap.from_inspect(data)
    assert (seen.uuid, seen.runtime_id, seen.state) == ("u1", "abc", "running")
    assert seen.spec_version == 4
    assert seen.exit_code is None and seen.detailed and seen.rebuild_id == "op"
    assert seen.started_at == "2026-12-05T23:16:09.997162+00:00"
    assert seen.status_detail.startswith("Up ")
    assert seen.addresses == {"podman": [{"addr": "10.88.0.2", "version": 4}]}
    assert seen.networks == ["podman"] and seen.published == {"8080/tcp": 42933}


@pytest.mark.parametrize(
    ("status", "state"),
    [("configured", "created"), ("created", "created"), ("exited", "stopped"),
     ("stopped", "stopped"), ("paused", "paused"), ("removing", "removing"), ("unknown", "dead")],
)  # fmt: skip
def test_podman_states(status: str, state: str) -> None:
    data = {"Id": "x", "State": {"Status": status, "ExitCode": 137}, "Config": {"Labels": {}}}
    seen = podmanmap.from_inspect(data)
    assert seen.state == state
    assert seen.exit_code == (137 if state == "stopped" else None)


def test_from_listing() -> None:
    entry = {
        "Id": "abc",
        "State": "exited",
        "ExitCode": 3,
        "ExitedAt": int(NOW.timestamp()) - 5,
        "StartedAt": int(NOW.timestamp()) - 60,
        "Labels": {"berth.uuid": "u1", "berth.spec_version": "2"},
        "Networks": ["podman"],
        "Ports": [{"host_ip": "", "container_port": 80, "host_port": 40000, "range": 1,
                   "protocol": "tcp"}],
    }  # fmt: skip
    seen = podmanmap.from_listing(entry, NOW)
    assert (seen.state, seen.exit_code, seen.detailed) == ("stopped", 3, False)
    assert seen.spec_version == 2
    assert seen.status_detail == "Exited (3) 5 seconds ago"
    assert seen.networks == ["podman"] and seen.published == {"80/tcp": 40000}
    assert seen.started_at is None


@pytest.mark.parametrize(
    ("entry", "text"),
    [
        ({"State": "running", "StartedAt": int(NOW.timestamp()) - 180}, "Up 3 minutes"),
        ({"State": "paused", "StartedAt": int(NOW.timestamp()) - 120}, "Up 2 minutes (Paused)"),
        ({"State": "created", "StartedAt": 0}, "Created"),
        ({"State": "configured"}, "Created"),
        ({"State": "removing"}, "Removal In Progress"),
    ],
)
def test_listing_status(entry: dict[str, Any], text: str) -> None:
    assert podmanmap.listing_status(entry, NOW) == text


def test_zun_stats() -> None:
    sample = {
        "CPU": 12.3456,
        "MemUsage": 32 * MIB,
        "MemLimit": 128 * MIB,
        "NetInput": 586,
        "NetOutput": 1360,
        "BlockInput": 4096,
        "BlockOutput": 0,
    }
    assert podmanmap.zun_stats(sample, "berth-u1") == {
        "CONTAINER": "berth-u1",
        "CPU %": 12.35,
        "MEM USAGE(MiB)": 32.0,
        "MEM LIMIT(MiB)": 128.0,
        "MEM %": 25.0,
        "BLOCK I/O(B)": "4096/0",
        "NET I/O(B)": "586/1360",
    }
    assert podmanmap.zun_stats({}, "x")["MEM %"] == 0.0


@pytest.mark.parametrize(
    ("status", "answer", "kind"),
    [
        (404, {"cause": "no such container", "message": "gone"}, errors.ContainerNotFound),
        (500, {"cause": "no such pod", "message": "no pod"}, errors.ContainerNotFound),
        (409, {"cause": "pod already exists", "message": "taken"}, errors.InvalidStateException),
        (500, {"cause": "container state improper", "message": "x"}, errors.InvalidStateException),
        (
            500,
            {"cause": "that name is already in use", "message": "x"},
            errors.InvalidStateException,
        ),
        (400, {"cause": "bad", "message": "bad input"}, errors.Invalid),
        (500, {"cause": "boom", "message": "it broke"}, errors.BerthError),
    ],
)
def test_error_for(status: int, answer: dict[str, str], kind: type[errors.BerthError]) -> None:
    error = podmanmap.error_for(status, json.dumps(answer).encode())
    assert type(error) is kind and error.message.endswith(answer["message"])


def test_error_for_text_answer() -> None:
    error = podmanmap.error_for(502, b"bad gateway")
    assert "bad gateway" in error.message


@pytest.mark.parametrize(
    ("image", "reference"),
    [("busybox", "docker.io/library/busybox"), ("busybox:1", "docker.io/library/busybox:1"),
     ("berth/node:1", "docker.io/berth/node:1"), ("quay.io/x/y:2", "quay.io/x/y:2"),
     ("localhost:5000/x:1", "localhost:5000/x:1"), ("localhost/x", "localhost/x")],
)  # fmt: skip
def test_qualified(image: str, reference: str) -> None:
    assert podmanmap.qualified(image) == reference


def test_image_tags_are_spelled_as_docker_does() -> None:
    images = [
        {"Created": 1, "RepoTags": ["localhost/berth-test/busybox:latest"]},
        {"Created": 2, "RepoTags": ["docker.io/library/busybox:1", "quay.io/a/b:c"]},
        {"Created": 3, "RepoTags": None},
    ]
    assert podmanmap.image_tags(images) == [
        "berth-test/busybox:latest",
        "busybox:1",
        "quay.io/a/b:c",
    ]


def test_log_params() -> None:
    assert podmanmap.log_params(True, False, True, 5, 12.5, follow=True) == {
        "stdout": "true",
        "stderr": "false",
        "timestamps": "true",
        "follow": "true",
        "tail": "5",
        "since": "12.500000000",
    }
    assert "tail" not in podmanmap.log_params(True, True, False, None, None, follow=False)


def test_auth_header_and_insecure_registries() -> None:
    assert auth_header(None) == {}
    header = auth_header(RegistryAuth("reg:5000", "u", "p"))["X-Registry-Auth"]
    assert json.loads(base64.urlsafe_b64decode(header)) == {
        "username": "u",
        "password": "p",
        "serveraddress": "reg:5000",
    }
    assert insecure_registry("localhost:5000/x:1") and insecure_registry("127.0.0.1:9519/a/b")
    assert not insecure_registry("docker.io/library/busybox") and not insecure_registry("busybox")
