"""The pure parts of volumes and capsules: template parsing, capsule status, Docker mapping."""

from __future__ import annotations

from typing import Any

import pytest

from berth import errors
from berth.agent.apply import apply_plan
from berth.agent.diff import Create, Remove, Start
from berth.domain.capsules import capsule_status, parse_template
from berth.domain.hostsync import DesiredContainer, VolumeMount
from berth.runtimes import dockermap
from berth.runtimes.fake import FakeDriver


def spec(**kw: Any) -> DesiredContainer:
    return DesiredContainer(
        uuid="u1",
        name="n",
        project_id="p",
        image="i",
        desired_state="running",
        spec_version=1,
        **kw,
    )


def test_volumes_become_docker_mounts_and_host_paths_binds() -> None:
    _, host = dockermap.create_params(
        spec(
            volumes=[
                VolumeMount("v1", "/data", read_only=True),
                VolumeMount("v2", None),  # held by the sandbox, not mounted
                VolumeMount("", "/host", host_path="/srv/x"),
            ]
        ),
        "o",
    )
    assert host["mounts"] == [
        {"Type": "volume", "Source": "berth-vol-v1", "Target": "/data", "ReadOnly": True},
        {"Type": "bind", "Source": "/srv/x", "Target": "/host", "ReadOnly": False},
    ]


def test_capsule_member_joins_the_sandbox_network_namespace() -> None:
    config, host = dockermap.create_params(spec(network_container="sb", hostname="h"), "o")
    assert host["network_mode"] == "container:berth-sb"
    assert "hostname" not in config  # the sandbox's hostname is shared


def test_template_maps_the_kubernetes_like_fields() -> None:
    cap = parse_template(
        {
            "kind": "capsule",
            "metadata": {"name": "pod", "labels": {"a": "b"}},
            "spec": {
                "restartPolicy": "OnFailure",
                "containers": [
                    {
                        "image": "busybox",
                        "command": ["sh"],
                        "args": ["-c", "true"],
                        "env": [{"name": "K", "value": "v"}],
                        "workingDir": "/w",
                        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}},
                        "ports": [{"containerPort": 53, "protocol": "UDP"}],
                        "volumeMounts": [{"name": "dd", "mountPath": "/d", "readOnly": True}],
                    }
                ],
                "volumes": [{"name": "dd", "cinder": {"size": 2, "autoRemove": True}}],
            },
        }
    )
    (c,) = cap.containers
    assert (cap.name, cap.labels, cap.restart_policy) == ("pod", {"a": "b"}, "on-failure")
    assert c.command == ["sh", "-c", "true"] and c.environment == {"K": "v"}
    assert (c.cpu, c.memory, c.workdir, c.ports) == (0.5, 1024, "/w", ["53/udp"])
    assert c.mounts[0].read_only and cap.volumes[0].auto_remove and cap.volumes[0].size == 2


@pytest.mark.parametrize(
    "template",
    [
        None,
        [],
        {"kind": "capsule", "metadata": {}, "spec": {"containers": [{"image": "ab"}]}, "x": 1},
        {"kind": "capsule", "metadata": {}, "spec": {"containers": [{"image": "a b"}]}},
        {
            "kind": "capsule",
            "metadata": {},
            "spec": {"containers": [{"image": "ab", "ports": [{"containerPort": 0}]}]},
        },
        {
            "kind": "capsule",
            "metadata": {},
            "spec": {"containers": [{"image": "ab", "resources": {"requests": {"memory": "x"}}}]},
        },
        {
            "kind": "capsule",
            "metadata": {},
            "spec": {"containers": [{"image": "ab"}], "volumes": [{"name": "vv"}]},
        },
    ],
)
def test_malformed_templates_are_invalid(template: Any) -> None:
    with pytest.raises(errors.Invalid, match="Invalid capsule template"):
        parse_template(template)


def _one(member: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    """A minimal valid template, its container and outer keys overridden."""
    spec: dict[str, Any] = {
        "containers": [{"image": "ab", **(member or {})}],
        "volumes": [{"name": "v1", "cinder": {"size": 1}}],
    }
    return {"kind": "capsule", "metadata": {}, "spec": spec, **top}


@pytest.mark.parametrize(
    ("template", "message"),
    [
        (_one({"bogus": 1}), "spec.containers[0] has unknown key(s) bogus"),
        (_one({"volumeMounts": [{"name": "v1"}]}), "spec.containers[0].volumeMounts[0] needs"),
        (_one({"volumeMounts": [{"name": "v2", "mountPath": "/d"}]}), "names volume 'v2'"),
        (
            _one({"volumeMounts": [{"name": "v1", "mountPath": "/d", "readOnly": "y"}]}),
            "spec.containers[0] readOnly must be true or false",
        ),
        (_one({"imagePullPolicy": "sometimes"}), "spec.containers[0].imagePullPolicy must be"),
        (_one({"workDir": 7}), "spec.containers[0].workDir must be a path"),
        (_one({"workDir": "/a\nb"}), "spec.containers[0].workDir must not hold control"),
        (_one(capsuleVersion="v1"), "capsuleVersion must be 'beta'"),
        (_one(availabilityZone=""), "availabilityZone must be a zone name"),
        (_one(availabilityZone="a\tb"), "availabilityZone must not hold control"),
        (
            {
                "kind": "capsule",
                "metadata": {},
                "spec": {
                    "containers": [{"image": "ab"}],
                    "volumes": [{"name": "vv", "cinder": {"size": 1}}] * 2,
                },
            },
            "spec.volumes has two volumes with the same name",
        ),
        # Several mistakes: one is reported, always the same one (the capsule's own
        # fields before its containers', a container's image before its workDir).
        (_one({"image": "a b"}, availabilityZone=""), "availabilityZone must be a zone name"),
        (_one({"image": "a b", "workDir": 7}), "spec.containers[0].image is required"),
    ],
)
def test_each_mistake_is_named(template: Any, message: str) -> None:
    with pytest.raises(errors.Invalid) as caught:
        parse_template(template)
    assert message in str(caught.value)


def test_pull_policy_and_zone_are_kept() -> None:
    cap = parse_template(_one({"imagePullPolicy": "IfNotPresent"}, availabilityZone="az1"))
    assert cap.containers[0].image_pull_policy == "ifnotpresent"
    assert cap.availability_zone == "az1" and cap.containers[0].workdir is None


@pytest.mark.parametrize(
    ("deleting", "sandbox", "inits", "apps", "status"),
    [
        (False, "Creating", [], ["Creating"], "Creating"),
        (False, "Running", ["Running"], ["Creating"], "Creating"),
        (False, "Running", ["Error"], ["Creating"], "Error"),
        (False, "Running", ["Stopped"], ["Running", "Running"], "Running"),
        (False, "Running", [], ["Running", "Stopped"], "Running"),
        (False, "Running", [], ["Stopped", "Stopped"], "Stopped"),
        (False, "Error", [], ["Creating"], "Error"),
        (True, "Running", [], ["Running"], "Deleting"),
    ],
)
def test_capsule_status_derives_from_its_containers(
    deleting: bool, sandbox: str, inits: list[str], apps: list[str], status: str
) -> None:
    assert capsule_status(deleting, sandbox, inits, apps) == status


class _Volumes:
    def __init__(self) -> None:
        self.removed_for: list[str] = []

    async def remove_owned_by(self, owner_uuid: str) -> None:
        self.removed_for.append(owner_uuid)


@pytest.mark.asyncio
async def test_owned_volumes_go_with_a_deleted_container_but_not_with_a_rebuild() -> None:
    runtime = FakeDriver(images={"i"})
    volumes = _Volumes()
    runtime.volumes = volumes  # type: ignore[attr-defined]
    desired = spec()
    await apply_plan(runtime, "u1", [Create(desired), Start()], desired)
    await apply_plan(runtime, "u1", [Remove(), Create(desired)], desired)  # a rebuild
    assert volumes.removed_for == []
    gone = spec(volumes=[VolumeMount("v1", "/d", owner="u1")])
    gone.desired_state = "deleted"
    await apply_plan(runtime, "u1", [Remove()], gone)
    assert volumes.removed_for == ["u1"]
    await apply_plan(runtime, "u2", [Remove()], None)  # garbage of a deleted container
    assert volumes.removed_for == ["u1", "u2"]
